/* omnidesk web UI: plain JavaScript over the HTTP API (/api/v1), no build step.
 *
 * Safety rule for this file: every value that came from the API goes into the
 * page as text (textContent / text nodes via h()), never as markup. Customer
 * HTML is only ever shown inside <iframe sandbox=""> loaded from
 * /api/v1/messages/{id}/html, which has its own script-less CSP.
 */
'use strict';

const BOOT = JSON.parse(document.getElementById('boot').textContent);
const ME = BOOT.me;
const CSRF = BOOT.csrf;
const main = document.getElementById('main');

// ---------------------------------------------------------------- helpers --

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'value') el.value = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }

class ApiError extends Error {
  constructor(status, data) {
    super(detailText(data) || ('HTTP ' + status));
    this.status = status; this.data = data;
  }
}

function detailText(data) {
  if (!data) return '';
  const d = data.detail;
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) return d.map(x => (x.loc && x.loc.length > 1 ? x.loc.slice(1).join('.') + ': ' : '') + x.msg).join('; ');
  return '';
}

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (method !== 'GET') opts.headers['X-CSRF-Token'] = CSRF;
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch('/api/v1' + path, opts);
  if (r.status === 401) {
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
    throw new ApiError(401, { detail: 'logged out' });
  }
  const isJson = (r.headers.get('content-type') || '').includes('json');
  const data = isJson ? await r.json() : null;
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

let toastTimer = null;
function toast(text, bad) {
  let t = document.querySelector('.toast');
  if (!t) { t = h('div', { class: 'toast', role: 'status' }); document.body.append(t); }
  t.className = 'toast' + (bad ? ' bad' : '');
  t.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.remove(), 4000);
}

function fail(e) { console.warn(e); toast(e.message || String(e), true); }

