// The room page: wires the protocol client (protocol.js) to the view (room-view.js), the
// composer, the connection banner and the members drawer. Loaded as an ES module; the page's
// data comes from the JSON config that Django renders with json_script.
//
// The composer talks to the people in the room (`say`) unless the text begins with a mention
// of the assistant (`@assistant`, `@비서`, `@` and the room's name for it) or is sent with the
// "Ask the assistant" button (or Ctrl+Enter): then it is a question (`ask`), without the
// mention.

import { RoomClient, CloseCode } from "./protocol.js";
import { RoomView } from "./room-view.js";
import { initDocuments } from "./documents.js";
import { formatFullTime, getLanguage, initI18n, onLanguageChange, pageConfig, t } from "./i18n.js";

const config = pageConfig();
initI18n(config);

const $ = (id) => document.getElementById(id);
const maxChars = Number(config.maxChars) || 4000; // a question (ask)
const maxMessageChars = Number(config.maxMessageChars) || maxChars; // a message (say)
const assistantName = String(config.assistantName || "").trim();
// The names that call the assistant, longest first (a room may call it "assistant bot").
const MENTIONS = Array.from(new Set(["assistant", "비서", assistantName].filter(Boolean))).sort(
  (a, b) => b.length - a.length,
);

/**
 * The question in `text` if it begins with a mention of the assistant ("@비서 라떼 얼마예요?"
 * -> "라떼 얼마예요?"; an honorific 님 may follow the name), else null. Letter case does not
 * count; the mention must end the word (a space, punctuation or the end follows).
 */
export function mentionedQuestion(text, names = MENTIONS) {
  const start = text.trimStart();
  if (!start.startsWith("@")) return null;
  const rest = start.slice(1);
  for (const name of names) {
    if (rest.slice(0, name.length).toLocaleLowerCase() !== name.toLocaleLowerCase()) continue;
    let after = rest.slice(name.length);
    if (after.startsWith("님")) after = after.slice(1);
    if (after === "" || /^[\s,.:;!?，、。]/u.test(after)) {
      return after.replace(/^[\s,:;，、]+/u, "").trim();
    }
  }
  return null;
}

const view = new RoomView({
  elements: {
    scroller: $("log-scroll"),
    log: $("log"),
    empty: $("empty-state"),
    members: $("member-list"),
    memberCount: document.querySelectorAll("[data-member-count]"),
    membersToggle: $("members-toggle"),
    notices: $("notices"),
    announcer: $("announcer"),
    jump: $("jump-latest"),
    typing: $("typing"),
  },
  onStop: (answerId) => client.cancel(answerId),
  onRedact: (messageId) => client.redact(messageId),
  onRemoveMember: (member) => client.remove(member.id),
  onSetRole: (member, role) => client.setRole(member.id, role),
  onRegenerate: (answerId) => client.regenerate(answerId),
  onContinue: (answerId) => client.continueAnswer(answerId),
  onEdit: (questionId, text) => client.edit(questionId, text),
  onFeedback: (answerId, value) => client.feedback(answerId, value),
  assistantName,
});
view.setMe(config.me);

// --- connection status ----------------------------------------------------------------------

const banner = $("banner");
const bannerText = $("banner-text");
const bannerRetry = $("banner-retry");
const bannerHelp = $("banner-help");
const pill = $("conn-status");
const pillLabel = $("conn-label");
let everLive = false;
let status = { state: "connecting" };
let countdown = null;

