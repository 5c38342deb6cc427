// The room's documents panel: the list (everyone who may read the room), and for the room's
// owner and moderators, uploads (a file picker or drag and drop), their progress until they
// are searchable, and delete. Talks to the HTTP API (docs/documents.md) with the page's session
// and CSRF token.
//
// Progress is polled: `GET <documentsPath>` lists the uploads to moderators. A moderator's page
// polls every second while an upload is indexing, and every few seconds otherwise (so another
// moderator's upload shows up); everyone's page lists again on `document.added` and
// `document.deleted`.

import { formatRelative, onLanguageChange, t } from "./i18n.js";

const FAST_MS = 1000;
const SLOW_MS = 5000;

/** "12 KB", "1.5 MB": a size as people read it. */
export function formatSize(bytes) {
  const n = Number(bytes) || 0;
  if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1).replace(/\.0$/, "")} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} B`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The message to show for an API error body (or a network failure), in the page's language. */
export function uploadError(name, status, body) {
  const code = body?.error?.code || (status ? `http_${status}` : "network");
  const message = body?.error?.message || "";
  const known = ["too_long", "limit_reached", "unsupported_type", "forbidden", "conflict", "not_found"];
  if (known.includes(code)) return t(`documents.error.${code}`, { name, message });
  if (code === "invalid") return t("documents.error.invalid", { name, message });
  return t("documents.error.generic", { name, message: message || code });
}

export function initDocuments({ config, notice }) {
  const $ = (id) => document.getElementById(id);
  const toggle = $("documents-toggle");
  const panel = $("documents-panel");
  if (!toggle || !panel) return { onEvent() {} };
  const list = $("documents-list");
  const empty = $("documents-empty");
  const errorBox = $("documents-error");
  const busyBadge = $("documents-busy");
  const uploadsList = $("documents-uploads");
  const form = $("documents-upload");
  const fileInput = $("documents-file");
  const mayModerate = Boolean(config.access?.mayModerate) && Boolean(form);
  const path = String(config.documentsPath || "");
  const maxBytes = Number(config.documentMaxBytes) || 0;

  let documents = [];
  let uploads = []; // from the server (moderators)
  const local = new Map(); // uploads this page is sending: key -> {name, size, state, error}
  let loaded = false;
  let timer = null;

  const csrf = () => form?.elements?.csrfmiddlewaretoken?.value || "";

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function renderDocuments() {
    list.replaceChildren();
    empty.hidden = !loaded || documents.length > 0;
    for (const doc of documents) {
      const item = el("li", "document");
      item.dataset.name = doc.name;
      const main = el("div", "document-main");
      const name = el("span", "document-name", doc.name);
      name.dir = "auto";
      const meta = el(
        "span",
        "document-meta",
        t("documents.meta", {
          size: formatSize(doc.size),
          chunks: doc.chunks,
          name: doc.user?.name || "?",
          time: formatRelative(doc.updated || doc.created),
        }),
      );
      main.append(name, meta);
      item.append(main);
      if (mayModerate) {
        const remove = el("button", "btn btn-small btn-ghost document-delete", t("documents.delete"));
        remove.type = "button";
        remove.setAttribute("aria-label", t("documents.deleteAria", { name: doc.name }));
        remove.addEventListener("click", () => deleteDocument(doc.name, remove));
        item.append(remove);
      }
      list.append(item);
    }
  }

  function uploadRow(key, { name, state, progress = 0, error = "", chunks }) {
    const item = el("li", `document-upload is-${state}`);
    item.dataset.upload = key;
    item.dataset.state = state;
    const label = el("span", "document-name", name);
    label.dir = "auto";
    const bar = el("progress", "document-progress");
    bar.max = 1;
    if (state === "indexing") bar.value = progress;
    else if (state === "done") bar.value = 1;
    else if (state === "uploading") bar.removeAttribute("value"); // indeterminate
    else bar.value = 0;
    bar.hidden = state === "failed";
    let text;
    if (state === "uploading") text = t("documents.uploading");
    else if (state === "indexing") text = t("documents.indexing", { percent: Math.round(progress * 100) });
    else if (state === "done") text = t("documents.done", { chunks: chunks ?? 0 });
    else text = error;
    const status = el("span", "document-status", text);
    item.append(label, bar, status);
    return item;
  }

  function renderUploads() {
    const running = uploads.filter((u) => u.status === "indexing").length + local.size;
    busyBadge.hidden = running === 0;
    busyBadge.textContent = String(running);
    if (!uploadsList) return;
    uploadsList.replaceChildren();
    for (const [key, upload] of local) uploadsList.append(uploadRow(key, upload));
    for (const upload of uploads) {
      uploadsList.append(
        uploadRow(upload.id, {
          name: upload.name,
          state: upload.status,
          progress: upload.progress,
          chunks: upload.chunks,
          error: upload.status === "failed" ? t("documents.failed", { message: upload.error || "" }) : "",
        }),
      );
    }
  }

  async function refresh() {
    try {
      const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      documents = Array.isArray(body.documents) ? body.documents : [];
      uploads = Array.isArray(body.uploads) ? body.uploads : [];
      loaded = true;
      renderDocuments();
      renderUploads();
    } catch {
      // Offline for a moment: the next poll tries again.
    } finally {
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = null;
    const indexing = uploads.some((u) => u.status === "indexing") || local.size > 0;
    // Moderators poll (their own and other moderators' uploads); others list on events only.
    if (!mayModerate && panel.hidden) return;
    if (!mayModerate && !indexing) return;
    if (document.visibilityState === "hidden" && !indexing) return;
    timer = setTimeout(refresh, indexing ? FAST_MS : SLOW_MS);
  }
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !timer) refresh();
  });

  async function upload(file) {
    const key = `local-${Math.random().toString(36).slice(2)}`;
    if (maxBytes && file.size > maxBytes) {
      showError(t("documents.error.too_long", { name: file.name, message: "" }));
      return;
    }
    local.set(key, { name: file.name, size: file.size, state: "uploading" });
    renderUploads();
    const data = new FormData();
    data.append("file", file, file.name);
    try {
      const response = await fetch(path, {
        method: "POST",
        body: data,
        headers: { Accept: "application/json", "X-CSRFToken": csrf() },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) {
        showError(uploadError(file.name, response.status, body));
      } else {
        showError("");
        // The server's row takes over: put it in place until the next listing.
        if (body.upload) uploads = [{ ...body.upload, user: config.me }, ...uploads];
      }
    } catch {
      showError(uploadError(file.name, 0, null));
    } finally {
      local.delete(key);
      renderUploads();
      refresh();
    }
  }

  async function uploadAll(files) {
    for (const file of files) await upload(file);
  }

  async function deleteDocument(name, button) {
    if (!window.confirm(t("documents.deleteConfirm", { name }))) return;
    button.disabled = true;
    try {
      const response = await fetch(`${path}/${encodeURIComponent(name)}`, {
        method: "DELETE",
        headers: { Accept: "application/json", "X-CSRFToken": csrf() },
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) showError(uploadError(name, response.status, body));
      else showError("");
    } catch {
      showError(uploadError(name, 0, null));
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) refresh();
  }
  toggle.addEventListener("click", () => setOpen(panel.hidden));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden && !event.defaultPrevented) {
      setOpen(false);
      toggle.focus();
      event.preventDefault();
    }
  });

  if (mayModerate) {
    fileInput.addEventListener("change", () => {
      const files = Array.from(fileInput.files || []);
      fileInput.value = "";
      uploadAll(files);
    });
    form.addEventListener("submit", (event) => event.preventDefault());
    // Drop anywhere on the panel (and on the drop area, which shows it is a target).
    for (const kind of ["dragenter", "dragover"]) {
      panel.addEventListener(kind, (event) => {
        if (!Array.from(event.dataTransfer?.types || []).includes("Files")) return;
        event.preventDefault();
        form.classList.add("is-over");
      });
    }
    panel.addEventListener("dragleave", (event) => {
      if (!panel.contains(event.relatedTarget)) form.classList.remove("is-over");
    });
    panel.addEventListener("drop", (event) => {
      event.preventDefault();
      form.classList.remove("is-over");
      uploadAll(Array.from(event.dataTransfer?.files || []));
    });
    refresh(); // moderators: see uploads running now (another moderator's)
  }

  onLanguageChange(() => {
    renderDocuments();
    renderUploads();
  });

  return {
    /** A room event: `document.added` or `document.deleted` (true if handled). */
    onEvent(frame) {
      if (frame.type === "document.added") {
        const name = String(frame.document?.name || "");
        const key = frame.replaced ? "documents.replacedNotice" : "documents.addedNotice";
        notice(t(key, { name, who: frame.document?.user?.name || "" }));
        refresh();
        return true;
      }
      if (frame.type === "document.deleted") {
        notice(t("documents.deletedNotice", { name: String(frame.name || ""), who: frame.user?.name || "" }));
        refresh();
        return true;
      }
      return false;
    },
  };
}