function fmtTime(ts) {
  if (ts === null || ts === undefined) return '';
  const d = new Date(ts * 1000);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

function fmtDelta(seconds) {
  const s = Math.abs(seconds);
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function slaBadge(due, businessLeft) {
  if (due === null || due === undefined) return null;
  // The time left counts business hours (the team's calendar) when the API says so.
  const left = businessLeft !== null && businessLeft !== undefined ? businessLeft : due - Date.now() / 1000;
  return h('span', { class: 'badge sla' + (left < 0 ? ' breached' : ''), title: 'SLA due ' + fmtTime(due) + ' (time left in business hours)' },
    left < 0 ? 'SLA overdue ' + fmtDelta(left) : 'SLA ' + fmtDelta(left));
}

// The service panel of a conversation: each SLA clock, the satisfaction survey.
function servicePanel(c) {
  const sla = c.sla;
  const rows = [];
  if (sla) {
    for (const t of sla.targets || []) {
      const name = t.target.replace('_', ' ');
      let state;
      if (t.done_at) state = (t.breached ? 'late, ' : 'met, ') + fmtTime(t.done_at);
      else if (t.owed) state = (t.breached ? 'overdue ' : 'due ' + fmtTime(t.due_at) + ', ') + fmtDelta(t.business_seconds_left) + (t.breached ? '' : ' left');
      else state = 'not owed now';
      rows.push(h('li', { class: t.breached ? 'breached' : '' }, h('strong', {}, name), ' ', state));
    }
  }
  const answered = (c.surveys || []).filter(s => s.rating !== null && s.rating !== undefined);
  const sent = (c.surveys || []).find(s => s.state === 'sent' || s.state === 'scheduled');
  if (!rows.length && !answered.length && !sent) return null;
  return h('div', { class: 'service', id: 'service' },
    sla ? h('div', { class: 'muted small' }, 'SLA policy ', h('strong', {}, sla.policy), ' · calendar ', sla.calendar) : null,
    rows.length ? h('ul', { class: 'sla-targets' }, rows) : null,
    answered.map(s => h('div', { class: 'rating', 'data-rating': s.rating },
      'Rated ', h('strong', {}, s.rating + '/' + s.scale),
      s.loyalty_score !== null && s.loyalty_score !== undefined ? ' · would recommend ' + s.loyalty_score + '/10' : '',
      s.comment ? ' · “' + s.comment + '”' : '', h('span', { class: 'muted small' }, ' (' + fmtTime(s.answered_at) + ')'))),
    !answered.length && sent ? h('div', { class: 'muted small' }, 'Survey ' + sent.state) : null);
}

function select(name, options, current, onchange, attrs) {
  const s = h('select', Object.assign({ name, 'aria-label': name }, attrs || {}),
    options.map(o => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      const opt = h('option', { value }, label);
      if (String(value) === String(current ?? '')) opt.selected = true;
      return opt;
    }));
  if (onchange) s.addEventListener('change', () => onchange(s.value));
  return s;
}

const STATUSES = ['open', 'pending', 'snoozed', 'resolved'];
const CATEGORIES = ['inquiry', 'feedback', 'complaint'];
const PRIORITIES = ['urgent', 'high', 'normal', 'low'];

function navigate(path) {
  history.pushState({}, '', path);
  route();
}
window.addEventListener('popstate', () => route());

// --------------------------------------------------------------- live feed --

const live = {
  source: null,
  handlers: new Set(),
  start() {
    const status = document.getElementById('live-status');
    const src = new EventSource('/api/v1/events');
    this.source = src;
    src.addEventListener('open', () => { status.textContent = 'live'; status.className = 'live on'; });
    src.addEventListener('error', () => { status.textContent = 'reconnecting'; status.className = 'live off'; });
    const types = ['ready', 'conversation.created', 'conversation.updated', 'message.created',
      'delivery', 'presence', 'contact.updated', 'contact.merged', 'resync', 'quarantine',
      'notification', 'agent.availability'];
    for (const t of types) {
      src.addEventListener(t, ev => {
        let data = {};
        try { data = JSON.parse(ev.data); } catch (_) { /* keep empty */ }
        data.type = data.type || t;
        if (t === 'ready') { status.textContent = 'live'; status.className = 'live on'; }
        for (const fn of this.handlers) { try { fn(data); } catch (e) { console.warn(e); } }
      });
    }
  },
  on(fn) { this.handlers.add(fn); return () => this.handlers.delete(fn); },
};

// ----------------------------------------------------------------- notices --
// SLA warnings and breaches and rules' notify actions addressed to me.

const notices = {
  async load() {
    try {
      const r = await api('GET', '/notifications');
      const count = document.getElementById('notices-count');
      count.textContent = String(r.unread);
      count.hidden = !r.unread;
      const panel = clear(document.getElementById('notices-panel'));
      panel.append(
        h('div', { class: 'head' }, h('strong', {}, 'Notices'),
          h('button', { class: 'link small', id: 'notices-read', onclick: async () => { await api('POST', '/notifications/read', {}); this.load(); } }, 'mark all read')),
        r.items.length ? h('ul', {}, r.items.map(n => h('li', { class: n.read_at ? 'read' : 'unread', 'data-kind': n.kind },
          n.conversation_id ? h('a', { href: '/inbox/c/' + n.conversation_id, onclick: ev => { ev.preventDefault(); document.getElementById('notices-panel').hidden = true; navigate('/inbox/c/' + n.conversation_id); } }, n.text) : n.text,
          h('div', { class: 'muted small' }, fmtTime(n.at))))) : h('p', { class: 'muted' }, 'Nothing yet.'));
    } catch (_) { /* the header works without them */ }
  },
  start() {
    const btn = document.getElementById('notices');
    if (!btn) return;
    btn.addEventListener('click', () => {
      const panel = document.getElementById('notices-panel');
      panel.hidden = !panel.hidden;
    });
    live.on(e => { if (e.type === 'notification' && e.username === BOOT.me.username) this.load(); });
    this.load();
  },
};

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

// ------------------------------------------------------------------- inbox --

const inbox = {
  filters: {},
  known: new Set(),
  first: true,
  current: null,       // the open conversation (as loaded)
  lastSeen: null,      // newest message id the agent has seen
  agents: [],
  teams: [],
  canned: [],
  presenceTimer: null,
  typingAt: 0,
  els: {},
};

const DEFAULT_FILTERS = { scope: 'all', status: 'open', sort: 'urgency' };

function readFilters() {
  const q = new URLSearchParams(location.search);
  const f = Object.assign({}, DEFAULT_FILTERS);
  for (const k of ['scope', 'status', 'category', 'priority', 'channel', 'tag', 'team', 'assignee', 'sort', 'breached']) {
    if (q.has(k)) f[k] = q.get(k);
  }
  return f;
}

function filtersQuery(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  return q.toString();
}

function setFilters(f) {
  inbox.filters = f;
  const base = location.pathname.startsWith('/inbox/c/') ? location.pathname : '/inbox';
  history.replaceState({}, '', base + '?' + filtersQuery(f));
  renderFilters();
  loadList();
}

async function showInbox() {
  inbox.filters = readFilters();
  clear(main);
  const filters = h('aside', { class: 'filters', id: 'filters' });
  const list = h('section', { class: 'list', id: 'list', 'aria-label': 'conversations' });
  const conv = h('section', { class: 'conv', id: 'conv' }, h('div', { class: 'empty' }, 'Pick a conversation.'));
  const side = h('aside', { class: 'side', id: 'contact-panel' });
  main.append(h('div', { class: 'inbox' }, filters, list, conv, side));
  inbox.els = { filters, list, conv, side };
  renderFilters();
  await Promise.all([
    api('GET', '/agents').then(r => { inbox.agents = r.items; }).catch(fail),
    api('GET', '/teams').then(r => { inbox.teams = r.items; }).catch(fail),
    api('GET', '/canned').then(r => { inbox.canned = r.items; }).catch(fail),
  ]);
  await loadList();
  const m = location.pathname.match(/^\/inbox\/c\/(\d+)/);
  if (m) openConversation(Number(m[1]), false);
}

function renderFilters() {
  const f = inbox.filters;
  const el = clear(inbox.els.filters);
  const scopes = [['mine', 'Mine'], ['teams', 'My teams'], ['unassigned', 'Unassigned'], ['all', 'All']];
  const search = h('input', { type: 'search', id: 'message-search', placeholder: 'Search messages…', 'aria-label': 'search messages' });
  search.addEventListener('keydown', ev => { if (ev.key === 'Enter') searchMessages(search.value.trim()); });
  search.addEventListener('search', () => { if (!search.value.trim()) loadList(); });
  el.append(search);
  el.append(h('h3', {}, 'Inbox'), h('div', { class: 'scopes' },
    scopes.map(([v, label]) => h('button', {
      class: f.scope === v ? 'on' : '', 'data-scope': v,
      onclick: () => setFilters(Object.assign({}, f, { scope: v })),
    }, label))));
  const change = key => value => setFilters(Object.assign({}, f, { [key]: value }));
  el.append(h('h3', {}, 'Filters'),
    h('label', {}, 'Status', select('status', [['', 'any'], ...STATUSES], f.status, change('status'))),
    h('label', {}, 'Category', select('category', [['', 'any'], ...CATEGORIES], f.category, change('category'))),
    h('label', {}, 'Priority', select('priority', [['', 'any'], ...PRIORITIES], f.priority, change('priority'))),
    h('label', {}, 'Channel', textFilter('channel', f.channel, change('channel'))),
    h('label', {}, 'Tag', textFilter('tag', f.tag, change('tag'))),
    h('label', {}, 'SLA', select('breached', [['', 'any'], ['true', 'overdue'], ['false', 'not overdue']], f.breached, change('breached'))),
    h('label', {}, 'Sort', select('sort', [['urgency', 'most urgent first'], ['newest', 'newest first']], f.sort, change('sort'))));
  const views = h('div', { class: 'views' }, h('h3', {}, 'Saved views'), h('ul', { id: 'views' }));
  const name = h('input', { type: 'text', placeholder: 'name this view', 'aria-label': 'view name', id: 'view-name' });
  views.append(h('div', { class: 'form-row' }, name, h('button', {
    id: 'save-view',
    onclick: async () => {
      if (!name.value.trim()) return toast('Give the view a name', true);
      try { await api('POST', '/views', { name: name.value, filters: inbox.filters }); name.value = ''; loadViews(); } catch (e) { fail(e); }
    },
  }, 'Save')));
  el.append(views);
  loadViews();
}

function textFilter(name, value, onchange) {
  const i = h('input', { type: 'text', name, value: value || '', placeholder: 'any' });
  i.addEventListener('change', () => onchange(i.value.trim()));
  return i;
}

async function loadViews() {
  const ul = document.getElementById('views');
  if (!ul) return;
  try {
    const r = await api('GET', '/views');
    clear(ul).append(...r.items.map(v => h('li', {},
      h('button', { class: 'link', onclick: () => setFilters(Object.assign({}, DEFAULT_FILTERS, v.filters)) }, v.name),
      h('button', { class: 'link danger', title: 'delete view', 'aria-label': 'delete view ' + v.name,
        onclick: async () => { try { await api('DELETE', '/views/' + v.id); loadViews(); } catch (e) { fail(e); } } }, '×'))));
    if (!r.items.length) ul.append(h('li', { class: 'muted small' }, 'none yet'));
  } catch (e) { fail(e); }
}

let listSeq = 0;
async function loadList() {
  const seq = ++listSeq;
  const f = inbox.filters;
  let r;
  try { r = await api('GET', '/conversations?' + filtersQuery(Object.assign({ limit: 100 }, f))); } catch (e) { return fail(e); }
  if (seq !== listSeq) return;  // a newer load is on its way
  const list = clear(inbox.els.list);
  list.append(h('div', { class: 'count' }, r.items.length + (r.next_cursor || r.next_before ? '+' : '') + (r.items.length === 1 ? ' conversation' : ' conversations')));
  if (!r.items.length) list.append(h('div', { class: 'empty' }, 'Nothing here. New messages appear on their own.'));
  for (const c of r.items) {
    const fresh = !inbox.first && !inbox.known.has(c.id);
    inbox.known.add(c.id);
    list.append(conversationRow(c, fresh));
  }
  inbox.first = false;
}

function conversationRow(c, fresh) {
  const cls = ['row'];
  if (fresh) cls.push('fresh');
  if (c.unread) cls.push('unread');
  if (inbox.current && inbox.current.id === c.id) cls.push('selected');
  return h('div', {
    class: cls.join(' '), 'data-id': c.id, role: 'link', tabindex: 0,
    onclick: () => openConversation(c.id, true),
    onkeydown: ev => { if (ev.key === 'Enter') openConversation(c.id, true); },
  },
  h('span', { class: 'who' }, c.unread ? h('span', { class: 'unread-dot', title: c.new ? 'new to you' : 'unread' }) : null,
    c.contact_label || c.contact_name || ('contact #' + c.contact_id)),
  h('span', { class: 'when' }, fmtTime(c.last_message_at || c.created_at)),
  h('span', { class: 'preview' }, (c.subject ? c.subject + ' — ' : '') + (c.last_preview || '')),
  h('span', { class: 'meta' },
    channelBadge(c.channel),
    c.category ? h('span', { class: 'badge ' + c.category, title: 'confidence' },
      c.category + ' ' + Math.round((c.confidence || 0) * 100) + '%') : null,
    h('span', { class: 'badge p-' + c.priority }, c.priority),
    slaBadge(c.sla_due_at, c.sla_business_seconds_left),
    c.status !== 'open' ? h('span', { class: 'badge status' }, c.status) : null,
    h('span', { class: 'badge' }, c.assignee ? '@' + c.assignee : (c.team ? c.team + ' queue' : 'unassigned')),
    (c.tags || []).map(t => h('span', { class: 'badge tag' }, t))));
}

// Full-text search over the messages the caller may see (GET /api/v1/search);
// the hits replace the list until the search box is cleared.
async function searchMessages(q) {
  if (!q) { inbox.searching = false; return loadList(); }
  let r;
  try { r = await api('GET', '/search?kind=messages&limit=50&q=' + encodeURIComponent(q)); } catch (e) { return fail(e); }
  inbox.searching = true;
  const list = clear(inbox.els.list);
  list.append(h('div', { class: 'count' }, r.items.length + (r.items.length === 1 ? ' message matches' : ' messages match') + ' “' + q + '” ',
    h('button', { class: 'link', onclick: () => { document.getElementById('message-search').value = ''; inbox.searching = false; loadList(); } }, 'back to the inbox')));
  for (const m of r.items) {
    list.append(h('div', { class: 'row', 'data-id': m.conversation_id, role: 'link', tabindex: 0,
      onclick: () => openConversation(m.conversation_id, true) },
    h('span', { class: 'who' }, m.contact_name || ('#' + m.conversation_id)),
    h('span', { class: 'when' }, fmtTime(m.created_at)),
    h('span', { class: 'preview snippet' }, highlighted(m.snippet || '', m.highlights || [])),
    h('span', { class: 'meta' }, channelBadge(m.channel), m.subject ? h('span', { class: 'badge' }, m.subject) : null)));
  }
  if (!r.items.length) list.append(h('div', { class: 'empty' }, 'No message matches.'));
}

function highlighted(text, spans) {
  // Offsets from the server; marked up with elements, the text stays text.
  const out = [];
  let at = 0;
  for (const [a, b] of spans) {
    if (a < at || b <= a) continue;
    out.push(text.slice(at, a), h('mark', {}, text.slice(a, b)));
    at = b;
  }
  out.push(text.slice(at));
  return out;
}

const refreshList = debounce(() => { if (!inbox.searching) loadList(); }, 250);
const refreshConv = debounce(() => { if (inbox.current) openConversation(inbox.current.id, false, true); }, 200);

function onInboxEvent(e) {
  if (['conversation.created', 'conversation.updated', 'message.created', 'delivery', 'resync', 'contact.merged'].includes(e.type)) {
    refreshList();
  }
  if (!inbox.current) return;
  const cur = inbox.current;
  if (e.type === 'presence' && e.conversation_id === cur.id) {
    updatePresence(e);
  } else if (e.type === 'delivery' && cur.messages.some(m => m.id === e.message_id)) {
    refreshConv();
  } else if ((e.conversation_id === cur.id && e.type !== 'presence') || e.type === 'resync' || e.type === 'contact.merged') {
    refreshConv();
  }
}

// ------------------------------------------------------- conversation view --

async function openConversation(id, push, keepDraft) {
  if (push) {
    history.pushState({}, '', '/inbox/c/' + id + '?' + filtersQuery(inbox.filters));
  }
  let c;
  try { c = await api('GET', '/conversations/' + id); } catch (e) {
    clear(inbox.els.conv).append(h('div', { class: 'empty error' }, e.message));
    clear(inbox.els.side);
    return;
  }
  const draft = keepDraft ? captureDraft() : null;
  const switching = !inbox.current || inbox.current.id !== id;
  if (switching && inbox.current) presence(inbox.current.id, 'left');
  inbox.current = c;
  if (switching || inbox.lastSeen === null) inbox.lastSeen = maxMessageId(c);
  for (const row of inbox.els.list.querySelectorAll('.row')) {
    row.classList.toggle('selected', Number(row.dataset.id) === id);
  }
  renderConversation(c, draft);
  renderContact(c.contact, c.id);
  if (switching) startPresence(id);
  renderPresenceList(c.presence || []);
}

function maxMessageId(c) {
  return c.messages.reduce((m, x) => Math.max(m, x.id), 0);
}

function captureDraft() {
  const ta = document.getElementById('reply-text');
  const kind = document.querySelector('.composer')?.dataset.kind;
  const files = document.querySelector('.composer')?._files || [];
  return ta ? { text: ta.value, kind, files, focused: document.activeElement === ta } : null;
}

function renderConversation(c, draft) {
  const conv = clear(inbox.els.conv);
  const can = c.can || {};
  const head = h('div', { class: 'conv-head' },
    h('h2', {}, (c.title || c.subject || '(no subject)') + ' ', h('span', { class: 'muted' }, '#' + c.id)),
    h('div', { class: 'actions' },
      channelBadge(c.channel),
      h('label', {}, 'Status ', select('conv-status', STATUSES, c.status, v => changeStatus(c, v), { id: 'conv-status' })),
      c.status === 'snoozed' && c.snoozed_until ? h('span', { class: 'muted snoozed-until' }, 'until ' + fmtTime(c.snoozed_until)) : null,
      h('label', {}, 'Category ', select('conv-category', CATEGORIES, c.category, v => correct(c, { category: v }), { id: 'conv-category' })),
      c.confidence !== null ? h('span', { class: 'muted small' }, Math.round((c.confidence || 0) * 100) + '%') : null,
      h('label', {}, 'Priority ', select('conv-priority', PRIORITIES, c.priority, v => correct(c, { priority: v }), { id: 'conv-priority' })),
      slaBadge(c.sla_due_at, c.sla && c.sla.business_seconds_left)),
    h('div', { class: 'actions' }, assignControls(c, can), tagControls(c)),
    h('div', { class: 'actions snooze', id: 'snooze-box', hidden: true }));
  const presenceBar = h('div', { class: 'presence', id: 'presence', hidden: true });
  // A live refresh keeps the composer as it is (draft, focus, a pending
  // confirmation): only what the server says is redrawn.
  const keep = inbox.composerEl && Number(inbox.composerEl.dataset.conv) === c.id && draft !== null;
  const focused = keep && document.activeElement && inbox.composerEl.contains(document.activeElement) ? document.activeElement : null;
  const comp = keep ? inbox.composerEl : composer(c, null);
  inbox.composerEl = comp;
  conv.append(head, presenceBar, servicePanel(c), whyPanel(c), threadView(c), comp, auditPanel(c));
  if (focused) focused.focus();
}

function assignControls(c, can) {
  const wrap = h('span', { class: 'actions' });
  if (can.reassign) {
    const people = [['', '— nobody —'], ...inbox.agents.map(a => [a.username, (a.display_name || a.username) + (a.teams && a.teams.length ? ' (' + a.teams.join(', ') + ')' : '')])];
    if (c.assignee && !inbox.agents.some(a => a.username === c.assignee)) people.push([c.assignee, c.assignee]);
    wrap.append(h('label', {}, 'Assignee ', select('conv-assignee', people, c.assignee || '', v => assign(c, { assignee: v || null }), { id: 'conv-assignee' })));
    const teams = [['', '— none —'], ...inbox.teams.map(t => [t.name, t.name])];
    wrap.append(h('label', {}, 'Team ', select('conv-team', teams, c.team || '', v => assign(c, { assignee: c.assignee, team: v || null }), { id: 'conv-team' })));
  } else {
    wrap.append(h('span', { class: 'muted' }, 'Assignee: ', c.assignee || 'nobody', ' · team: ', c.team || '—'));
    if (can.take) wrap.append(h('button', { id: 'take', onclick: () => assign(c, { assignee: ME.username }) }, 'Take it'));
    else if (c.assignee === ME.username) wrap.append(h('button', { id: 'release', onclick: () => assign(c, { assignee: null }) }, 'Release'));
  }
  return wrap;
}

function tagControls(c) {
  const input = h('input', { type: 'text', placeholder: 'add tag', size: 10, 'aria-label': 'add tag', id: 'tag-input' });
  input.addEventListener('keydown', async ev => {
    if (ev.key !== 'Enter' || !input.value.trim()) return;
    try { await api('POST', '/conversations/' + c.id + '/tags', { add: [input.value.trim()] }); refreshConv(); } catch (e) { fail(e); }
  });
  return h('span', { class: 'tags' }, 'Tags ',
    (c.tags || []).map(t => h('span', { class: 'badge tag' }, t,
      h('button', { class: 'x', title: 'remove tag', 'aria-label': 'remove tag ' + t,
        onclick: async () => { try { await api('POST', '/conversations/' + c.id + '/tags', { remove: [t] }); refreshConv(); } catch (e) { fail(e); } } }, '×'))),
    input);
}

async function changeStatus(c, status) {
  if (status === 'snoozed') return askSnooze(c);
  try { await api('POST', '/conversations/' + c.id + '/status', { status }); refreshConv(); } catch (e) { fail(e); refreshConv(); }
}

// Snooze: pick a moment (quick choices or any date and time); the
// conversation opens again by itself then.
function askSnooze(c) {
  const box = document.getElementById('snooze-box');
  if (!box) return;
  const pad = n => String(n).padStart(2, '0');
  const local = d => d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  const tomorrow9 = new Date(); tomorrow9.setDate(tomorrow9.getDate() + 1); tomorrow9.setHours(9, 0, 0, 0);
  const input = h('input', { type: 'datetime-local', id: 'snooze-until', value: local(tomorrow9), 'aria-label': 'snooze until' });
  const go = async when => {
    try {
      await api('POST', '/conversations/' + c.id + '/status', { status: 'snoozed', snoozed_until: when.toISOString() });
      box.hidden = true; refreshConv();
    } catch (e) { fail(e); }
  };
  clear(box).append('Snooze until ',
    h('button', { onclick: () => go(new Date(Date.now() + 3600e3)) }, '1 hour'), ' ',
    h('button', { onclick: () => go(new Date(Date.now() + 4 * 3600e3)) }, '4 hours'), ' ',
    h('button', { onclick: () => go(tomorrow9) }, 'tomorrow 9:00'), ' or ', input, ' ',
    h('button', { class: 'primary', id: 'snooze-go', onclick: () => {
      const t = new Date(input.value);
      if (isNaN(t.getTime()) || t <= new Date()) return toast('Pick a time in the future', true);
      go(t);
    } }, 'Snooze'), ' ',
    h('button', { class: 'link', onclick: () => { box.hidden = true; refreshConv(); } }, 'cancel'));
  box.hidden = false;
}

async function correct(c, change) {
  try { await api('POST', '/conversations/' + c.id + '/classification', change); toast('Recorded as a correction'); refreshConv(); } catch (e) { fail(e); refreshConv(); }
}

async function assign(c, body) {
  try { await api('POST', '/conversations/' + c.id + '/assign', body); refreshConv(); } catch (e) { fail(e); refreshConv(); }
}

function whyPanel(c) {
  const d = c.decision || {};
  const details = h('details', { class: 'why', id: 'why' },
    h('summary', {}, 'Why: ', d.rule && d.rule !== 'classifier' ? 'rule “' + d.rule + '”' : 'the classifier', ' → ', d.category || '?',
      ' (', Math.round((d.confidence || 0) * 100), '%), ', d.priority || '', d.team ? ', team ' + d.team : ''),
    h('ul', {}, (d.explanation || []).map(x => h('li', {}, x))),
    d.rules_fired && d.rules_fired.length ? h('div', { class: 'muted small' }, 'rules fired: ' + d.rules_fired.join(', ')) : null,
    (c.corrections || []).length ? h('div', {}, h('strong', {}, 'Corrections'),
      h('ul', {}, c.corrections.map(k => h('li', {}, k.field + ': ' + (k.old_value || '—') + ' → ' + k.new_value + ' by ' + k.actor + ', ' + fmtTime(k.at))))) : null);
  const routed = (c.audit || []).find(a => a.action === 'routed');
  if (routed && routed.reason) details.append(h('div', { class: 'muted small' }, 'routing: ' + routed.reason));
  return details;
}

function threadView(c) {
  const thread = h('div', { class: 'thread', id: 'thread' });
  for (const m of c.messages) thread.append(messageView(m));
  return thread;
}

function messageView(m) {
  const cls = ['msg', m.direction === 'in' ? 'in' : 'out'];
  if (m.kind === 'note') cls.push('note');
  if (m.auto) cls.push('auto');
  // A chat visitor known only by a random id shows as the contact's alias;
  // an agent by their display name.
  const anonymous = !m.sender_name && /^[0-9a-f]{20,}$/i.test(m.sender_address || '');
  const who = m.direction === 'in'
    ? (m.sender_name ? m.sender_name + ' <' + m.sender_address + '>'
      : anonymous && inbox.current ? inbox.current.contact_label : m.sender_address || 'customer')
    : (m.author_name || m.author || 'system');
  const el = h('article', { class: cls.join(' '), 'data-message-id': m.id },
    h('div', { class: 'head' },
      h('span', { class: 'from' }, who),
      h('span', {}, fmtTime(m.created_at)),
      channelBadge(m.channel),
      m.kind === 'note' ? h('span', { class: 'badge' }, 'private note') : null,
      m.auto ? h('span', { class: 'badge' }, m.auto) : null));
  if (m.subject && m.direction === 'in') el.append(h('div', { class: 'subject' }, m.subject));
  el.append(...messageText(m));
  if (m.html) {
    const box = h('div', {});
    const show = h('button', { class: 'link small', onclick: () => {
      clear(box).append(h('iframe', { sandbox: '', src: '/api/v1/messages/' + m.id + '/html', title: 'formatted message', referrerpolicy: 'no-referrer' }),
        h('button', { class: 'link small', onclick: () => {
          if (!confirm('Remote images can tell the sender you opened this message. Load them?')) return;
          box.querySelector('iframe').src = '/api/v1/messages/' + m.id + '/html?remote_images=true';
        } }, 'load remote images'));
    } }, 'show formatted');
    box.append(show);
    el.append(box);
  }
  if (m.attachments && m.attachments.length) {
    el.append(h('div', { class: 'atts' }, m.attachments.map(a => {
      const url = '/api/v1/attachments/' + a.id;
      const isImg = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'].includes(a.content_type) && a.sha256;
      return h('a', { href: url, class: 'att', target: '_blank', rel: 'noopener noreferrer' },
        isImg ? h('img', { src: url, alt: a.filename || 'image' }) : null,
        (a.filename || 'attachment') + ' (' + Math.ceil((a.size || 0) / 1024) + ' KB)');
    })));
  }
  if (m.direction === 'out' && m.kind === 'message') {
    const state = m.delivery_state || 'queued';
    const row = h('div', { class: 'delivery' },
      h('span', { class: 'badge delivery-state state-' + state, 'data-state': state }, state),
      m.delivery_error ? h('span', { class: state === 'failed' ? 'error' : 'muted' }, m.delivery_error) : null);
    if (state === 'failed') {
      row.append(h('button', { class: 'retry', onclick: async () => {
        try { await api('POST', '/messages/' + m.id + '/retry'); refreshConv(); } catch (e) { fail(e); }
      } }, 'Retry'));
    }
    el.append(row);
  }
  return el;
}

// Long text is folded: the page holds the first FOLD_CHARS characters until
// the agent asks for all of it, and the whole text (even what intake kept as
// an attachment past its own cap) is one click away as a download.
const FOLD_CHARS = 4000;

function messageText(m) {
  const text = m.text || '';
  const folded = m.meta && m.meta.text_folded;  // cut at intake: the whole is an attachment
  const body = h('div', { class: 'body' });
  if (text.length <= FOLD_CHARS && !folded) { body.textContent = text; return [body]; }
  const whole = folded ? folded.chars : text.length;
  const more = h('div', { class: 'fold small' });
  const show = (all) => {
    body.textContent = all ? text : text.slice(0, FOLD_CHARS) + '…';
    body.dataset.folded = all ? 'false' : 'true';
    clear(more).append(
      all ? null : h('button', { class: 'link small show-all', onclick: () => show(true) },
        'show all (' + text.length.toLocaleString() + ' characters)'), ' ',
      h('a', { href: '/api/v1/messages/' + m.id + '/text', class: 'download-text', download: 'message-' + m.id + '.txt' },
        'download the whole text (' + whole.toLocaleString() + ' characters)'));
  };
  show(false);
  return [body, more];
}

function fmtSize(n) {
  return n < 1024 ? n + ' B' : n < 1024 * 1024 ? Math.ceil(n / 1024) + ' KB' : (n / 1048576).toFixed(1) + ' MB';
}

// A file's bytes as base64 (a data: URL without its head).
function base64Of(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).slice(String(r.result).indexOf(',') + 1));
    r.onerror = () => reject(new Error('could not read ' + file.name));
    r.readAsDataURL(file);
  });
}