function renderStatus() {
  clearInterval(countdown);
  countdown = null;
  const { state } = status;
  pill.dataset.state = state;
  const pillKey = {
    connecting: everLive ? "room.reconnecting" : "room.connecting",
    live: "room.live",
    waiting: "room.reconnecting",
    closed: "room.closed",
  }[state] || "room.connecting";
  pillLabel.dataset.i18n = pillKey;
  pillLabel.textContent = t(pillKey);

  banner.dataset.kind = state === "closed" ? "error" : "warn";
  bannerRetry.hidden = state !== "waiting";
  bannerHelp.hidden = !(state === "waiting" && status.trouble) && state !== "closed";
  if (state === "live" || (state === "connecting" && !everLive)) {
    banner.hidden = true;
    return;
  }
  banner.hidden = false;
  if (state === "closed") {
    bannerText.textContent =
      status.code === CloseCode.BAD_ROOM
        ? t("room.badRoom")
        : status.removed
          ? t("room.removed")
          : t("room.closed");
    bannerHelp.querySelector("[data-help=login]").hidden = true;
    return;
  }
  bannerHelp.querySelector("[data-help=login]").hidden = false;
  if (!navigator.onLine) {
    bannerText.textContent = t("room.offline");
  } else if (state === "waiting" && status.retryAt) {
    const tick = () => {
      const s = Math.max(0, Math.ceil((status.retryAt - Date.now()) / 1000));
      bannerText.textContent = s > 0 ? t("room.reconnectingIn", { s }) : t("room.reconnecting");
    };
    tick();
    countdown = setInterval(tick, 500);
  } else {
    bannerText.textContent = t("room.reconnecting");
  }
}

bannerRetry.addEventListener("click", () => client.retryNow());
window.addEventListener("offline", renderStatus);
window.addEventListener("online", renderStatus);

// --- composer -------------------------------------------------------------------------------

const form = $("composer");
const input = $("question");
const sendButton = $("send");
const askButton = $("ask-ai");
const counter = $("char-count");
const hint = $("composer-hint");
let blockedUntil = 0;
let blockTimer = null;

/** What the composer would send now: {type, text, limit}; `forceAsk` for the Ask button. */
function draft(forceAsk = false) {
  const raw = input.value.trim();
  const question = mentionedQuestion(raw);
  if (question !== null) return { type: "ask", text: question, limit: maxChars };
  if (forceAsk) return { type: "ask", text: raw, limit: maxChars };
  return { type: "say", text: raw, limit: maxMessageChars };
}

/** The mention that asks the assistant, as the page suggests it in this language. */
function mention() {
  return `@${assistantName || (getLanguage() === "ko" ? "비서" : "assistant")}`;
}

function sendable(d) {
  const n = Array.from(d.text).length;
  return client.live && n > 0 && n <= d.limit && Date.now() >= blockedUntil;
}

function updateComposer() {
  const d = draft();
  const n = Array.from(d.text).length;
  const over = n - d.limit;
  counter.textContent = over > 0 ? t("composer.tooLong", { n: over, max: d.limit }) : t("composer.count", { n, max: d.limit });
  counter.dataset.level = over > 0 ? "over" : n > d.limit * 0.9 ? "near" : "ok";
  form.classList.toggle("offline", !client.live);
  form.dataset.mode = d.type;
  const hintKey = d.type === "ask" ? "composer.hintAsk" : "composer.hint";
  hint.dataset.i18n = hintKey;
  hint.textContent = t(hintKey);
  input.placeholder = client.live ? t("composer.placeholder") : t("composer.placeholderOffline");
  input.disabled = client.state === "closed";
  input.setAttribute("aria-invalid", over > 0 ? "true" : "false");
  sendButton.disabled = !sendable(d);
  askButton.disabled = !sendable(draft(true));
  autosize();
}

