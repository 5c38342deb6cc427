// Rendering of the room: the conversation, members, notices and connection banner.
// It knows nothing of WebSockets: room.js feeds it protocol frames that the client has already
// ordered and de-duplicated. Text from people (messages, questions, names, sources) is set
// with textContent, never as HTML; answers go through markdown.js (no raw HTML, then
// sanitised).

import { FrameScheduler, StreamingMarkdown, copyCode } from "./markdown.js";
import { formatFullTime, formatTime, t } from "./i18n.js";
import { AnswerVersions } from "./versions.js";

const AVATAR_COLOURS = 8;
// How long "… is typing" stays after a person's last `typing` frame (the server passes one per
// 2 s at most, the page sends one per 3 s while the person types).
const TYPING_SHOWN_MS = 6000;
const FINAL_STATUSES = new Set(["complete", "cancelled", "failed", "interrupted"]);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function initials(name) {
  const words = String(name || "?").trim().split(/\s+/).filter(Boolean);
  if (!words.length) return "?";
  const first = Array.from(words[0])[0] || "?";
  const second = words.length > 1 ? Array.from(words[1])[0] || "" : "";
  return (first + second).toUpperCase();
}

function colourIndex(id) {
  let hash = 0;
  for (const ch of String(id)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % AVATAR_COLOURS;
}

function avatar(user) {
  const node = el("span", `avatar avatar-c${colourIndex(user?.id ?? "")}`, initials(user?.name));
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** The element id of an answer's source n (1-based), which its `[n]` links to. */
export function sourceId(answerId, n) {
  return `src-${answerId}-${n}`;
}

const SVG = "http://www.w3.org/2000/svg";
// A thumb (drawn, not an emoji: not every system has a font with 👍).
const THUMB = "M7 10v11M7 10l4-8a2 2 0 0 1 2 2v5h5.5a2 2 0 0 1 2 2.3l-1.4 8a2 2 0 0 1-2 1.7H7M7 10H4.5a1 1 0 0 0-1 1v9a1 1 0 0 0 1 1H7";

function thumb(down) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "fb-icon");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", THUMB);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "1.9");
  path.setAttribute("stroke-linecap", "round");
  path.setAttribute("stroke-linejoin", "round");
  if (down) path.setAttribute("transform", "rotate(180 12 12)");
  svg.append(path);
  return svg;
}

function truncate(text, n) {
  const chars = Array.from(String(text).replace(/\s+/g, " ").trim());
  return chars.length > n ? `${chars.slice(0, n).join("")}…` : chars.join("");
}

export class RoomView {
  /**
   * @param {object} args
   * @param {object} args.elements  scroller, log, empty, members, memberCount, notices,
   *   announcer, jump, typing
   * @param {(answerId: string) => void} args.onStop
   * @param {(messageId: string) => void} [args.onRedact]  a moderator removes a message
   * @param {(user: object) => void} [args.onRemoveMember]  a moderator removes someone
   * @param {(user: object, role: string) => void} [args.onSetRole]  the owner names a role
   * @param {(answerId: string) => void} [args.onRegenerate]  a new version of an answer
   * @param {(answerId: string) => void} [args.onContinue]  carry on an answer cut short
   * @param {(questionId: string, text: string) => void} [args.onEdit]  send a question again
   * @param {(answerId: string, value: string|null) => void} [args.onFeedback]  👍 / 👎 / take back
   * @param {string} [args.assistantName]  what the room calls its assistant (blank: default)
   */
  constructor({
    elements,
    onStop,
    onRedact = () => {},
    onRemoveMember = () => {},
    onSetRole = () => {},
    onRegenerate = () => {},
    onContinue = () => {},
    onEdit = () => {},
    onFeedback = () => {},
    assistantName = "",
  }) {
    this.els = elements;
    this.onStop = onStop;
    this.onRedact = onRedact;
    this.onRemoveMember = onRemoveMember;
    this.onSetRole = onSetRole;
    this.onFeedback = onFeedback;
    this.mine = new Map(); // answer id -> "up" | "down": my own feedback
    this.oldestSeq = null; // the lowest seq shown: history pages go on from it
    this.access = null; // the welcome's `access`: {role, moderate, configure}
    this.assistantName = assistantName;
    this.me = null;
    this.said = new Map(); // id -> {node}: people's plain messages
    this.typists = new Map(); // user id -> {name, until}: who is typing now
    this.typingTimer = null;
    this.questions = new Map(); // id -> {node, turn, user, text}
    this.answers = new Map(); // id -> answer state (see _answerNode)
    this.members = [];
    this.stick = true; // follow new content while the reader is at the bottom
    this.lastTop = 0;
    this.scheduler = new FrameScheduler(() => this._renderFrame());
    this.streaming = new Set(); // answer states with unrendered text
    const askerOf = (questionId) => this.questions.get(questionId)?.user?.id;
    const isMine = (questionId) => Boolean(this.me && askerOf(questionId) === this.me.id);
    this.versions = new AnswerVersions({
      isMine,
      maySteer: (questionId) => isMine(questionId) || this._moderates(),
      onRegenerate,
      onContinue,
      onEdit,
    });

    this.els.scroller.addEventListener("scroll", () => this._onScroll(), { passive: true });
    new ResizeObserver(() => this._onResize()).observe(this.els.log);
    this.els.jump.addEventListener("click", () => this.scrollToBottom(true));
    this.els.log.addEventListener("click", (event) => {
      const copy = event.target.closest?.(".copy-code");
      if (copy) copyCode(copy, this._codeStrings());
      const cite = event.target.closest?.("a.cite");
      if (cite) {
        event.preventDefault();
        this.showSource(cite.getAttribute("href").slice(1));
      }
    });
  }

