/* cafe: the facilitator's live model, shared by the projector dashboard and the control view.
 * Keeps the café's state, table map, participants and notes up to date from the socket. */
(function () {
  'use strict';
  var C = window.Cafe;

  C.live = function (cafeId, onChange) {
    var model = {state: null, seating: {round: 0, tables: []}, participants: {}, notes: {}, preview: null,
                 version: null, socket: null, themes: [], tally: null, priorities: null};
    var socket = model.socket = C.connect();

    var pendingPeople = null;
    function changed(what) {
      if (what === 'participants') {
        // a room of 2,000 joining: redraw at most four times a second, not once per phone
        if (!pendingPeople) { pendingPeople = setTimeout(function () { pendingPeople = null; onChange(model, what); }, 250); }
        return;
      }
      onChange(model, what);
    }

    /* Changes to who is here, committed side by side (on several workers), can arrive in another order
       than they were read: keep the latest read of the room's counts, and of each person (counted_at says
       when it was read, read after the change committed). A person's change read before the snapshot's
       counts is older than the snapshot's list (read after them). */
    var countsAt = -1, peopleAt = {};
    function takeCounts(counts) {
      if (!counts) { return false; }
      if (typeof counts.counted_at === 'number') {
        if (counts.counted_at < countsAt) { return false; }
        countsAt = counts.counted_at;
      }
      return true;
    }
    function takePerson(m) {
      var id = m.participant.id;
      if (typeof m.counted_at === 'number') {
        var seen = peopleAt.hasOwnProperty(id) ? peopleAt[id] : snapshotAt;
        if (m.counted_at < seen) { return false; }
        peopleAt[id] = m.counted_at;
      }
      return true;
    }
    var snapshotAt = -1;

    function applySnapshot(s) {
      countsAt = -1;
      takeCounts(s.state.participants);
      peopleAt = {};
      snapshotAt = countsAt;
      model.state = s.state;
      C.syncClock(s.state);
      model.seating = s.seating;
      model.participants = {};
      for (var i = 0; i < s.participants.length; i++) { model.participants[s.participants[i].id] = s.participants[i]; }
      model.notes = {};
      for (var j = 0; j < s.notes.length; j++) { model.notes[s.notes[j].id] = s.notes[j]; }
      model.version = s.state.version;
      versions.snapshot(s.state.version);
      keeper.reset();
      themesVersion = s.state.version;
      model.themes = s.themes || [];
      model.tally = s.tally || null;
      model.priorities = s.priorities || null;
    }

    function join() {
      var payload = {cafe_id: cafeId};
      var since = versions.since();
      if (since !== null) { payload.since_version = since; }
      C.command(socket, 'facilitator_join', payload, function (answer) {
        if (!answer.ok) { model.error = answer.error.message; changed('error'); return; }
        if (answer.snapshot) { applySnapshot(answer.snapshot); }
        changed('snapshot');
      });
    }

    /* With several workers, events can arrive out of order (see Cafe.versionTracker). */
    var versions = C.trackVersions(socket);
    C.onResync(socket, versions, join);
    var keeper = C.noteKeeper();
    var themesVersion = -1;

    socket.on('connect', function () { model.online = true; join(); changed('connection'); });
    socket.on('disconnect', function () { model.online = false; changed('connection'); });
    socket.on('cafe_state', function (s) {
      if (C.isOlder(s, model.state)) { return; }
      var roundChanged = !model.state || model.state.round !== s.round || model.state.phase !== s.phase;
      if (!takeCounts(s.participants) && model.state) { s.participants = model.state.participants; }
      model.state = s; model.version = s.version; C.syncClock(s);
      changed(roundChanged ? 'phase' : 'state');
    });
    socket.on('seating_changed', function (s) { model.seating = s; changed('seating'); });
    socket.on('participants_changed', function (m) {
      if (model.state && takeCounts(m)) {
        model.state.participants = {count: m.count, connected: m.connected, counted_at: m.counted_at};
      }
      if (m.participant && takePerson(m)) { model.participants[m.participant.id] = m.participant; }
      changed('participants');
    });
    socket.on('note_added', function (m) {
      keeper.keep(model.notes, m.note);
      if (typeof m.version === 'number' && m.version > model.version) { model.version = m.version; }
      changed('notes');
    });
    socket.on('note_updated', function (m) { keeper.keep(model.notes, m.note); changed('notes'); });
    socket.on('note_deleted', function (m) { if (keeper.drop(model.notes, m)) { changed('notes'); } });
    socket.on('themes_changed', function (m) {
      if (C.isOlder(m, {version: themesVersion})) { return; }
      if (typeof m.version === 'number') { themesVersion = m.version; }
      model.themes = m.themes;
      changed('themes');
    });
    socket.on('tally_changed', function (m) {
      if (C.isOlder(m, model.tally)) { return; }
      model.tally = m;
      changed('tally');
    });
    socket.on('priorities_ranked', function (m) { model.priorities = m.priorities; changed('priorities'); });

    /* Proposing themes clusters every note: on a big harvest that takes a while, so wait longer. */
    var SLOW = {harvest_start: 120000, themes_propose: 120000, round_start: 30000};
    model.command = function (event, extra, done) {
      var payload = {cafe_id: cafeId};
      if (extra) { for (var k in extra) { if (extra.hasOwnProperty(k)) { payload[k] = extra[k]; } } }
      C.command(socket, event, payload, done || function () {}, SLOW[event]);
    };
    return model;
  };

  /* Table cards for the current round: badge, who sits there, and (optionally) the notes arriving. */
  C.drawTables = function (container, model, withNotes) {
    C.clear(container);
    var seating = model.seating || {tables: []};
    var byTable = {};
    var ids = Object.keys(model.notes).map(Number).sort(function (a, b) { return a - b; });
    for (var i = 0; i < ids.length; i++) {
      var note = model.notes[ids[i]];
      if (note.round === seating.round && !note.hidden) {
        (byTable[note.table] = byTable[note.table] || []).push(note);
      }
    }
    for (var t = 0; t < seating.tables.length; t++) {
      var table = seating.tables[t];
      var card = C.el('li', {className: 'table-tile colour-' + C.tableStyle(table.table).colour});
      var head = C.el('div', {className: 'tile-head'});
      head.appendChild(C.tableBadge(table.table));
      head.appendChild(C.el('span', {className: 'tile-title', text: C.t('Table %(n)s', {n: table.table})}));
      card.appendChild(head);
      var names = C.el('p', {className: 'members'});
      for (var m = 0; m < table.members.length; m++) {
        var member = table.members[m];
        var span = C.el('span', {className: 'member' + (member.is_host ? ' host' : ''), text: member.name + (member.is_host ? ' (' + C.t('host') + ')' : '')});
        names.appendChild(span);
        if (m < table.members.length - 1) { names.appendChild(document.createTextNode(', ')); }
      }
      card.appendChild(names);
      if (withNotes) {
        var list = C.el('ul', {className: 'tile-notes'});
        var notes = byTable[table.table] || [];
        for (var n = Math.max(0, notes.length - 6); n < notes.length; n++) {
          list.appendChild(C.el('li', {className: 'sticky', text: notes[n].text, dir: 'auto', lang: notes[n].lang || null}));
        }
        if (notes.length > 6) {
          card.appendChild(C.el('p', {className: 'more', text: '+' + (notes.length - 6)}));
        }
        card.appendChild(list);
      }
      container.appendChild(card);
    }
  };
})();
