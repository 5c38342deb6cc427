// The site's pages (home, login, invites, room settings, notices): language, times, and
// checking a room name before going there (the server checks it again: GET /rooms/?name=).

import { formatFullTime, formatRelative, initI18n, onLanguageChange, pageConfig, t } from "./i18n.js";

const config = pageConfig();
// The server's one room-name rule (chat.protocol.ROOM_NAME_PATTERN), matched as a whole string.
const ROOM_NAME = new RegExp(`^(?:${config.roomNamePattern})$`);

initI18n(config);

function renderTimes() {
  for (const time of document.querySelectorAll("time[data-relative]")) {
    const label = time.querySelector("[data-time-label]") || time;
    label.textContent = t("home.active", { time: formatRelative(time.dateTime) });
    time.title = new Date(time.dateTime).toLocaleString();
  }
  for (const time of document.querySelectorAll("time[data-absolute]")) {
    time.textContent = formatFullTime(time.dateTime);
  }
}

/** The problem with a room name, as a string key, or null when it is fine. */
export function roomNameProblem(name) {
  if (!name) return "home.roomEmpty";
  if (Array.from(name).length > 64) return "home.roomTooLong";
  if (!ROOM_NAME.test(name)) return "home.roomInvalid";
  return null;
}

const form = document.getElementById("enter-room");
if (form) {
  const input = form.querySelector("input[name=name]");
  const error = document.getElementById("room-error");
  let shown = !error.hidden;

  const check = (show) => {
    const problem = roomNameProblem(input.value.trim());
    if (problem && show) {
      error.dataset.i18n = problem;
      error.textContent = t(problem);
      error.hidden = false;
      input.setAttribute("aria-invalid", "true");
      shown = true;
    } else if (!problem || !shown) {
      error.hidden = true;
      input.setAttribute("aria-invalid", "false");
      shown = false;
    }
    return problem;
  };

  input.addEventListener("input", () => {
    // Once an error is shown, re-check as the user types so it disappears when fixed.
    if (shown) check(true);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (check(true)) {
      input.focus();
      return;
    }
    window.location.assign(form.dataset.roomUrl.replace("__room__", encodeURIComponent(name)));
  });
  if (shown) check(true);
}

renderTimes();
setInterval(renderTimes, 60000);
onLanguageChange(renderTimes);