  // --- identity, history -------------------------------------------------------------------

  setMe(user) {
    this.me = user || null;
  }

  /** What we may do here (the welcome's `access`): moderators get Remove and Stop controls.
   *  Set before `reset`, which builds the controls; the member list is redrawn at once. */
  setAccess(access) {
    this.access = access || null;
    this.els.log.dataset.moderate = this._moderates() ? "true" : "false";
    this.setMembers(this.members);
  }

  _moderates() {
    return Boolean(this.access?.moderate);
  }

  /** Rebuild from a welcome's history (resumed: false): the old view is dropped whole. */
  reset(history = []) {
    this.questions.clear();
    this.answers.clear();
    this.said.clear();
    this.streaming.clear();
    this.versions.clear();
    this.oldestSeq = null;
    this.els.log.replaceChildren();
    this._addHistory(history);
    this._updateEmpty();
    this.stick = true;
    this.scrollToBottom(false);
  }

  /** Older messages (a history page, oldest first) above what is shown, the reader's place
   *  on the screen kept. Messages already shown are skipped. How many were added. */
  prependHistory(messages = []) {
    const fresh = messages.filter(
      (m) => !this.said.has(m.id) && !this.questions.has(m.id) && !this.answers.has(m.id),
    );
    const log = this.els.log;
    const scroller = this.els.scroller;
    const before = scroller.scrollHeight;
    const top = scroller.scrollTop;
    // Built in a list of their own (the add functions append to this.els.log), then moved.
    const older = document.createElement("ol");
    this.els.log = older;
    try {
      this._addHistory(fresh);
    } finally {
      this.els.log = log;
    }
    log.prepend(...older.children);
    this.stick = false;
    scroller.scrollTop = top + (scroller.scrollHeight - before);
    this.lastTop = scroller.scrollTop;
    for (const m of messages) this._seenSeq(m.seq);
    this._updateEmpty();
    return fresh.length;
  }

  _seenSeq(seq) {
    if (Number.isInteger(seq) && (this.oldestSeq === null || seq < this.oldestSeq)) this.oldestSeq = seq;
  }

  _addHistory(history) {
    for (const message of history) {
      this._seenSeq(message.seq);
      if (message.role === "message") {
        this._addSaid(message);
      } else if (message.role === "user") {
        this._addQuestion({
          id: message.id,
          user: message.user,
          text: message.text,
          created: message.created,
          edits: message.edits,
        });
      } else if (message.role === "assistant") {
        const state = this._addAnswer(message);
        if (message.redacted) {
          this._endAnswer(state, { status: message.status, text: "", error: message.error });
          this._redact(message.id);
          continue;
        }
        state.tracked = message.status === "streaming";
        if (message.feedback) this.setFeedback(message.id, message.feedback);
        if (Array.isArray(message.sources) && message.sources.length) {
          this._setSources(state, message.sources);
        }
        if (message.status === "streaming") {
          state.md.setText(message.text || "");
          state.gotText = Boolean(message.text);
          this._markDirty(state);
        } else {
          this._endAnswer(state, {
            status: message.status,
            text: message.text,
            error: message.error,
          });
        }
      }
      if (message.redacted) this._redact(message.id);
    }
  }

