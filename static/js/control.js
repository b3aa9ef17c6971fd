/* cafe: the facilitator's control view (laptop or phone): rounds, clock, joining, seating preview. */
(function () {
  'use strict';
  var C = window.Cafe;
  var root = C.byId('control');
  var cafeId = parseInt(root.getAttribute('data-cafe-id'), 10);
  var previewTimer = null;

  function answerTo(button) {
    return function (answer) {
      button.disabled = false;
      var out = C.byId('control-message');
      if (answer.ok) {
        out.textContent = '';
        out.hidden = true;
        if (answer.repeats !== undefined) { showPlan(answer); }
      } else {
        out.textContent = answer.error.message;
        out.hidden = false;
      }
    };
  }

  function showPlan(plan) {
    var el = C.byId('seating-preview');
    if (plan.round === null || plan.repeats === undefined) { el.textContent = ''; return; }
    var text = plan.repeats === 0 ? C.t('No one meets anyone twice.')
      : C.t('%(repeats)s repeat encounters (the minimum possible is %(lb)s)', {repeats: plan.repeats, lb: plan.lower_bound});
    el.textContent = (plan.round ? C.t('Next: round %(n)s', {n: plan.round}) + ' · ' : '') + text;
    var warn = C.byId('seating-warnings');
    C.clear(warn);
    for (var i = 0; i < (plan.warnings || []).length; i++) { warn.appendChild(C.el('li', {text: plan.warnings[i]})); }
  }

  function schedulePreview(model) {
    if (!model.state || (model.state.phase !== 'lobby' && model.state.phase !== 'break')) {
      C.byId('seating-preview').textContent = '';
      return;
    }
    clearTimeout(previewTimer);
    previewTimer = setTimeout(function () {
      model.command('seating_preview', null, function (answer) { if (answer.ok) { showPlan(answer); } });
    }, 400);
  }

  function draw(model, what) {
    if (what === 'error') { C.byId('control-message').textContent = model.error; C.byId('control-message').hidden = false; return; }
    C.byId('offline').hidden = !!model.online;
    var s = model.state;
    if (!s) { return; }
    C.byId('phase').textContent = C.phaseLabel(s);
    C.byId('question').textContent = s.question || '';
    C.byId('people').textContent = C.t('%(n)s joined', {n: s.participants.count}) + ' · ' + C.t('%(n)s here', {n: s.participants.connected});
    var running = s.phase === 'round';
    var canStart = (s.phase === 'lobby' || s.phase === 'break') && s.round < s.rounds;
    var start = C.byId('btn-start');
    start.hidden = !canStart;
    start.textContent = C.t('Start round %(n)s', {n: s.round + 1});
    C.byId('btn-pause').hidden = !running || s.paused;
    C.byId('btn-resume').hidden = !running || !s.paused;
    C.byId('time-buttons').hidden = !running;
    C.byId('btn-end-round').hidden = !running;
    C.byId('btn-end-cafe').hidden = s.phase === 'ended';
    C.byId('joins-state').textContent = s.joins_open ? C.t('Joining is open') : C.t('Joining is closed');
    C.byId('btn-joins-close').hidden = !s.joins_open || s.phase === 'ended';
    C.byId('btn-joins-open').hidden = s.joins_open || s.phase === 'ended';
    if (what !== 'state' && what !== 'notes') {
      C.drawTables(C.byId('tables'), model, false);
      drawPeople(model);
      schedulePreview(model);
    }
    tick(model);
  }

  function drawPeople(model) {
    var list = C.byId('people-list');
    C.clear(list);
    var ids = Object.keys(model.participants).map(Number).sort(function (a, b) { return a - b; });
    for (var i = 0; i < ids.length; i++) {
      var p = model.participants[ids[i]];
      var status = p.left ? C.t('left') : (p.connected ? '' : C.t('away'));
      list.appendChild(C.el('li', {className: status ? 'muted' : '', text: p.name + (status ? ' (' + status + ')' : '')}));
    }
  }

  function tick(model) {
    var left = C.remaining(model.state);
    C.byId('clock').textContent = left === null ? '' : (left > 0 ? C.formatTime(left) : C.t('Time is up'));
  }

  var model = C.live(cafeId, draw);

  function bind(id, event, extra) {
    var button = C.byId(id);
    button.addEventListener('click', function () {
      if (button.getAttribute('data-confirm') && !window.confirm(button.getAttribute('data-confirm'))) { return; }
      button.disabled = true;
      model.command(event, extra, answerTo(button));
    });
  }
  bind('btn-start', 'round_start');
  bind('btn-pause', 'round_pause');
  bind('btn-resume', 'round_resume');
  bind('btn-add1', 'round_extend', {seconds: 60});
  bind('btn-add5', 'round_extend', {seconds: 300});
  bind('btn-end-round', 'round_end');
  bind('btn-end-cafe', 'cafe_end');
  bind('btn-joins-close', 'joins_close');
  bind('btn-joins-open', 'joins_open');
  setInterval(function () { if (model.state) { tick(model); } }, 500);
})();
