// omnidesk: the agent's workday on top of app.js (same page, loaded after it):
// availability and activity, the supervisors' agents panel.
'use strict';

// ----------------------------------------------------------- availability --
// The header's status menu sets my state; activity (a key, a click, a
// scroll) is reported at most once a minute so idling turns me away on the
// server, and reported at once when I come back from idle.

const availability = {
  state: null,
  active: false,
  lastReport: 0,
  show(state) {
    this.state = state;
    const sel = document.getElementById('my-availability');
    const dot = document.getElementById('availability-dot');
    if (sel) sel.value = state;
    if (dot) dot.className = 'dot ' + state;
    document.body.dataset.availability = state;
  },
  async report() {
    this.active = false;
    this.lastReport = Date.now();
    try { const r = await api('POST', '/me/activity'); this.show(r.state); } catch (_) { /* next time */ }
  },
  seen() {
    this.active = true;
    // Back from idle: tell the server now (it hands me waiting work).
    if (this.state === 'away' && this.idleAway && Date.now() - this.lastReport > 3000) this.report();
  },
  async start() {
    const sel = document.getElementById('my-availability');
    if (!sel || !ME.username) return;
    try {
      const r = await api('GET', '/me/availability');
      this.show(r.state);
      this.idleAway = r.state === 'away';
    } catch (_) { return; }
    sel.addEventListener('change', async () => {
      try {
        const r = await api('PUT', '/me/availability', { status: sel.value });
        this.idleAway = false;
        this.show(r.state);
        toast('You are ' + r.state);
      } catch (e) { fail(e); }
    });
    for (const t of ['keydown', 'pointerdown', 'wheel', 'touchstart', 'focus']) {
      window.addEventListener(t, () => this.seen(), { passive: true, capture: true });
    }
    setInterval(() => { if (this.active && Date.now() - this.lastReport > 60000) this.report(); }, 15000);
    // Every few minutes, what the server thinks (idle turns me away there).
    setInterval(async () => {
      try {
        const r = await api('GET', '/me/availability');
        this.idleAway = r.state === 'away' && sel.value === 'online';
        if (this.idleAway && this.active) return this.report();
        this.show(r.state);
      } catch (_) { /* offline for a moment */ }
    }, 120000);
    live.on(e => {
      if (e.type === 'agent.availability' && e.username === ME.username) this.show(e.state);
    });
  },
};

// ------------------------------------------------------------ agents panel --
// Supervisors and admins: every agent's state and load, live.

const agentsPanel = {
  timer: null,
  async draw() {
    const box = document.getElementById('agents-board');
    if (!box) return;
    let r;
    try { r = await api('GET', '/agents/availability'); } catch (_) { return; }
    clear(box).append(...r.agents.map(a => h('li', { 'data-agent': a.username, 'data-state': a.state },
      h('span', { class: 'dot ' + a.state, title: a.state }),
      h('span', { class: 'name' }, a.display_name),
      h('span', { class: 'load muted small', title: 'open conversations / cap' },
        a.load + (a.cap ? '/' + a.cap : '')))));
    if (!r.agents.length) box.append(h('li', { class: 'muted small' }, 'no agents'));
  },
  mount() {
    if (!roleAtLeast('supervisor')) return;
    const filters = document.getElementById('filters');
    if (!filters || document.getElementById('agents-board')) return;
    filters.append(h('div', { class: 'agents' }, h('h3', {}, 'Agents'), h('ul', { id: 'agents-board', class: 'agents-board' })));
    this.draw();
  },
  start() {
    const redraw = debounce(() => this.draw(), 400);
    live.on(e => {
      if (['agent.availability', 'conversation.created', 'conversation.updated', 'resync'].includes(e.type)) redraw();
    });
    setInterval(() => { if (!document.hidden) this.draw(); }, 30000);
  },
};

// The inbox's filter column is redrawn by app.js: put the panel back each time.
new MutationObserver(() => agentsPanel.mount()).observe(main, { childList: true, subtree: true });