  // --- room events -------------------------------------------------------------------------

  /** Apply one room event (already ordered and de-duplicated by the protocol client). */
  applyEvent(frame) {
    switch (frame.type) {
      case "message": {
        this._addSaid(frame);
        this._stoppedTyping(frame.user?.id);
        this.announce(t("announce.message", { name: frame.user?.name ?? "", text: truncate(frame.text, 200) }));
        break;
      }
      case "question": {
        this._addQuestion(frame);
        this._stoppedTyping(frame.user?.id);
        this.announce(t("announce.question", { name: frame.user?.name ?? "", text: truncate(frame.text, 200) }));
        break;
      }
      case "answer.start":
        this._addAnswer(frame);
        break;
      case "answer.sources": {
        const state = this._answerFor(frame.answer_id);
        this._setSources(state, frame.sources || [], frame.query);
        break;
      }
      case "answer.delta": {
        const state = this._answerFor(frame.answer_id);
        if (state.done || state.redacted || typeof frame.text !== "string") break;
        state.md.append(frame.text);
        if (!state.gotText) {
          state.gotText = true;
          this._updateAnswerState(state);
        }
        this._markDirty(state);
        break;
      }
      case "message.redacted": {
        if (this._redact(frame.id)) this.announce(t("announce.redacted"));
        break;
      }
      case "answer.feedback":
        this.setFeedback(frame.answer_id, frame);
        break;
      case "answer.end": {
        const state = this._answerFor(frame.answer_id);
        if (state.redacted) {
          this._endAnswer(state, { ...frame, text: "" });
          break;
        }
        this._endAnswer(state, frame);
        const text = truncate(state.body.textContent, 300);
        this.announce(
          frame.status === "complete"
            ? t("announce.answer", { text })
            : t("announce.answerStatus", { status: t(`status.${frame.status}`), text }),
        );
        break;
      }
      default:
        break;
    }
    this._updateEmpty();
  }

  /** A person's plain message: a chat bubble with their name (no answer follows it). */
  _addSaid(m) {
    if (this.said.has(m.id)) return this.said.get(m.id);
    const mine = Boolean(this.me && m.user && m.user.id === this.me.id);
    const turn = el("li", "turn chat");
    turn.dataset.messageId = m.id;
    const node = el("article", `msg said${mine ? " mine" : ""}`);
    node.id = `msg-${m.id}`;
    node.dataset.id = m.id;
    const main = el("div", "msg-main");
    const head = this._head(m.user, m.created, mine);
    const text = el("p", "said-text", m.text ?? "");
    text.dir = "auto";
    main.append(head, text);
    this._addRedactControl(head, m.id);
    node.append(avatar(m.user), main);
    node.setAttribute("aria-label", `${m.user?.name ?? ""}: ${truncate(m.text ?? "", 80)}`);
    turn.append(node);
    this.els.log.append(turn);
    const state = { node, turn };
    this.said.set(m.id, state);
    return state;
  }

  /** A message's header: author, "you", time. */
  _head(user, created, mine) {
    const head = el("header", "msg-head");
    head.append(el("span", "author", user?.name ?? "?"));
    if (mine) {
      const you = el("span", "you-tag");
      you.dataset.i18n = "room.you";
      you.textContent = t("room.you");
      head.append(you);
    }
    if (created) {
      const time = el("time", "msg-time", formatTime(created));
      time.dateTime = created;
      time.title = formatFullTime(created);
      head.append(time);
    }
    return head;
  }

