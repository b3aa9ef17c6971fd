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
    drawHarvest(model, what);
    if (what === 'phase' || what === 'snapshot') {
      C.byId('paper-round').value = String(Math.max(1, s.round));
      C.byId('paper-card').hidden = s.round === 0 || s.phase === 'voting' || s.phase === 'results';
    }
    tick(model);
  }

  /* --- the harvest --- */
  function drawHarvest(model, what) {
    var s = model.state;
    var phase = s.phase;
    var harvesting = phase === 'harvest';
    C.byId('btn-harvest').hidden = !(phase === 'break' || phase === 'ended');
    C.byId('btn-repropose').hidden = !harvesting;
    C.byId('theme-add').hidden = !harvesting;
    C.byId('voting-settings').hidden = !harvesting;
    C.byId('voting-live').hidden = phase !== 'voting';
    C.byId('results').hidden = phase !== 'results';
    C.byId('harvest-intro').hidden = phase === 'voting' || phase === 'results';
    if (what === 'themes' || what === 'snapshot' || what === 'phase') { drawThemeEditor(model, harvesting); }
    if (phase === 'voting' && (what === 'phase' || what === 'snapshot' || what === 'themes')) { drawPaperVotes(model); }
    if (phase === 'voting') {
      C.byId('voters').textContent = C.plural('1 person has voted', '%(n)s people have voted', model.tally ? model.tally.voters : 0);
      C.byId('tally-toggle').checked = !!s.show_tally;
      C.drawBars(C.byId('tally'), C.tallyItems(model.themes, model.tally));
    }
    if (phase === 'results') {
      C.drawBars(C.byId('priority-list'), C.priorityItems(model.priorities));
    }
  }

  function drawPaperVotes(model) {
    var list = C.byId('paper-vote-fields');
    C.clear(list);
    var paper = {};
    var tally = (model.tally && model.tally.tally) || [];
    for (var i = 0; i < tally.length; i++) { paper[tally[i].theme_id] = tally[i].paper || 0; }
    for (var j = 0; j < model.themes.length; j++) {
      var theme = model.themes[j];
      if (theme.id === null) { continue; }
      var input = C.el('input', {type: 'number', min: '0', max: '100000', value: String(paper[theme.id] || 0),
                                 'data-theme': String(theme.id), className: 'narrow-input'});
      list.appendChild(C.el('li', null, [C.el('label', null, [input, ' ' + theme.label])]));
    }
  }

  function themeSelect(model, excludeId, label) {
    var select = C.el('select', {'aria-label': label});
    select.appendChild(C.el('option', {value: '', text: label}));
    for (var i = 0; i < model.themes.length; i++) {
      var t = model.themes[i];
      if (t.id === null || t.id === excludeId) { continue; }
      select.appendChild(C.el('option', {value: String(t.id), text: t.label}));
    }
    return select;
  }

  function drawThemeEditor(model, editable) {
    var list = C.byId('theme-editor');
    C.clear(list);
    if (model.state.phase !== 'harvest' && model.state.phase !== 'voting' && model.state.phase !== 'results') { return; }
    for (var i = 0; i < model.themes.length; i++) {
      list.appendChild(themeItem(model, model.themes[i], editable));
    }
  }

  function themeItem(model, theme, editable) {
    var item = C.el('li', {className: 'theme-edit'});
    var head = C.el('div', {className: 'row'});
    if (theme.id === null) {
      head.appendChild(C.el('h3', {text: C.t('Notes without a theme')}));
    } else if (editable) {
      var input = C.el('input', {value: theme.label, maxlength: '120', 'aria-label': C.t('Rename'), className: 'theme-name'});
      var rename = C.el('button', {type: 'button', className: 'button secondary', text: C.t('Rename')});
      rename.addEventListener('click', function () { send('theme_rename', {theme_id: theme.id, label: input.value}); });
      head.appendChild(input);
      head.appendChild(rename);
      var target = themeSelect(model, theme.id, C.t('Merge into…'));
      var merge = C.el('button', {type: 'button', className: 'button secondary', text: C.t('Merge')});
      merge.addEventListener('click', function () {
        if (target.value) { send('theme_merge', {theme_id: theme.id, into_id: parseInt(target.value, 10)}); }
      });
      head.appendChild(target);
      head.appendChild(merge);
    } else {
      head.appendChild(C.el('h3', {text: theme.label, dir: 'auto'}));
    }
    item.appendChild(head);
    item.appendChild(C.el('p', {className: 'muted', text: C.t('raised at %(tables)s tables · %(notes)s notes', {tables: theme.tables, notes: theme.note_count})}));
    var notes = C.el('ul', {className: 'theme-notes'});
    var ticks = [];
    for (var j = 0; j < (theme.notes || []).length; j++) {
      notes.appendChild(noteRow(model, theme, theme.notes[j], editable, ticks));
    }
    item.appendChild(notes);
    if (editable && theme.id !== null && (theme.notes || []).length > 1) {
      var split = C.el('button', {type: 'button', className: 'button secondary', text: C.t('Split the ticked notes into a new theme')});
      split.addEventListener('click', function () {
        var ids = [];
        for (var k = 0; k < ticks.length; k++) { if (ticks[k].box.checked) { ids.push(ticks[k].id); } }
        if (ids.length) { send('theme_split', {theme_id: theme.id, note_ids: ids}); }
      });
      item.appendChild(split);
    }
    return item;
  }

  function noteRow(model, theme, note, editable, ticks) {
    var row = C.el('li', {className: 'theme-note' + (note.hidden ? ' is-hidden' : '')});
    if (editable && theme.id !== null) {
      var box = C.el('input', {type: 'checkbox', 'aria-label': C.t('Select note')});
      ticks.push({box: box, id: note.id});
      row.appendChild(box);
    }
    row.appendChild(C.el('span', {className: 'theme-note-text', text: note.text, dir: 'auto'}));
    row.appendChild(C.el('span', {className: 'muted', text: ' · ' + C.t('Table %(n)s', {n: note.table}) + (note.hidden ? ' · ' + C.t('hidden') : '')}));
    var hide = C.el('button', {type: 'button', className: 'link', text: note.hidden ? C.t('Show') : C.t('Hide')});
    hide.addEventListener('click', function () { send('note_hide', {note_id: note.id, hidden: !note.hidden}); });
    row.appendChild(hide);
    if (editable) {
      var move = themeSelect(model, theme.id, C.t('Move to…'));
      move.addEventListener('change', function () {
        if (move.value) { send('note_move', {note_id: note.id, theme_id: parseInt(move.value, 10)}); }
      });
      row.appendChild(move);
    }
    return row;
  }

  function send(event, payload, done) {
    model.command(event, payload, function (answer) {
      var out = C.byId('control-message');
      if (answer.ok) { out.hidden = true; if (done) { done(answer); } return; }
      if (answer.error.code === 'confirm_needed' && window.confirm(answer.error.message)) {
        payload.confirm = true;
        send(event, payload, done);
        return;
      }
      out.textContent = answer.error.message;
      out.hidden = false;
    });
  }

  function drawPeople(model) {
    var list = C.byId('people-list');
    C.clear(list);
    var ids = Object.keys(model.participants).map(Number).sort(function (a, b) { return a - b; });
    for (var i = 0; i < ids.length; i++) {
      var p = model.participants[ids[i]];
      var status = p.left ? C.t('left') : (p.connected ? '' : C.t('away'));
      var li = C.el('li', {className: status ? 'muted' : ''}, [p.name + (status ? ' (' + status + ')' : '')]);
      if (!p.left) { li.appendChild(fixedButton(p)); li.appendChild(scribeButton(p)); li.appendChild(removeButton(p)); }
      list.appendChild(li);
    }
  }

  function fixedButton(person) {
    var on = !!person.fixed;
    var button = C.el('button', {type: 'button', className: 'link', 'aria-pressed': on ? 'true' : 'false',
                                 text: on ? C.t('Stays at one table') + ' ✓' : C.t('Stays at one table')});
    button.addEventListener('click', function () {
      send('participant_fixed', {participant_id: person.id, fixed: !on}, function () {
        person.fixed = !on;
        drawPeople(model);
      });
    });
    return button;
  }

  function scribeButton(person) {
    var on = !!person.can_scribe;
    var button = C.el('button', {type: 'button', className: 'link', 'aria-pressed': on ? 'true' : 'false',
                                 text: on ? C.t('Scribe') + ' ✓' : C.t('Make scribe')});
    button.addEventListener('click', function () {
      send('scribe_allow', {participant_id: person.id, allowed: !on}, function () {
        person.can_scribe = !on;
        drawPeople(model);
      });
    });
    return button;
  }

  function removeButton(person) {
    var button = C.el('button', {type: 'button', className: 'link danger', text: C.t('Remove'),
                                 'aria-label': C.t('Remove') + ' ' + person.name});
    button.addEventListener('click', function () {
      if (window.confirm(C.t('Remove %(name)s from the café?', {name: person.name}))) {
        send('participant_remove', {participant_id: person.id});
      }
    });
    return button;
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
  bind('btn-harvest', 'harvest_start');
  bind('btn-close-voting', 'voting_close');
  C.byId('btn-repropose').addEventListener('click', function () { send('themes_propose', {}); });
  C.byId('theme-add').addEventListener('submit', function (e) {
    e.preventDefault();
    var field = C.byId('theme-add-label');
    if (field.value.trim()) { send('theme_add', {label: field.value}, function () { field.value = ''; }); }
  });
  C.byId('voting-settings').addEventListener('submit', function (e) {
    e.preventDefault();
    send('voting_open', {budget: parseInt(C.byId('vote-budget').value, 10) || 3,
                         stacking: C.byId('vote-stacking').checked, show_tally: C.byId('vote-show').checked});
  });
  C.byId('paper-notes').addEventListener('submit', function (e) {
    e.preventDefault();
    var texts = C.byId('paper-texts').value.split('\n').filter(function (t) { return t.trim(); });
    if (!texts.length) { return; }
    send('notes_enter', {round: parseInt(C.byId('paper-round').value, 10) || 1,
                         table: parseInt(C.byId('paper-table').value, 10) || 1,
                         lang: C.byId('paper-lang').value, texts: texts}, function (answer) {
      C.byId('paper-texts').value = '';
      C.byId('paper-result').textContent = C.plural('1 note added', '%(n)s notes added', answer.notes.length);
    });
  });
  C.byId('paper-votes').addEventListener('submit', function (e) {
    e.preventDefault();
    var counts = {};
    var inputs = C.byId('paper-vote-fields').querySelectorAll('input');
    for (var i = 0; i < inputs.length; i++) {
      counts[inputs[i].getAttribute('data-theme')] = Math.max(0, parseInt(inputs[i].value, 10) || 0);
    }
    send('votes_enter', {counts: counts});
  });
  C.byId('tally-toggle').addEventListener('change', function () {
    send('tally_show', {show: C.byId('tally-toggle').checked});
  });
  setInterval(function () { if (model.state) { tick(model); } }, 500);
})();