availability.start();
agentsPanel.start();
agentsPanel.mount();

// ------------------------------------------------------------------ panes --
// On a phone the list, the conversation and the contact are stacked views
// (app.css, max-width 899px): .inbox[data-pane] says which one shows, and a
// bar above each leads to the others. On a wide screen the bars are hidden
// and all panes show side by side, as before.

const panes = {
  set(p) {
    const el = document.querySelector('.inbox');
    if (!el) return;
    el.dataset.pane = p;
    if (p !== 'list') el.classList.remove('show-filters');
    if (matchMedia('(max-width: 899px)').matches) window.scrollTo(0, 0);
  },
  toList() {
    panes.set('list');
    if (location.pathname.startsWith('/inbox/c/')) history.pushState({}, '', '/inbox?' + filtersQuery(inbox.filters));
  },
  decorate(el) {
    if (el.dataset.pane) return;
    const bar = (cls, ...kids) => h('div', { class: 'pane-nav ' + cls }, ...kids);
    const filtersBtn = h('button', { type: 'button', id: 'show-filters', 'aria-expanded': 'false',
      onclick: () => { const on = el.classList.toggle('show-filters'); filtersBtn.setAttribute('aria-expanded', String(on)); } }, 'Filters & views');
    el.insertBefore(bar('for-list', filtersBtn, h('span', { class: 'muted small' }, 'Inbox')), el.querySelector('.filters'));
    el.insertBefore(bar('for-conv',
      h('button', { type: 'button', id: 'back-to-list', onclick: () => panes.toList() }, '‹ Conversations'),
      h('button', { type: 'button', id: 'to-contact', onclick: () => panes.set('contact') }, 'Contact ›')), el.querySelector('.conv'));
    el.insertBefore(bar('for-contact',
      h('button', { type: 'button', id: 'back-to-conv', onclick: () => panes.set('conv') }, '‹ Conversation')), el.querySelector('.side'));
    el.dataset.pane = location.pathname.startsWith('/inbox/c/') ? 'conv' : 'list';
  },
};

{
  // Opening a conversation shows its pane (from the list, a link, the history).
  const open = openConversation;
  openConversation = async function (...args) {  // eslint-disable-line no-func-assign
    panes.set('conv');
    return open.apply(this, args);
  };
}

// ---------------------------------------------------------- notifications --
// A conversation newly assigned to me: a toast on the page, and a system
// notification where the browser allows (asked once, from a button).

const notify = {
  allowed() { return 'Notification' in window && Notification.permission === 'granted'; },
  show(e) {
    const id = e.conversation_id;
    if (inbox.current && inbox.current.id === id && !document.hidden) return;
    toast('New conversation for you: #' + id);
    if (!this.allowed()) return;
    try {
      const n = new Notification('omnidesk: a conversation for you', {
        body: 'Conversation #' + id + (e.channel ? ' (' + e.channel + ')' : ''),
        tag: 'conversation-' + id, icon: '/static/icon-192.png', data: { url: '/inbox/c/' + id },
      });
      n.onclick = () => { window.focus(); navigate('/inbox/c/' + id); n.close(); };
    } catch (_) {
      // Some browsers (Android) only show notifications through the worker.
      if (navigator.serviceWorker) navigator.serviceWorker.ready.then(r => r.showNotification('omnidesk: a conversation for you', { body: 'Conversation #' + id, tag: 'conversation-' + id, data: { url: '/inbox/c/' + id } })).catch(() => {});
    }
  },
  start() {
    if (!ME.username) return;
    live.on(e => {
      if (e.assignee !== ME.username) return;
      const fresh = e.type === 'conversation.created'
        || (e.type === 'conversation.updated' && 'previous_assignee' in e && e.previous_assignee !== ME.username);
      if (fresh) this.show(e);
    });
    if ('Notification' in window && Notification.permission === 'default') {
      const btn = h('button', { type: 'button', id: 'enable-notifications', class: 'notices', title: 'be told of conversations assigned to you',
        onclick: async () => { try { await Notification.requestPermission(); } catch (_) { /* refused */ } btn.remove(); } }, 'Notify me');
      const anchor = document.getElementById('notices');
      if (anchor) anchor.after(btn);
    }
    if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => {});
  },
};