  _addQuestion(q) {
    if (this.questions.has(q.id)) return this.questions.get(q.id);
    const mine = Boolean(this.me && q.user && q.user.id === this.me.id);
    const turn = el("li", "turn");
    turn.dataset.questionId = q.id;
    const node = el("article", `msg question${mine ? " mine" : ""}`);
    node.id = `msg-${q.id}`;
    node.dataset.id = q.id;
    const main = el("div", "msg-main");
    const head = this._head(q.user, q.created, mine);
    // A question is for the assistant: say so, which tells it apart from a plain message.
    const asks = el("span", "ask-tag");
    asks.dataset.i18n = "room.askedAssistant";
    asks.textContent = t("room.askedAssistant");
    head.insertBefore(asks, head.querySelector("time"));
    const text = el("p", "question-text", q.text ?? "");
    text.dir = "auto";
    main.append(head, text);
    this._addRedactControl(head, q.id);
    node.append(avatar(q.user), main);
    node.setAttribute("aria-label", `${q.user?.name ?? ""}: ${truncate(q.text ?? "", 80)}`);
    turn.append(node);
    this.els.log.append(turn);
    const state = { node, turn, user: q.user, text: q.text };
    this.questions.set(q.id, state);
    this.versions.addQuestion(state, q);
    return state;
  }

  _addAnswer(start) {
    const { id, question_id: questionId } = start;
    if (this.answers.has(id)) return this.answers.get(id);
    const question = this.questions.get(questionId);
    let turn = question?.turn;
    if (!turn) {
      turn = el("li", "turn");
      this.els.log.append(turn);
    }
    const node = el("article", "msg answer");
    node.id = `msg-${id}`;
    node.dataset.id = id;
    node.dataset.status = "streaming";
    node.setAttribute("aria-busy", "true");
    const main = el("div", "msg-main");
    const head = el("header", "msg-head");
    const author = el("span", "author");
    if (this.assistantName) {
      author.textContent = this.assistantName;
    } else {
      author.dataset.i18n = "answer.assistant";
      author.textContent = t("answer.assistant");
    }
    const badge = el("span", "status-badge");
    badge.hidden = true;
    head.append(author, badge);
    this._addRedactControl(head, id);
    const body = el("div", "md answer-body");
    const md = new StreamingMarkdown(body, this._codeStrings());
    const errorNote = el("p", "answer-error");
    errorNote.hidden = true;
    const sourcesSlot = el("div", "sources-slot");
    const foot = el("div", "answer-foot");
    const progress = el("span", "answer-progress");
    progress.setAttribute("aria-hidden", "true");
    const progressLabel = el("span", "progress-label");
    const dots = el("span", "dots");
    dots.append(el("i"), el("i"), el("i"));
    progress.append(dots, progressLabel);
    foot.append(progress);

    const askerId = question?.user?.id;
    let stop = null;
    // The asker stops their own answer; moderators stop any.
    if ((this.me && askerId && askerId === this.me.id) || this._moderates()) {
      stop = el("button", "stop-btn");
      stop.type = "button";
      stop.append(el("span", "stop-icon"), el("span", "stop-label", t("answer.stop")));
      stop.setAttribute("aria-label", t("answer.stopAria"));
      stop.addEventListener("click", () => {
        stop.disabled = true;
        stop.querySelector(".stop-label").textContent = t("answer.stopping");
        this.onStop(id);
      });
      foot.append(stop);
    }
    main.append(head, body, errorNote, sourcesSlot, foot);
    const ai = el("span", "avatar ai", "AI");
    ai.setAttribute("aria-hidden", "true");
    node.append(ai, main);
    turn.append(node);

    const state = {
      id,
      node,
      body,
      md,
      badge,
      errorNote,
      sourcesSlot,
      foot,
      progressLabel,
      stop,
      status: "streaming",
      feedback: { up: 0, down: 0, rev: 0 },
      feedbackBar: null,
      gotText: false,
      gotSources: false,
      done: false,
      tracked: true,
    };
    // `[n]` links to source n of this answer once its sources are known.
    md.cite = (n) => (state.sources && n >= 1 && n <= state.sources.length ? sourceId(id, n) : null);
    this.answers.set(id, state);
    this.versions.addAnswer(state, start);
    this._updateAnswerState(state);
    return state;
  }

  /** The answer's state, creating a placeholder when its start fell outside our history. */
  _answerFor(answerId) {
    const known = this.answers.get(answerId);
    if (known) return known;
    const state = this._addAnswer({ id: answerId, question_id: null });
    state.tracked = false; // its start (and maybe text) came before what we were shown
    return state;
  }

  /** `query`: what was searched when a follow-up was rewritten (absent: the question). */
  _queryNote(query) {
    if (typeof query !== "string" || !query) return [];
    const note = el("p", "sources-query", t("sources.query", { q: query }));
    note.dataset.i18n = "sources.query";
    note.dataset.i18nArgs = JSON.stringify({ q: query });
    note.dir = "auto";
    return [note];
  }

