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
    var key = s.round + ':' + s.ends_at;
    if (left <= 0 && !s.paused && chimedFor !== key) {
      chimedFor = key;
      if (chime.checked) { playChime(); }
    }
  }

  /* High contrast for washed-out projectors, and an optional chime when a round's time runs out. */
  var contrast = C.byId('opt-contrast');
  var chime = C.byId('opt-chime');
  contrast.checked = C.store.get('cafe.dash.contrast', false) || /[?&]contrast=high/.test(window.location.search);
  chime.checked = C.store.get('cafe.dash.chime', true);
  function applyContrast() { document.body.classList.toggle('high-contrast', contrast.checked); }
  contrast.addEventListener('change', function () { C.store.set('cafe.dash.contrast', contrast.checked); applyContrast(); });
  chime.addEventListener('change', function () { C.store.set('cafe.dash.chime', chime.checked); });
  applyContrast();
  var chimedFor = null;

  function playChime() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) { return; }
    try {
      var ctx = new Ctx();
      [523.25, 659.25, 783.99].forEach(function (freq, i) {
        var osc = ctx.createOscillator();
        var gain = ctx.createGain();
        osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, ctx.currentTime + i * 0.35);
        gain.gain.exponentialRampToValueAtTime(0.3, ctx.currentTime + i * 0.35 + 0.05);
        gain.gain.exponentialRampToValueAtTime(0.0001, ctx.currentTime + i * 0.35 + 1.2);
        osc.connect(gain); gain.connect(ctx.destination);
        osc.start(ctx.currentTime + i * 0.35); osc.stop(ctx.currentTime + i * 0.35 + 1.3);
      });
    } catch (e) { /* audio is optional */ }
  }

  var model = C.live(cafeId, draw);
  setInterval(function () { if (model.state) { tick(model); } }, 250);
})();