{
  // app.js drew the first page before this script ran; later pages are watched.
  const decorate = () => { const el = document.querySelector('.inbox'); if (el) panes.decorate(el); };
  new MutationObserver(decorate).observe(main, { childList: true });
  decorate();
}
notify.start();

// ------------------------------------------------------------ list: reads --
// Opening a conversation marks it read for me (its unread dot goes).

{
  const open = openConversation;
  openConversation = async function (id, ...rest) {  // eslint-disable-line no-func-assign
    const out = await open.call(this, id, ...rest);
    if (inbox.current && inbox.current.id === id && ME.username) {
      api('POST', '/conversations/' + id + '/read').catch(() => {});
      const row = inbox.els.list && inbox.els.list.querySelector('.row[data-id="' + id + '"]');
      if (row) { row.classList.remove('unread'); row.querySelector('.unread-dot')?.remove(); }
    }
    return out;
  };
}

// ------------------------------------------- list: scroll, arrivals, bulk --
// A reload of the list keeps what the agent was looking at where it was; a
// new conversation above the fold says so in a pill instead of pushing the
// rows down. Rows have a checkbox; with some checked, a bar applies one
// change to all of them (POST /conversations/bulk, audited).

const bulk = { selected: new Set(), arrivals: new Set() };

{
  const row = conversationRow;
  conversationRow = function (c, fresh) {  // eslint-disable-line no-func-assign
    const el = row(c, fresh);
    const box = h('input', { type: 'checkbox', class: 'pick', 'aria-label': 'select conversation ' + c.id });
    box.checked = bulk.selected.has(c.id);
    box.addEventListener('click', ev => ev.stopPropagation());
    box.addEventListener('change', () => {
      if (box.checked) bulk.selected.add(c.id); else bulk.selected.delete(c.id);
      drawBulkBar();
    });
    el.classList.add('pickable');
    el.prepend(box);
    return el;
  };
}

{
  const load = loadList;
  loadList = async function (...args) {  // eslint-disable-line no-func-assign
    const list = inbox.els.list;
    const scroller = list && list.scrollHeight > list.clientHeight ? list : document.scrollingElement;
    // The first row in view, and where it was: kept there after the redraw.
    let anchor = null;
    if (list) {
      const top = list.getBoundingClientRect().top;
      for (const r of list.querySelectorAll('.row')) {
        const rect = r.getBoundingClientRect();
        if (rect.bottom > Math.max(top, 0)) { anchor = { id: r.dataset.id, y: rect.top }; break; }
      }
    }
    const wasTop = !scroller || scroller.scrollTop < 5;
    await load.apply(this, args);
    if (!list || !list.isConnected) return;
    drawBulkBar();
    if (anchor && !wasTop) {
      const same = list.querySelector('.row[data-id="' + anchor.id + '"]');
      if (same) scroller.scrollTop += same.getBoundingClientRect().top - anchor.y;
    }
    const fresh = [...list.querySelectorAll('.row.fresh')];
    if (fresh.length) announce(fresh.length === 1 ? 'A new conversation arrived' : fresh.length + ' new conversations arrived');
    for (const r of fresh) bulk.arrivals.add(r.dataset.id);
    drawArrivals(list, scroller);
    if (!list.dataset.arrivalsWatch) {
      list.dataset.arrivalsWatch = '1';
      (scroller === document.scrollingElement ? window : list).addEventListener('scroll', debounce(() => drawArrivals(list, scroller), 100), { passive: true });
    }
  };
}

