// The room page: wires the protocol client (protocol.js) to the view (room-view.js), the
// composer, the connection banner and the members drawer. Loaded as an ES module; the page's
// data comes from the JSON config that Django renders with json_script.

import { RoomClient, CloseCode } from "./protocol.js";
import { RoomView } from "./room-view.js";
import { formatFullTime, initI18n, onLanguageChange, pageConfig, t } from "./i18n.js";

const config = pageConfig();
initI18n(config);

const $ = (id) => document.getElementById(id);
const maxChars = Number(config.maxChars) || 4000;

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
  },
  onStop: (answerId) => client.cancel(answerId),
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
    bannerText.textContent = status.code === CloseCode.BAD_ROOM ? t("room.badRoom") : t("room.closed");
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
const counter = $("char-count");
let blockedUntil = 0;
let blockTimer = null;

function charCount() {
  return Array.from(input.value.trim()).length;
}

function updateComposer() {
  const n = charCount();
  const over = n - maxChars;
  counter.textContent = over > 0 ? t("composer.tooLong", { n: over, max: maxChars }) : t("composer.count", { n, max: maxChars });
  counter.dataset.level = over > 0 ? "over" : n > maxChars * 0.9 ? "near" : "ok";
  form.classList.toggle("offline", !client.live);
  input.placeholder = client.live ? t("composer.placeholder") : t("composer.placeholderOffline");
  input.disabled = client.state === "closed";
  input.setAttribute("aria-invalid", over > 0 ? "true" : "false");
  sendButton.disabled = !client.live || n === 0 || over > 0 || Date.now() < blockedUntil;
  autosize();
}

function autosize() {
  if (CSS.supports?.("field-sizing", "content")) return;
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

function send() {
  updateComposer();
  if (sendButton.disabled) return;
  const text = input.value.trim();
  const clientId = client.ask(text);
  if (clientId) {
    input.value = "";
    updateComposer();
  }
}

input.addEventListener("input", updateComposer);
input.addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter adds a line. Not while an IME (Korean!) is composing a syllable:
  // that Enter commits the syllable.
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  send();
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
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
  const known = ["busy", "too_long", "forbidden", "not_found"];
  let text;
  if (known.includes(code)) text = t(`error.${code}`);
  else if (code === "invalid") text = t("error.invalid", { message: frame.message || code });
  else text = t("error.generic", { code, message: frame.message || "" });
  const notice = view.notice(text, { kind: "error", timeoutMs: 12000 });
  notice.node.dataset.code = code;
  if (frame.message && known.includes(code)) notice.node.title = frame.message;
}

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

// --- the client -----------------------------------------------------------------------------

const client = new RoomClient({
  path: config.wsPath,
  handlers: {
    onWelcome(frame, { resumed }) {
      view.setMe(frame.user || config.me);
      if (frame.user?.name) {
        const chip = $("me-chip");
        chip.textContent = frame.user.name;
        chip.title = frame.user.name;
      }
      if (!resumed) view.reset(frame.history || []);
      if (frame.room_info) showRoomInfo(frame.room_info);
      view.setMembers(frame.members || []);
      if (!everLive && document.activeElement === document.body && matchMedia("(pointer: fine)").matches) {
        input.focus();
      }
      everLive = true;
    },
    onEvent(frame) {
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
    onError: showError,
    onAskRefused(clientId, text) {
      if (!input.value.trim()) {
        input.value = text;
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
  inject: (frame) => client.receive(frame),
  flush: () => view.flush(),
};
