/* cafe: shared helpers for the phone, dashboard and control views.
 * ES5 on purpose: it must run on old phones' default browsers. Everything a person wrote is inserted
 * with textContent, never as HTML. */
(function () {
  'use strict';
  var Cafe = window.Cafe = {};

  var stringsEl = document.getElementById('cafe-strings');
  Cafe.strings = stringsEl ? JSON.parse(stringsEl.textContent) : {};

  /* Translated string by key, with %(name)s placeholders. */
  Cafe.t = function (key, vars) {
    var s = Cafe.strings[key] || key;
    if (vars) {
      s = s.replace(/%\((\w+)\)s/g, function (m, name) {
        return vars.hasOwnProperty(name) ? String(vars[name]) : m;
      });
    }
    return s;
  };

  /* Build an element; text children become text nodes (never HTML). */
  Cafe.el = function (tag, attrs, children) {
    var node = document.createElement(tag);
    var key;
    if (attrs) {
      for (key in attrs) {
        if (!attrs.hasOwnProperty(key) || attrs[key] === null || attrs[key] === undefined) { continue; }
        if (key === 'text') { node.textContent = attrs[key]; }
        else if (key === 'className') { node.className = attrs[key]; }
        else { node.setAttribute(key, attrs[key]); }
      }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        var child = children[i];
        if (child === null || child === undefined) { continue; }
        node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
      }
    }
    return node;
  };

  Cafe.clear = function (node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  };

  /* The singular form when n is 1 (its own catalog entry), otherwise the plural with %(n)s. */
  Cafe.plural = function (one, other, n) {
    return n === 1 ? Cafe.t(one) : Cafe.t(other, {n: n});
  };

  Cafe.byId = function (id) { return document.getElementById(id); };

  /* --- the round clock: server-authoritative timestamps, counted down locally --- */
  var offsetMs = 0;   // server clock minus this device's clock
  Cafe.syncClock = function (state) {
    if (state && typeof state.server_time === 'number') {
      offsetMs = state.server_time * 1000 - Date.now();
    }
  };
  Cafe.serverNow = function () { return (Date.now() + offsetMs) / 1000; };
  Cafe.remaining = function (state) {
    if (!state || state.phase !== 'round' || typeof state.ends_at !== 'number') { return null; }
    if (state.paused) { return Math.max(0, state.remaining || 0); }
    return Math.max(0, state.ends_at - Cafe.serverNow());
  };
  Cafe.formatTime = function (seconds) {
    var s = Math.ceil(seconds);
    var m = Math.floor(s / 60);
    var r = s % 60;
    return m + ':' + (r < 10 ? '0' : '') + r;
  };
  Cafe.spokenTime = function (seconds) {
    var m = Math.ceil(seconds / 60);
    return m <= 1 ? Cafe.t('less than a minute left') : Cafe.plural('1 minute left', '%(n)s minutes left', m);
  };

  /* --- tables: number + colour + shape, so colour is never the only signal --- */
  var COLOURS = 8;
  var SHAPES = ['circle', 'square', 'triangle', 'diamond', 'pentagon', 'hexagon', 'star', 'cross'];
  var SHAPE_POINTS = {
    triangle: '50,6 94,90 6,90',
    diamond: '50,4 96,50 50,96 4,50',
    pentagon: '50,5 95,38 78,92 22,92 5,38',
    hexagon: '27,6 73,6 96,50 73,94 27,94 4,50',
    star: '50,4 61,36 95,36 67,57 78,92 50,70 22,92 33,57 5,36 39,36',
    cross: '35,5 65,5 65,35 95,35 95,65 65,65 65,95 35,95 35,65 5,65 5,35 35,35'
  };
  Cafe.tableStyle = function (n) {
    var i = n - 1;
    return {colour: i % COLOURS, shape: SHAPES[(i + Math.floor(i / COLOURS)) % SHAPES.length]};
  };
  Cafe.shapeName = function (n) { return Cafe.t('shape_' + Cafe.tableStyle(n).shape); };
  Cafe.tableShape = function (n) {
    var style = Cafe.tableStyle(n);
    var ns = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 100 100');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'shape shape-' + style.shape);
    var shape;
    if (style.shape === 'circle') {
      shape = document.createElementNS(ns, 'circle');
      shape.setAttribute('cx', '50'); shape.setAttribute('cy', '50'); shape.setAttribute('r', '46');
    } else if (style.shape === 'square') {
      shape = document.createElementNS(ns, 'rect');
      shape.setAttribute('x', '6'); shape.setAttribute('y', '6');
      shape.setAttribute('width', '88'); shape.setAttribute('height', '88');
    } else {
      shape = document.createElementNS(ns, 'polygon');
      shape.setAttribute('points', SHAPE_POINTS[style.shape]);
    }
    svg.appendChild(shape);
    return svg;
  };
  /* A badge: coloured shape with the table number on it. */
  Cafe.tableBadge = function (n, extraClass) {
    var style = Cafe.tableStyle(n);
    var badge = Cafe.el('span', {className: 'table-badge colour-' + style.colour + (extraClass ? ' ' + extraClass : '')});
    badge.appendChild(Cafe.tableShape(n));
    badge.appendChild(Cafe.el('span', {className: 'table-number', text: String(n)}));
    return badge;
  };

  /* --- the socket --- */
  Cafe.connect = function (auth) {
    /* websocket first (no sticky sessions needed); long-polling only as a fallback */
    return window.io({transports: ['websocket', 'polling'], auth: auth || undefined,
                      reconnectionDelayMax: 5000, timeout: 10000});
  };

  /* Emit a command and call back with its answer; a timeout answers as an error. */
  Cafe.command = function (socket, event, payload, done, timeoutMs) {
    var finished = false;
    var timer = setTimeout(function () {
      if (!finished) { finished = true; if (done) { done({ok: false, error: {code: 'timeout', message: Cafe.t('No answer from the server.')}}); } }
    }, timeoutMs || 10000);
    socket.emit(event, payload, function (answer) {
      if (finished) { return; }
      finished = true;
      clearTimeout(timer);
      if (done) { done(answer || {ok: false, error: {code: 'no_answer', message: ''}}); }
    });
  };

  /* Which café version a page may call "everything up to here" (the since_version it sends when it
     joins again after a dropped connection).

     A page hears its own worker's events in the order they were sent; with several workers, two
     changes committed one after the other can still arrive the other way round (each worker publishes
     its own through the message queue). So the highest version seen so far proves nothing: an older
     event may still be on its way, and lost if the connection drops first. A snapshot's version is
     safe at once (it was read after everything below it committed); an event's becomes safe once the
     page has heard from the server (any event, or its ping) settleMs after it: anything committed
     before it was published long before that and came first on the same connection. When the
     connection drops, the versions not yet safe are forgotten: the page then asks from the last safe
     one and gets a snapshot if anything changed since. */
  Cafe.VERSION_SETTLE_MS = 10000;
  Cafe.versionTracker = function (settleMs) {
    var settle = typeof settleMs === 'number' ? settleMs : Cafe.VERSION_SETTLE_MS;
    var safe = null;      // a version every change up to which has arrived (or is in the snapshot)
    var unsure = [];      // [version, time heard] of events since, newest last
    var lastHeard = 0;
    function ripen() {
      var cutoff = lastHeard - settle;
      while (unsure.length && unsure[0][1] <= cutoff) {
        var v = unsure.shift()[0];
        if (safe === null || v > safe) { safe = v; }
      }
    }
    return {
      snapshot: function (version) {
        if (typeof version !== 'number') { return; }
        safe = version;
        unsure = [];
      },
      heard: function (version, now) {
        lastHeard = typeof now === 'number' ? now : Date.now();
        if (typeof version === 'number' && safe !== null && version > safe) { unsure.push([version, lastHeard]); }
        ripen();
      },
      dropped: function () { ripen(); unsure = []; },
      forget: function () { safe = null; unsure = []; },
      since: function () { ripen(); return safe; }
    };
  };

  /* A versionTracker fed by a socket: every message and ping is "heard", a dropped connection forgets
     what had not settled. */
  Cafe.trackVersions = function (socket) {
    var tracker = Cafe.versionTracker();
    socket.onAny(function (name, m) { tracker.heard(m && typeof m === 'object' ? m.version : undefined); });
    socket.io.on('ping', function () { tracker.heard(); });
    socket.on('disconnect', function () { tracker.dropped(); });
    return tracker;
  };

  /* The server says ``resync`` when its workers lost their message queue for a while: events may have
     been missed, and no version shows which. The page forgets what it holds as safe and joins again for a
     whole snapshot, after a random moment, so that a room full of phones does not ask all at once. */
  Cafe.RESYNC_SPREAD_MS = 3000;
  Cafe.onResync = function (socket, tracker, rejoin) {
    var timer = null;
    socket.on('resync', function () {
      tracker.forget();
      if (timer) { return; }
      timer = setTimeout(function () {
        timer = null;
        if (socket.connected) { rejoin(); }     // otherwise connecting again joins anyway
      }, Math.random() * Cafe.RESYNC_SPREAD_MS);
    });
  };

  /* Whether a copy of a thing (a note, the state, the tally) is older than the one a page holds. */
  Cafe.isOlder = function (incoming, held) {
    return !!held && typeof held.version === 'number' && typeof incoming.version === 'number' &&
      incoming.version < held.version;
  };

  /* Keeps a page's notes (id -> note) newest first whatever order their events arrive in: an older copy
     never replaces a newer one, and a deleted note stays deleted when an older copy arrives after. */
  Cafe.noteKeeper = function () {
    var gone = {};        // note id -> version of its deletion
    return {
      reset: function () { gone = {}; },
      keep: function (notes, note, prepare) {
        if (!note || (gone[note.id] !== undefined && gone[note.id] >= note.version) ||
            Cafe.isOlder(note, notes[note.id])) { return false; }
        notes[note.id] = prepare ? prepare(note) : note;
        return true;
      },
      drop: function (notes, m) {
        if (Cafe.isOlder(m, notes[m.note_id])) { return false; }
        gone[m.note_id] = typeof m.version === 'number' ? m.version : Infinity;
        delete notes[m.note_id];
        return true;
      }
    };
  };

  Cafe.uuid = function () {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var bytes = new Uint8Array(16);
    (window.crypto || window.msCrypto).getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = [];
    for (var i = 0; i < 16; i++) { hex.push((bytes[i] + 0x100).toString(16).substr(1)); }
    return hex.slice(0, 4).join('') + '-' + hex.slice(4, 6).join('') + '-' + hex.slice(6, 8).join('') + '-' +
      hex.slice(8, 10).join('') + '-' + hex.slice(10, 16).join('');
  };

  Cafe.store = {
    get: function (key, fallback) {
      try { var v = window.localStorage.getItem(key); return v === null ? fallback : JSON.parse(v); }
      catch (e) { return fallback; }
    },
    set: function (key, value) {
      try { window.localStorage.setItem(key, JSON.stringify(value)); } catch (e) { /* private mode */ }
    },
    remove: function (key) { try { window.localStorage.removeItem(key); } catch (e) { /* ignore */ } }
  };

  /* Horizontal bars (label, value), drawn with elements so text stays text. */
  Cafe.drawBars = function (container, items, max) {
    Cafe.clear(container);
    var top = max || 1;
    for (var i = 0; i < items.length; i++) { top = Math.max(top, items[i].value); }
    for (var j = 0; j < items.length; j++) {
      var item = items[j];
      var row = Cafe.el('li', {className: 'bar-row'});
      row.appendChild(Cafe.el('span', {className: 'bar-label', text: item.label, dir: 'auto'}));
      var track = Cafe.el('span', {className: 'bar-track'});
      var bar = Cafe.el('span', {className: 'bar'});
      bar.style.width = Math.max(1, Math.round(100 * item.value / top)) + '%';
      track.appendChild(bar);
      row.appendChild(track);
      row.appendChild(Cafe.el('span', {className: 'bar-value', text: String(item.value)}));
      container.appendChild(row);
    }
  };

  Cafe.tallyItems = function (themes, tally) {
    var dots = {};
    var list = (tally && tally.tally) || [];
    for (var i = 0; i < list.length; i++) { dots[list[i].theme_id] = list[i].dots; }
    var items = [];
    for (var j = 0; j < themes.length; j++) {
      if (themes[j].id === null) { continue; }
      items.push({label: themes[j].label, value: dots[themes[j].id] || 0});
    }
    items.sort(function (a, b) { return b.value - a.value; });
    return items;
  };

  Cafe.priorityItems = function (priorities) {
    var items = [];
    for (var i = 0; i < (priorities || []).length; i++) {
      items.push({label: priorities[i].rank + '. ' + priorities[i].label, value: priorities[i].dots});
    }
    return items;
  };

  /* Theme cards for the dashboard and phones: label, how widely it was raised, the note that represents it. */
  Cafe.drawThemeCards = function (container, themes) {
    Cafe.clear(container);
    for (var i = 0; i < themes.length; i++) {
      var theme = themes[i];
      if (theme.id === null) { continue; }
      var card = Cafe.el('li', {className: 'theme-card'});
      card.appendChild(Cafe.el('h3', {className: 'theme-label', text: theme.label, dir: 'auto'}));
      card.appendChild(Cafe.el('p', {className: 'theme-meta',
        text: Cafe.t('raised at %(tables)s tables · %(notes)s notes', {tables: theme.tables, notes: theme.note_count})}));
      if (theme.representative) {
        card.appendChild(Cafe.el('p', {className: 'sticky', text: theme.representative.text, dir: 'auto'}));
      }
      container.appendChild(card);
    }
  };

  Cafe.phaseLabel = function (state) {
    if (!state) { return ''; }
    if (state.phase === 'lobby') { return Cafe.t('Waiting to start'); }
    if (state.phase === 'round') { return Cafe.t('Round %(n)s of %(total)s', {n: state.round, total: state.rounds}); }
    if (state.phase === 'break') { return Cafe.t('Round %(n)s is over', {n: state.round}); }
    if (state.phase === 'harvest') { return Cafe.t('Harvest: themes from every table'); }
    if (state.phase === 'voting') { return Cafe.t('Voting'); }
    if (state.phase === 'results') { return Cafe.t("The room's priorities"); }
    if (state.phase === 'ended') { return Cafe.t('The café has ended'); }
    return state.phase;
  };
})();