// New conversations above what the agent is reading, until they scroll up
// to them (or click the pill, which takes them there).
function drawArrivals(list, scroller) {
  const top = Math.max(list.getBoundingClientRect().top, 0) + 4;
  for (const id of [...bulk.arrivals]) {
    const row = list.querySelector('.row[data-id="' + id + '"]');
    if (!row || row.getBoundingClientRect().bottom >= top) bulk.arrivals.delete(id);
  }
  const n = bulk.arrivals.size;
  let pill = list.querySelector('.arrivals');
  if (!n) { pill?.remove(); return; }
  if (!pill) {
    pill = h('button', { type: 'button', class: 'arrivals', id: 'arrivals',
      onclick: () => { scroller.scrollTop = 0; bulk.arrivals.clear(); pill.remove(); } });
    list.prepend(pill);
  }
  pill.textContent = '↑ ' + n + (n === 1 ? ' new conversation' : ' new conversations');
}

function announce(text) {
  let live = document.getElementById('announcer');
  if (!live) {
    live = h('div', { id: 'announcer', class: 'sr-only', role: 'status', 'aria-live': 'polite' });
    document.body.append(live);
  }
  live.textContent = text;
}

async function applyBulk(change) {
  const ids = [...bulk.selected];
  if (!ids.length) return;
  try {
    const r = await api('POST', '/conversations/bulk', Object.assign({ ids }, change));
    toast(r.changed + ' of ' + r.conversations + ' conversations changed');
    bulk.selected.clear();
    loadList();
  } catch (e) { fail(e); }
}

function drawBulkBar() {
  const list = inbox.els.list;
  if (!list) return;
  list.querySelector('.bulk-bar')?.remove();
  const visible = [...list.querySelectorAll('.row[data-id]')].map(r => Number(r.dataset.id));
  for (const id of [...bulk.selected]) if (!visible.includes(id)) bulk.selected.delete(id);
  const n = bulk.selected.size;
  const all = h('input', { type: 'checkbox', id: 'pick-all', 'aria-label': 'select all' });
  all.checked = n > 0 && n === visible.length;
  all.addEventListener('change', () => {
    for (const id of visible) { if (all.checked) bulk.selected.add(id); else bulk.selected.delete(id); }
    for (const b of list.querySelectorAll('.row .pick')) b.checked = all.checked;
    drawBulkBar();
  });
  const bar = h('div', { class: 'bulk-bar' + (n ? ' on' : ''), id: 'bulk-bar' }, all,
    h('span', { class: 'muted small' }, n ? n + ' selected' : 'select'));
  if (n) {
    bar.append(
      select('bulk-status', [['', 'Status…'], ...STATUSES.filter(s => s !== 'snoozed')], '', v => v && applyBulk({ status: v }), { id: 'bulk-status', 'aria-label': 'set status' }),
      select('bulk-category', [['', 'Category…'], ...CATEGORIES], '', v => v && applyBulk({ category: v }), { id: 'bulk-category', 'aria-label': 'set category' }));
    if (roleAtLeast('supervisor')) {
      bar.append(select('bulk-assignee', [['', 'Assign…'], ['-', '— nobody —'], ...inbox.agents.map(a => [a.username, a.display_name || a.username])], '',
        v => v && applyBulk({ assignee: v === '-' ? null : v }), { id: 'bulk-assignee', 'aria-label': 'assign to' }));
    }
    const tag = h('input', { type: 'text', id: 'bulk-tag', placeholder: 'add tag', size: 8, 'aria-label': 'add tag to selected' });
    tag.addEventListener('keydown', ev => { if (ev.key === 'Enter' && tag.value.trim()) applyBulk({ add_tags: [tag.value.trim()] }); });
    bar.append(tag, h('button', { type: 'button', class: 'link', id: 'bulk-clear', onclick: () => { bulk.selected.clear(); for (const b of list.querySelectorAll('.row .pick')) b.checked = false; drawBulkBar(); } }, 'clear'));
  }
  const count = list.querySelector('.count');
  if (count) count.after(bar); else list.prepend(bar);
}