function composer(c, draft) {
  const kind = (draft && draft.kind) || 'reply';
  const wrap = h('div', { class: 'composer' + (kind === 'note' ? ' note' : ''), 'data-kind': kind, 'data-conv': c.id });
  const ta = h('textarea', { id: 'reply-text', placeholder: kind === 'note' ? 'Private note (the customer never sees it)' : 'Reply to the customer on ' + c.channel, 'aria-label': 'message' });
  if (draft) ta.value = draft.text;
  ta.addEventListener('input', () => {
    const now = Date.now();
    if (now - inbox.typingAt > 4000) { inbox.typingAt = now; presence(c.id, 'typing'); }
  });
  ta.addEventListener('keydown', ev => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) send(false); });
  const kindSel = select('kind', [['reply', 'Reply'], ['note', 'Private note']], kind, v => {
    wrap.dataset.kind = v; wrap.classList.toggle('note', v === 'note');
    ta.placeholder = v === 'note' ? 'Private note (the customer never sees it)' : 'Reply to the customer on ' + c.channel;
  }, { id: 'reply-kind' });
  const canned = select('canned', [['', 'Canned reply…'], ...inbox.canned.map(x => [x.id, x.shortcut + ' — ' + x.title])], '', async v => {
    if (!v) return;
    try {
      const r = await api('GET', '/conversations/' + c.id + '/canned/' + v);
      ta.value = ta.value ? ta.value + '\n' + r.text : r.text;
      ta.focus();
    } catch (e) { fail(e); }
    canned.value = '';
  }, { id: 'canned' });
  const conflict = h('div', { class: 'conflict', id: 'conflict', hidden: true });
  const sendBtn = h('button', { class: 'primary', id: 'send', onclick: () => send(false) }, 'Send');
  // Files go with the reply or note (base64 in the JSON; the server holds
  // the limits and says which one a refused file passed).
  const files = (draft && draft.files) || [];
  wrap._files = files;
  const refusal = h('div', { class: 'error small', id: 'reply-error', role: 'alert', hidden: true });
  const chips = h('div', { class: 'chips', id: 'reply-files' });
  const renderChips = () => clear(chips).append(...files.map((f, i) =>
    h('span', { class: 'chip', 'data-name': f.name }, f.name, h('span', { class: 'muted size' }, fmtSize(f.size)),
      h('button', { class: 'link remove', type: 'button', title: 'Remove', 'aria-label': 'remove ' + f.name,
        onclick: () => { files.splice(i, 1); refusal.hidden = true; renderChips(); } }, '×'))));
  const fileInput = h('input', { type: 'file', id: 'reply-file', multiple: true, hidden: true, onchange: () => {
    files.push(...fileInput.files);
    fileInput.value = '';
    refusal.hidden = true;
    renderChips();
  } });
  const attachBtn = h('button', { type: 'button', id: 'attach', title: 'Attach files', onclick: () => fileInput.click() }, 'Attach…');
  renderChips();

  async function send(force) {
    const text = ta.value.trim();
    if (!text) return;
    sendBtn.disabled = true;
    refusal.hidden = true;
    try {
      const attachments = await Promise.all(files.map(async f => ({
        filename: f.name, content_type: f.type || 'application/octet-stream', data: await base64Of(f),
      })));
      await api('POST', '/conversations/' + c.id + '/messages', {
        text, kind: wrap.dataset.kind, last_seen_message_id: inbox.lastSeen, force, attachments,
      });
      ta.value = '';
      files.length = 0;
      renderChips();
      conflict.hidden = true;
      inbox.lastSeen = null;
      presence(c.id, 'viewing');
      await openConversation(c.id, false, true);
    } catch (e) {
      if (e.status === 409 && e.data && e.data.new_messages) {
        clear(conflict).append(
          h('strong', {}, 'New since you opened this conversation:'),
          h('ul', {}, e.data.new_messages.map(m => h('li', {}, (m.direction === 'in' ? (m.sender_name || m.sender_address || 'customer') : m.author) + ': ' + m.text))),
          h('button', { class: 'primary', id: 'send-anyway', onclick: () => send(true) }, 'Send anyway'), ' ',
          h('button', { onclick: async () => { conflict.hidden = true; inbox.lastSeen = null; await openConversation(c.id, false, true); } }, 'Show them first'));
        conflict.hidden = false;
      } else if (e.status === 413 || e.status === 422) {
        refusal.textContent = 'Not sent: ' + e.message;
        refusal.hidden = false;
      } else fail(e);
    } finally { sendBtn.disabled = false; }
  }

  wrap.append(conflict, ta, chips, refusal, h('div', { class: 'bar' }, kindSel, canned, attachBtn, fileInput,
    h('span', { class: 'grow muted small' }, 'Ctrl+Enter sends'), sendBtn));
  return wrap;
}