  _setSources(state, sources, query) {
    state.gotSources = true;
    state.sources = sources;
    if (!sources.length) {
      const none = el("p", "sources-none", t("sources.none"));
      none.dataset.i18n = "sources.none";
      state.sourcesSlot.replaceChildren(none, ...this._queryNote(query));
      this._updateAnswerState(state);
      return;
    }
    const details = el("details", "sources");
    const summary = el("summary", "sources-summary");
    summary.dataset.i18n = "sources.title";
    summary.dataset.i18nArgs = JSON.stringify({ n: sources.length });
    summary.textContent = t("sources.title", { n: sources.length });
    details.append(summary);
    {
      const list = el("ol", "sources-list");
      sources.forEach((source, index) => {
        const item = el("li", "source");
        item.id = sourceId(state.id, index + 1);
        item.tabIndex = -1; // a citation moves the focus here
        const number = el("span", "source-number visually-hidden", `[${index + 1}]`);
        const title = el("span", "source-title", source.title || source.source || source.id || "");
        title.dir = "auto";
        item.append(number, title);
        if (source.source) {
          // The document's name (a file name, or an address), always shown.
          const origin = /^https?:\/\//i.test(source.source) ? el("a", "source-origin") : el("span", "source-origin");
          origin.textContent = source.source;
          if (origin.tagName === "A") {
            origin.href = source.source;
            origin.target = "_blank";
            origin.rel = "noopener noreferrer nofollow";
          }
          item.append(origin);
        }
        if (source.snippet) {
          const snippet = el("p", "source-snippet", source.snippet);
          snippet.dir = "auto";
          item.append(snippet);
        }
        list.append(item);
      });
      details.append(list);
    }
    state.sourcesSlot.replaceChildren(details, ...this._queryNote(query));
    if (state.md.text && !state.redacted) state.md.refresh(); // its [n] can link now
    this._updateAnswerState(state);
  }

  /** Follow a citation: open the answer's sources and bring that source into view. */
  showSource(targetId) {
    const item = document.getElementById(targetId);
    if (!item) return;
    const details = item.closest("details");
    if (details) details.open = true;
    item.classList.remove("cited");
    void item.offsetWidth; // restart the highlight's animation
    item.classList.add("cited");
    item.scrollIntoView({ block: "nearest", behavior: "smooth" });
    item.focus({ preventScroll: true });
  }

  /** Scroll to a message shown in the page and mark it for a moment (a search result). */
  showMessage(id) {
    const node = this.els.log.querySelector(`#${CSS.escape(`msg-${id}`)}`);
    if (!node) return false;
    this.stick = false;
    node.classList.remove("found");
    void node.offsetWidth;
    node.classList.add("found");
    node.scrollIntoView({ block: "center" });
    node.tabIndex = -1;
    node.focus({ preventScroll: true });
    return true;
  }

  /** The assistant's name as answers show it. */
  assistantLabel() {
    return this.assistantName || t("answer.assistant");
  }

  // --- feedback ----------------------------------------------------------------------------

  /** My own feedback, from `GET /api/rooms/<room>/feedback` (answer id -> up/down). */
  setMine(mine = {}) {
    this.mine = new Map(Object.entries(mine || {}));
    for (const state of this.answers.values()) this._renderFeedback(state);
  }

  /** An answer's counts (history's `feedback`, an `answer.feedback` event): kept only when
   *  newer (a higher `rev`) than what is shown. */
  setFeedback(answerId, { up, down, rev }) {
    const state = this.answers.get(answerId);
    if (!state || !Number.isInteger(rev) || rev <= state.feedback.rev) return;
    state.feedback = { up: Number(up) || 0, down: Number(down) || 0, rev };
    this._renderFeedback(state);
  }

  _renderFeedback(state) {
    const bar = state.feedbackBar;
    if (!bar) return;
    const mine = this.mine.get(state.id) || null;
    for (const button of bar.querySelectorAll("button")) {
      const value = button.dataset.value;
      const count = state.feedback[value] || 0;
      button.setAttribute("aria-pressed", String(mine === value));
      button.querySelector(".fb-count").textContent = count ? String(count) : "";
      const key = value === "up" ? "feedback.upAria" : "feedback.downAria";
      button.setAttribute("aria-label", t(key, { n: count }));
      button.title = t(mine === value ? "feedback.takeBack" : key, { n: count });
    }
  }

