// The room protocol v1 client: one WebSocket, reconnect with backoff, resume with ?after=,
// and exactly-once delivery of room events to the page. No DOM here (rendering is elsewhere):
// the page gets callbacks and can reason about one thing at a time.
//
// Guarantees to the handlers:
//  - onWelcome(frame, {resumed}) comes first on every connection. resumed=false means "rebuild
//    the view from frame.history"; resumed=true means "keep the view, missed events follow".
//  - onEvent(frame) gets room events (message, question, answer.*, message.redacted,
//    room.updated, document.added, document.deleted, and any other frame with a seq: a newer server may add types) in seq order,
//    each seq exactly once: a seq <= the last one seen is a duplicate and is dropped; a jump
//    (gap) drops the connection and resumes from the last seq seen, so the missing events are
//    replayed.
//  - onTyping(frame) gets the ephemeral "someone is typing" frames (no seq).
//  - onStatus(status) tells the connection state: connecting, live, waiting (backoff), closed.

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008, // flooding after rate_limited: back off
  TOO_BIG: 1009,
  INTERNAL: 1011,
  RESYNC: 4000, // ours: the client drops a connection to resume (gap, dead socket)
  REMOVED: 4003, // our access changed (removed, new role, room made private): rejoin once
  BAD_ROOM: 4004, // bad room name: do not retry
  TOO_SLOW: 4008, // send buffer overflowed: reconnect at once with ?after=
});

export const ROOM_EVENTS = new Set([
  "message",
  "question",
  "answer.start",
  "answer.sources",
  "answer.delta",
  "answer.end",
  "message.redacted",
  "room.updated",
  "answer.feedback",
  "document.added",
  "document.deleted",
]);

/** Error codes that refuse an `ask` or a `say` (its text goes back to the composer). */
const ASK_REFUSALS = new Set(["too_long", "rate_limited", "busy", "unavailable"]);

export const DEFAULTS = Object.freeze({
  baseDelayMs: 500,
  maxDelayMs: 15000,
  policyDelayMs: 5000, // at least this long after close 1008
  pingEveryMs: 25000, // ping when nothing was received for this long
  deadAfterMs: 45000, // no frame (not even pong) for this long: the socket is dead
  connectTimeoutMs: 15000, // no welcome within this: try again
  troubleAfterFailures: 4, // failed attempts in a row before status.trouble is set
  pendingAskTtlMs: 60000, // an unconfirmed ask or say is re-sent on reconnect within this
  typingEveryMs: 3000, // at most one `typing` per this (the server passes one per 2 s on)
  maxQuickResyncs: 3, // gaps in a row before giving up on resuming (full rebuild)
});