function autosize() {
  if (CSS.supports?.("field-sizing", "content")) return;
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

// What the person typed for each message still on its way, to give it back as typed (with
// its mention) if the server refuses it.
const typed = new Map();

function send({ forceAsk = false } = {}) {
  updateComposer();
  const d = draft(forceAsk);
  if (!sendable(d)) return;
  const raw = input.value.trim();
  const clientId = d.type === "ask" ? client.ask(d.text) : client.say(d.text);
  if (clientId) {
    // A question asked with the button gets its mention back if it is refused, so that
    // sending it again asks again.
    typed.set(clientId, d.type === "ask" && mentionedQuestion(raw) === null ? `${mention()} ${raw}` : raw);
    input.value = "";
    updateComposer();
  }
}

input.addEventListener("input", () => {
  updateComposer();
  if (input.value.trim()) client.typing(); // throttled by the client
});
input.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter adds a line, Ctrl/Cmd+Enter asks the assistant. Not while an IME
  // (Korean!) is composing a syllable: that Enter commits the syllable.
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  send({ forceAsk: event.ctrlKey || event.metaKey });
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
askButton.addEventListener("click", () => {
  send({ forceAsk: true });
  input.focus();
});

function blockAsking(seconds) {
  blockedUntil = Date.now() + seconds * 1000;
  clearTimeout(blockTimer);
  blockTimer = setTimeout(updateComposer, seconds * 1000 + 50);
  updateComposer();
}

// --- errors ---------------------------------------------------------------------------------

function showError(frame) {
  const code = String(frame.code || "error");
  if (code === "rate_limited") {
    const seconds = Math.max(1, Math.ceil(Number(frame.retry_after) || 1));
    const until = Date.now() + seconds * 1000;
    const notice = view.notice(t("error.rate_limited", { s: seconds }), { kind: "error" });
    notice.node.dataset.code = code;
    const timer = setInterval(() => {
      const left = Math.ceil((until - Date.now()) / 1000);
      if (left > 0) {
        notice.update(t("error.rate_limited", { s: left }));
      } else {
        clearInterval(timer);
        notice.update(t("error.rate_limited_now"));
        setTimeout(notice.dismiss, 4000);
      }
    }, 1000);
    notice.onDismiss = () => clearInterval(timer);
    blockAsking(seconds);
    return;
  }
  view.versions.refresh(); // a refused regenerate or continue: its button works again
  const known = ["busy", "too_long", "forbidden", "not_found", "unavailable", "conflict"];
  let text;
  if (known.includes(code)) text = t(`error.${code}`);
  else if (code === "invalid") text = t("error.invalid", { message: frame.message || code });
  else text = t("error.generic", { code, message: frame.message || "" });
  const notice = view.notice(text, { kind: "error", timeoutMs: 12000 });
  notice.node.dataset.code = code;
  if (frame.message && known.includes(code)) notice.node.title = frame.message;
}

// --- history: earlier pages, search, my feedback (the HTTP API, with this page's session) ---

const API = `/api/rooms/${encodeURIComponent(config.room)}`;
const olderButton = $("older-button");
const olderStart = $("older-start");
let loadingOlder = null;

async function getJson(path) {
  const response = await fetch(`${API}${path}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
  return body;
}

function showOlderControls(more) {
  olderButton.hidden = !more;
  olderStart.hidden = more || view.oldestSeq === null;
}

/** The page of messages before the oldest one shown. False when the room's beginning is shown. */
function loadOlder() {
  if (loadingOlder) return loadingOlder;
  if (view.oldestSeq === null) return Promise.resolve(false);
  olderButton.disabled = true;
  olderButton.textContent = t("history.loading");
  loadingOlder = getJson(`/history?before=${view.oldestSeq}&limit=50`)
    .then((page) => {
      view.prependHistory(page.messages || []);
      const more = page.before !== null && page.before !== undefined;
      showOlderControls(more);
      return more;
    })
    .catch((err) => {
      view.notice(t("history.failed", { message: err.message }), { kind: "error", timeoutMs: 12000 });
      return false;
    })
    .finally(() => {
      loadingOlder = null;
      olderButton.disabled = false;
      olderButton.textContent = t("history.older");
    });
  return loadingOlder;
}
olderButton.addEventListener("click", () => loadOlder());
// Reaching the top of the conversation (scrolling up) loads the page before it, as chats do.
new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting) && !olderButton.hidden && !view.stick) loadOlder();
}, { root: $("log-scroll") }).observe(olderButton);

async function loadMine() {
  try {
    view.setMine((await getJson("/feedback")).mine);
  } catch {
    // Only the pressed state of my own buttons is missing; the counts are in the history.
  }
}

const searchForm = $("search-form");
const searchInput = $("search-input");
const searchStatus = $("search-status");
const searchResults = $("search-results");

/** Bring a message into the page (loading earlier pages until it is there) and show it. */
async function jumpTo(id) {
  for (let pages = 0; !document.getElementById(`msg-${id}`) && pages < 100; pages++) {
    searchStatus.textContent = t("search.notShown");
    if (!(await loadOlder()) && !document.getElementById(`msg-${id}`)) break;
  }
  searchStatus.textContent = "";
  view.showMessage(id);
  if (membersPanel.classList.contains("open")) setMembersOpen(false, { returnFocus: false });
}

searchForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = searchInput.value.trim();
  searchResults.replaceChildren();
  if (!q) return;
  searchStatus.textContent = t("history.loading");
  try {
    const found = await getJson(`/search?q=${encodeURIComponent(q)}`);
    const messages = found.messages || [];
    searchStatus.textContent = messages.length ? t("search.count", { n: messages.length }) : t("search.none", { q });
    for (const message of messages) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "search-hit";
      button.dataset.id = message.id;
      const who = document.createElement("span");
      who.className = "search-who";
      who.textContent = message.role === "assistant" ? view.assistantLabel() : message.user?.name ?? "";
      const time = document.createElement("time");
      time.dateTime = message.created;
      time.textContent = formatFullTime(message.created);
      const text = document.createElement("span");
      text.className = "search-text";
      text.dir = "auto";
      text.textContent = excerpt(message.text, q);
      button.append(who, time, text);
      button.addEventListener("click", () => jumpTo(message.id));
      item.append(button);
      searchResults.append(item);
    }
  } catch (err) {
    searchStatus.textContent = t("search.failed", { message: err.message });
  }
});

/** Up to ~120 characters of `text` around the first place it holds `q` (spaces aside). */
function excerpt(text, q) {
  const chars = Array.from(String(text || "").replace(/\s+/g, " "));
  const at = chars.join("").toLocaleLowerCase().indexOf(q.replace(/\s+/g, " ").toLocaleLowerCase());
  const start = Math.max(0, (at < 0 ? 0 : at) - 40);
  const piece = chars.slice(start, start + 120).join("");
  return `${start > 0 ? "…" : ""}${piece}${start + 120 < chars.length ? "…" : ""}`;
}

/** The Markdown export in the page's language (its own words: headings, statuses). */
function labelExport() {
  const link = $("export-md");
  const url = new URL(link.href, location.href);
  url.searchParams.set("lang", getLanguage());
  link.href = url.pathname + url.search;
}
labelExport();

// --- the room's settings (header, title) and the invite panel -------------------------------

let roomInfo = config.roomInfo || { title: config.room };

/** Show the room's public settings: from the page, a welcome's room_info, a room.updated. */
function showRoomInfo(info) {
  if (!info || typeof info !== "object") return;
  roomInfo = info;
  const title = String(info.title || config.room);
  $("room-title").textContent = title;
  // A room called by its name: "#name" as the heading, not the name twice.
  const isName = title === config.room;
  $("room-heading").classList.toggle("is-name", isName);
  $("room-description").textContent = String(info.description || "");
  $("room-private").hidden = info.visibility !== "private";
  $("room-sub").hidden = isName && info.visibility !== "private" && !info.description;
  document.title = `${title} · #${config.room} · Roomchat`;
}

const inviteToggle = $("invite-toggle");
const invitePanel = $("invite-panel");
if (inviteToggle && invitePanel) {
  const inviteForm = $("invite-form");
  const inviteResult = $("invite-result");
  const inviteUrl = $("invite-url");
  const inviteNote = $("invite-note");
  const inviteError = $("invite-error");
  let made = null;

  const setOpen = (open) => {
    invitePanel.hidden = !open;
    inviteToggle.setAttribute("aria-expanded", String(open));
    if (open) $("invite-expires").focus();
  };
  const showMade = () => {
    if (!made) return;
    inviteNote.textContent = t("invite.made", { time: formatFullTime(made.expires), n: made.max_uses });
  };
  inviteToggle.addEventListener("click", () => setOpen(invitePanel.hidden));
  inviteForm.addEventListener("submit", async (event) => {
    // The form works without this script too (a page with the link); here it stays in the room.
    event.preventDefault();
    inviteError.hidden = true;
    const submit = inviteForm.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const response = await fetch(inviteForm.action, {
        method: "POST",
        body: new FormData(inviteForm),
        headers: { Accept: "application/json", "X-CSRFToken": inviteForm.elements.csrfmiddlewaretoken.value },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(body?.error?.message || `HTTP ${response.status}`);
      made = body;
      inviteUrl.value = body.url;
      inviteResult.hidden = false;
      showMade();
      inviteUrl.focus();
      inviteUrl.select();
    } catch (err) {
      inviteError.textContent = t("invite.failed", { message: err.message });
      inviteError.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });
  $("invite-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(inviteUrl.value);
    } catch {
      inviteUrl.select();
      document.execCommand?.("copy");
    }
    $("invite-copy").textContent = t("invite.copied");
    setTimeout(() => {
      $("invite-copy").textContent = t("code.copy");
    }, 2000);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !invitePanel.hidden && !event.defaultPrevented) {
      setOpen(false);
      inviteToggle.focus();
      event.preventDefault();
    }
  });
  onLanguageChange(showMade);
}

// --- the room's documents --------------------------------------------------------------------

const documents = initDocuments({
  config,
  notice: (text) => {
    const shown = view.notice(text, { kind: "info", timeoutMs: 12000 });
    shown.node.dataset.kind = "document";
  },
});

// --- the client -----------------------------------------------------------------------------

const client = new RoomClient({
  path: config.wsPath,
  handlers: {
    onWelcome(frame, { resumed }) {
      view.setMe(frame.user || config.me);
      view.setAccess(frame.access);
      if (frame.user?.name) {
        const chip = $("me-chip");
        chip.textContent = frame.user.name;
        chip.title = frame.user.name;
      }
      if (!resumed) {
        view.reset(frame.history || []);
        showOlderControls(view.oldestSeq !== null && view.oldestSeq > 1);
        loadMine();
      }
      if (frame.room_info) showRoomInfo(frame.room_info);
      view.setMembers(frame.members || []);
      if (!everLive && document.activeElement === document.body && matchMedia("(pointer: fine)").matches) {
        input.focus();
      }
      everLive = true;
    },
    onEvent(frame) {
      if (documents.onEvent(frame)) return;
      if (frame.type === "room.updated") {
        showRoomInfo(frame.room);
        view.notice(t("room.settingsChanged"), { kind: "info", timeoutMs: 6000 });
        return;
      }
      view.applyEvent(frame);
    },
    onPresence(frame) {
      view.setMembers(frame.members || []);
    },
    onTyping(frame) {
      view.showTyping(frame.user);
    },
    onError: showError,
    onAskConfirmed(clientId) {
      typed.delete(clientId);
    },
    onAskRefused(clientId, text, frame, type) {
      const original = typed.get(clientId);
      typed.delete(clientId);
      if (!input.value.trim()) {
        input.value = original ?? (type === "ask" ? `${mention()} ${text}` : text);
        updateComposer();
      }
    },
    onStatus(next) {
      status = next;
      if (next.state === "waiting" && next.code === CloseCode.POLICY) {
        view.notice(t("room.policy"), { kind: "error", timeoutMs: 15000 });
      } else if (next.state === "waiting" && next.code === CloseCode.TOO_BIG) {
        view.notice(t("room.tooBig"), { kind: "error", timeoutMs: 15000 });
      }
      renderStatus();
      updateComposer();
    },
  },
});

// --- members drawer (phones), language, keyboard --------------------------------------------

const membersToggle = $("members-toggle");
const membersPanel = $("members");
const membersClose = $("members-close");

function setMembersOpen(open, { returnFocus = true } = {}) {
  membersPanel.classList.toggle("open", open);
  membersToggle.setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("drawer-open", open);
  if (open) membersClose.focus();
  else if (returnFocus) membersToggle.focus();
}
membersToggle.addEventListener("click", () => setMembersOpen(!membersPanel.classList.contains("open")));
membersClose.addEventListener("click", () => setMembersOpen(false));
$("drawer-scrim").addEventListener("click", () => setMembersOpen(false));

document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (membersPanel.classList.contains("open")) {
    setMembersOpen(false);
    event.preventDefault();
  } else if (view.dismissLatestNotice()) {
    event.preventDefault();
  }
});

onLanguageChange(() => {
  labelExport();
  view.relabel();
  renderStatus();
  updateComposer();
});

showRoomInfo(roomInfo);
updateComposer();
client.start();

// A handle for debugging in the console and for the browser tests (inject frames, drop the
// socket). It grants nothing a script on this page could not do anyway.
window.roomchat = {
  client,
  view,
  config,
  documents,
  inject: (frame) => client.receive(frame),
  flush: () => view.flush(),
};