  _addFeedbackBar(state) {
    if (state.feedbackBar || state.redacted) return;
    const bar = el("div", "feedback");
    bar.setAttribute("role", "group");
    bar.setAttribute("aria-label", t("feedback.label"));
    bar.dataset.i18nAttr = "aria-label:feedback.label";
    for (const value of ["up", "down"]) {
      const button = el("button", `fb-btn fb-${value}`);
      button.type = "button";
      button.dataset.value = value;
      button.append(thumb(value === "down"), el("span", "fb-count"));
      button.addEventListener("click", () => {
        const next = this.mine.get(state.id) === value ? null : value;
        if (next) this.mine.set(state.id, next);
        else this.mine.delete(state.id);
        this._renderFeedback(state);
        this.onFeedback(state.id, next);
      });
      bar.append(button);
    }
    state.feedbackBar = bar;
    state.foot.after(bar);
    this._renderFeedback(state);
  }

  _endAnswer(state, { status, text, error }) {
    const final = FINAL_STATUSES.has(status) ? status : "complete";
    if (state.tracked && !state.done && typeof text === "string") {
      // The protocol promises that the deltas joined equal the final text; a mismatch means
      // an event was lost or applied twice. The final text wins either way.
      const ok = state.md.text === text;
      state.node.dataset.streamCheck = ok ? "ok" : "mismatch";
      if (!ok) console.warn("roomchat: streamed text of %s differs from its final text", state.id);
    }
    state.status = final;
    state.done = true;
    this.streaming.delete(state);
    state.md.finish(typeof text === "string" ? text : state.md.text);
    if (!state.md.text) {
      state.body.replaceChildren(el("p", "answer-empty", t("answer.empty")));
    }
    state.node.dataset.status = final;
    state.node.removeAttribute("aria-busy");
    this._addFeedbackBar(state);
    if (state.stop) {
      state.stop.remove();
      state.stop = null;
    }
    if (final !== "complete") {
      state.badge.hidden = false;
      state.badge.dataset.i18n = `status.${final}`;
      state.badge.textContent = t(`status.${final}`);
      const message =
        error?.message || (final === "cancelled" ? t("status.cancelledNote") : "");
      if (message) {
        state.errorNote.hidden = false;
        state.errorNote.textContent = message;
        if (final === "cancelled" && !error?.message) state.errorNote.dataset.i18n = "status.cancelledNote";
        if (error?.code) state.errorNote.title = error.code;
      }
    }
    this._updateAnswerState(state);
    this.versions.ended(state);
  }

  _updateAnswerState(state) {
    if (state.done) {
      state.foot.hidden = state.status === "complete" || !state.stop;
      state.progressLabel.textContent = "";
      return;
    }
    const key = state.gotText ? "answer.writing" : "answer.searching";
    state.progressLabel.dataset.i18n = key;
    state.progressLabel.textContent = t(key);
    state.foot.hidden = false;
  }

  _markDirty(state) {
    this.streaming.add(state);
    this.scheduler.request();
  }

  _renderFrame() {
    for (const state of this.streaming) state.md.render();
    this.streaming.clear();
  }

  /** Flush pending streaming text now (tests, and before a screenshot). */
  flush() {
    this._renderFrame();
  }

  // --- moderation --------------------------------------------------------------------------

  /** A moderator's "Remove" button in a message's header (nobody else gets one). */
  _addRedactControl(head, id) {
    if (!this._moderates()) return;
    const button = el("button", "mod-redact");
    button.type = "button";
    button.dataset.i18n = "mod.redact";
    button.textContent = t("mod.redact");
    button.setAttribute("aria-label", t("mod.redactAria"));
    button.addEventListener("click", () => {
      if (!window.confirm(t("mod.redactConfirm"))) return;
      button.disabled = true;
      this.onRedact(id);
    });
    head.append(button);
  }

