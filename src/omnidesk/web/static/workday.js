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
