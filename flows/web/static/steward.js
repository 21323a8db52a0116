'use strict';
(() => {
  const { call, el, svgInto, table, show, fail } = CV;
  const $ = (id) => document.getElementById(id);
  const entryCols = [['seq', (e) => e.seq, 'num'], ['time', (e) => e.time], ['principal', (e) => e.actor],
    ['action', (e) => e.action], ['resource', (e) => e.resource], ['purpose', (e) => e.purpose || ''],
    ['details', (e) => { const d = e.details || {}; return Object.keys(d).sort().map((k) => k + ': ' + (Array.isArray(d[k]) ? d[k].length + ' item(s)' : d[k])).join(' · '); }, 'wrap']];

  async function principals() {
    try {
      const p = await call('/api/principals');
      show('principals', table([['name', (r) => r.name], ['role', (r) => r.role], ['active', (r) => (r.active ? 'yes' : 'revoked')],
        ['created', (r) => r.created_at || '']], p.principals, { id: 'principals-table' }));
    } catch (e) { fail('principals', e); }
  }

  async function budgets() {
    try {
      const b = await call('/api/web/budgets');
      svgInto($('budget-chart'), b.chart_svg);
      show('budgets', table([['analyst', (r) => r.analyst], ['dataset', (r) => r.dataset], ['total', (r) => r.epsilon_total, 'num'],
        ['spent', (r) => r.epsilon_spent, 'num'], ['left', (r) => r.epsilon_remaining, 'num']], b.budgets));
    } catch (e) { fail('budgets', e); }
  }

  async function entries(section, id) {
    try {
      const p = await call('/api/web/ledger/entries?section=' + section + '&limit=50');
      show(id, p.entries.length ? table(entryCols, p.entries, { id: id + '-table' }) : el('p', { cls: 'muted', text: 'none' }));
    } catch (e) { fail(id, e); }
  }

  async function policy() {
    try {
      const p = await call('/api/web/policy');
      show('policy', el('div', {}, el('p', {}, 'Installed policy SHA-256 ', el('code', { id: 'policy-sha', text: p.sha256 })),
        el('p', {}, 'Previous applied policy ', el('code', { text: p.previous_sha256 || 'none (the policy has not been replaced)' })),
        p.diff ? el('details', { open: true }, el('summary', { text: 'Diff against the previous policy' }), el('pre', { cls: 'diff', id: 'policy-diff', text: p.diff })) : null,
        el('details', {}, el('summary', { text: 'Policy file' }), el('pre', { text: p.text }))));
      $('p-role').replaceChildren(...Object.keys(p.summary.roles).map((r) => el('option', { value: r, text: r })));
    } catch (e) { fail('policy', e); }
  }

  async function start() {
    await CV.me();
    $('add-principal').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        const r = await call('/api/principals', { method: 'POST', body: { name: $('p-name').value.trim(), role: $('p-role').value } });
        show('p-msg', el('p', {}, 'Token for ' + r.name + ' (shown once): ', el('code', { text: r.token })));
        principals();
      } catch (e) { fail('p-msg', e); }
    });
    $('set-budget').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await call('/api/budgets', { method: 'PUT', body: { analyst: $('b-analyst').value.trim(), dataset: $('b-dataset').value.trim(), epsilon: $('b-epsilon').value.trim() } });
        show('b-msg', el('p', { text: 'Budget set.' }));
        budgets();
      } catch (e) { fail('b-msg', e); }
    });
    $('erase').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const match = {};
      match[$('e-column').value.trim()] = $('e-value').value;
      $('e-value').value = '';
      try {
        const r = await call('/api/erasures', { method: 'POST', body: { dataset: $('e-dataset').value.trim(), match, purpose: $('e-purpose').value.trim() || null } });
        show('e-msg', el('p', { text: 'Erased; ledger entry ' + r.ledger_seq + '.' }));
        entries('erasures', 'erasures');
      } catch (e) { fail('e-msg', e); }
    });
    $('rotate').addEventListener('click', async () => {
      try {
        const r = await call('/api/keys/rotate?reencrypt=false', { method: 'POST' });
        show('r-msg', el('p', { text: 'New key version ' + r.kek_version + '; ' + r.data_keys_rewrapped + ' data keys rewrapped.' }));
        entries('key_events', 'rotations');
      } catch (e) { fail('r-msg', e); }
    });
    await Promise.all([principals(), budgets(), entries('erasures', 'erasures'), entries('key_events', 'rotations'),
      entries('reveals', 'reveals'), policy()]);
    document.body.dataset.ready = '1';
  }
  start();
})();
