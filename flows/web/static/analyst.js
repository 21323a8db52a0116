'use strict';
(() => {
  const { call, el, svgInto, table, show, fail, download, fmt } = CV;
  let catalog = [];
  let myBudgets = [];
  const $ = (id) => document.getElementById(id);

  function current() { return catalog.find((d) => d.dataset === $('dataset').value); }
  function checked(box) { return [...$(box).querySelectorAll('input:checked')].map((i) => i.value); }

  function drawChoices() {
    const d = current();
    if (!d) return;
    $('groupby').replaceChildren(...d.group_by.map((g) => el('label', { cls: 'choice' },
      el('input', { type: 'checkbox', name: 'by', value: g.column }), ' ' + g.column + ' ',
      g.keys ? el('details', {}, el('summary', { text: g.keys.length + ' public keys' }), el('span', { cls: 'keys', text: g.keys.join(', ') }))
             : el('span', { cls: 'muted', text: '(keys by DP key release)' }))));
    $('measures').replaceChildren(...d.measures.map((m, i) => {
      const col = m.split(':')[1];
      const b = col ? d.bounds[col] : null;
      return el('label', { cls: 'choice' }, el('input', { type: 'checkbox', name: 'measure', value: m, checked: i === 0 }),
        ' ' + m + (b ? ' [' + b[0] + ', ' + b[1] + ']' : ''));
    }));
    $('features').replaceChildren(...Object.entries(d.bounds).map(([c, b]) => el('label', { cls: 'choice' },
      el('input', { type: 'checkbox', name: 'feature', value: c, checked: true }), ' ' + c + ' [' + b[0] + ', ' + b[1] + ']')));
  }

  function request() {
    return { dataset: $('dataset').value, by: checked('groupby'), measures: checked('measures'),
             epsilon: $('epsilon').value.trim(), purpose: $('purpose').value.trim() || null };
  }

  async function preview() {
    try {
      const p = await call('/api/web/preview', { method: 'POST', body: request() });
      const rows = Object.entries(p.accuracy.measures).map(([k, v]) => ({ k, ...v }));
      const mine = myBudgets.find((b) => b.dataset === p.cost.dataset);
      const left = mine ? Number(mine.epsilon_remaining) : null;
      const after = left === null ? null : left - Number(p.cost.epsilon);
      show('preview-out', el('div', { cls: 'panel' },
        el('p', {}, 'Cost if released: epsilon ', el('strong', { id: 'cost', text: p.cost.epsilon }), ' on ' + p.cost.dataset +
          '. Each value will be within ± accuracy of the true value with ' + Math.round(100 * p.accuracy.confidence) + '% confidence.'),
        left === null ? null : el('p', { id: 'budget-after', cls: after < 0 ? 'bad' : null,
          text: 'Budget left now ' + fmt(left) + '; after this release ' + fmt(Math.max(after, 0)) + (after < 0 ? ' (not enough: the release would be refused)' : '') + '.' }),
        table([['measure', (r) => r.k], ['± accuracy', (r) => r.accuracy !== undefined ? fmt(r.accuracy) : r.derived, 'num'],
               ['noise', (r) => r.distribution || ''], ['scale', (r) => fmt(r.scale), 'num']], rows, { id: 'preview-table' })));
    } catch (e) { fail('preview-out', e); }
  }

  async function release(ev) {
    ev.preventDefault();
    show('release-msg', el('span', { text: 'Releasing…' }));
    try {
      const out = await call('/api/web/releases', { method: 'POST', body: request() });
      const doc = out.result;
      show('release-msg', el('p', { id: 'release-done' }, 'Released ' + doc.rows.length + ' groups of ' + doc.dataset + ' at epsilon ' + doc.epsilon +
        ' (ledger entry ' + out.seq + '). Budget left: ' + fmt(doc.budget ? doc.budget.epsilon_remaining : null) + '.'));
      svgInto($('release-chart'), out.chart_svg);
      show('release-table', table([['group', (r) => r.group], ['measure', (r) => r.measure], ['value', (r) => r.text, 'num'],
        ['± accuracy', (r) => fmt(r.error), 'num'], ['low', (r) => fmt(r.low), 'num'], ['high', (r) => fmt(r.high), 'num']], out.table, { id: 'result-table' }));
      show('downloads', el('p', {}, 'Download with accuracy metadata: ',
        ['csv', 'parquet', 'json'].map((f) => el('button', { type: 'button', id: 'dl-' + f, text: f.toUpperCase(),
          onclick: () => download('/api/web/releases/' + out.seq + '/download?format=' + f, 'release-' + out.seq + '.' + f).catch((e) => fail('downloads', e)) }))));
      await Promise.all([budgets(), history()]);
    } catch (e) { fail('release-msg', e); }
  }

  async function budgets() {
    try {
      const b = await call('/api/web/budgets');
      myBudgets = b.budgets;
      svgInto($('budget-chart'), b.chart_svg);
      show('budget-table', table([['dataset', (r) => r.dataset], ['total', (r) => r.epsilon_total, 'num'],
        ['spent', (r) => r.epsilon_spent, 'num'], ['left', (r) => r.epsilon_remaining, 'num']], b.budgets));
    } catch (e) { fail('budget-table', e); }
  }

  async function history() {
    try {
      const h = await call('/api/web/releases/mine');
      show('history', table([['seq', (r) => r.seq, 'num'], ['time', (r) => r.time], ['action', (r) => r.action],
        ['dataset', (r) => r.resource], ['group by', (r) => ((r.details || {}).by || []).join?.(', ') ?? ''],
        ['measures', (r) => ((r.details || {}).measures || []).join?.(', ') ?? ''],
        ['epsilon', (r) => (r.details || {}).epsilon ?? (r.details || {}).epsilon_charged ?? '', 'num'],
        ['output hash', (r) => (r.data_hash || '').slice(0, 16)]], h.releases, { id: 'history-table' }));
    } catch (e) { fail('history', e); }
  }

  async function segment(ev) {
    ev.preventDefault();
    show('segment-msg', el('span', { text: 'Running…' }));
    try {
      const out = await call('/api/web/segments', { method: 'POST', body: {
        dataset: $('dataset').value, features: checked('features'), k: Number($('k').value),
        epsilon: $('seg-epsilon').value.trim() } });
      show('segment-msg', el('p', { id: 'segment-done', text: (out.result.segments || []).length + ' segments released at epsilon ' + out.result.epsilon + '.' }));
      svgInto($('centroids'), out.charts.centroids);
      svgInto($('sizes'), out.charts.sizes);
      await Promise.all([budgets(), history()]);
    } catch (e) { fail('segment-msg', e); }
  }

  async function start() {
    await CV.me();
    try {
      catalog = (await call('/api/web/catalog')).datasets;
      $('dataset').replaceChildren(...catalog.map((d) => el('option', { value: d.dataset, text: d.dataset })));
      $('dataset').addEventListener('change', drawChoices);
      drawChoices();
    } catch (e) { fail('preview-out', e); }
    $('preview').addEventListener('click', preview);
    $('compose').addEventListener('submit', release);
    $('segment').addEventListener('submit', segment);
    await Promise.all([budgets(), history()]);
    document.body.dataset.ready = '1';
  }
  start();
})();
