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
