// omnidesk: a small TOML highlighter for the rules editor (no library, no
// build step). It colours comments, table headers, keys, strings, numbers,
// booleans and dates line by line, carrying multi-line strings over; it
// never changes the text, so the coloured copy lies exactly under the
// textarea the admin types in.
'use strict';

const TOML_TOKEN = new RegExp([
  '(#.*$)',                                   // 1 comment
  '("""|\'\'\')',                             // 2 multi-line string opens
  '("(?:[^"\\\\]|\\\\.)*"?|\'[^\']*\'?)',    // 3 string
  '(\\b(?:true|false)\\b)',                   // 4 boolean
  '(\\d{4}-\\d{2}-\\d{2}(?:[T ][\\d:.]+(?:Z|[+-]\\d{2}:\\d{2})?)?)', // 5 date
  '([+-]?\\b\\d[\\d_]*(?:\\.\\d+)?(?:[eE][+-]?\\d+)?\\b)', // 6 number
].join('|'), 'g');

function tomlSpan(cls, text) {
  const s = document.createElement('span');
  s.className = 'tk-' + cls;
  s.textContent = text;
  return s;
}

// One line's nodes; ``state.open`` is the delimiter of a multi-line string
// still open from the lines before (or null).
function tomlLine(line, state) {
  const out = [];
  let rest = line;
  if (state.open) {
    const end = rest.indexOf(state.open);
    if (end < 0) return [tomlSpan('string', rest)];
    out.push(tomlSpan('string', rest.slice(0, end + 3)));
    rest = rest.slice(end + 3);
    state.open = null;
  }
  const header = /^(\s*)(\[\[?[^\]#]*\]\]?)(.*)$/.exec(rest);
  if (header && !out.length) {
    out.push(document.createTextNode(header[1]), tomlSpan('table', header[2]));
    rest = header[3];
  } else {
    const key = /^(\s*)([A-Za-z0-9_.\-"' ]+?)(\s*=)/.exec(rest);
    if (key && !out.length) {
      out.push(document.createTextNode(key[1]), tomlSpan('key', key[2]), document.createTextNode(key[3]));
      rest = rest.slice(key[0].length);
    }
  }
  let at = 0;
  TOML_TOKEN.lastIndex = 0;
  for (let m; (m = TOML_TOKEN.exec(rest));) {
    if (m.index > at) out.push(document.createTextNode(rest.slice(at, m.index)));
    if (m[1]) out.push(tomlSpan('comment', m[1]));
    else if (m[2]) {
      const close = rest.indexOf(m[2], m.index + 3);
      if (close < 0) { out.push(tomlSpan('string', rest.slice(m.index))); state.open = m[2]; at = rest.length; break; }
      out.push(tomlSpan('string', rest.slice(m.index, close + 3)));
      TOML_TOKEN.lastIndex = close + 3;
      at = close + 3;
      continue;
    } else if (m[3]) out.push(tomlSpan('string', m[3]));
    else if (m[4]) out.push(tomlSpan('bool', m[4]));
    else if (m[5]) out.push(tomlSpan('date', m[5]));
    else if (m[6]) out.push(tomlSpan('number', m[6]));
    at = m.index + m[0].length;
    if (m[0].length === 0) TOML_TOKEN.lastIndex++;
  }
  if (at < rest.length) out.push(document.createTextNode(rest.slice(at)));
  return out;
}

// The whole text as lines (one block each), problem lines marked with
// their reasons (``problems``: line number -> [reason, ...]).
function highlightToml(text, problems) {
  const frag = document.createDocumentFragment();
  const state = { open: null };
  text.split('\n').forEach((line, i) => {
    const el = document.createElement('span');
    el.className = 'tl';
    // One block per line; an empty one keeps its height with a zero-width space.
    el.append(...tomlLine(line, state), document.createTextNode(line ? '' : '\u200b'));
    const why = problems && problems.get(i + 1);
    if (why) {
      el.classList.add('problem');
      el.dataset.line = String(i + 1);
      const note = document.createElement('span');
      note.className = 'problem-note';
      note.textContent = '⚠ ' + why.join('; ');
      el.append(note);
    }
    frag.append(el);
  });
  return frag;
}