function auditPanel(c) {
  return h('details', { class: 'audit', id: 'audit' }, h('summary', {}, 'Audit trail (' + (c.audit || []).length + ')'),
    h('table', {}, (c.audit || []).map(a => h('tr', {},
      h('td', {}, fmtTime(a.at)), h('td', {}, a.actor), h('td', {}, a.action), h('td', {}, a.reason || '')))));
}

// Presence: heartbeat while a conversation is open; others' entries via live events.
const presenceState = { entries: new Map() };

function presence(id, state) {
  api('POST', '/conversations/' + id + '/presence', { state })
    .then(r => { if (inbox.current && inbox.current.id === id && r) renderPresenceList(r.presence); })
    .catch(() => {});
}

function startPresence(id) {
  clearInterval(inbox.presenceTimer);
  presenceState.entries = new Map();
  presence(id, 'viewing');
  inbox.presenceTimer = setInterval(() => {
    if (!inbox.current || inbox.current.id !== id) return;
    presence(id, Date.now() - inbox.typingAt < 8000 ? 'typing' : 'viewing');
  }, 10000);
}

window.addEventListener('beforeunload', () => {
  if (inbox.current) {
    fetch('/api/v1/conversations/' + inbox.current.id + '/presence', {
      method: 'POST', keepalive: true, credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': CSRF },
      body: JSON.stringify({ state: 'left' }),
    });
  }
});

function renderPresenceList(list) {
  presenceState.entries = new Map(list.map(p => [p.username, { name: p.name, state: p.state, until: Date.now() + 30000 }]));
  drawPresence();
}

function updatePresence(e) {
  if (e.state === 'left') presenceState.entries.delete(e.username);
  else presenceState.entries.set(e.username, { name: e.name, state: e.state, until: Date.now() + (e.ttl || 30) * 1000 });
  drawPresence();
}

function drawPresence() {
  const bar = document.getElementById('presence');
  if (!bar) return;
  const now = Date.now();
  const others = [...presenceState.entries.entries()].filter(([u, p]) => u !== ME.username && p.until > now);
  bar.hidden = others.length === 0;
  bar.textContent = others.map(([u, p]) => (p.name || u) + (p.state === 'typing' ? ' is typing…' : ' is viewing')).join(' · ');
}
setInterval(drawPresence, 5000);

// ------------------------------------------------------------ contact panel --

