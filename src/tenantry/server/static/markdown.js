// A small Markdown renderer that builds DOM nodes with createElement and textContent and
// never turns the text into HTML: whatever a model (or anyone) writes stays text, so markup
// in a reply cannot run or load anything. It knows what models answer with: paragraphs,
// **bold**, *italics*, `inline code`, fenced code blocks, - and 1. lists, # headings and
// [links](https://...) (only http, https and mailto; they open with rel=noopener).
"use strict";

const SAFE_SCHEMES = ["http:", "https:", "mailto:"];

// Each inline rule: a pattern (global, sticky-free) and how to build its node from a match.
const INLINE = [
  { re: /`([^`\n]+)`/, build: (m) => el("code", m[1]) },
  { re: /\[([^\]\n]+)\]\(([^()\s]+)\)/, build: (m) => link(m[2], m[1]) ?? document.createTextNode(m[0]) },
  { re: /\*\*(?=\S)([^\n]*?\S)\*\*/, build: (m) => wrap("strong", m[1]) },
  { re: /(?<![\w])__(?=\S)([^\n]*?\S)__(?![\w])/, build: (m) => wrap("strong", m[1]) },
  { re: /(?<![*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![*\w])/, build: (m) => wrap("em", m[1]) },
  { re: /(?<![\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![\w])/, build: (m) => wrap("em", m[1]) },
  { re: /\b(?:https?:\/\/|mailto:)[^\s<>()]*[^\s<>().,;:!?'"]/, build: (m) => link(m[0], m[0]) ?? document.createTextNode(m[0]) },
];

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

function wrap(tag, text) {
  const node = el(tag);
  node.append(...inline(text));
  return node;
}

// Give an <a> for `href` if it is an absolute http(s) or mailto URL, else null.
function link(href, label) {
  let url;
  try {
    url = new URL(href);
  } catch (_) {
    return null;
  }
  if (!SAFE_SCHEMES.includes(url.protocol)) return null;
  const a = el("a", label);
  a.href = url.href;
  a.rel = "noopener noreferrer";
  a.target = "_blank";
  return a;
}

// Give the nodes of one line's (or one span's) inline markup.
export function inline(text) {
  const nodes = [];
  let rest = text;
  while (rest) {
    let best = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { rule, m };
    }
    if (best === null) {
      nodes.push(document.createTextNode(rest));
      break;
    }
    if (best.m.index > 0) nodes.push(document.createTextNode(rest.slice(0, best.m.index)));
    nodes.push(best.rule.build(best.m));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
  return nodes;
}

const FENCE = /^\s*(```|~~~)/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*(\d{1,9})[.)]\s+(.*)$/;
const HEADING = /^\s*#{1,6}\s+(.*)$/;

// Give a DocumentFragment holding `text` rendered as Markdown.
export function renderMarkdown(text) {
  const out = document.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
    } else if (FENCE.test(line)) {
      const fence = line.match(FENCE)[1];
      const body = [];
      for (i += 1; i < lines.length && !lines[i].trim().startsWith(fence); i += 1) body.push(lines[i]);
      i += 1; // the closing fence (or the end of an unclosed block)
      const pre = el("pre");
      pre.appendChild(el("code", body.join("\n")));
      out.appendChild(pre);
    } else if (BULLET.test(line) || NUMBERED.test(line)) {
      const numbered = !BULLET.test(line);
      const pattern = numbered ? NUMBERED : BULLET;
      const list = el(numbered ? "ol" : "ul");
      if (numbered) {
        const first = Number(line.match(NUMBERED)[1]);
        if (first !== 1) list.start = first;
      }
      for (; i < lines.length && pattern.test(lines[i]); i += 1) {
        const item = el("li");
        item.append(...inline(lines[i].match(pattern)[numbered ? 2 : 1]));
        list.appendChild(item);
      }
      out.appendChild(list);
    } else if (HEADING.test(line)) {
      const p = el("p");
      p.appendChild(wrap("strong", line.match(HEADING)[1]));
      out.appendChild(p);
      i += 1;
    } else {
      const p = el("p");
      for (let first = true; i < lines.length && lines[i].trim() && !startsBlock(lines[i]); i += 1) {
        if (!first) p.appendChild(el("br"));
        p.append(...inline(lines[i]));
        first = false;
      }
      out.appendChild(p);
    }
  }
  return out;
}

function startsBlock(line) {
  return FENCE.test(line) || BULLET.test(line) || NUMBERED.test(line) || HEADING.test(line);
}
