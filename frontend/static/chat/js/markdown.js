// Markdown for answers: markdown-it with raw HTML disabled, then DOMPurify on its output.
// Either layer alone should stop a model (or a user it quotes) from injecting markup; both
// together, behind the page's Content-Security-Policy, make that very unlikely.
//
// Streaming: StreamingMarkdown keeps the raw text in a buffer. Deltas only append to it; the
// DOM is rendered at most once per animation frame (FrameScheduler), and only the unfinished
// tail is rendered again: blocks that a blank line (outside a code fence) has closed are
// rendered once and frozen. When the answer ends, its final text is rendered whole.

import MarkdownIt from "../../vendor/markdown-it.esm.min.js";
import DOMPurify from "../../vendor/purify.es.js";

const md = new MarkdownIt({ html: false, linkify: true, typographer: false, breaks: false });
// No images from answers: they would load from anywhere (tracking) and the CSP blocks them.
// `![alt](url)` then renders as "!" followed by an ordinary link.
md.disable("image");

md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet("target", "_blank");
  tokens[idx].attrSet("rel", "noopener noreferrer nofollow ugc");
  return self.renderToken(tokens, idx, options);
};
// Table alignment arrives as style="text-align:x"; the CSP forbids inline styles: use classes.
for (const rule of ["th_open", "td_open"]) {
  md.renderer.rules[rule] = (tokens, idx, options, env, self) => {
    const token = tokens[idx];
    const style = token.attrGet("style") || "";
    const align = /text-align:(left|right|center)/.exec(style);
    token.attrs = (token.attrs || []).filter(([name]) => name !== "style");
    if (align) token.attrJoin("class", `align-${align[1]}`);
    return self.renderToken(tokens, idx, options);
  };
}

const PURIFY_CONFIG = {
  ALLOWED_TAGS: [
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "s", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "start", "class", "target", "rel"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow ugc");
  }
});

/** Markdown source -> sanitised HTML string (used by tests and for one-off rendering). */
export function renderMarkdownToString(source) {
  return DOMPurify.sanitize(md.render(source), { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: false });
}

/**
 * Markdown source -> a sanitised DocumentFragment, decorated (code headers, table wrappers).
 * `cite(n)`, when given, turns each `[n]` in the text into a link to source n: it returns the
 * link's target element id, or null (no such source: the `[n]` stays plain text).
 */
export function renderMarkdown(source, strings, cite = null) {
  const fragment = DOMPurify.sanitize(md.render(source), PURIFY_CONFIG);
  decorate(fragment, strings);
  if (cite) linkCitations(fragment, cite);
  return fragment;
}

const CITATION = /\[(\d{1,3})\]/g;

/**
 * Citations `[1]`, `[2]`… in the already sanitised text become links to their source. Only
 * text nodes are read, and the links are made here (textContent and a fragment href only), so
 * nothing a model writes can become markup; text inside code, pre and links stays as it is.
 */
export function linkCitations(root, cite) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) =>
      node.parentElement?.closest("code, pre, a") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT,
  });
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.nodeValue.includes("[")) texts.push(node);
  }
  for (const node of texts) {
    const value = node.nodeValue;
    const parts = [];
    let last = 0;
    for (const match of value.matchAll(CITATION)) {
      const target = cite(Number(match[1]));
      if (!target) continue;
      parts.push(document.createTextNode(value.slice(last, match.index)));
      const link = document.createElement("a");
      link.className = "cite";
      link.href = `#${target}`;
      link.dataset.source = match[1];
      link.textContent = match[0];
      parts.push(link);
      last = match.index + match[0].length;
    }
    if (!parts.length) continue;
    parts.push(document.createTextNode(value.slice(last)));
    node.replaceWith(...parts);
  }
}