function renderContact(contact, currentConvId) {
  const side = clear(inbox.els.side);
  if (!contact) return;
  side.append(contactDetails(contact, currentConvId, () => refreshConv()));
}

function contactDetails(contact, currentConvId, reload) {
  const box = h('div', { class: 'contact', id: 'contact', 'data-contact-id': contact.id });
  box.append(h('h2', {}, contact.name || ('contact #' + contact.id)),
    h('div', { class: 'muted small' }, 'contact #' + contact.id + ' · since ' + fmtTime(contact.created_at)));
  if (contact.merged_into) box.append(h('p', { class: 'error' }, 'Merged into contact #' + contact.merged_into));
  const fig = contact.satisfaction;
  if (fig) box.append(h('div', { class: 'satisfaction' + (fig.at_risk ? ' at-risk' : ''), id: 'satisfaction', title: 'satisfaction and loyalty figure (0-100) from ratings, loyalty answers, complaints and resolution times' },
    'Satisfaction ', h('strong', {}, Math.round(fig.score) + '/100'), fig.at_risk ? h('span', { class: 'badge breached' }, 'at risk') : null));
  box.append(h('h3', {}, 'Identities'), h('table', { class: 'kv', id: 'identities' },
    (contact.identities || []).map(i => h('tr', {}, h('td', {}, i.kind), h('td', {}, i.address, i.display_name ? ' (' + i.display_name + ')' : '')))));
  const attrs = contact.attributes || {};
  const table = h('table', { class: 'kv', id: 'attributes' }, Object.entries(attrs).map(([k, v]) => h('tr', {},
    h('td', {}, k), h('td', {}, String(v), ' ',
      h('button', { class: 'link small', title: 'remove', 'aria-label': 'remove attribute ' + k, onclick: () => editAttr(contact.id, { [k]: null }, reload) }, '×')))));
  const key = h('input', { type: 'text', placeholder: 'tier, company…', size: 9, 'aria-label': 'attribute name', id: 'attr-key' });
  const val = h('input', { type: 'text', placeholder: 'value', size: 9, 'aria-label': 'attribute value', id: 'attr-value' });
  box.append(h('h3', {}, 'Attributes'), table, h('div', { class: 'form-row' }, key, val,
    h('button', { id: 'attr-save', onclick: () => { if (key.value.trim()) editAttr(contact.id, { [key.value.trim()]: val.value }, reload); } }, 'Set')));
  if (window.customers) box.append(window.customers.panel(contact, reload));  // customers.js
  box.append(h('h3', {}, 'History on every channel'), h('ul', { class: 'history', id: 'history' },
    (contact.conversations || []).map(x => h('li', { class: x.id === currentConvId ? 'current' : '', 'data-conversation-id': x.id },
      h('a', { href: '/inbox/c/' + x.id, onclick: ev => { ev.preventDefault(); navigate('/inbox/c/' + x.id); } },
        '#' + x.id + ' ', x.subject || x.last_preview || '(no subject)'),
      h('div', { class: 'muted small' }, channelBadge(x.channel), ' ', x.status, ' · ', x.category || '', ' · ', fmtTime(x.last_message_at || x.created_at))))));
  if (!location.pathname.startsWith('/contacts')) box.append(h('p', {}, h('a', { href: '/contacts/' + contact.id }, 'Open contact, merge…')));
  return box;
}

async function editAttr(id, attributes, reload) {
  try { await api('PATCH', '/contacts/' + id, { attributes }); reload(); } catch (e) { fail(e); }
}

// ---------------------------------------------------------------- contacts --

async function showContacts() {
  clear(main);
  const q = h('input', { type: 'search', placeholder: 'name, e-mail, phone, handle…', id: 'contact-search', 'aria-label': 'search contacts', size: 30 });
  const results = h('ul', { class: 'results', id: 'contact-results' });
  const detail = h('div', { id: 'contact-detail' }, h('div', { class: 'empty' }, 'Search, then pick a contact.'));
  main.append(h('div', { class: 'page' }, h('div', { class: 'cols' },
    h('div', {}, h('div', { class: 'card' }, h('h2', {}, 'Contacts'), q, results),
      window.customers ? window.customers.finder() : null), detail)));
  const search = debounce(async () => {
    if (!q.value.trim()) { clear(results); return; }
    try {
      const r = await api('GET', '/contacts?q=' + encodeURIComponent(q.value.trim()));
      clear(results).append(...r.items.map(c => h('li', { 'data-contact-id': c.id, onclick: () => navigate('/contacts/' + c.id) },
        h('strong', {}, c.name || '#' + c.id), ' ', h('span', { class: 'muted small' }, (c.identities || []).map(i => i.address).join(', ')))));
      if (!r.items.length) results.append(h('li', { class: 'muted' }, 'no match'));
    } catch (e) { fail(e); }
  }, 250);
  q.addEventListener('input', search);
  const m = location.pathname.match(/^\/contacts\/(\d+)/);
  if (m) loadContactPage(Number(m[1]), detail);
}

async function loadContactPage(id, detail) {
  let c;
  try { c = await api('GET', '/contacts/' + id); } catch (e) { clear(detail).append(h('div', { class: 'empty error' }, e.message)); return; }
  const reload = () => loadContactPage(id, detail);
  clear(detail).append(h('div', { class: 'card' }, contactDetails(c, null, reload)));
  // Merge another contact into this one.
  const mq = h('input', { type: 'search', placeholder: 'find the duplicate…', id: 'merge-search', 'aria-label': 'find contact to merge', size: 28 });
  const found = h('ul', { class: 'results', id: 'merge-results' });
  const mergeCard = h('div', { class: 'card' }, h('h3', {}, 'Merge a duplicate into this contact'),
    h('p', { class: 'muted small' }, 'Its identities and conversations move here. Recorded; an admin can undo it.'), mq, found);
  mq.addEventListener('input', debounce(async () => {
    if (!mq.value.trim()) { clear(found); return; }
    try {
      const r = await api('GET', '/contacts?q=' + encodeURIComponent(mq.value.trim()));
      clear(found).append(...r.items.filter(x => x.id !== id).map(x => h('li', { 'data-contact-id': x.id },
        h('strong', {}, x.name || '#' + x.id), ' ', h('span', { class: 'muted small' }, (x.identities || []).map(i => i.kind + ':' + i.address).join(', ')), ' ',
        h('button', { class: 'merge', onclick: async ev => {
          ev.stopPropagation();
          if (!confirm('Merge “' + (x.name || x.id) + '” into “' + (c.name || c.id) + '”?')) return;
          try { await api('POST', '/contacts/' + id + '/merge', { source_id: x.id }); toast('Merged'); mq.value = ''; clear(found); reload(); } catch (e) { fail(e); }
        } }, 'Merge into this one'))));
    } catch (e) { fail(e); }
  }, 250));
  detail.append(mergeCard);
  if (window.customers) window.customers.page(c, detail, reload);  // timeline, export, erase
  if ((c.merges || []).length) {
    detail.append(h('div', { class: 'card' }, h('h3', {}, 'Merges'), h('table', { class: 'grid', id: 'merges' },
      c.merges.map(m => h('tr', {}, h('td', {}, '#' + m.source_id + ' ' + (m.source_name || '') + ' → #' + m.target_id + ' ' + (m.target_name || '')),
        h('td', {}, m.actor + ', ' + fmtTime(m.at)),
        h('td', {}, m.undone_at ? 'undone by ' + m.undone_by : (ME.role === 'admin' ? h('button', { class: 'undo-merge', onclick: async () => {
          try { await api('POST', '/contact-merges/' + m.id + '/undo'); toast('Merge undone'); reload(); } catch (e) { fail(e); }
        } }, 'Undo') : '')))))));
  }
}

// ------------------------------------------------------------------- admin --

const ADMIN_TABS = [
  ['users', 'Users', 'admin'], ['teams', 'Teams', 'admin'], ['rules', 'Rules', 'admin'],
  ['channels', 'Channels', 'admin'], ['quarantine', 'Quarantine', 'admin'], ['audit', 'Audit', 'admin'],
  ['classifier', 'Classifier', 'admin'],
  ['canned', 'Canned replies', 'supervisor'], ['alltokens', 'API tokens', 'admin'],
  ['tokens', 'My API tokens', 'agent'],
];

function roleAtLeast(role) { return { agent: 0, supervisor: 1, admin: 2 }[ME.role] >= { agent: 0, supervisor: 1, admin: 2 }[role]; }

async function showAdmin() {
  const tabs = ADMIN_TABS.filter(t => roleAtLeast(t[2]));
  const m = location.pathname.match(/^\/admin\/(\w+)/);
  const current = m && tabs.some(t => t[0] === m[1]) ? m[1] : tabs[0][0];
  const body = h('div', { id: 'admin-body' });
  clear(main).append(h('div', { class: 'page' },
    h('div', { class: 'tabs' }, tabs.map(([k, label]) => h('button', { class: k === current ? 'on' : '', 'data-tab': k, onclick: () => navigate('/admin/' + k) }, label))),
    body));
  const fn = { users: adminUsers, teams: adminTeams, rules: adminRules, channels: adminChannels, quarantine: adminQuarantine, audit: adminAudit, classifier: adminClassifier, canned: adminCanned, alltokens: adminAllTokens, tokens: adminTokens }[current];
  try { await fn(body); } catch (e) { fail(e); }
}