/** Exponential backoff with "equal jitter": half fixed, half random, capped. */
export function backoffDelay(attempt, opts = DEFAULTS, random = Math.random) {
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** ws(s)://<this host><path>[?after=N]. */
export function socketUrl(path, after, loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  const url = new URL(path, `${scheme}//${loc.host}`);
  if (after !== null && after !== undefined) url.searchParams.set("after", String(after));
  return url.toString();
}

function newClientId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class RoomClient {
  /**
   * @param {object} args
   * @param {string} args.path  WebSocket path, e.g. "/ws/rooms/lobby/"
   * @param {object} args.handlers  onWelcome, onEvent, onPresence, onTyping, onError, onStatus,
   *   onAskConfirmed(clientId), onAskRefused(clientId, text, errorFrame|null, type): for a
   *   `say` as for an `ask` (type says which)
   */
  constructor({ path, handlers = {}, options = {}, WebSocketImpl = globalThis.WebSocket }) {
    this.path = path;
    this.h = handlers;
    this.opts = { ...DEFAULTS, ...options };
    this.WebSocketImpl = WebSocketImpl;

    this.ws = null;
    this.generation = 0; // bumps whenever a socket is abandoned; its late callbacks are ignored
    this.state = "idle"; // idle | connecting | live | waiting | closed
    this.lastSeq = null; // the resume cursor: last room event seq applied
    this.user = null; // welcome.user
    this.attempt = 0; // failed attempts since the last welcome
    this.failuresWithoutWelcome = 0;
    this.quickResyncs = 0;
    this.last4008 = 0;
    this.lastReceived = 0;
    this.lastPing = 0;
    this.connectStarted = 0;
    this.retryTimer = null;
    this.retryAt = 0;
    this.pending = new Map(); // client_id -> {type, text, at}: asks and says not yet seen
    this.lastTyping = 0;
    this.stopped = true;
    this.closeInfo = null;

    this._heartbeat = this._heartbeat.bind(this);
    this._wake = this._wake.bind(this);
    this._dispatch = {
      welcome: (f) => this._onWelcome(f),
      presence: (f) => this.h.onPresence?.(f),
      typing: (f) => this.h.onTyping?.(f),
      pong: () => {},
      error: (f) => this._onError(f),
    };
  }

  // --- public API -------------------------------------------------------------------------

  /** Open the connection and keep it open until stop() or a fatal close. */
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.heartbeatTimer = setInterval(this._heartbeat, 1000);
    window.addEventListener("online", this._wake);
    document.addEventListener("visibilitychange", this._wake);
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.retryTimer);
    window.removeEventListener("online", this._wake);
    document.removeEventListener("visibilitychange", this._wake);
    this._abandonSocket(CloseCode.NORMAL, "leaving");
    this._setState("closed");
  }

  get live() {
    return this.state === "live";
  }

  /** Post a question for the assistant. Returns its client_id, or null when not connected. */
  ask(text) {
    return this._post("ask", text);
  }

  /** Say something to the people in the room (no answer). Returns its client_id, or null. */
  say(text) {
    return this._post("say", text);
  }

  /** Tell the room we are typing: sent at most once per typingEveryMs. True if sent. */
  typing() {
    if (!this.live) return false;
    const now = Date.now();
    if (now - this.lastTyping < this.opts.typingEveryMs) return false;
    this.lastTyping = now;
    return this._send({ type: "typing" });
  }

  _post(type, text) {
    if (!this.live) return null;
    const clientId = newClientId();
    this.pending.set(clientId, { type, text, at: Date.now() });
    this._send({ type, text, client_id: clientId });
    // What we send is what we were typing: the next keystroke may say "typing" again at once.
    this.lastTyping = 0;
    return clientId;
  }

  /** Stop an answer (allowed for whoever asked it). */
  /** Moderators: take a message's text out for everyone. */
  redact(messageId) {
    return this._send({ type: "redact", id: messageId });
  }

  /** Moderators: remove someone from the room (their connections close with 4003). */
  remove(userId) {
    return this._send({ type: "remove", user_id: userId });
  }

  /** The owner (or staff): make someone a `moderator` or a `member`. */
  setRole(userId, role) {
    return this._send({ type: "set_role", user_id: userId, role });
  }

  cancel(answerId) {
    return this._send({ type: "cancel", answer_id: answerId });
  }

  /** A new version of an answer (its asker or a moderator). */
  regenerate(answerId) {
    return this._send({ type: "regenerate", answer_id: answerId });
  }

  /** Carry on an answer that failed, was interrupted or stopped. */
  continueAnswer(answerId) {
    return this._send({ type: "continue", answer_id: answerId });
  }

  /** Send one's own question again, edited. Returns its client_id, or null. */
  edit(questionId, text) {
    if (!this.live) return null;
    const clientId = newClientId();
    this._send({ type: "edit", question_id: questionId, text, client_id: clientId });
    return clientId;
  }

  /** Your 👍 (`up`) or 👎 (`down`) on an answer; null takes yours back. */
  feedback(answerId, value) {
    return this._send({ type: "feedback", answer_id: answerId, value });
  }

  /** While waiting to reconnect: try now (the "Retry now" button, coming back online). */
  retryNow() {
    if (this.state === "waiting") this._connect();
  }

  /** Drop this connection and resume at once from the last seq (also a debugging aid). */
  resync(reason = "resync") {
    if (this.stopped || this.state === "closed") return;
    this._abandonSocket(CloseCode.RESYNC, reason);
    this._connect();
  }

  /**
   * Handle one decoded frame as if it came from the socket. The socket's onmessage calls this;
   * tests call it (through window.roomchat) to inject frames.
   */
  receive(frame) {
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    const handler = Object.hasOwn(this._dispatch, frame.type) ? this._dispatch[frame.type] : null;
    if (handler) {
      handler(frame); // welcome (its seq is the cursor, not an event's), presence, pong, error
      return;
    }
    // Any other frame with a seq is a room event, even of a type this client does not know: its
    // seq still moves the cursor (skipping it would look like a gap after it, and resync for
    // nothing). Other unknown types are ignored: a newer server may send more than we know.
    if (ROOM_EVENTS.has(frame.type) || Number.isInteger(frame.seq)) this._onRoomEvent(frame);
  }

  // --- connection -------------------------------------------------------------------------

  _connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this._abandonSocket(CloseCode.NORMAL, "reconnecting");
    const generation = ++this.generation;
    const url = socketUrl(this.path, this.lastSeq);
    let ws;
    try {
      ws = new this.WebSocketImpl(url);
    } catch (err) {
      console.error("roomchat: cannot open WebSocket", err);
      this._scheduleReconnect(CloseCode.ABNORMAL, String(err));
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    this.connectStarted = Date.now();
    this.lastReceived = Date.now();
    this._setState("connecting");

    ws.onopen = () => {
      if (generation === this.generation) this.lastReceived = Date.now();
    };
    ws.onmessage = (event) => {
      if (generation !== this.generation) return;
      this.lastReceived = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        console.warn("roomchat: ignoring a frame that is not JSON");
        return;
      }
      this.receive(frame);
    };
    ws.onclose = (event) => {
      if (generation !== this.generation) return;
      this.ws = null;
      this.welcomed = false;
      this._scheduleReconnect(event.code, event.reason || "");
    };
    ws.onerror = () => {
      /* a close event follows; it decides what to do */
    };
  }

  /** Detach the current socket so its late events are ignored, and close it. */
  _abandonSocket(code, reason) {
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    this.generation++;
    if (ws && ws.readyState <= 1) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
  }

  /** After a close: decide by its code whether, and when, to connect again. */
  _scheduleReconnect(code, reason) {
    if (this.stopped) return;
    this.failuresWithoutWelcome++;
    if (code === CloseCode.BAD_ROOM || (this.removed && code !== CloseCode.REMOVED)) {
      // A bad name; or, after a 4003, a handshake refused: we may not enter any more.
      const removed = code !== CloseCode.BAD_ROOM;
      this.stopped = true;
      clearInterval(this.heartbeatTimer);
      this._setState("closed", { code: removed ? CloseCode.REMOVED : code, reason, fatal: true, removed });
      return;
    }
    if (code === CloseCode.REMOVED) {
      // Our access changed. Come back at once with a full welcome: its history and `access`
      // show what we may do now (a resume would keep the controls of our old role).
      this.removed = true;
      this.lastSeq = null;
      this._setState("waiting", { code, reason, delayMs: 0, retryAt: Date.now() });
      this.retryTimer = setTimeout(() => this._connect(), 0);
      return;
    }
    let delay;
    if (code === CloseCode.TOO_SLOW && Date.now() - this.last4008 > 10000) {
      delay = 0; // resume at once; a second 4008 within 10 s backs off like any failure
      this.last4008 = Date.now();
    } else {
      if (code === CloseCode.TOO_SLOW) this.last4008 = Date.now();
      delay = backoffDelay(this.attempt, this.opts);
      if (code === CloseCode.POLICY) delay = Math.max(delay, this.opts.policyDelayMs);
      this.attempt++;
    }
    this.retryAt = Date.now() + delay;
    this._setState("waiting", { code, reason, delayMs: delay, retryAt: this.retryAt });
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _heartbeat() {
    if (this.stopped || !this.ws) return;
    const now = Date.now();
    if (this.state === "connecting" && now - this.connectStarted > this.opts.connectTimeoutMs) {
      this._abandonSocket(CloseCode.RESYNC, "connect timeout");
      this._scheduleReconnect(CloseCode.ABNORMAL, "connect timeout");
      return;
    }
    if (this.state !== "live") return;
    const quiet = now - this.lastReceived;
    if (quiet > this.opts.deadAfterMs) {
      this._abandonSocket(CloseCode.RESYNC, "no frames");
      this._scheduleReconnect(CloseCode.ABNORMAL, "no frames");
    } else if (quiet > this.opts.pingEveryMs && now - this.lastPing > this.opts.pingEveryMs) {
      this.lastPing = now;
      this._send({ type: "ping" });
    }
  }

  _wake() {
    if (document.visibilityState === "hidden") return;
    this.retryNow();
  }

  _send(frame) {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  _setState(state, info = {}) {
    this.state = state;
    this.closeInfo = state === "closed" || state === "waiting" ? info : null;
    const trouble =
      state === "waiting" && this.failuresWithoutWelcome >= this.opts.troubleAfterFailures;
    this.h.onStatus?.({ state, attempt: this.attempt, trouble, ...info });
  }

  // --- frames -----------------------------------------------------------------------------

  _onWelcome(frame) {
    const resumed = frame.resumed === true && this.lastSeq !== null;
    if (!resumed) {
      this.lastSeq = Number.isInteger(frame.seq) ? frame.seq : 0;
      // An ask that made it before the connection dropped is in the history now.
      for (const message of frame.history || []) {
        if (message.client_id && this.pending.delete(message.client_id)) {
          this.h.onAskConfirmed?.(message.client_id);
        }
      }
    }
    this.user = frame.user || null;
    this.access = frame.access || null;
    this.removed = false;
    this.welcomed = true;
    this.attempt = 0;
    this.failuresWithoutWelcome = 0;
    this._setState("live");
    this.h.onWelcome?.(frame, { resumed });
    this._resendPending();
  }

  _onRoomEvent(frame) {
    const seq = frame.seq;
    if (!Number.isInteger(seq)) return;
    if (this.lastSeq === null) {
      // Before any welcome there is no cursor to check against: the welcome always comes first.
      return;
    }
    if (seq <= this.lastSeq) return; // already applied (replayed after a resume)
    if (seq > this.lastSeq + 1) {
      // Lost event(s) between lastSeq and seq: resume from lastSeq to have them replayed.
      this.quickResyncs++;
      if (this.quickResyncs > this.opts.maxQuickResyncs) {
        // The server keeps skipping: stop trusting the cursor and rebuild from history.
        this.quickResyncs = 0;
        this.lastSeq = null;
        this._abandonSocket(CloseCode.RESYNC, "gap");
        this._scheduleReconnect(CloseCode.ABNORMAL, "gap");
      } else {
        this.resync("gap");
      }
      return;
    }
    this.lastSeq = seq;
    this.quickResyncs = 0;
    if (frame.client_id && this.pending.has(frame.client_id)) {
      this.pending.delete(frame.client_id);
      this.h.onAskConfirmed?.(frame.client_id);
    }
    this.h.onEvent?.(frame);
  }

  _onError(frame) {
    if (ASK_REFUSALS.has(frame.code) && this.pending.size) {
      // The server answers frames in order: a refusal belongs to the newest unconfirmed ask.
      const clientId = Array.from(this.pending.keys()).pop();
      const { type, text } = this.pending.get(clientId);
      this.pending.delete(clientId);
      this.h.onAskRefused?.(clientId, text, frame, type);
    }
    this.h.onError?.(frame);
  }

  /** Asks and says sent but never seen in the room go again with the same client_id (the
   * server takes a client_id only once, so a duplicate is harmless). Stale ones go back to the
   * user. */
  _resendPending() {
    const now = Date.now();
    for (const [clientId, { type, text, at }] of this.pending) {
      if (now - at > this.opts.pendingAskTtlMs) {
        this.pending.delete(clientId);
        this.h.onAskRefused?.(clientId, text, null, type);
      } else {
        this._send({ type, text, client_id: clientId });
      }
    }
  }
}