// -------------------------------------------------------------- shortcuts --
// j/k move in the list, Enter opens, r reply, n note, e resolve, a assign,
// / search, ? this help. Never while typing in a field.

const SHORTCUTS = [
  ['j / k', 'next / previous conversation in the list'],
  ['Enter', 'open the highlighted conversation'],
  ['r', 'reply'], ['n', 'private note'], ['e', 'resolve'], ['a', 'assign (or take it)'],
  ['/', 'search messages'], ['?', 'show or hide this help'], ['Esc', 'close this help'],
];

function typingIn(el) {
  if (!el) return false;
  const tag = el.tagName;
  return el.isContentEditable || tag === 'TEXTAREA' || tag === 'SELECT'
    || (tag === 'INPUT' && !['checkbox', 'radio', 'button', 'submit'].includes(el.type));
}

function cursorRow(step) {
  const rows = [...document.querySelectorAll('#list .row[data-id]')];
  if (!rows.length) return null;
  let i = rows.findIndex(r => r.classList.contains('cursor'));
  if (i < 0) i = rows.findIndex(r => r.classList.contains('selected'));
  const next = rows[Math.max(0, Math.min(rows.length - 1, i < 0 ? 0 : i + step))];
  for (const r of rows) r.classList.toggle('cursor', r === next);
  next.scrollIntoView({ block: 'nearest' });
  return next;
}

function composeAs(kind) {
  const kindSel = document.getElementById('reply-kind');
  const ta = document.getElementById('reply-text');
  if (!kindSel || !ta) return;
  if (kindSel.value !== kind) { kindSel.value = kind; kindSel.dispatchEvent(new Event('change')); }
  ta.focus();
}

function toggleHelp(show) {
  let box = document.getElementById('shortcuts');
  if (!box) {
    box = h('div', { id: 'shortcuts', class: 'shortcuts', role: 'dialog', 'aria-label': 'keyboard shortcuts', hidden: true },
      h('h3', {}, 'Keyboard shortcuts'),
      h('table', {}, SHORTCUTS.map(([k, what]) => h('tr', {}, h('td', {}, h('kbd', {}, k)), h('td', {}, what)))),
      h('button', { type: 'button', onclick: () => toggleHelp(false) }, 'Close'));
    document.body.append(box);
  }
  box.hidden = show === undefined ? !box.hidden : !show;
}

document.addEventListener('keydown', ev => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || typingIn(ev.target)) return;
  if (ev.key === 'Escape') { toggleHelp(false); return; }
  if (ev.key === '?') { ev.preventDefault(); toggleHelp(); return; }
  if (!document.querySelector('.inbox')) return;
  const cur = inbox.current;
  switch (ev.key) {
    case 'j': cursorRow(1); break;
    case 'k': cursorRow(-1); break;
    case 'Enter': {
      const row = document.querySelector('#list .row.cursor');
      if (!row || ev.target.closest?.('button, a, .row')) return;
      openConversation(Number(row.dataset.id), true);
      break;
    }
    case 'r': if (!cur) return; composeAs('reply'); break;
    case 'n': if (!cur) return; composeAs('note'); break;
    case 'e': if (!cur) return; changeStatus(cur, 'resolved').then(() => toast('Resolved #' + cur.id)); break;
    case 'a': {
      if (!cur) return;
      const take = document.getElementById('take');
      const who = document.getElementById('conv-assignee');
      if (take) take.click(); else if (who) who.focus(); else return;
      break;
    }
    case '/': {
      const search = document.getElementById('message-search');
      if (!search) return;
      document.querySelector('.inbox')?.classList.add('show-filters');
      if (document.querySelector('.inbox')?.dataset.pane !== 'list') panes.toList();
      search.focus();
      break;
    }
    default: return;
  }
  ev.preventDefault();
});