async function adminUsers(body) {
  const [users, teams] = await Promise.all([api('GET', '/users'), api('GET', '/teams')]);
  const teamNames = teams.items.map(t => t.name);
  const rows = users.map(u => {
    const role = select('role', ['agent', 'supervisor', 'admin'], u.role, v => patchUser(u.username, { role: v }));
    const teamsInput = h('input', { type: 'text', value: u.teams.join(', '), size: 18, 'aria-label': 'teams of ' + u.username });
    teamsInput.addEventListener('change', () => patchUser(u.username, { teams: teamsInput.value.split(',').map(s => s.trim()).filter(Boolean) }));
    return h('tr', { 'data-username': u.username },
      h('td', {}, h('strong', {}, u.username), h('div', { class: 'muted small' }, u.display_name || '', ' ', u.email || '')),
      h('td', {}, role), h('td', {}, teamsInput),
      h('td', {}, u.disabled ? h('span', { class: 'error' }, 'disabled') : 'active', h('div', { class: 'muted small' }, 'last login ' + (u.last_login_at ? fmtTime(u.last_login_at) : 'never'))),
      h('td', {},
        h('button', { onclick: () => patchUser(u.username, { disabled: !u.disabled }) }, u.disabled ? 'Enable' : 'Disable'), ' ',
        h('button', { onclick: () => { const pw = prompt('New password for ' + u.username + ' (at least 10 characters):'); if (pw) patchUser(u.username, { password: pw }); } }, 'Set password')));
  });
  const f = { username: h('input', { type: 'text', id: 'new-username', required: true }), display_name: h('input', { type: 'text', id: 'new-name' }),
    email: h('input', { type: 'email', id: 'new-email' }), password: h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password' }),
    role: select('role', ['agent', 'supervisor', 'admin'], 'agent', null, { id: 'new-role' }),
    teams: h('input', { type: 'text', id: 'new-teams', placeholder: teamNames.join(', ') }) };
  clear(body).append(
    h('div', { class: 'card' }, h('h2', {}, 'Users'), h('table', { class: 'grid', id: 'users' },
      h('tr', {}, ['User', 'Role', 'Teams', 'State', ''].map(x => h('th', {}, x))), rows)),
    h('div', { class: 'card' }, h('h3', {}, 'Add a user'), h('div', { class: 'form-row' },
      Object.entries(f).map(([k, el]) => h('label', {}, k.replace('_', ' '), el)),
      h('button', { class: 'primary', id: 'add-user', onclick: async () => {
        try {
          await api('POST', '/users', { username: f.username.value.trim(), display_name: f.display_name.value || null, email: f.email.value || null,
            password: f.password.value || null, role: f.role.value, teams: f.teams.value.split(',').map(s => s.trim()).filter(Boolean) });
          toast('User added'); showAdmin();
        } catch (e) { fail(e); }
      } }, 'Add'))));
}

async function patchUser(username, change) {
  try { await api('PATCH', '/users/' + encodeURIComponent(username), change); toast('Saved'); showAdmin(); } catch (e) { fail(e); showAdmin(); }
}

async function adminTeams(body) {
  const teams = await api('GET', '/teams');
  const rows = teams.items.map(t => {
    const members = h('input', { type: 'text', value: t.members.join(', '), size: 30, 'aria-label': 'members of ' + t.name });
    const strategy = select('strategy', ['round_robin', 'least_loaded', 'manual'], t.strategy);
    const cap = h('input', { type: 'number', min: 1, value: t.max_open_per_agent, style: null, size: 4, 'aria-label': 'cap' });
    return h('tr', { 'data-team': t.name }, h('td', {}, h('strong', {}, t.name)), h('td', {}, members), h('td', {}, strategy), h('td', {}, cap),
      h('td', {}, h('button', { onclick: () => saveTeam(t.name, { members: members.value.split(',').map(s => s.trim()).filter(Boolean), strategy: strategy.value, max_open_per_agent: Number(cap.value) }) }, 'Save'), ' ',
        h('button', { class: 'danger', onclick: async () => { if (!confirm('Delete team ' + t.name + '?')) return; try { await api('DELETE', '/teams/' + encodeURIComponent(t.name)); showAdmin(); } catch (e) { fail(e); } } }, 'Delete')));
  });
  const name = h('input', { type: 'text', id: 'new-team', placeholder: 'team name' });
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Teams'),
    h('p', { class: 'muted small' }, 'Members are assigned in the order listed (round robin). Teams from [[teams]] in the config are created at start when missing; edits here win.'),
    h('table', { class: 'grid', id: 'teams' }, h('tr', {}, ['Team', 'Members', 'Strategy', 'Cap', ''].map(x => h('th', {}, x))), rows),
    h('div', { class: 'form-row' }, name, h('button', { onclick: () => name.value.trim() && saveTeam(name.value.trim(), { members: [] }) }, 'Add team'))));
}

async function saveTeam(name, body) {
  try { await api('PUT', '/teams/' + encodeURIComponent(name), body); toast('Team saved'); showAdmin(); } catch (e) { fail(e); }
}

// The rules editor: TOML coloured under the textarea (static/toml.js),
// problems shown at their line as you type (checked against the whole
// folder, nothing saved), and a "try a message" box that runs the same
// decision as `omnidesk rules test` on the edited, unsaved text.
async function adminRules(body) {
  const r = await api('GET', '/rules');
  const editor = h('textarea', { class: 'code', id: 'rules-text', spellcheck: 'false', wrap: 'off', 'aria-label': 'rules file' });
  const shade = h('pre', { class: 'code-shade', 'aria-hidden': 'true' });
  const gutter = h('pre', { class: 'code-gutter', 'aria-hidden': 'true' });
  const reason = h('input', { type: 'text', id: 'rules-reason', placeholder: 'why (recorded)', size: 40 });
  const out = h('div', { id: 'rules-result' });
  const problemsBox = h('ul', { class: 'problems', id: 'rules-problems' });
  let current = null;
  let problems = new Map();
  const draw = () => {
    clear(shade).append(highlightToml(editor.value, problems));
    const n = editor.value.split('\n').length;
    gutter.textContent = Array.from({ length: n }, (_, i) => String(i + 1)).join('\n');
    shade.scrollTop = editor.scrollTop; shade.scrollLeft = editor.scrollLeft; gutter.scrollTop = editor.scrollTop;
  };
  const showProblems = list => {
    problems = new Map();
    const mine = (list || []).filter(p => !current || p.file === current.name || p.file.endsWith('/' + current.name));
    for (const p of mine) if (p.line) problems.set(p.line, [...(problems.get(p.line) || []), p.reason]);
    clear(problemsBox).append(...(list || []).map(p => h('li', { class: 'error' },
      p.line && mine.includes(p) ? h('button', { class: 'link', onclick: () => goToLine(p.line) }, 'line ' + p.line) : (p.file + (p.line ? ':' + p.line : '')), ': ', p.reason)));
    draw();
  };
  const goToLine = line => {
    const lines = editor.value.split('\n');
    const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    editor.focus();
    editor.setSelectionRange(start, start + (lines[line - 1] || '').length);
    editor.scrollTop = Math.max(0, (line - 5) * parseFloat(getComputedStyle(editor).lineHeight));
    draw();
  };
  const check = debounce(async () => {
    if (!current) return;
    try { const res = await api('POST', '/rules/' + encodeURIComponent(current.name) + '/check', { text: editor.value }); showProblems(res.problems); } catch (_) { /* next keystroke */ }
  }, 500);
  editor.addEventListener('input', () => { draw(); check(); });
  editor.addEventListener('scroll', draw);
  const files = select('file', r.files.map(f => f.name), r.files[0]?.name, v => load(v), { id: 'rules-file' });
  async function load(name) {
    current = await api('GET', '/rules/' + encodeURIComponent(name));
    editor.value = current.text;
    clear(out);
    showProblems([]);
  }
  // Try a message against the edited text.
  const tryText = h('textarea', { id: 'try-text', rows: 3, placeholder: 'A customer message, e.g. "My parcel arrived broken, I want a refund"', 'aria-label': 'message to try' });
  const trySubject = h('input', { type: 'text', id: 'try-subject', placeholder: 'subject (optional)', 'aria-label': 'subject' });
  const tryChannel = h('input', { type: 'text', id: 'try-channel', value: 'api', size: 10, 'aria-label': 'channel' });
  const tryOut = h('div', { id: 'try-result', class: 'try-result' });
  const tryIt = async () => {
    if (!current || !tryText.value.trim()) return;
    try {
      const res = await api('POST', '/rules/' + encodeURIComponent(current.name) + '/try',
        { text: editor.value, message: tryText.value, subject: trySubject.value, channel: tryChannel.value || 'api' });
      showProblems([]);
      clear(tryOut).append(decisionView(res.decision));
    } catch (e) {
      if (e.data && e.data.problems) showProblems(e.data.problems);
      clear(tryOut).append(h('p', { class: 'error' }, e.message + ': fix the problems marked in the editor first'));
    }
  };
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Rules'),
    h('p', { class: 'muted small' }, 'Version ' + r.version + '. Problems show at their line as you type; saving validates the whole folder first, and invalid rules are refused while the running ones stay.'),
    r.error ? h('pre', { class: 'error' }, r.error.join('\n')) : null,
    h('div', { class: 'form-row' }, files, reason, h('button', { class: 'primary', id: 'rules-save', onclick: async () => {
      try {
        const res = await api('PUT', '/rules/' + encodeURIComponent(current.name), { text: editor.value, base_sha256: current.sha256, reason: reason.value || null });
        clear(out).append(h('p', {}, res.changed ? 'Saved and reloaded (version ' + res.version + ').' : 'No change.'), res.diff ? h('pre', { class: 'diff' }, res.diff) : null);
        current.sha256 = res.sha256 || current.sha256;
        showProblems([]);
      } catch (e) {
        clear(out).append(h('p', { class: 'error' }, e.message));
        if (e.data && e.data.problems) showProblems(e.data.problems.map(parseProblem));
      }
    } }, 'Validate and save')),
    h('div', { class: 'code-editor' }, gutter, h('div', { class: 'code-area' }, shade, editor)), problemsBox, out),
  h('div', { class: 'card', id: 'try-box' }, h('h3', {}, 'Try a message'),
    h('p', { class: 'muted small' }, 'Runs the same decision as ', h('code', {}, 'omnidesk rules test'), ' on the text in the editor, saved or not. Nothing is recorded.'),
    tryText, h('div', { class: 'form-row' }, trySubject, h('label', { class: 'inline' }, 'channel ', tryChannel),
      h('button', { class: 'primary', id: 'try-run', onclick: tryIt }, 'Try it')), tryOut));
  tryText.addEventListener('keydown', ev => { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) tryIt(); });
  if (r.files.length) await load(r.files[0].name);
}

