'use strict';
// Shared helpers of the workbench pages: token (sessionStorage), JSON calls, DOM building
// with textContent only (never innerHTML with data), SVG charts parsed as XML.
const CV = (() => {
  const KEY = 'civicvault.token';
  const token = () => sessionStorage.getItem(KEY) || '';
  const setToken = (t) => sessionStorage.setItem(KEY, t);
  const forget = () => { sessionStorage.removeItem(KEY); sessionStorage.removeItem('civicvault.me'); };

  async function call(path, opts = {}) {
    const headers = { Authorization: 'Bearer ' + token() };
    let body = opts.body;
    if (body !== undefined && typeof body !== 'string') {
      body = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    const r = await fetch(path, { method: opts.method || 'GET', headers, body });
    const type = r.headers.get('content-type') || '';
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      if (type.includes('json')) {
        const d = await r.json();
        msg = r.status + ': ' + (d.detail || d.title || d.error || '');
      }
      // a repeated denial (429 within the limiter's window) is still a denial: say so
      const repeated = r.status === 429 && msg.includes('denied');
      const err = new Error(repeated ? '403 (asked again too soon): ' + msg.replace(/^429: /, '') : msg);
      err.status = repeated ? 403 : r.status;
      throw err;
    }
    if (opts.raw) return r;
    return type.includes('json') ? r.json() : r.text();
  }

  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'text') n.textContent = String(v);
      else if (k === 'cls') n.className = v;
      else if (k.startsWith('on')) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined) continue;
      n.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return n;
  }

  function svgInto(box, text) {
    if (!text) { box.replaceChildren(el('p', { cls: 'muted', text: 'no data to chart' })); return; }
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = doc.documentElement;
    if (svg.nodeName !== 'svg') return;
    svg.querySelectorAll('script, foreignObject').forEach((n) => n.remove());
    box.replaceChildren(document.importNode(svg, true));
  }

  function table(cols, rows, attrs) {
    return el('div', { cls: 'scroll' }, el('table', attrs || {},
      el('thead', {}, el('tr', {}, cols.map((c) => el('th', { text: c[0], cls: c[2] || null })))),
      el('tbody', {}, rows.map((r) => el('tr', {}, cols.map((c) => {
        const v = c[1](r);
        return el('td', { cls: c[2] || null }, v instanceof Node ? v : (v ?? ''));
      }))))));
  }

  function show(id, node) { document.getElementById(id).replaceChildren(node); }
  function fail(id, e) { show(id, el('p', { cls: 'bad', text: e.message })); }

  async function download(path, filename) {
    const r = await call(path, { raw: true });
    const blob = await r.blob();
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  const PAGES = { analyst: ['analyst'], compliance: ['compliance'], steward: ['steward'],
                  admin: ['steward', 'compliance'], ingestor: ['steward'] };

  async function me() {
    if (!token()) { location.assign('/'); throw new Error('no token'); }
    const found = await call('/api/web/me').catch((e) => {
      if (e.status === 401) { forget(); location.assign('/'); }
      throw e;
    });
    const nav = document.getElementById('nav');
    if (nav) {
      nav.replaceChildren(
        el('span', { cls: 'who', text: found.principal + ' (' + found.role + ')' }),
        ...(PAGES[found.role] || []).map((p) => el('a', { href: '/web/' + p, text: p })),
        el('button', { type: 'button', onclick: () => { forget(); location.assign('/'); }, text: 'Sign out' }));
    }
    return found;
  }

  function fmt(v, digits = 3) {
    if (typeof v !== 'number') return v ?? '';
    return Math.abs(v) >= 1000 || Number.isInteger(v) ? v.toLocaleString('en-US', { maximumFractionDigits: 1 }) : v.toPrecision(digits);
  }

  return { call, el, svgInto, table, show, fail, download, me, token, setToken, forget, PAGES, fmt };
})();
