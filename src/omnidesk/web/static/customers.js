/* omnidesk web UI: customer data and privacy on the contact panel, the
 * contact page and the company page (docs/customers.md). Loaded before
 * app.js; uses its helpers (h, clear, api, toast, fail, fmtTime, navigate, ME)
 * only when called. Same safety rule as app.js: API values go in as text.
 */
'use strict';

window.customers = (() => {
  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');
  const money = (n, cur) => (n === null || n === undefined) ? '' : Number(n).toFixed(2) + (cur ? ' ' + cur : '');

  function fieldInput(f, value) {
    const id = 'field-' + f.name;
    const attrs = { id, name: f.name, 'aria-label': f.label, 'data-type': f.type };
    if (f.type === 'enum') {
      return h('select', attrs, h('option', { value: '' }, '—'),
        f.choices.map(c => h('option', { value: c, selected: c === value }, c)));
    }
    if (f.type === 'boolean') {
      return h('select', attrs, h('option', { value: '' }, '—'),
        h('option', { value: 'true', selected: value === true }, 'yes'),
        h('option', { value: 'false', selected: value === false }, 'no'));
    }
    const type = { number: 'number', date: 'date' }[f.type] || 'text';
    return h('input', { ...attrs, type, step: f.type === 'number' ? 'any' : null, size: 14, value: value === undefined || value === null ? '' : String(value) });
  }

  // The contact panel's customer part: typed fields (editable), company, purchases.
  function panel(contact, reload) {
    if (contact.erased_at) return h('div', { class: 'customer', id: 'customer' }, h('p', { class: 'muted' }, 'Erased ' + fmtTime(contact.erased_at) + ': no customer data is kept.'));
    const box = h('div', { class: 'customer', id: 'customer' }, h('div', { class: 'muted small' }, 'loading customer data…'));
    load(contact, box, reload);
    return box;
  }

  async function load(contact, box, reload) {
    let v;
    try { v = await api('GET', '/contacts/' + contact.id + '/customer'); } catch (e) { clear(box).append(h('p', { class: 'error' }, e.message)); return; }
    const attrs = contact.attributes || {};
    // Typed fields are edited here: the free-form attribute list above leaves them out.
    const typed = new Set(v.fields.contact.map(f => f.name));
    const free = box.parentElement && box.parentElement.querySelector('#attributes');
    if (free) for (const tr of [...free.querySelectorAll('tr')]) if (typed.has((tr.firstChild || {}).textContent)) tr.remove();
    const err = h('p', { class: 'error', id: 'fields-error', hidden: true });
    const company = h('input', { type: 'text', id: 'field-company', size: 14, 'aria-label': 'company', value: v.company ? v.company.name : '', placeholder: 'company' });
    const rows = v.fields.contact.map(f => h('tr', {}, h('th', {}, h('label', { for: 'field-' + f.name }, f.label)), h('td', {}, fieldInput(f, attrs[f.name]))));
    const save = h('button', { id: 'fields-save', onclick: async () => {
      const fields = {};
      for (const f of v.fields.contact) {
        const el = box.querySelector('#field-' + f.name);
        fields[f.name] = el.value === '' ? null : el.value;
      }
      try {
        await api('PUT', '/contacts/' + contact.id + '/fields', { fields, company: company.value.trim() });
        toast('Saved'); reload();
      } catch (e) { err.hidden = false; err.textContent = e.message; }
    } }, 'Save');
    clear(box).append(h('h3', {}, 'Customer'),
      h('table', { class: 'kv fields', id: 'fields' },
        h('tr', {}, h('th', {}, h('label', { for: 'field-company' }, 'Company')), h('td', {}, company, ' ',
          v.company ? h('a', { href: '/companies/' + v.company.id, id: 'company-link' }, 'open') : null)),
        v.company ? Object.entries(v.company.attributes || {}).map(([k, x]) => h('tr', { class: 'company-field' }, h('th', {}, (v.fields.company.find(f => f.name === k) || { label: k }).label), h('td', {}, String(x)))) : null,
        rows),
      h('div', { class: 'form-row' }, save), err);
    const o = v.orders;
    box.append(h('h3', {}, 'Purchases'), h('table', { class: 'kv', id: 'purchases' },
      h('tr', {}, h('th', {}, 'Orders'), h('td', {}, String(o.count), o.open ? h('span', { class: 'badge open-orders' }, o.open + ' open') : null)),
      o.count ? [
        h('tr', {}, h('th', {}, 'Total'), h('td', {}, money(o.total, o.currency))),
        h('tr', {}, h('th', {}, 'Last order'), h('td', {}, fmtTime(o.last_at))),
        h('tr', {}, h('th', {}, 'Last 12 months'), h('td', {}, o.per_year + ' orders')),
      ] : null));
  }

  function describe(item) {
    switch (item.type) {
      case 'message': return [channelBadge(item.channel), ' ', item.direction === 'in' ? (item.sender_name || 'customer') : (item.author || 'agent'), ': ', item.text];
      case 'note': return [h('span', { class: 'badge' }, 'note'), ' ', item.author || '', ': ', item.text];
      case 'status': return [h('span', { class: 'badge' }, 'status'), ' ', (item.from || '') + ' → ' + (item.to || ''), ' by ', item.actor];
      case 'rating': return [h('span', { class: 'badge' }, 'rating'), ' ', item.rating + '/' + item.scale, item.loyalty_score !== null ? ' · loyalty ' + item.loyalty_score : '', item.comment ? ' · ' + item.comment : ''];
      default: {
        const order = item.kind === 'order';
        return [h('span', { class: 'badge event' }, item.kind), ' ', item.external_id ? '#' + item.external_id + ' ' : '',
          order ? money(item.amount, item.currency) : '', item.status ? ' · ' + item.status : '',
          (item.items || []).length ? ' · ' + item.items.length + ' item(s)' : ''];
      }
    }
  }

  // The contact page: the timeline, then export and erase.
  function page(c, detail, reload) {
    const list = h('ol', { class: 'timeline', id: 'timeline' });
    const more = h('button', { id: 'timeline-more', hidden: true }, 'Older…');
    let next = null;
    async function fetchPage() {
      try {
        const r = await api('GET', '/contacts/' + c.id + '/timeline?limit=25' + (next ? '&before=' + encodeURIComponent(next) : ''));
        list.append(...r.items.map(i => h('li', { class: 'tl-' + i.type, 'data-type': i.type },
          h('span', { class: 'muted small when' }, fmtTime(i.at)), ' ',
          i.conversation_id ? h('a', { href: '/inbox/c/' + i.conversation_id, class: 'small' }, '#' + i.conversation_id) : null, ' ',
          describe(i))));
        if (!r.items.length && !next) list.append(h('li', { class: 'muted' }, 'nothing yet'));
        next = r.next; more.hidden = !next;
      } catch (e) { fail(e); }
    }
    more.addEventListener('click', fetchPage);
    detail.append(h('div', { class: 'card' }, h('h3', {}, 'Timeline'), h('p', { class: 'muted small' }, 'Messages on every channel, notes, status changes, ratings and orders; newest first.'), list, more));
    fetchPage();
    if (ME.role === 'admin' || ME.role === 'supervisor') {
      const privacy = h('div', { class: 'card', id: 'privacy' }, h('h3', {}, 'Privacy'),
        h('p', {}, h('a', { href: '/api/v1/contacts/' + c.id + '/export', id: 'export-link', download: 'contact-' + c.id + '.zip' }, 'Export everything about this contact (ZIP)')),
        ME.role === 'admin' ? h('p', { class: 'small' }, h('a', { href: '/privacy' }, 'Retention policies and runs')) : null);
      if (ME.role === 'admin' && !c.erased_at) {
        privacy.append(h('p', { class: 'muted small' }, 'Erasing deletes identities, fields, events, attachments and search entries and redacts or removes the messages. It cannot be undone.'),
          h('button', { class: 'danger', id: 'erase', onclick: async () => {
            const typed = prompt('Erase contact #' + c.id + ' (' + (c.name || '') + ')? This cannot be undone. Type the contact number to confirm:');
            if (typed === null) return;
            if (typed.trim() !== String(c.id)) { toast('Not erased: the number did not match'); return; }
            try { await api('DELETE', '/contacts/' + c.id + '?confirm=' + c.id); toast('Contact erased'); reload(); } catch (e) { fail(e); }
          } }, 'Erase contact…'));
      }
      if (c.erased_at) privacy.append(h('p', { class: 'error', id: 'erased' }, 'Erased ' + fmtTime(c.erased_at)));
      detail.append(privacy);
    }
  }

  // /companies/{id}: the company, its contacts and their conversations.
  async function company() {
    const id = Number(location.pathname.split('/')[2]);
    clear(main);
    let c;
    try { c = await api('GET', '/companies/' + id); } catch (e) { main.append(h('div', { class: 'empty error' }, e.message)); return; }
    const labels = Object.fromEntries((c.fields || []).map(f => [f.name, f.label]));
    main.append(h('div', { class: 'page company', id: 'company' },
      h('div', { class: 'card' }, h('h2', {}, c.name), c.domain ? h('div', { class: 'muted' }, c.domain) : null,
        h('table', { class: 'kv', id: 'company-fields' }, Object.entries(c.attributes).map(([k, v]) => h('tr', {}, h('th', {}, labels[k] || k), h('td', {}, String(v)))))),
      h('div', { class: 'card' }, h('h3', {}, 'Contacts'), h('ul', { id: 'company-contacts' },
        c.contacts.map(x => h('li', {}, h('a', { href: '/contacts/' + x.id }, x.name || '#' + x.id))))),
      h('div', { class: 'card' }, h('h3', {}, 'Conversations'), h('table', { class: 'grid', id: 'company-conversations' },
        c.conversations.map(x => h('tr', {}, h('td', {}, h('a', { href: '/inbox/c/' + x.id }, '#' + x.id)), h('td', {}, x.contact_name || ''),
          h('td', {}, channelBadge(x.channel)), h('td', {}, x.subject || x.last_preview || ''), h('td', {}, x.status),
          h('td', { class: 'muted small' }, fmtTime(x.last_message_at || x.created_at))))))));
  }

  // The contacts page: find contacts by typed fields (supervisors and admins).
  function finder() {
    if (ME.role !== 'admin' && ME.role !== 'supervisor') return null;
    const card = h('div', { class: 'card', id: 'field-finder' }, h('h3', {}, 'Find by field'));
    const field = h('select', { id: 'find-field', 'aria-label': 'field' });
    const op = h('select', { id: 'find-op', 'aria-label': 'comparison' }, ['=', '!=', '>', '>=', '<', '<=', '~'].map(o => h('option', { value: o }, o === '~' ? 'contains' : o)));
    const value = h('input', { type: 'text', id: 'find-value', size: 10, 'aria-label': 'value' });
    const company = h('input', { type: 'text', id: 'find-company', size: 12, placeholder: 'company (optional)', 'aria-label': 'company' });
    const out = h('ul', { class: 'results', id: 'find-results' });
    const go = async () => {
      const params = new URLSearchParams();
      if (field.value && value.value.trim()) params.append('where', field.value + op.value + value.value.trim());
      if (company.value.trim()) params.append('company', company.value.trim());
      try {
        const r = await api('GET', '/customers/find?' + params.toString());
        clear(out).append(...r.items.map(c => h('li', { 'data-contact-id': c.id, onclick: () => navigate('/contacts/' + c.id) },
          h('strong', {}, c.name || '#' + c.id), ' ', h('span', { class: 'muted small' }, field.value ? String(c.attributes[field.value] ?? '') : ''))));
        if (!r.items.length) out.append(h('li', { class: 'muted' }, 'no match'));
      } catch (e) { clear(out).append(h('li', { class: 'error' }, e.message)); }
    };
    card.append(h('div', { class: 'form-row' }, field, op, value), h('div', { class: 'form-row' }, company, h('button', { id: 'find-go', onclick: go }, 'Find')), out);
    api('GET', '/customer-fields').then(f => {
      field.append(...f.contact.map(x => h('option', { value: x.name }, x.label)));
      if (!f.contact.length) card.hidden = true;
    }).catch(() => { card.hidden = true; });
    return card;
  }

  // /privacy: the retention policies, their runs, a dry run or a run now (admins).
  async function retention() {
    clear(main);
    const box = h('div', { class: 'page', id: 'retention' });
    main.append(box);
    let r;
    try { r = await api('GET', '/privacy/retention'); } catch (e) { box.append(h('div', { class: 'empty error' }, e.message)); return; }
    const report = h('div', { id: 'retention-report' });
    const run = async (name, dry) => {
      if (!dry && !confirm('Run the retention policy "' + name + '" now? What it covers is deleted or redacted.')) return;
      clear(report).append(h('p', { class: 'muted' }, (dry ? 'Dry run of ' : 'Running ') + name + '…'));
      try {
        const x = await api('POST', '/privacy/retention/' + encodeURIComponent(name) + '/run?dry_run=' + dry);
        clear(report).append(h('p', { class: 'run-result' }, h('strong', {}, name), ': ', dry ? 'would ' + x.action : { delete: 'deleted', redact: 'redacted' }[x.action], ' ',
          plural(x.conversations, 'conversation') + ', ' + plural(x.messages, 'message') + ' (run ' + x.id + ')'),
          x.ids.length ? h('p', { class: 'muted small' }, 'conversations: ', x.ids.slice(0, 200).map(i => [h('a', { href: '/inbox/c/' + i }, '#' + i), ' '])) : null);
        retentionRuns(runs);
      } catch (e) { clear(report).append(h('p', { class: 'error' }, e.message)); }
    };
    const runs = h('table', { class: 'grid', id: 'retention-runs' });
    box.append(h('div', { class: 'card' }, h('h2', {}, 'Retention'),
      h('p', { class: 'muted small' }, 'Policies are set in the config ([privacy.retention.NAME]); the scheduler runs them every ' + Math.round(r.every_seconds / 3600) + ' h. Try one with a dry run first.'),
      r.policies.length ? h('table', { class: 'grid', id: 'retention-policies' },
        h('tr', {}, ['policy', 'older than', 'action', 'channels', 'categories', ''].map(x => h('th', {}, x))),
        r.policies.map(p => h('tr', {}, h('td', {}, p.name), h('td', {}, p.days + ' days'), h('td', {}, p.action),
          h('td', {}, p.channels.join(', ') || 'any'), h('td', {}, p.categories.join(', ') || 'any'),
          h('td', {}, h('button', { class: 'dry-run', onclick: () => run(p.name, true) }, 'Dry run'), ' ',
            h('button', { class: 'danger run-now', onclick: () => run(p.name, false) }, 'Run now')))))
        : h('p', {}, 'No retention policy is configured.'),
      report),
      h('div', { class: 'card' }, h('h3', {}, 'Runs'), runs));
    fillRuns(runs, r.runs);
  }

  async function retentionRuns(table) {
    try { fillRuns(table, (await api('GET', '/privacy/retention')).runs); } catch (e) { fail(e); }
  }

  function fillRuns(table, items) {
    clear(table).append(h('tr', {}, ['run', 'policy', 'kind', 'conversations', 'messages', 'by', 'when'].map(x => h('th', {}, x))),
      ...items.map(x => h('tr', {}, h('td', {}, String(x.id)), h('td', {}, x.policy), h('td', {}, x.dry_run ? 'dry run' : x.action),
        h('td', {}, String(x.conversations)), h('td', {}, String(x.messages)), h('td', {}, x.actor), h('td', {}, fmtTime(x.started_at)))));
  }

  return { panel, page, company, finder, retention };
})();