  /** Show a message as removed by a moderator: its words leave the page (idempotent). True
   *  when it was shown here and is now redacted. */
  _redact(id) {
    const node = this.els.log.querySelector(`#${CSS.escape(`msg-${id}`)}`);
    if (!node || node.classList.contains("redacted")) return false;
    node.classList.add("redacted");
    const answer = this.answers.get(id);
    if (answer) {
      answer.redacted = true;
      this.streaming.delete(answer);
      answer.md.setText("");
      answer.feedbackBar?.remove();
      answer.feedbackBar = null;
    }
    for (const words of node.querySelectorAll(".said-text, .question-text, .answer-body, .sources-slot")) {
      words.replaceChildren();
      words.hidden = true;
    }
    node.querySelector(".mod-redact")?.remove();
    const note = el("p", "redacted-note", t("room.redacted"));
    note.dataset.i18n = "room.redacted";
    node.querySelector(".msg-head")?.after(note);
    const question = this.questions.get(id);
    if (question) {
      question.text = "";
      // "Searched for: …" under its answers is the question rewritten: its words go too.
      for (const query of question.turn?.querySelectorAll(".sources-query") ?? []) query.remove();
      question.editor?.remove();
      question.editButton?.remove();
    }
    node.setAttribute("aria-label", t("room.redacted"));
    this.versions.refresh();
    return true;
  }

  // --- members -----------------------------------------------------------------------------

  setMembers(members = []) {
    this.members = Array.isArray(members) ? members : [];
    const list = this.els.members;
    list.replaceChildren();
    const sorted = [...this.members].sort((a, b) => {
      const meA = this.me && a.id === this.me.id ? 0 : 1;
      const meB = this.me && b.id === this.me.id ? 0 : 1;
      return meA - meB || String(a.name).localeCompare(String(b.name));
    });
    for (const member of sorted) {
      const item = el("li", "member");
      item.append(avatar(member), el("span", "member-name", member.name));
      if (member.role === "owner" || member.role === "moderator") {
        const tag = el("span", "role-tag", t(`role.${member.role}`));
        tag.dataset.i18n = `role.${member.role}`;
        tag.dataset.role = member.role;
        item.append(tag);
      }
      if (this.me && member.id === this.me.id) {
        const you = el("span", "you-tag", t("room.you"));
        you.dataset.i18n = "room.you";
        item.append(you);
      } else if (this._moderates()) {
        if (this.access?.configure && String(member.id).startsWith("u:") && member.role !== "owner") {
          // The owner (or staff) names moderators and takes the role back.
          const next = member.role === "moderator" ? "member" : "moderator";
          const key = next === "moderator" ? "mod.makeModerator" : "mod.makeMember";
          const roleButton = el("button", "mod-role", t(key));
          roleButton.type = "button";
          roleButton.dataset.i18n = key;
          roleButton.dataset.role = next;
          roleButton.addEventListener("click", () => {
            roleButton.disabled = true;
            this.onSetRole(member, next);
          });
          item.append(roleButton);
        }
        const remove = el("button", "mod-remove", t("mod.remove"));
        remove.type = "button";
        remove.dataset.i18n = "mod.remove";
        remove.setAttribute("aria-label", t("mod.removeAria", { name: member.name }));
        remove.addEventListener("click", () => {
          if (!window.confirm(t("mod.removeConfirm", { name: member.name }))) return;
          remove.disabled = true;
          this.onRemoveMember(member);
        });
        item.append(remove);
      }
      list.append(item);
    }
    if (sorted.length <= 1) {
      const alone = el("li", "member-alone", t("room.nobody"));
      alone.dataset.i18n = "room.nobody";
      list.append(alone);
    }
    for (const counter of this.els.memberCount) counter.textContent = String(this.members.length);
    this.els.membersToggle?.setAttribute("aria-label", t("room.membersAria", { n: this.members.length }));
  }

  // --- someone is typing ---------------------------------------------------------------------

  /** A `typing` frame: show "… is typing" for a while (never for ourselves). */
  showTyping(user) {
    if (!user?.id || (this.me && user.id === this.me.id)) return;
    this.typists.set(user.id, { name: user.name ?? "?", until: Date.now() + TYPING_SHOWN_MS });
    this._renderTyping();
  }

  _stoppedTyping(userId) {
    if (userId && this.typists.delete(userId)) this._renderTyping();
  }