// "10-classify.toml:12: reason" (a refused save) as {file, line, reason}.
function parseProblem(text) {
  const m = /^(.+?\.toml)(?::(\d+))?: (.*)$/s.exec(text);
  return m ? { file: m[1], line: m[2] ? Number(m[2]) : null, reason: m[3] } : { file: '', line: null, reason: text };
}

function decisionView(d) {
  const rows = [['Category', d.category + (d.confidence !== undefined && d.confidence !== null ? ' (' + Math.round(d.confidence * 100) + '%)' : '')],
    ['Priority', d.priority], ['Team', d.team || '—'], ['Agent', d.assignee || '—'],
    ['Tags', (d.tags || []).join(', ') || '—'], ['Rules fired', (d.rules_fired || []).join(', ') || '—'],
    ['Decided by', d.decided_by || '—']];
  return h('div', {},
    h('table', { class: 'kv', id: 'try-decision' }, rows.map(([k, v]) => h('tr', {}, h('td', {}, k), h('td', {}, String(v))))),
    (d.explanation || []).length ? h('details', { open: true }, h('summary', {}, 'Why'),
      h('ul', {}, d.explanation.map(w => h('li', {}, String(w))))) : null,
    h('details', {}, h('summary', {}, 'The decision as JSON'), h('pre', { class: 'diff' }, JSON.stringify(d, null, 2))));
}

async function adminChannels(body) {
  const r = await fetch('/healthz').then(x => x.json());
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Channels'),
    h('p', {}, 'Store: ' + r.store.engine + (r.store.ok ? ', ok' : ', FAILING') + ', ' + (r.store.pending ?? '?') + ' pending. Rules version ' + r.rules.version + (r.rules.ok ? '' : ' — ' + r.rules.error)),
    h('table', { class: 'grid', id: 'channels' }, h('tr', {}, ['Channel', 'State', 'Detail', 'Last activity'].map(x => h('th', {}, x))),
      Object.entries(r.channels).map(([n, c]) => h('tr', {}, h('td', {}, n), h('td', { class: c.ok ? '' : 'error' }, c.state), h('td', {}, c.detail), h('td', {}, c.last_activity ? fmtTime(c.last_activity) : '—'))))));
}

async function adminQuarantine(body) {
  const items = await api('GET', '/quarantine');
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Quarantine'),
    items.length ? h('table', { class: 'grid' }, items.map(q => h('tr', {}, h('td', {}, '#' + q.id), h('td', {}, q.channel), h('td', {}, fmtTime(q.created_at)), h('td', {}, q.error),
      h('td', {}, h('button', { onclick: async () => { try { await api('POST', '/quarantine/' + q.id + '/retry'); toast('Requeued'); showAdmin(); } catch (e) { fail(e); } } }, 'Retry')))))
      : h('p', { class: 'muted' }, 'Nothing in quarantine.')));
}

// The audit trail as a table people read: who, what, when, which
// conversation, and the change in words; filtered by who, what and which
// conversation (GET /api/v1/audit), with older pages on demand.
const AUDIT_WORDS = {
  routed: 'routed', assigned: 'assigned', status_changed: 'status changed', corrected: 'corrected',
  tags_changed: 'tags changed', bulk_action: 'bulk change', availability_changed: 'availability',
  login: 'signed in', rules_saved: 'rules saved', reply_queued: 'replied',
};

function auditDetail(a) {
  const d = a.detail || {};
  const parts = [];
  const show = v => v === null || v === undefined || v === '' ? '—' : Array.isArray(v) ? v.join(', ') : typeof v === 'object' ? Object.entries(v).map(([k, x]) => k + ' ' + show(x)).join(', ') : String(v);
  if ('from' in d && 'to' in d) parts.push(show(d.from) + ' → ' + show(d.to));
  for (const [k, v] of Object.entries(d)) {
    if (k === 'from' || k === 'to' || k === 'diff') continue;
    parts.push(k.replace(/_/g, ' ') + ': ' + show(v));
  }
  return parts.join(' · ');
}

async function adminAudit(body) {
  const f = { actor: '', action: '', conversation_id: '' };
  const table = h('table', { class: 'grid audit-table', id: 'audit-all' });
  const more = h('button', { id: 'audit-more', hidden: true }, 'Older entries');
  let before = null;
  const input = (key, placeholder, size) => {
    const i = h('input', { type: 'text', id: 'audit-' + key, placeholder, size, 'aria-label': placeholder });
    i.addEventListener('change', () => { f[key] = i.value.trim(); load(false); });
    return i;
  };
  async function load(append) {
    const q = new URLSearchParams({ limit: '100' });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    if (append && before) q.set('before', String(before));
    let r;
    try { r = await api('GET', '/audit?' + q); } catch (e) { return fail(e); }
    if (!append) clear(table).append(h('tr', {}, ['When', 'Who', 'What', 'Conversation', 'Why', 'Change'].map(x => h('th', {}, x))));
    for (const a of r.items) {
      table.append(h('tr', { 'data-action': a.action },
        h('td', { class: 'nowrap' }, fmtTime(a.at)), h('td', {}, a.actor),
        h('td', {}, AUDIT_WORDS[a.action] || a.action.replace(/_/g, ' ')),
        h('td', {}, a.conversation_id ? h('a', { href: '/inbox/c/' + a.conversation_id }, '#' + a.conversation_id) : (a.contact_id ? 'contact #' + a.contact_id : '')),
        h('td', {}, a.reason || ''),
        h('td', { class: 'change' }, auditDetail(a))));
    }
    if (!r.items.length && !append) table.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Nothing matches.')));
    before = r.items.length ? r.items[r.items.length - 1].id : before;
    more.hidden = r.items.length < 100;
  }
  more.addEventListener('click', () => load(true));
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Audit trail'),
    h('div', { class: 'form-row' }, input('actor', 'who, e.g. agent:bob', 16), input('action', 'what, e.g. assigned', 16), input('conversation_id', 'conversation #', 10)),
    h('div', { class: 'table-scroll' }, table), more));
  await load(false);
}

function pct(x) { return x === null || x === undefined ? '—' : x.toFixed(3); }

