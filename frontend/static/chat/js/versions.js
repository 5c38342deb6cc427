// Versions of an answer, and edited questions: the "‹ 2 / 3 ›" switcher, the Regenerate and
// Continue buttons under an answer, and Edit on your own question. room-view.js owns the DOM
// of each message; this module only adds these controls to it and decides which version of a
// question's answer is shown (one at a time; a new version, being written, is shown to all).

import { t } from "./i18n.js";

// An answer that stopped short can be continued (docs/protocol.md, `continue`).
const CONTINUABLE = new Set(["failed", "interrupted", "cancelled"]);

function button(className, key, onClick) {
  const node = document.createElement("button");
  node.type = "button";
  node.className = className;
  node.dataset.i18n = key;
  node.textContent = t(key);
  node.addEventListener("click", onClick);
  return node;
}

function labelled(node, key, args) {
  node.dataset.i18nAttr = `aria-label:${key}`;
  if (args) node.dataset.i18nArgs = JSON.stringify(args);
  node.setAttribute("aria-label", t(key, args));
  return node;
}

export class AnswerVersions {
  /**
   * @param {object} args
   * @param {(questionId: string) => boolean} args.maySteer  the asker, or a moderator
   * @param {(questionId: string) => boolean} args.isMine  the question is the reader's own
   * @param {(answerId: string) => void} args.onRegenerate
   * @param {(answerId: string) => void} args.onContinue
   * @param {(questionId: string, text: string) => void} args.onEdit
   */
  constructor({ maySteer, isMine, onRegenerate, onContinue, onEdit }) {
    this.maySteer = maySteer;
    this.isMine = isMine;
    this.onRegenerate = onRegenerate;
    this.onContinue = onContinue;
    this.onEdit = onEdit;
    this.groups = new Map(); // question id -> {answers: [state…] by version, shown: state}
  }

  clear() {
    this.groups.clear();
  }

  // --- answers -----------------------------------------------------------------------------

  /** A new answer state (from `answer.start` or history): a version of its question. */
  addAnswer(state, { question_id: questionId, version, continues }) {
    state.version = Number.isInteger(version) && version > 0 ? version : 1;
    state.continues = typeof continues === "string" ? continues : null;
    state.questionId = questionId || null;
    state.node.dataset.version = String(state.version);
    const bar = document.createElement("span");
    bar.className = "versions";
    bar.hidden = true;
    state.node.querySelector(".msg-head")?.append(bar);
    state.versionBar = bar;
    const actions = document.createElement("div");
    actions.className = "answer-actions";
    actions.hidden = true;
    state.node.querySelector(".msg-main")?.append(actions);
    state.actions = actions;
    if (!questionId) return;
    let group = this.groups.get(questionId);
    if (!group) {
      group = { answers: [], shown: null };
      this.groups.set(questionId, group);
    }
    group.answers.push(state);
    group.answers.sort((a, b) => a.version - b.version);
    if (state.continues) {
      const continued = group.answers.find((a) => a.id === state.continues);
      if (continued) continued.continuedBy = state.id;
    }
    this._show(group, group.answers[group.answers.length - 1]);
  }

  /** An answer ended (or its state changed): its buttons follow. */
  ended(state) {
    this._renderActions(state);
  }

  _show(group, state) {
    group.shown = state;
    for (const answer of group.answers) answer.node.hidden = answer !== state;
    group.answers.forEach((answer) => this._renderBar(group, answer));
    group.answers.forEach((answer) => this._renderActions(answer));
  }

  _renderBar(group, state) {
    const bar = state.versionBar;
    const count = group.answers.length;
    bar.hidden = count < 2;
    if (count < 2) return;
    const index = group.answers.indexOf(state);
    const prev = labelled(
      button("version-prev", "versions.prevMark", () => this._show(group, group.answers[index - 1])),
      "versions.prev",
    );
    prev.disabled = index === 0;
    const next = labelled(
      button("version-next", "versions.nextMark", () => this._show(group, group.answers[index + 1])),
      "versions.next",
    );
    next.disabled = index === count - 1;
    const where = document.createElement("span");
    where.className = "version-of";
    where.dataset.i18n = "versions.of";
    where.dataset.i18nArgs = JSON.stringify({ i: index + 1, n: count });
    where.textContent = t("versions.of", { i: index + 1, n: count });
    bar.replaceChildren(prev, where, next);
  }

  _renderActions(state) {
    const actions = state.actions;
    const group = state.questionId ? this.groups.get(state.questionId) : null;
    const buttons = [];
    if (group && state.done && !state.redacted && this.maySteer(state.questionId)) {
      const latest = group.answers[group.answers.length - 1] === state;
      const running = group.answers.some((answer) => !answer.done);
      if (!running) {
        if (CONTINUABLE.has(state.status) && latest && !state.continuedBy && state.md.text) {
          buttons.push(button("continue-btn", "versions.continue", (e) => this._once(e, () => this.onContinue(state.id))));
        }
        buttons.push(button("regenerate-btn", "versions.regenerate", (e) => this._once(e, () => this.onRegenerate(state.id))));
      }
    }
    actions.replaceChildren(...buttons);
    actions.hidden = buttons.length === 0;
  }

  _once(event, send) {
    event.currentTarget.disabled = true; // until the new version (or an error) redraws them
    send();
  }

  /** An error came back for a request: give the buttons back. */
  refresh() {
    for (const group of this.groups.values()) group.answers.forEach((a) => this._renderActions(a));
  }

  // --- questions ---------------------------------------------------------------------------

  /** A question's node: "edited" when it edits another, and Edit for its asker. */
  addQuestion(state, q) {
    const head = state.node.querySelector(".msg-head");
    if (q.edits) {
      const tag = document.createElement("span");
      tag.className = "edited-tag";
      tag.dataset.i18n = "question.edited";
      tag.textContent = t("question.edited");
      head?.insertBefore(tag, head.querySelector("time"));
      state.node.dataset.edits = q.edits;
    }
    if (!this.isMine(q.id)) return;
    const edit = button("edit-btn", "question.edit", () => this._openEditor(state, q.id));
    head?.append(edit);
    state.editButton = edit;
  }

  _openEditor(state, questionId) {
    if (state.editor) return;
    const text = state.node.querySelector(".question-text");
    const form = document.createElement("form");
    form.className = "edit-form";
    const area = document.createElement("textarea");
    area.className = "edit-text";
    area.value = state.text ?? text?.textContent ?? "";
    area.rows = 2;
    area.dir = "auto";
    labelled(area, "question.editAria");
    const send = button("edit-send", "question.editSend", () => {});
    send.type = "submit";
    const cancel = button("edit-cancel", "question.editCancel", () => close());
    const row = document.createElement("div");
    row.className = "edit-row";
    row.append(cancel, send);
    form.append(area, row);
    const close = () => {
      form.remove();
      state.editor = null;
      if (text) text.hidden = false;
      state.editButton?.focus();
    };
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = area.value.trim();
      if (!value) return;
      this.onEdit(questionId, value);
      close();
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") close();
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    if (text) text.hidden = true;
    text?.after(form);
    state.editor = form;
    area.focus();
  }
}
