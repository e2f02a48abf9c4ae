/* omnidesk web UI: a channel's badge, its name with a small icon of its type.
 *
 * The page's boot data maps each configured channel's name to its type
 * (smtp, telegram, whatsapp...). The icons are simple monochrome marks drawn
 * here in SVG (currentColor, 16x16), not the providers' logos; a channel of a
 * type not listed (a drop-in adapter) or no longer configured gets the
 * generic mark. Each icon is labelled with the type's name for screen readers
 * and as a tooltip.
 */
'use strict';

const CHANNEL_TYPES = (() => {
  try { return JSON.parse(document.getElementById('boot').textContent).channels || {}; } catch (e) { return {}; }
})();

// [label, ...shapes]; a shape is [tag, attributes]. Strokes unless fill is set.
const CHANNEL_ICONS = {
  email: ['Email',
    ['rect', { x: 1.8, y: 3.3, width: 12.4, height: 9.4, rx: 1.2 }],
    ['path', { d: 'M2.3 4 8 8.6 13.7 4' }]],
  telegram: ['Telegram',
    ['path', { d: 'M14.2 2.2 1.6 7.2l4.1 1.5 1.6 4.7 2.3-2.7 3.4 2.6z' }],
    ['path', { d: 'M5.7 8.7 14.2 2.2' }]],
  slack: ['Slack',
    ['path', { d: 'M6 2v12M10 2v12M2 6h12M2 10h12' }]],
  messenger: ['Messenger',
    ['path', { d: 'M8 1.8c-3.5 0-6.2 2.5-6.2 5.8 0 1.8.8 3.4 2.2 4.5v2.4l2.1-1.2c.6.2 1.2.3 1.9.3 3.5 0 6.2-2.5 6.2-5.8S11.5 1.8 8 1.8z' }],
    ['path', { d: 'm4.6 9.3 2.4-2.5 2 1.7 2.4-2.5' }]],
  instagram: ['Instagram',
    ['rect', { x: 2, y: 2, width: 12, height: 12, rx: 3.5 }],
    ['circle', { cx: 8, cy: 8, r: 2.8 }],
    ['circle', { cx: 11.6, cy: 4.4, r: 0.8, fill: 'currentColor', stroke: 'none' }]],
  whatsapp: ['WhatsApp',
    ['path', { d: 'M8 1.8a6.2 6.2 0 0 0-5.3 9.4L1.8 14.2l3.1-.8A6.2 6.2 0 1 0 8 1.8z' }],
    ['path', { d: 'M5.6 5.2c-.2 2.6 2.3 5.2 5 5l.6-1.2-1.4-.8-.7.6c-.9-.4-1.6-1.1-2-2l.6-.7-.8-1.4z', fill: 'currentColor', stroke: 'none' }]],
  webchat: ['Website chat',
    ['path', { d: 'M2.3 2.8h11.4v8h-6.2l-3.3 2.6v-2.6H2.3z' }],
    ['circle', { cx: 5.2, cy: 6.8, r: 0.8, fill: 'currentColor', stroke: 'none' }],
    ['circle', { cx: 8, cy: 6.8, r: 0.8, fill: 'currentColor', stroke: 'none' }],
    ['circle', { cx: 10.8, cy: 6.8, r: 0.8, fill: 'currentColor', stroke: 'none' }]],
  api: ['HTTP API',
    ['path', { d: 'M5 4.5 1.8 8 5 11.5M11 4.5 14.2 8 11 11.5M9.3 3 6.7 13' }]],
  wechat: ['WeChat Official Account',
    ['path', { d: 'M6.3 2.4C3.6 2.4 1.5 4.2 1.5 6.4c0 1.2.6 2.3 1.7 3l-.4 1.5 1.7-.9c.6.2 1.2.3 1.8.3' }],
    ['path', { d: 'M10.4 6.4c2.3 0 4.1 1.5 4.1 3.4 0 1-.5 1.9-1.4 2.5l.3 1.3-1.5-.8c-.5.1-1 .2-1.5.2-2.3 0-4.1-1.5-4.1-3.3s1.8-3.3 4.1-3.3z' }],
    ['path', { d: 'M11.1 6.4c-.3-2.3-2.3-4-4.8-4' }],
    ['circle', { cx: 4.7, cy: 5.3, r: 0.6, fill: 'currentColor', stroke: 'none' }],
    ['circle', { cx: 7.6, cy: 5.3, r: 0.6, fill: 'currentColor', stroke: 'none' }]],
  wechat_kf: ['WeChat customer service',
    ['path', { d: 'M3 9.5V8a5 5 0 0 1 10 0v1.5' }],
    ['rect', { x: 1.8, y: 8.6, width: 2.6, height: 4, rx: 1 }],
    ['rect', { x: 11.6, y: 8.6, width: 2.6, height: 4, rx: 1 }],
    ['path', { d: 'M12.9 12.6c0 1.1-1.4 1.8-3.4 1.8H8' }]],
  x: ['X',
    ['path', { d: 'M2.5 2.5h3.3l7.7 11h-3.3zM13.2 2.5 9.2 7M6.8 9 2.8 13.5' }]],
  sms: ['SMS',
    ['rect', { x: 4.2, y: 1.5, width: 7.6, height: 13, rx: 1.5 }],
    ['path', { d: 'M6.4 5h3.2M6.4 7.5h3.2M7.3 12.3h1.4' }]],
  qq: ['QQ',
    ['path', { d: 'M8 1.8c-2.2 0-3.6 1.7-3.6 4 0 .5 0 .9.1 1.3-.8 1-1.6 2.4-1.6 3.6 0 .7.3.9.8.5l.6-.6c.3.8.8 1.4 1.4 1.9-.8.3-1.2.7-1.2 1 0 .5 1 .8 2.2.8.6 0 1-.1 1.3-.3.3.2.7.3 1.3.3 1.2 0 2.2-.3 2.2-.8 0-.3-.4-.7-1.2-1 .6-.5 1.1-1.1 1.4-1.9l.6.6c.5.4.8.2.8-.5 0-1.2-.8-2.6-1.6-3.6.1-.4.1-.8.1-1.3 0-2.3-1.4-4-3.6-4z' }]],
  other: ['Channel',
    ['circle', { cx: 8, cy: 8, r: 2.2 }],
    ['path', { d: 'M8 1.8v3.9M8 10.3v3.9M1.8 8h3.9M10.3 8h3.9' }]],
};
const CHANNEL_ICON_OF = { smtp: 'email', imap: 'email', email: 'email' };
const SVG_NS = 'http://www.w3.org/2000/svg';

// The icon of a channel type (an <svg> element, labelled with the type's name).
function channelIcon(type) {
  const key = CHANNEL_ICON_OF[type] || (Object.hasOwn(CHANNEL_ICONS, type) ? type : 'other');
  const [label, ...shapes] = CHANNEL_ICONS[key];
  const name = key === 'other' ? (type ? type + ' channel' : 'channel') : label;
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const [k, v] of Object.entries({ viewBox: '0 0 16 16', width: 14, height: 14, fill: 'none', stroke: 'currentColor',
    'stroke-width': 1.4, 'stroke-linecap': 'round', 'stroke-linejoin': 'round', role: 'img', 'aria-label': name,
    class: 'channel-icon', 'data-icon': key })) svg.setAttribute(k, String(v));
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = name;
  svg.append(title);
  for (const [tag, attrs] of shapes) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
  }
  return svg;
}

// A channel's badge: its type's icon and its name (the channel's own name,
// e.g. "support-mail"); the type comes from the boot data.
function channelBadge(name) {
  const type = CHANNEL_TYPES[name] || '';
  return h('span', { class: 'badge channel', 'data-channel-type': type || 'unknown' }, channelIcon(type), name || '');
}