let classifierPoll = null;
async function adminClassifier(body) {
  clearTimeout(classifierPoll);
  const r = await api('GET', '/classifier');
  const m = r.model;
  const model = h('div', { class: 'card', id: 'classifier-model' }, h('h2', {}, 'Classifier'));
  if (!m) {
    model.append(h('p', {}, 'No trained model: the phrases in the rules decide alone. Train one with ',
      h('code', {}, 'omnidesk classify train'), ', or retrain below once agents have corrected or confirmed enough conversations.'));
  } else {
    const labels = Object.entries(m.labels || {}).map(([k, v]) => k + ' ' + v).join(', ');
    const s = r.settings;
    model.append(
      h('p', {}, h('strong', {}, 'Model v' + m.version), ' in use, trained ' + fmtTime(m.trained_at) + ' in ' + m.seconds + ' s on ' + m.examples + ' examples (' + labels + ').'),
      h('p', { class: 'muted small' }, 'From: ' + (m.sources || []).join('; ')),
      h('p', { id: 'classifier-settings' }, (s.threshold >= 1 ? 'It never decides alone: it is always combined with the phrases' : 'It decides alone when at least ' + s.threshold.toFixed(2) + ' sure; below that it is combined with the phrases') + ', weighing ' + s.weight.toFixed(2) + ' (' + s.origin + ').'));
    const cv = m.cross_validated;
    if (cv) {
      model.append(h('h3', {}, cv.folds + '-fold cross-validated: macro-F1 ' + pct(cv.macro_f1) + ', accuracy ' + pct(cv.accuracy)),
        h('table', { class: 'grid', id: 'classifier-classes' }, h('tr', {}, ['Class', 'Precision', 'Recall', 'F1', 'Examples'].map(x => h('th', {}, x))),
          Object.entries(cv.per_class).map(([k, c]) => h('tr', {}, h('td', {}, h('span', { class: 'badge ' + k }, k)), h('td', {}, pct(c.precision)), h('td', {}, pct(c.recall)), h('td', {}, pct(c.f1)), h('td', {}, c.support)))));
    }
    const c = m.combination;
    if (c) model.append(h('p', { class: 'small' }, 'Cross-validated macro-F1: phrases alone ' + pct(c.phrases_alone_macro_f1) + ', model alone ' + pct(c.model_alone_macro_f1) + ', together ' + pct(c.macro_f1) + '.'));
    if (m.held_out) model.append(h('p', { class: 'small' }, 'On ' + m.held_out.examples + ' held-out new examples: macro-F1 ' + pct(m.held_out.new_macro_f1) + (m.held_out.old_macro_f1 !== null ? ' against ' + pct(m.held_out.old_macro_f1) + ' for the model before' : '') + '.'));
  }

  const status = h('p', { id: 'retrain-status' });
  const rt = r.retrain;
  if (rt.running) status.append(h('strong', {}, 'Retraining: '), rt.step || 'starting', rt.started_at ? ' (' + fmtDelta(Date.now() / 1000 - rt.started_at) + ')' : '');
  else if (rt.last) status.append('Last retrain (' + fmtTime(rt.last.at) + ', ' + rt.last.actor + '): ', h('span', { id: 'retrain-result' }, rt.last.result));
  const force = h('input', { type: 'checkbox', id: 'retrain-force' });
  const n = r.new.corrections + r.new.confirmations;
  const retrain = h('div', { class: 'card', id: 'classifier-retrain' }, h('h3', {}, 'Retrain'),
    h('p', {}, r.new.corrections + ' corrections and ' + r.new.confirmations + ' confirmations since the model\'s training data' + (r.since ? ' (' + fmtTime(r.since) + ')' : '') + '; a retrain needs ' + r.min_new + ' new ones. It trains on everything agents taught, scores the new model against the one in use on a held-out part of what is new, and installs it only if it does better.'),
    h('p', { class: 'muted small' }, r.schedule_seconds ? 'Scheduled every ' + fmtDelta(r.schedule_seconds) + ' ([classifier] retrain_every).' : 'No schedule: set [classifier] retrain_every in the config for one.'),
    h('div', { class: 'form-row' },
      h('label', { class: 'inline' }, force, ' even with fewer than ' + r.min_new + ' new'),
      h('button', { class: 'primary', id: 'retrain', disabled: rt.running || (n === 0 && !m) ? true : null, onclick: async () => {
        try { await api('POST', '/classifier/retrain', { force: force.checked }); toast('Retrain started'); adminClassifier(body); } catch (e) { fail(e); }
      } }, 'Retrain now')),
    status);

  const corrections = h('div', { class: 'card' }, h('h3', {}, 'Corrections since the model was trained'),
    r.corrections.length ? h('table', { class: 'grid', id: 'classifier-corrections' },
      h('tr', {}, ['When', 'Agent', 'Changed', 'Conversation', 'Customer wrote'].map(x => h('th', {}, x))),
      r.corrections.map(k => h('tr', {}, h('td', {}, fmtTime(k.at)), h('td', {}, k.actor),
        h('td', {}, h('span', { class: 'badge ' + (k.old || '') }, k.old || '—'), ' → ', h('span', { class: 'badge ' + k.new }, k.new)),
        h('td', {}, h('a', { href: '/inbox/c/' + k.conversation_id }, '#' + k.conversation_id)),
        h('td', { class: 'small' }, k.subject ? h('strong', {}, k.subject + ' ') : null, k.text))))
      : h('p', { class: 'muted' }, 'None yet.'));

  const versions = h('div', { class: 'card' }, h('h3', {}, 'Versions'),
    r.versions.length ? h('table', { class: 'grid', id: 'classifier-versions' },
      h('tr', {}, ['Version', 'Trained', 'Examples', 'Cross-validated macro-F1', 'Held-out macro-F1', ''].map(x => h('th', {}, x))),
      r.versions.map(v => h('tr', {}, h('td', {}, 'v' + v.version), h('td', {}, fmtTime(v.trained_at)), h('td', {}, v.examples ?? ''),
        h('td', {}, pct(v.cv_macro_f1)), h('td', {}, pct(v.held_out_macro_f1)), h('td', {}, v.installed ? h('strong', {}, 'in use') : ''))))
      : h('p', { class: 'muted' }, 'No model saved yet.'));

  const history = h('div', { class: 'card' }, h('h3', {}, 'Retrain history'),
    r.history.length ? h('table', { class: 'grid', id: 'classifier-history' },
      h('tr', {}, ['When', 'Who', 'New examples', 'Result'].map(x => h('th', {}, x))),
      r.history.map(a => h('tr', {}, h('td', {}, fmtTime(a.at)), h('td', {}, a.actor), h('td', {}, a.new_examples ?? ''),
        h('td', { class: a.installed === false ? 'muted' : '' }, a.result || ''))))
      : h('p', { class: 'muted' }, 'No retrain yet.'));

  clear(body).append(model, retrain, corrections, versions, history);
  if (rt.running) classifierPoll = setTimeout(() => { if (document.body.contains(body)) adminClassifier(body); }, 1000);
}

async function adminCanned(body) {
  const r = await api('GET', '/canned');
  const f = { shortcut: h('input', { type: 'text', id: 'canned-shortcut' }), title: h('input', { type: 'text', id: 'canned-title' }),
    team: h('input', { type: 'text', id: 'canned-team', placeholder: 'everyone' }) };
  const text = h('textarea', { id: 'canned-body', rows: 4, cols: 60, placeholder: 'Hello {contact.first_name}, …' });
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'Canned replies'),
    h('p', { class: 'muted small' }, 'Placeholders: ' + r.placeholders.map(p => '{' + p + '}').join(' ')),
    h('table', { class: 'grid', id: 'canned-list' }, r.items.map(c => h('tr', {}, h('td', {}, c.shortcut), h('td', {}, c.title), h('td', { class: 'small' }, c.body), h('td', {}, c.team || 'everyone'),
      h('td', {}, h('button', { class: 'danger', onclick: async () => { try { await api('DELETE', '/canned/' + c.id); showAdmin(); } catch (e) { fail(e); } } }, 'Delete'))))),
    h('h3', {}, 'New canned reply'), h('div', { class: 'form-row' }, Object.entries(f).map(([k, el]) => h('label', {}, k, el))), text,
    h('div', {}, h('button', { class: 'primary', id: 'canned-add', onclick: async () => {
      try { await api('POST', '/canned', { shortcut: f.shortcut.value, title: f.title.value, body: text.value, team: f.team.value.trim() || null }); showAdmin(); } catch (e) { fail(e); }
    } }, 'Add'))));
}

async function adminTokens(body) {
  const r = await api('GET', '/me/tokens');
  const name = h('input', { type: 'text', id: 'token-name', placeholder: 'what it is for' });
  const shown = h('div', { id: 'token-shown' });
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'My API tokens'),
    h('p', { class: 'muted small' }, 'A token acts as you, with your role and teams. It is shown once.'),
    h('table', { class: 'grid' }, r.items.map(t => h('tr', {}, h('td', {}, t.name || ''), h('td', {}, t.role), h('td', {}, fmtTime(t.created_at)),
      h('td', {}, t.revoked_at ? 'revoked' : h('button', { onclick: async () => { try { await api('DELETE', '/me/tokens/' + t.id); showAdmin(); } catch (e) { fail(e); } } }, 'Revoke'))))),
    h('div', { class: 'form-row' }, name, h('button', { onclick: async () => {
      try { const t = await api('POST', '/me/tokens', { name: name.value || 'token' }); clear(shown).append(h('p', {}, 'Copy it now: ', h('code', {}, t.token))); } catch (e) { fail(e); }
    } }, 'Create')), shown));
}

// Every token of every user (and those made without a user by the CLI), by
// public id; an admin revokes any of them here.
async function adminAllTokens(body) {
  const r = await api('GET', '/tokens');
  const live = r.items.filter(t => !t.revoked_at).length;
  clear(body).append(h('div', { class: 'card' }, h('h2', {}, 'API tokens'),
    h('p', { class: 'muted small' }, live + ' live, ' + (r.items.length - live) + ' revoked. A token acts as its user (never above the user\'s role); one without a user has its own role.'),
    h('table', { class: 'grid', id: 'all-tokens' },
      h('tr', {}, ['Id', 'Name', 'User', 'Role', 'Created', 'State'].map(x => h('th', {}, x))),
      r.items.map(t => h('tr', { 'data-token': t.id },
        h('td', {}, h('code', {}, t.id)), h('td', {}, t.name || ''), h('td', {}, t.username || h('span', { class: 'muted' }, 'no user')),
        h('td', {}, t.role), h('td', {}, fmtTime(t.created_at)),
        h('td', {}, t.revoked_at ? 'revoked ' + fmtTime(t.revoked_at) : h('button', { class: 'danger', onclick: async () => {
          if (!confirm('Revoke token ' + (t.name || t.id) + (t.username ? ' of ' + t.username : '') + '? Whatever uses it stops working at once.')) return;
          try { await api('DELETE', '/tokens/' + t.id); toast('Token revoked'); showAdmin(); } catch (e) { fail(e); }
        } }, 'Revoke')))))));
}

// ------------------------------------------------------------------ router --

function route() {
  const path = location.pathname;
  if (path.startsWith('/inbox')) {
    if (document.querySelector('.inbox') && path.startsWith('/inbox/c/')) {
      openConversation(Number(path.split('/')[3]), false);
      return;
    }
    showInbox();
  } else if (path.startsWith('/contacts')) showContacts();
  else if (path.startsWith('/admin')) showAdmin();
  else if (path.startsWith('/companies/') && window.customers) window.customers.company();
  else if (path === '/privacy' && window.customers) window.customers.retention();
}

// A stalled channel, a failing store or refused rules must not go unnoticed:
// a banner on every page, from /readyz, checked every 20 seconds. Problems
// (what keeps this instance from its work: the store, a stalled pipeline, a
// channel failing past its [health] threshold) in red; warnings (wrong, not
// yet a problem) in yellow.
async function checkHealth() {
  const banner = document.getElementById('banner');
  let r;
  try { r = await fetch('/readyz', { credentials: 'same-origin' }).then(x => x.json()); } catch (_) { return; }
  const problems = (r.problems || []).map(p => p.message);
  const warnings = r.warnings || [];
  banner.hidden = problems.length + warnings.length === 0;
  banner.className = problems.length ? 'banner bad' : 'banner';
  banner.dataset.ready = r.ready ? 'yes' : 'no';
  const items = [...problems, ...warnings].map((text, i) => [i ? ' · ' : '', h('span', { class: 'health-item' }, text)]);
  clear(banner).append(h('span', {}, h('strong', {}, problems.length ? 'Not working: ' : 'Attention: '), items,
    ME.role === 'admin' ? [' ', h('a', { href: '/admin/channels' }, 'details')] : null));
}
checkHealth();
setInterval(checkHealth, 20000);

live.on(e => { if (document.querySelector('.inbox')) onInboxEvent(e); });
// SLA countdowns age without any event: redraw the list once a minute.
setInterval(() => { if (document.querySelector('.inbox') && !document.hidden) refreshList(); }, 60000);
live.start();
notices.start();
route();