  _renderTyping() {
    clearTimeout(this.typingTimer);
    this.typingTimer = null;
    const now = Date.now();
    for (const [id, typist] of this.typists) if (typist.until <= now) this.typists.delete(id);
    const node = this.els.typing;
    if (!node) return;
    const names = Array.from(this.typists.values(), (typist) => typist.name);
    if (!names.length) {
      node.hidden = true;
      node.replaceChildren();
      return;
    }
    const key =
      names.length === 1 ? "typing.one" : names.length === 2 ? "typing.two" : "typing.many";
    const text = el("span", "typing-text", t(key, { a: names[0], b: names[1] ?? "", n: names.length }));
    const dots = el("span", "dots");
    dots.setAttribute("aria-hidden", "true");
    dots.append(el("i"), el("i"), el("i"));
    node.replaceChildren(dots, text);
    node.hidden = false;
    const next = Math.min(...Array.from(this.typists.values(), (typist) => typist.until));
    this.typingTimer = setTimeout(() => this._renderTyping(), Math.max(50, next - now));
  }

  // --- notices, announcements --------------------------------------------------------------

  /** A dismissable notice. Returns {node, update(text), dismiss()}. */
  notice(text, { kind = "error", timeoutMs = 0 } = {}) {
    const node = el("div", `notice notice-${kind}`);
    node.setAttribute("role", kind === "error" ? "alert" : "status");
    const message = el("p", "notice-text", text);
    const close = el("button", "notice-close");
    close.type = "button";
    close.setAttribute("aria-label", t("notice.dismiss"));
    close.dataset.i18nAttr = "aria-label:notice.dismiss";
    close.textContent = "×";
    node.append(message, close);
    this.els.notices.append(node);
    let timer = null;
    const handle = {
      node,
      update: (next) => {
        message.textContent = next;
      },
      dismiss: () => {
        clearTimeout(timer);
        node.remove();
        handle.onDismiss?.();
      },
    };
    close.addEventListener("click", handle.dismiss);
    if (timeoutMs) timer = setTimeout(handle.dismiss, timeoutMs);
    return handle;
  }

  /** Dismiss the newest notice; true if there was one (Escape). */
  dismissLatestNotice() {
    const last = this.els.notices.lastElementChild;
    if (!last) return false;
    last.querySelector(".notice-close")?.click();
    return true;
  }

  announce(text) {
    const region = this.els.announcer;
    region.textContent = "";
    // A fresh text node after clearing makes screen readers announce repeated messages too.
    setTimeout(() => {
      region.textContent = text;
    }, 50);
  }

  // --- language ----------------------------------------------------------------------------

  /** Re-translate dynamic labels and re-format times after a language switch. */
  relabel() {
    for (const time of this.els.log.querySelectorAll("time.msg-time")) {
      time.textContent = formatTime(time.dateTime);
      time.title = formatFullTime(time.dateTime);
    }
    for (const state of this.answers.values()) {
      if (state.stop) {
        state.stop.setAttribute("aria-label", t("answer.stopAria"));
        if (!state.stop.disabled) state.stop.querySelector(".stop-label").textContent = t("answer.stop");
      }
      this._renderFeedback(state);
      const strings = this._codeStrings();
      state.md.strings = strings;
      for (const button of state.body.querySelectorAll(".copy-code")) {
        button.textContent = strings.copy;
        button.setAttribute("aria-label", strings.copyAria);
      }
    }
    this.setMembers(this.members);
    this._renderTyping();
  }

  _codeStrings() {
    return { copy: t("code.copy"), copied: t("code.copied"), copyAria: t("code.copyAria") };
  }

  // --- scrolling ---------------------------------------------------------------------------

  _atBottom() {
    const s = this.els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 48;
  }

  _onScroll() {
    // Scroll events arrive a frame late, after more text may have landed: judge by direction.
    // Moving up means the reader left the bottom; reaching the bottom means they came back.
    const top = this.els.scroller.scrollTop;
    if (top < this.lastTop - 2) this.stick = false;
    if (this._atBottom()) this.stick = true;
    this.lastTop = top;
    if (this.stick) this.els.jump.hidden = true;
  }

  _onResize() {
    if (this.stick) this.scrollToBottom(false);
    else if (!this._atBottom()) this.els.jump.hidden = false;
  }

  scrollToBottom(smooth) {
    const s = this.els.scroller;
    s.scrollTo({ top: s.scrollHeight, behavior: smooth ? "smooth" : "instant" });
    this.stick = true;
    this.els.jump.hidden = true;
  }

  _updateEmpty() {
    this.els.empty.hidden = this.els.log.childElementCount > 0;
  }
}
