/* cafe: the projector dashboard. Read-only: the controls live on the control view. */
(function () {
  'use strict';
  var C = window.Cafe;
  var root = C.byId('dashboard');
  var cafeId = parseInt(root.getAttribute('data-cafe-id'), 10);

  function draw(model, what) {
    if (what === 'error') { C.byId('dash-error').textContent = model.error; C.byId('dash-error').hidden = false; return; }
    C.byId('offline').hidden = !!model.online;
    var s = model.state;
    if (!s) { return; }
    root.setAttribute('data-phase', s.phase);
    C.byId('phase').textContent = C.phaseLabel(s);
    C.byId('question').textContent = s.question || '';
    var count = s.participants ? s.participants.count : 0;
    C.byId('joined').textContent = C.t('%(n)s joined', {n: count});
    C.byId('join-panel').className = 'join-panel' + (s.phase === 'lobby' ? ' large' : '');
    C.byId('joins-closed').hidden = s.joins_open;
    var harvesting = s.phase === 'harvest' || s.phase === 'voting' || s.phase === 'results';
    if (what !== 'state') {
      C.drawTables(C.byId('tables'), model, true);
      drawLobby(model);
    }
    C.byId('tables').hidden = s.phase === 'lobby' || harvesting;
    C.byId('harvest').hidden = s.phase !== 'harvest';
    C.byId('voting').hidden = s.phase !== 'voting';
    C.byId('results').hidden = s.phase !== 'results';
    if (s.phase === 'harvest') { C.drawThemeCards(C.byId('theme-cards'), model.themes); }
    if (s.phase === 'voting') {
      var voters = model.tally ? model.tally.voters : 0;
      C.byId('voting-status').textContent = C.plural('1 person has voted', '%(n)s people have voted', voters);
      if (s.show_tally) { C.drawBars(C.byId('tally'), C.tallyItems(model.themes, model.tally)); }
      else { C.clear(C.byId('tally')); }
    }
    if (s.phase === 'results') { C.drawBars(C.byId('priorities'), C.priorityItems(model.priorities)); }
    tick(model);
  }

  function drawLobby(model) {
    var list = C.byId('lobby-names');
    C.clear(list);
    var inLobby = model.state.phase === 'lobby';
    C.byId('lobby').hidden = !inLobby;
    if (!inLobby) { return; }
    var ids = Object.keys(model.participants).map(Number).sort(function (a, b) { return a - b; });
    var shown = 0;
    for (var i = 0; i < ids.length; i++) {
      var p = model.participants[ids[i]];
      if (p.left) { continue; }
      list.appendChild(C.el('li', {text: p.name}));
      shown++;
    }
    C.byId('lobby-empty').hidden = shown > 0;
  }

  function tick(model) {
    var s = model.state;
    var clock = C.byId('clock');
    var left = C.remaining(s);
    if (left === null) { clock.textContent = ''; clock.className = 'clock'; return; }
    clock.textContent = left > 0 ? C.formatTime(left) : C.t('Time is up');
    clock.className = 'clock' + (s.paused ? ' paused' : '') + (left <= 0 ? ' up' : (left < 60 ? ' last-minute' : ''));
    C.byId('paused').hidden = !s.paused;
  }

  var model = C.live(cafeId, draw);
  setInterval(function () { if (model.state) { tick(model); } }, 250);
})();