/** Wrap code blocks with a language label and a copy button, and tables in a scroller. */
function decorate(fragment, strings) {
  for (const pre of fragment.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const lang = /(?:^|\s)language-([\w+#.-]{1,30})/.exec(code?.className || "")?.[1] || "";
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    const head = document.createElement("div");
    head.className = "code-head";
    const label = document.createElement("span");
    label.className = "code-lang";
    label.textContent = lang;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code";
    button.textContent = strings?.copy ?? "Copy";
    button.setAttribute("aria-label", strings?.copyAria ?? "Copy this code");
    head.append(label, button);
    pre.tabIndex = 0; // a scrollable region must be reachable by keyboard
    pre.replaceWith(wrap);
    wrap.append(head, pre);
  }
  for (const table of fragment.querySelectorAll("table")) {
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.tabIndex = 0;
    table.replaceWith(wrap);
    wrap.append(table);
  }
}

/** Copy a code block's text (event delegation target: any .copy-code button). */
export async function copyCode(button, strings) {
  const code = button.closest(".code-block")?.querySelector("pre")?.textContent ?? "";
  let ok = false;
  try {
    await navigator.clipboard.writeText(code);
    ok = true;
  } catch {
    // No async clipboard outside secure contexts: select the text and use the old command.
    const area = document.createElement("textarea");
    area.value = code;
    area.setAttribute("readonly", "");
    area.className = "clipboard-helper";
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
  }
  if (ok) {
    button.textContent = strings?.copied ?? "Copied";
    button.classList.add("copied");
    setTimeout(() => {
      button.textContent = strings?.copy ?? "Copy";
      button.classList.remove("copied");
    }, 1500);
  }
}

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * One streaming answer's Markdown. append() is cheap (string concat); render() updates the DOM
 * and is called by the FrameScheduler at most once per frame; finish() renders the final text.
 */
export class StreamingMarkdown {
  constructor(container, strings) {
    this.container = container;
    this.strings = strings;
    this.frozen = document.createElement("div");
    this.frozen.className = "md-frozen";
    this.tail = document.createElement("div");
    this.tail.className = "md-tail";
    this.container.replaceChildren(this.frozen, this.tail);
    this.raw = "";
    this.frozenUpTo = 0; // raw[0:frozenUpTo] is rendered in this.frozen
    this.scanPos = 0; // raw[0:scanPos] is split into complete lines already scanned
    this.fence = null; // the open fence marker at scanPos, if inside a code fence
    this.boundary = 0; // the latest block start after a blank line outside any fence
    this.dirty = false;
    this.done = false;
    this.cite = null; // (n) -> the element id of source n, or null (see renderMarkdown)
  }

  get text() {
    return this.raw;
  }

  append(text) {
    if (this.done) return;
    this.raw += text;
    this.dirty = true;
  }

  /** Replace the whole text (a streaming answer from history). */
  setText(text) {
    this.raw = text;
    this.frozen.replaceChildren();
    this.frozenUpTo = this.scanPos = this.boundary = 0;
    this.fence = null;
    this.dirty = true;
  }

  _scan() {
    const raw = this.raw;
    let nl;
    while ((nl = raw.indexOf("\n", this.scanPos)) !== -1) {
      const line = raw.slice(this.scanPos, nl);
      const fence = FENCE.exec(line);
      if (this.fence) {
        const closing = fence && fence[1][0] === this.fence[0] && fence[1].length >= this.fence.length;
        if (closing && line.trim() === fence[1]) this.fence = null;
      } else if (fence) {
        this.fence = fence[1];
      } else if (line.trim() === "") {
        this.boundary = nl + 1;
      }
      this.scanPos = nl + 1;
    }
  }

  /** Bring the DOM up to date with the buffer (once per frame at most). */
  render() {
    if (!this.dirty || this.done) return;
    this.dirty = false;
    this._scan();
    if (this.boundary > this.frozenUpTo) {
      const chunk = this.raw.slice(this.frozenUpTo, this.boundary);
      this.frozen.append(renderMarkdown(chunk, this.strings, this.cite));
      this.frozenUpTo = this.boundary;
    }
    this.tail.replaceChildren(
      renderMarkdown(this.raw.slice(this.frozenUpTo), this.strings, this.cite),
    );
  }

  /** The answer ended: render its authoritative final text in one piece. */
  finish(text = this.raw) {
    this.raw = text;
    this.done = true;
    this.dirty = false;
    this.container.replaceChildren(renderMarkdown(text, this.strings, this.cite));
  }

  /** Render again what is shown (the sources arrived, so its citations can link now). */
  refresh() {
    if (this.done) this.finish(this.raw);
    else this.setText(this.raw);
  }
}

/**
 * Runs `callback` in an animation frame when requested, at most once per frame, and backs off
 * when a render is slow (it waits about twice the last render's time), so a long answer
 * streaming quickly never holds the main thread for long.
 */
export class FrameScheduler {
  constructor(callback) {
    this.callback = callback;
    this.scheduled = false;
    this.notBefore = 0;
    this.runs = 0; // renders done (the tests check that deltas are batched)
    this._run = this._run.bind(this);
  }

  request() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(this._run);
  }

  _run() {
    this.scheduled = false;
    const start = performance.now();
    if (start < this.notBefore) {
      this.request();
      return;
    }
    this.runs++;
    this.callback();
    const took = performance.now() - start;
    this.notBefore = took > 8 ? start + took * 2 : 0;
  }
}
