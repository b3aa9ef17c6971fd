/* cafe: the resident's phone. Join, go to your table, see the question and time left, write notes.
 * Notes wait in an outbox in this browser's storage until the server says they are saved. */
(function () {
  'use strict';
  var C = window.Cafe;
  var root = C.byId('phone');
  var code = root.getAttribute('data-code');
  var pageLang = root.getAttribute('data-lang') || 'en';
  var canScribe = false;
  var tokenKey = 'cafe.token.' + code;
  var outboxKey = 'cafe.outbox.' + code;
  var votesKey = 'cafe.votes.' + code;
  var opsKey = 'cafe.ops.' + code;
  var ops = C.store.get(opsKey, []);   // edits and deletes not yet saved: [{op, note_id, text?}]
  /* Answers that mean "try again later" (the change stays queued); any other refusal is final. */
  var RETRYABLE = ['timeout', 'storage_unavailable', 'no_answer', 'internal', 'rate_limited'];
  var versions = null;    // Cafe.trackVersions: events may arrive out of order (several workers)
  var keeper = C.noteKeeper();
  var themesVersion = -1;

  var socket = null;
  var me = null;          // {id, name, ...}
  var state = null;       // cafe_state
  var seat = null;        // {round, table, is_host}
  var notes = {};         // id -> note
  var outbox = C.store.get(outboxKey, []);   // [{client_id, text, lang}]
  var seenKey = 'cafe.seen.' + code;
  var tableCardDismissedFor = C.store.get(seenKey, null);   // the round whose table card was dismissed
  var lastAnnounced = {phase: null, minute: null};
  var themes = [];
  var myVotes = {};                                   // theme id (string) -> dots, as the server has them
  var pendingVotes = C.store.get(votesKey, null);     // an allocation not yet saved
  var tally = null;
  var priorities = null;
  var voteTimer = null;
  var pendingJoin = null;
  var joinBuffer = null;  // events that arrive while a join is being answered (see replayNewer)
  var joinRetries = 0, joinTimer = null;  // a join the server was too busy for is asked again (see join)

  var views = {
    join: C.byId('view-join'), lobby: C.byId('view-lobby'), table: C.byId('view-table'),
    round: C.byId('view-round'), harvest: C.byId('view-harvest'), ended: C.byId('view-ended')
  };

  function show(name) {
    for (var key in views) {
      if (views.hasOwnProperty(key)) { views[key].hidden = key !== name; }
    }
  }

  function announce(text) {
    var live = C.byId('announcer');
    live.textContent = '';
    setTimeout(function () { live.textContent = text; }, 50);
  }

  function setStatus(kind) {
    var el = C.byId('connection');
    el.className = 'connection ' + kind;
    el.textContent = kind === 'online' ? C.t('Connected') : C.t('Offline: your notes are kept and sent when the connection returns');
  }

  /* --- joining --- */
  function join(name, language) {
    var payload = {join_code: code};
    var token = C.store.get(tokenKey, null);
    if (token) {
      payload.rejoin_token = token;
      var since = versions.since();
      if (since !== null && state) { payload.since_version = since; }
    }
    if (name) { payload.name = name; }
    payload.language = language || pageLang;
    if (!token) {
      var speaks = [];
      var boxes = document.querySelectorAll('input[name=speaks]:checked');
      for (var i = 0; i < boxes.length; i++) { speaks.push(boxes[i].value); }
      if (speaks.length) { payload.languages = speaks; }
      if (C.byId('stay-put').checked) { payload.stay_put = true; }
    }
    joinBuffer = [];
    C.command(socket, 'participant_join', payload, function (answer) {
      var buffered = joinBuffer || [];
      joinBuffer = null;
      if (!answer.ok) {
        if (answer.error && answer.error.code === 'busy') {
          if (joinRetries < 10) {
            /* A crowd is joining: nothing was done, so ask again after a moment (spread out, not all at once). */
            joinRetries++;
            showJoinMessage(answer.error.message);
            joinTimer = setTimeout(function () { joinTimer = null; join(name, language); },
                                   1000 + Math.random() * 2000 * joinRetries);
          } else {                  // tried long enough: the person may tap again
            joinRetries = 0;
            showJoinError('');
          }
          return;
        }
        if (answer.error && answer.error.code === 'bad_token') {
          C.store.remove(tokenKey);
          show('join');
        }
        showJoinError(answer.error ? answer.error.message : '');
        return;
      }
      joinRetries = 0;
      C.byId('join-error').hidden = true;
      if (answer.rejoin_token) { C.store.set(tokenKey, answer.rejoin_token); }
      me = answer.participant;
      if (pendingVotes) { setTimeout(sendVotes, 0); }
      C.byId('my-name').textContent = me.name;
      if (answer.snapshot) {
        applySnapshot(answer.snapshot);
        replayNewer(buffered, answer.snapshot.state);
      }
      render();
      flushOutbox();
    });
  }

  function showJoinMessage(message) {
    var err = C.byId('join-error');
    err.textContent = message;
    err.hidden = false;
  }

  function cancelJoinRetry() {
    if (joinTimer) { clearTimeout(joinTimer); joinTimer = null; }
  }

  function showJoinError(message) {
    showJoinMessage(message || C.t('Could not join. Please try again.'));
    show(me ? 'lobby' : 'join');
  }

  /* The server puts this connection in its rooms before it reads the snapshot, so an event can arrive
     before the join's answer and be older or newer than the snapshot: the newer ones are applied again. */
  function replayNewer(buffered, snapState) {
    for (var i = 0; i < buffered.length; i++) {
      var name = buffered[i][0], m = buffered[i][1];
      var newer = typeof m.version === 'number' ? m.version > snapState.version
        : name === 'seat_assigned' && m.round > snapState.round;
      if (newer) { buffered[i][2](m); }
    }
  }

  function applySnapshot(snapshot) {
    state = null;
    setState(snapshot.state);
    versions.snapshot(snapshot.state.version);
    keeper.reset();
    themesVersion = snapshot.state.version;
    seat = snapshot.seat;
    notes = {};
    for (var i = 0; i < snapshot.notes.length; i++) { notes[snapshot.notes[i].id] = snapshot.notes[i]; }
    for (var j = 0; j < ops.length; j++) { applyOpLocally(ops[j]); }   // changes still waiting to be sent
    canScribe = !!snapshot.can_scribe;
    themes = snapshot.themes || [];
    myVotes = snapshot.my_votes || {};
    tally = snapshot.tally || null;
    priorities = snapshot.priorities || null;
  }

  /* An older state arriving after a newer one (from another worker) is not applied. */
  function setState(newState) {
    if (C.isOlder(newState, state)) { return false; }
    state = newState;
    C.syncClock(state);
    return true;
  }

  /* --- drawing --- */
  function render() {
    if (!state || !me) { return; }
    C.byId('phase').textContent = C.phaseLabel(state);
    var question = (state.question_i18n && state.question_i18n[pageLang]) || state.question || '';
    var qs = document.querySelectorAll('.question-text');
    for (var i = 0; i < qs.length; i++) { qs[i].textContent = question; }
    if (state.phase === 'ended') {
      show('ended');
    } else if (state.phase === 'harvest' || state.phase === 'voting' || state.phase === 'results') {
      drawHarvest();
      show('harvest');
    } else if (state.phase === 'lobby' || !seat || seat.round !== state.round) {
      C.byId('lobby-message').textContent = state.phase === 'lobby' ? C.t('You are in. The facilitator will start soon.')
        : C.t('You will get a table when the next round starts.');
      show('lobby');
    } else if (tableCardDismissedFor !== seat.round) {
      drawTableCard();
      show('table');
    } else {
      drawRound();
      show('round');
    }
    announcePhase();
    tick();
  }

  function drawTableCard() {
    var holder = C.byId('table-card');
    C.clear(holder);
    holder.className = 'table-card colour-' + C.tableStyle(seat.table).colour;
    holder.setAttribute('data-round', String(seat.round));
    holder.appendChild(C.tableBadge(seat.table, 'huge'));
    holder.appendChild(C.el('p', {className: 'go-to', text: C.t('Go to table %(n)s', {n: seat.table})}));
    holder.appendChild(C.el('p', {className: 'shape-name', text: C.shapeName(seat.table)}));
    if (seat.is_host) {
      holder.appendChild(C.el('p', {className: 'host-note',
        text: C.t('You are the host of table %(n)s: stay here, welcome newcomers, and share what was said before.', {n: seat.table})}));
    }
  }

  function drawRound() {
    var badge = C.byId('my-table');
    C.clear(badge);
    badge.appendChild(C.tableBadge(seat.table));
    badge.appendChild(C.el('span', {text: C.t('Table %(n)s', {n: seat.table})}));
    C.byId('host-banner').hidden = !seat.is_host;
    C.byId('scribe-option').hidden = !(seat.is_host || canScribe);
    var canWrite = state.phase === 'round';
    C.byId('note-form').hidden = !canWrite;
    C.byId('round-over').hidden = state.phase !== 'break';
    drawNotes();
  }

  function drawNotes() {
    var list = C.byId('notes');
    var earlier = C.byId('earlier-notes');
    C.clear(list);
    C.clear(earlier);
    var ids = Object.keys(notes).map(Number).sort(function (a, b) { return a - b; });
    var savedIds = {};
    for (var k in notes) { if (notes[k].client_id) { savedIds[notes[k].client_id] = true; } }
    var countNow = 0, countEarlier = 0;
    for (var i = 0; i < ids.length; i++) {
      var note = notes[ids[i]];
      if (seat && note.round === seat.round && note.table === seat.table) {
        list.appendChild(noteItem(note, true)); countNow++;
      } else if (seat && seat.is_host && note.table === seat.table && note.round < seat.round) {
        earlier.appendChild(noteItem(note, false)); countEarlier++;
      }
    }
    for (var j = 0; j < outbox.length; j++) {
      if (savedIds[outbox[j].client_id]) { continue; }   // on the server already: drawn above as saved
      list.appendChild(pendingItem(outbox[j])); countNow++;
    }
    C.byId('no-notes').hidden = countNow > 0;
    C.byId('earlier-section').hidden = countEarlier === 0;
  }

  function noteItem(note, current) {
    var li = C.el('li', {className: 'note' + (note.mine ? ' mine' : ''), lang: note.lang || null, dir: 'auto'});
    li.appendChild(C.el('p', {className: 'note-text', text: note.text, dir: 'auto'}));
    var meta = C.el('div', {className: 'note-meta'});
    if (!current) { meta.appendChild(C.el('span', {text: C.t('Round %(n)s', {n: note.round})})); }
    if (note.mine && pendingOp(note.id)) {
      meta.appendChild(C.el('span', {className: 'waiting', text: C.t('waiting to send')}));
    } else if (note.mine) {
      meta.appendChild(C.el('span', {className: 'saved', text: C.t('saved')}));
      if (current && state.phase === 'round') {
        var edit = C.el('button', {type: 'button', className: 'link', text: C.t('Edit')});
        edit.addEventListener('click', function () { editNote(note); });
        var del = C.el('button', {type: 'button', className: 'link danger', text: C.t('Delete')});
        del.addEventListener('click', function () { deleteNote(note); });
        meta.appendChild(edit);
        meta.appendChild(del);
      }
    }
    li.appendChild(meta);
    return li;
  }

  function pendingItem(item) {
    var li = C.el('li', {className: 'note mine pending', dir: 'auto'});
    li.appendChild(C.el('p', {className: 'note-text', text: item.text, dir: 'auto'}));
    li.appendChild(C.el('div', {className: 'note-meta'}, [C.el('span', {className: 'waiting', text: C.t('waiting to send')})]));
    return li;
  }

  function announcePhase() {
    var key = state.phase + ':' + state.round + ':' + (seat ? seat.table : '');
    if (lastAnnounced.phase === key) { return; }
    lastAnnounced.phase = key;
    if (state.phase === 'round' && seat && seat.round === state.round) {
      announce(C.t('Go to table %(n)s', {n: seat.table}) + '. ' + (state.question || ''));
    } else if (state.phase === 'break') {
      announce(C.t('Time is up. The round is over.'));
    } else if (state.phase === 'ended') {
      announce(C.t('The café has ended'));
    }
  }

  function tick() {
    var left = C.remaining(state);
    var timer = C.byId('time-left');
    if (left === null) {
      timer.textContent = '';
      C.byId('time-up').hidden = true;
      return;
    }
    timer.textContent = C.formatTime(left) + (state.paused ? ' · ' + C.t('paused') : '');
    C.byId('time-up').hidden = left > 0;
    var minute = Math.ceil(left / 60);
    if ((minute === 5 || minute === 1) && lastAnnounced.minute !== minute && left > 0) {
      lastAnnounced.minute = minute;
      announce(C.spokenTime(left));
    }
  }

  /* --- the harvest and the vote --- */
  function allocation() { return pendingVotes || myVotes; }

  function spent(votes) {
    var total = 0;
    for (var k in votes) { if (votes.hasOwnProperty(k)) { total += votes[k]; } }
    return total;
  }

  function drawHarvest() {
    var phase = state.phase;
    C.byId('harvest-phase').textContent = C.phaseLabel(state);
    C.byId('harvest-title').textContent = phase === 'voting' ? C.t('Voting is open')
      : (phase === 'results' ? C.t("The room's priorities") : C.t('The harvest'));
    C.byId('harvest-intro').textContent = phase === 'voting'
      ? C.t('Tap + to give a theme a dot. You can change your mind until voting closes.')
      : C.t('These themes came up across the tables.');
    var list = C.byId('phone-themes');
    var ranked = C.byId('phone-priorities');
    list.hidden = phase === 'results';
    ranked.hidden = phase !== 'results';
    if (phase === 'results') {
      C.drawBars(ranked, C.priorityItems(priorities));
      C.byId('vote-status').hidden = true;
      return;
    }
    C.clear(list);
    var votes = allocation();
    var left = state.vote_budget - spent(votes);
    var status = C.byId('vote-status');
    status.hidden = phase !== 'voting';
    if (phase === 'voting') {
      status.textContent = (left > 0 ? C.plural('You have 1 dot left', 'You have %(n)s dots left', left) : C.t('You have used all your dots')) +
        ' · ' + (pendingVotes ? C.t('Saving your votes…') : C.t('Your votes are saved'));
    }
    var dots = {};
    if (tally && state.show_tally) {
      for (var t = 0; t < tally.tally.length; t++) { dots[tally.tally[t].theme_id] = tally.tally[t].dots; }
    }
    for (var i = 0; i < themes.length; i++) {
      list.appendChild(themeRow(themes[i], votes, left, phase === 'voting', dots));
    }
  }

  function themeRow(theme, votes, left, voting, dots) {
    var li = C.el('li', {className: 'phone-theme'});
    var body = C.el('div', {className: 'phone-theme-body'});
    body.appendChild(C.el('h2', {className: 'theme-label', text: theme.label, dir: 'auto'}));
    body.appendChild(C.el('p', {className: 'muted', text: C.t('raised at %(tables)s tables · %(notes)s notes', {tables: theme.tables, notes: theme.note_count})}));
    if (theme.representative) { body.appendChild(C.el('p', {className: 'note-text quote', text: theme.representative.text, dir: 'auto'})); }
    if (dots.hasOwnProperty(theme.id)) { body.appendChild(C.el('p', {className: 'muted', text: C.plural('1 dot', '%(n)s dots', dots[theme.id])})); }
    li.appendChild(body);
    if (voting) {
      var mine = votes[String(theme.id)] || 0;
      var box = C.el('div', {className: 'vote-box'});
      var minus = C.el('button', {type: 'button', className: 'vote-btn', text: '−', 'aria-label': C.t('Take a dot from %(theme)s', {theme: theme.label})});
      var count = C.el('span', {className: 'vote-count', text: String(mine), 'aria-hidden': 'true'});
      var plus = C.el('button', {type: 'button', className: 'vote-btn', text: '+', 'aria-label': C.t('Add a dot to %(theme)s', {theme: theme.label})});
      minus.disabled = mine === 0;
      plus.disabled = left <= 0 || (!state.vote_stacking && mine >= 1);
      minus.addEventListener('click', function () { changeVote(theme.id, -1); });
      plus.addEventListener('click', function () { changeVote(theme.id, 1); });
      box.appendChild(minus);
      box.appendChild(count);
      box.appendChild(plus);
      li.appendChild(box);
    }
    return li;
  }

  function changeVote(themeId, delta) {
    var votes = {};
    var current = allocation();
    for (var k in current) { if (current.hasOwnProperty(k)) { votes[k] = current[k]; } }
    var key = String(themeId);
    votes[key] = Math.max(0, (votes[key] || 0) + delta);
    if (!votes[key]) { delete votes[key]; }
    if (spent(votes) > state.vote_budget) { return; }
    pendingVotes = votes;
    C.store.set(votesKey, pendingVotes);
    drawHarvest();
    clearTimeout(voteTimer);
    voteTimer = setTimeout(sendVotes, 300);
  }

  function sendVotes() {
    if (!pendingVotes || !socket || !socket.connected) { return; }
    var sent = pendingVotes;
    C.command(socket, 'vote_set', {votes: sent}, function (answer) {
      if (answer.ok) {
        myVotes = answer.votes;
        if (pendingVotes === sent) { pendingVotes = null; C.store.remove(votesKey); }
        C.byId('vote-error').hidden = true;
      } else if (RETRYABLE.indexOf(answer.error.code) < 0) {
        pendingVotes = null;
        C.store.remove(votesKey);
        C.byId('vote-error').textContent = answer.error.message;
        C.byId('vote-error').hidden = false;
      }
      if (state && state.phase !== 'round') { drawHarvest(); }
    });
  }

  /* --- notes --- */
  function saveOutbox() { C.store.set(outboxKey, outbox); }

  function sendNote(item) {
    if (!socket || !socket.connected) { return; }
    C.command(socket, 'note_add', {client_id: item.client_id, text: item.text, lang: item.lang || undefined,
                                   scribed: !!item.scribed}, function (answer) {
      if (answer.ok) {
        removeFromOutbox(item.client_id);
        notes[answer.note.id] = answer.note;
        drawIfRound();
      } else if (answer.error && RETRYABLE.indexOf(answer.error.code) < 0) {
        // refused for good (round over, too long, ...): tell the person, keep the text for them
        removeFromOutbox(item.client_id);
        C.byId('note-error').textContent = answer.error.message + ' ' + C.t('Your note was:') + ' ' + item.text;
        C.byId('note-error').hidden = false;
        drawIfRound();
      }
    });
  }

  function inOutbox(clientId) {
    for (var i = 0; i < outbox.length; i++) { if (outbox[i].client_id === clientId) { return true; } }
    return false;
  }

  function removeFromOutbox(clientId) {
    outbox = outbox.filter(function (x) { return x.client_id !== clientId; });
    saveOutbox();
  }

  function flushOutbox() {
    for (var i = 0; i < outbox.length; i++) { sendNote(outbox[i]); }
    for (var j = 0; j < ops.length; j++) { sendOp(ops[j]); }
  }

  /* Edits and deletes wait in the browser's storage too, and are sent when the connection is back. */
  function pendingOp(noteId) {
    for (var i = 0; i < ops.length; i++) { if (ops[i].note_id === noteId) { return ops[i]; } }
    return null;
  }

  function applyOpLocally(item) {
    if (item.op === 'delete') { delete notes[item.note_id]; }
    else if (notes[item.note_id]) { notes[item.note_id].text = item.text; }
  }

  function queueOp(item) {
    // a later change to the same note replaces an earlier one (a delete after an edit: just the delete)
    ops = ops.filter(function (o) { return o.note_id !== item.note_id; });
    ops.push(item);
    C.store.set(opsKey, ops);
    applyOpLocally(item);
    drawNotes();
    sendOp(item);
  }

  function dropOp(item) {
    ops = ops.filter(function (o) { return !(o.note_id === item.note_id && o.op === item.op && o.text === item.text); });
    C.store.set(opsKey, ops);
  }

  function sendOp(item) {
    if (!socket || !socket.connected) { return; }
    var payload = item.op === 'edit' ? {note_id: item.note_id, text: item.text} : {note_id: item.note_id};
    C.command(socket, item.op === 'edit' ? 'note_edit' : 'note_delete', payload, function (answer) {
      if (answer.ok) {
        dropOp(item);
        if (answer.note) { notes[answer.note.id] = answer.note; }
      } else if (RETRYABLE.indexOf(answer.error.code) < 0) {
        dropOp(item);
        C.byId('note-error').textContent = answer.error.message;
        C.byId('note-error').hidden = false;
      }
      drawIfRound();
    });
  }

  function drawIfRound() { if (seat && state && (state.phase === 'round' || state.phase === 'break')) { drawNotes(); } }

  function editNote(note) {
    var text = window.prompt(C.t('Edit your note'), note.text);
    if (text === null) { return; }
    text = text.trim();
    if (!text) { return; }
    queueOp({op: 'edit', note_id: note.id, text: text});
  }

  function deleteNote(note) {
    if (!window.confirm(C.t('Delete this note?'))) { return; }
    queueOp({op: 'delete', note_id: note.id});
  }

  /* --- wiring --- */
  function on(name, handler) {
    socket.on(name, function (m) {
      if (!m || typeof m !== 'object') { return; }
      if (joinBuffer) { joinBuffer.push([name, m, handler]); }
      handler(m);
    });
  }

  function start() {
    socket = C.connect();
    socket.on('connect', function () {
      setStatus('online');
      if (C.store.get(tokenKey, null)) { cancelJoinRetry(); join(); }
      else if (pendingJoin) { var p = pendingJoin; pendingJoin = null; C.byId('join-error').hidden = true; join(p.name, p.language); }
    });
    versions = C.trackVersions(socket);
    C.onResync(socket, versions, function () { if (C.store.get(tokenKey, null)) { join(); } });
    socket.on('disconnect', function () { setStatus('offline'); });
    socket.on('connect_error', function () { setStatus('offline'); });
    on('cafe_state', function (s) { if (setState(s)) { render(); } });
    on('seat_assigned', function (s) {
      if (s.state && typeof s.state === 'object') { setState(s.state); }   // a round start: seat and state in one
      seat = s;
      // notes of an earlier table are no longer this table's
      render();
    });
    on('note_added', function (m) {
      keeper.keep(notes, m.note, markMine);
      // The table hears of a note once it is committed, maybe before its writer's answer arrives: this
      // phone's own note is saved then, and must not show twice (saved, and still waiting to send).
      if (inOutbox(m.note.client_id)) { removeFromOutbox(m.note.client_id); }
      drawIfRound();
    });
    on('note_updated', function (m) { keeper.keep(notes, m.note, markMine); drawIfRound(); });
    on('note_deleted', function (m) { if (keeper.drop(notes, m)) { drawIfRound(); } });
    socket.on('participants_changed', function () { /* the phone does not need the count */ });
    on('themes_changed', function (m) {
      if (C.isOlder(m, {version: themesVersion})) { return; }
      if (typeof m.version === 'number') { themesVersion = m.version; }
      themes = m.themes;
      if (state) { render(); }
    });
    on('tally_changed', function (m) {
      if (C.isOlder(m, tally)) { return; }
      tally = m;
      if (state && !views.harvest.hidden) { drawHarvest(); }
    });
    on('priorities_ranked', function (m) { priorities = m.priorities; if (state) { render(); } });
    socket.on('scribe_changed', function (m) { canScribe = !!m.can_scribe; if (state) { render(); } });
    socket.on('removed', function (m) {
      C.store.remove(tokenKey);
      C.byId('lobby-message').textContent = m.message || C.t('The facilitator has removed you from this café.');
      show('lobby');
    });
  }

  function markMine(note) {
    var old = notes[note.id];
    note.mine = !!(old && old.mine) || inOutbox(note.client_id);
    return note;
  }

  /* Picking a language shows this page in it at once (the choice is kept for the phone pages only). */
  C.byId('language').addEventListener('change', function () {
    var lang = C.byId('language').value;
    document.cookie = 'cafe_lang=' + encodeURIComponent(lang) + '; path=/j; max-age=31536000; samesite=lax';
    try { window.sessionStorage.setItem('cafe.name', C.byId('name').value); } catch (e) { /* ignore */ }
    window.location.replace(window.location.pathname + '?lang=' + encodeURIComponent(lang));
  });
  try {
    var keptName = window.sessionStorage.getItem('cafe.name');
    if (keptName) { C.byId('name').value = keptName; }
  } catch (e) { /* ignore */ }

  C.byId('join-form').addEventListener('submit', function (e) {
    e.preventDefault();
    cancelJoinRetry();
    C.byId('join-error').hidden = true;
    var name = C.byId('name').value.trim();
    var language = C.byId('language').value;
    if (!socket.connected) {
      // joins as soon as the connection is up (weak mobile data): no need to tap again
      pendingJoin = {name: name, language: language};
      showJoinMessage(C.t('Connecting…'));
      return;
    }
    join(name, language);
  });

  C.byId('im-here').addEventListener('click', function () {
    tableCardDismissedFor = seat ? seat.round : null;
    C.store.set(seenKey, tableCardDismissedFor);
    render();
    C.byId('note-text').focus();
  });

  C.byId('note-form').addEventListener('submit', function (e) {
    e.preventDefault();
    var field = C.byId('note-text');
    var text = field.value.trim();
    C.byId('note-error').hidden = true;
    if (!text) { return; }
    var noteLang = C.byId('note-lang').value;
    var scribed = !C.byId('scribe-option').hidden && C.byId('note-scribed').checked;
    var item = {client_id: C.uuid(), text: text, lang: noteLang === 'other' ? undefined : noteLang, scribed: scribed};
    outbox.push(item);
    saveOutbox();
    field.value = '';
    updateCounter();
    drawNotes();
    sendNote(item);
  });

  function updateCounter() {
    var field = C.byId('note-text');
    var left = 280 - field.value.length;
    C.byId('note-count').textContent = C.t('%(n)s characters left', {n: left});
  }
  C.byId('note-text').addEventListener('input', updateCounter);

  C.byId('leave').addEventListener('click', function () {
    if (!window.confirm(C.t('Leave the café? Your notes stay.'))) { return; }
    C.command(socket, 'participant_leave', {}, function () {
      C.byId('lobby-message').textContent = C.t('You have left. Thank you! Scan the code again to come back.');
    });
  });

  /* When the browser knows the network is gone, stop waiting for the socket's own timeout. */
  window.addEventListener('offline', function () { setStatus('offline'); if (socket) { socket.disconnect(); } });
  window.addEventListener('online', function () { if (socket && !socket.connected) { socket.connect(); } });

  setInterval(function () { if (state) { tick(); } }, 1000);

  if (C.store.get(tokenKey, null)) {
    C.byId('lobby-message').textContent = C.t('Reconnecting…');
    show('lobby');
  } else {
    show('join');
  }
  updateCounter();
  start();
})();
