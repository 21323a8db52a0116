'use strict';
(() => {
  const { call, el, svgInto, table, show, fail, download, fmt } = CV;
  const $ = (id) => document.getElementById(id);
  const TABS = [['', 'All entries'], ['denials', 'Denials'], ['releases', 'Releases'], ['erasures', 'Erasures'],
                ['key_events', 'Key rotations'], ['reveals', 'Reveals']];
  let section = '';
  let cursors = [];  // the "before" of each page shown so far (null: the newest)
  let shown = 0;  // the latest request: an older answer arriving late is dropped

  function filters() {
    const q = new URLSearchParams();
    for (const k of ['principal', 'action', 'dataset', 'since', 'until']) {
      const v = $('f-' + k).value.trim();
      if (v) q.set(k, v);
    }
    if (section) q.set('section', section);
    return q;
  }

  function root(label, hex, b64) {
    return el('div', { cls: 'root' }, el('span', { cls: 'muted', text: label + ' ' }),
      el('code', { text: 'hex ' + (hex || '—') }), el('br'), el('code', { text: 'base64 ' + (b64 || '—') }));
  }

  async function health(refresh) {
    try {
      const h = await call('/api/web/ledger/health' + (refresh ? '?refresh=true' : ''));
      const v = h.verification;
      const cp = h.checkpoint;
      show('health', el('div', {},
        el('p', {}, 'Ledger size now: ', el('strong', { id: 'ledger-size', text: h.size.toLocaleString('en-US') }), ' entries.'),
        el('div', { cls: 'panel' }, el('h3', { text: 'Latest signed checkpoint' }),
          cp ? el('div', {}, el('p', {}, 'size ', el('strong', { id: 'checkpoint-size', text: cp.size.toLocaleString('en-US') }), ' · origin ', el('code', { text: cp.origin })),
                   root('root', cp.root_hex, cp.root_base64))
             : el('p', { cls: 'muted', text: 'none saved yet' })),
        el('div', { cls: 'panel ' + (v.ok ? 'ok' : 'bad'), id: 'verdict' }, el('h3', { text: 'Verdict: ' + v.name }),
          el('p', {}, el('strong', { text: v.ok ? 'VERIFIED' : 'FAILED' }),
            v.ok ? ': the first ' + v.verified_size.toLocaleString('en-US') + ' entries form an intact hash chain and Merkle tree' +
                   (v.checkpoint_size !== null ? ', consistent with the checkpoint of size ' + v.checkpoint_size.toLocaleString('en-US') : '') + '.'
                 : ': ' + v.problem),
          v.ok ? root('verified root', v.root_hex, v.root_base64) : null,
          el('p', { cls: 'muted', text: 'checked at ' + v.checked_at + ' in ' + v.seconds + ' s' +
            (v.ok && v.verified_size !== h.size ? '; ' + (h.size - v.verified_size).toLocaleString('en-US') + ' entr' + (h.size - v.verified_size === 1 ? 'y' : 'ies') + ' appended since (verify again to cover them)' : '') +
            (cp && v.checkpoint_size !== cp.size ? '; a newer checkpoint (size ' + cp.size + ') was saved since this verification' : '') }))));
    } catch (e) { fail('health', e); }
  }

  function detailText(e) {
    const d = e.details || {};
    const parts = [];
    for (const k of ['op', 'reason', 'role', 'by', 'measures', 'epsilon', 'epsilon_charged', 'accuracy', 'confidence', 'analyst', 'dataset', 'groups', 'subjects', 'kek_version']) {
      if (d[k] === undefined || d[k] === null) continue;
      const v = Array.isArray(d[k]) ? (k === 'subjects' ? d[k].length + ' subject(s)' : d[k].join(', '))
        : typeof d[k] === 'object' ? Object.entries(d[k]).map(([m, a]) => m + ' ±' + a).join(', ') : d[k];
      parts.push(k + ': ' + v);
    }
    return parts.join(' · ');
  }

  async function page(before) {
    const q = filters();
    if (before !== null && before !== undefined) q.set('before', before);
    q.set('limit', '50');
    const mine = ++shown;
    try {
      const p = await call('/api/web/ledger/entries?' + q);
      if (mine !== shown) return;
      $('page-info').textContent = (p.total_capped ? 'more than ' + (p.total - 1).toLocaleString('en-US') : p.total.toLocaleString('en-US')) +
        ' matching entries of ' + p.size.toLocaleString('en-US') +
        ' · page ' + cursors.length;
      show('entries', table([['seq', (e) => e.seq, 'num'], ['time', (e) => e.time], ['principal', (e) => e.actor],
        ['action', (e) => e.action], ['resource', (e) => e.resource], ['purpose', (e) => e.purpose || ''],
        ['details', (e) => detailText(e), 'wrap'], ['data hash', (e) => (e.data_hash || '').slice(0, 12)]], p.entries, { id: 'entries-table' }));
      $('older').disabled = p.next_before === null;
      $('older').dataset.next = p.next_before ?? '';
      $('newer').disabled = cursors.length <= 1;
    } catch (e) { if (mine === shown) fail('entries', e); }
  }

  let drawn = 0;
  async function charts() {
    const mine = ++drawn;
    try {
      const c = await call('/api/web/ledger/charts?' + filters());
      if (mine !== drawn) return;
      svgInto($('timeline-actor'), c.timeline_actor_svg);
      svgInto($('timeline-action'), c.timeline_action_svg);
      svgInto($('spend'), c.spend.length ? c.spend_svg : null);
    } catch (e) { fail('spend', e); }
  }

  async function apply(ev) {
    if (ev) ev.preventDefault();
    cursors = [null];
    await Promise.all([page(null), charts()]);
  }

  async function start() {
    await CV.me();
    $('tabs').replaceChildren(...TABS.map(([s, label]) => el('button', { type: 'button', id: 'tab-' + (s || 'all'),
      cls: s === section ? 'tab on' : 'tab', text: label, onclick: (ev) => {
        section = s;
        $('tabs').querySelectorAll('button').forEach((b) => b.classList.remove('on'));
        ev.target.classList.add('on');
        apply();
      } })));
    $('filters').addEventListener('submit', apply);
    $('clear').addEventListener('click', () => { $('filters').reset(); apply(); });
    $('older').addEventListener('click', () => { const n = $('older').dataset.next; cursors.push(n); page(n); });
    $('newer').addEventListener('click', () => { cursors.pop(); page(cursors[cursors.length - 1]); });
    $('reverify').addEventListener('click', () => health(true));
    for (const f of ['csv', 'jsonl']) {
      $('export-' + f).addEventListener('click', () => download('/api/web/ledger/export?format=' + f + '&' + filters(), 'ledger-entries.' + f).catch((e) => fail('page-info', e)));
    }
    await Promise.all([health(false), apply()]);
    document.body.dataset.ready = '1';
  }
  start();
})();
