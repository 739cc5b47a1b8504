// wshub.js: a client for the wshub hub's JSON protocol on /ws
// (docs/protocol.md), for browsers and Node. A plain ES module with no
// dependencies and no build step; its types are in wshub.d.ts.
//
//   import { HubSocket } from "/wshub.js";
//   const hub = new HubSocket("wss://hub.example.com/ws");
//   hub.addEventListener("message", (e) => console.log(e.data.room, e.data.message));
//   await hub.join("lobby", { name: "ada" });
//   await hub.publish("lobby", "hello");
//
// A HubSocket has the shape of the browser's WebSocket (readyState, url,
// protocol, extensions, bufferedAmount, send, close, and the events open,
// message, error and close) and adds what an application of the hub needs:
// reconnection with exponential backoff and full jitter, the text
// ping/pong heartbeat, rooms whose requests answer as Promises, resume
// from the last (epoch, offset) of each room after a reconnect, and a
// bounded queue for what is sent while disconnected. Every time is in
// milliseconds.

/** The defaults of the constructor's options (milliseconds and counts). */
export const DEFAULTS = Object.freeze({
  reconnect: true,
  reconnectDelay: 500,
  reconnectDelayMax: 30000,
  heartbeatInterval: 10000,
  heartbeatTimeout: 20000,
  requestTimeout: 10000,
  queueLimit: 100,
});

// The answer type of each request op (docs/protocol.md, "Hub → client").
const ANSWERS = { join: "joined", leave: "left", publish: "published", auth: "authed" };

// A rejoin after a reconnect refused with one of these is tried again
// later: the hub may still hold the previous connection under the same name
// (until its keepalive drops it), or be busy.
const TRANSIENT = new Set(["name_taken", "rate_limited", "unavailable"]);

// readyState of each state: no socket while waiting to reconnect is CLOSED,
// as it is for a WebSocket that has closed.
const READY_STATES = { connecting: 0, open: 1, closing: 2, reconnecting: 3, closed: 3 };

/** A request the hub refused (`code` is the hub's error code), or one that
 * could not be carried out here: `timeout`, `disconnected`, `closed`,
 * `queue_full`, `left`. */
export class HubError extends Error {
  constructor(code, message, answer) {
    super(message || code);
    this.name = "HubError";
    this.code = code;
    this.answer = answer;
  }
}

// Every event is one of these: `detail` holds what it tells.
class HubEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

const utf8 = new TextEncoder();

export class HubSocket extends EventTarget {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  get CONNECTING() { return 0; }
  get OPEN() { return 1; }
  get CLOSING() { return 2; }
  get CLOSED() { return 3; }

  onopen = null;
  onmessage = null;
  onerror = null;
  onclose = null;

  #url;
  #protocols;
  #WebSocket;
  #options;
  #token;
  #ws = null;             // the current socket, or null
  #generation = 0;        // bumped for each socket: stale socket events are ignored
  #state = "closed";
  #closedOnPurpose = false;
  #attempt = 0;           // reconnect attempts since the last open
  #reconnectTimer = null;
  #pingTimer = null;
  #pongTimer = null;
  #nextId = 0;
  #pending = new Map();   // request id -> {op, frame, room, resolve, reject, timer, retry}
  #queue = [];            // requests and sends waiting for a connection
  #rooms = new Map();     // room -> {name, position, since, waiters}
  #authWaiters = [];
  #clientId = null;
  #name = null;

  /**
   * @param {string | URL} url the hub's `/ws` URL (`ws:` or `wss:`)
   * @param {object} [options] see wshub.d.ts (`HubSocketOptions`)
   */
  constructor(url, options = {}) {
    super();
    this.#url = String(url);
    this.#WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this.#WebSocket !== "function") {
      throw new TypeError("no WebSocket here: pass one as options.WebSocket (in Node, the ws package's)");
    }
    this.#protocols = options.protocols;
    this.#token = options.token;
    const o = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] !== undefined) o[key] = options[key];
    }
    this.#options = o;
    this.#open(true);
  }

  // ---- the WebSocket's shape ------------------------------------------------

  get url() { return this.#url; }
  get readyState() { return READY_STATES[this.#state]; }
  get protocol() { return (this.#ws && this.#ws.protocol) || ""; }
  get extensions() { return (this.#ws && this.#state === "open" && this.#ws.extensions) || ""; }

  /** Bytes the socket has not sent yet, and those of the offline queue. */
  get bufferedAmount() {
    let queued = 0;
    for (const item of this.#queue) {
      const data = item.frame ? JSON.stringify(item.frame) : item.data;
      queued += typeof data === "string" ? utf8.encode(data).length : (data.byteLength ?? data.size ?? 0);
    }
    return ((this.#ws && this.#ws.bufferedAmount) || 0) + queued;
  }

  /**
   * Sends `data` as it is. While disconnected it waits in the offline queue;
   * over `queueLimit` this throws a HubError `queue_full`. After close()
   * it throws a HubError `closed`.
   */
  send(data) {
    if (this.#isClosed()) throw new HubError("closed", "the HubSocket was closed");
    if (this.#state === "open") {
      this.#ws.send(data);
      return;
    }
    this.#enqueue({ op: "send", data }, (error) => { throw error; });
  }

  /**
   * Closes on purpose: no reconnect follows. Requests waiting for an answer
   * or in the offline queue are rejected with `closed`. The rooms are kept:
   * connect() joins them again.
   */
  close(code = 1000, reason = "") {
    if (this.#closedOnPurpose && (this.#state === "closed" || this.#state === "closing")) return;
    const ws = this.#ws;
    if (ws && (ws.readyState === 0 || ws.readyState === 1)) {
      ws.close(code, reason); // throws as WebSocket.close does on a bad code or reason
      this.#closedOnPurpose = true;
      this.#clearReconnect();
      this.#stopHeartbeat();
      this.#setState("closing");
      return;
    }
    this.#closedOnPurpose = true;
    this.#clearReconnect();
    if (ws) this.#detach();
    this.#settle(false);
    this.#setState("closed");
    this.#emit("close", { code, reason, wasClean: true, willReconnect: false });
  }

  // ---- beyond the WebSocket ----------------------------------------------

  /** "connecting", "open", "reconnecting" (waiting before the next attempt),
   * "closing" or "closed". */
  get state() { return this.#state; }
  /** This connection's id from the hub's `welcome` (tells one's own messages
   * by `from_id`), or null before it. */
  get clientId() { return this.#clientId; }
  /** The name the hub knows this connection by (`welcome`, `authed`,
   * `joined`), or null. */
  get name() { return this.#name; }
  /** The rooms joined or being joined, which a reconnect joins again. */
  get rooms() { return [...this.#rooms.keys()]; }
  /** The last (epoch, offset) of `room` this client has, or null. */
  position(room) {
    const p = this.#rooms.get(room)?.position;
    return p ? { epoch: p.epoch, offset: p.offset } : null;
  }

  /**
   * Connects again after close(), or at once while waiting to reconnect
   * (e.g. when the browser says it is online again). Does nothing while a
   * socket is connecting or open.
   */
  connect() {
    if (this.#ws) return;
    this.#closedOnPurpose = false;
    this.#attempt = 0;
    this.#open(false);
  }

  /**
   * Joins `room` (as `options.name`; resuming after `options.since` if
   * given). Resolves with the hub's `joined` answer. The room is joined
   * again, with `since`, after every reconnect until leave(). While
   * disconnected the join waits for the connection.
   */
  join(room, options = {}) {
    if (this.#isClosed()) return Promise.reject(new HubError("closed", "the HubSocket was closed"));
    return new Promise((resolve, reject) => {
      let rec = this.#rooms.get(room);
      if (!rec) {
        // joinedAs: the name the hub has this connection under in the room,
        // null while not a member on this connection.
        rec = { name: null, joinedAs: null, position: null, since: null, waiters: [], retries: 0, retryTimer: null };
        this.#rooms.set(room, rec);
      }
      rec.name = options.name ?? null;
      if (options.since) rec.position = { epoch: options.since.epoch, offset: options.since.offset };
      rec.waiters.push({ resolve, reject });
      if (this.#state === "open") this.#sendJoin(room, rec);
    });
  }

  /**
   * Leaves `room`: no more of its messages are delivered, and a reconnect
   * does not join it again. Resolves with the hub's `left` answer, or at
   * once (with `{type: "left", room}`) while disconnected.
   */
  leave(room) {
    const rec = this.#rooms.get(room);
    this.#rooms.delete(room);
    if (rec) clearTimeout(rec.retryTimer);
    if (rec) this.#rejectAll(rec.waiters, new HubError("left", `left ${room} before it was joined`));
    if (this.#state !== "open") return Promise.resolve({ type: "left", room });
    return new Promise((resolve, reject) => {
      this.#write({ op: "leave", room }, { op: "leave", room, resolve, reject });
    });
  }

  /**
   * Publishes `message` (any JSON value) to `room`, which must have been
   * joined. Resolves with the hub's `published` answer ({room, epoch,
   * offset, duplicate}). While disconnected it waits in the offline queue
   * (or rejects with `queue_full`). With `options.key` (an idempotency key)
   * a publish whose connection dropped before its answer is sent again
   * after the reconnect, and the hub publishes it once; without one it is
   * rejected with `disconnected`, as it may or may not have been published.
   */
  publish(room, message, options = {}) {
    if (this.#isClosed()) return Promise.reject(new HubError("closed", "the HubSocket was closed"));
    return new Promise((resolve, reject) => {
      const frame = { op: "publish", room, message };
      if (options.key != null) frame.key = options.key;
      const entry = { op: "publish", room, frame, resolve, reject, retry: options.key != null };
      if (this.#state === "open") this.#write(frame, entry);
      else this.#enqueue(entry, reject);
    });
  }

  /**
   * Authenticates with `token` (a JWT), now if connected, and on every
   * later connection (docs/protocol.md, "Authentication"). Resolves with
   * the hub's `authed` answer on this connection or the next.
   */
  auth(token) {
    if (this.#isClosed()) return Promise.reject(new HubError("closed", "the HubSocket was closed"));
    this.#token = token;
    return new Promise((resolve, reject) => {
      if (this.#state === "open") this.#write({ op: "auth", token }, { op: "auth", waiters: [{ resolve, reject }] });
      else this.#authWaiters.push({ resolve, reject });
    });
  }

  // ---- the connection -----------------------------------------------------

  // Closed on purpose, or for good (reconnect: false): nothing more is sent.
  #isClosed() {
    return this.#closedOnPurpose || this.#state === "closed" || this.#state === "closing";
  }

  #open(first) {
    this.#clearReconnect();
    const generation = ++this.#generation;
    let ws;
    try {
      ws = this.#protocols === undefined
        ? new this.#WebSocket(this.#url)
        : new this.#WebSocket(this.#url, this.#protocols);
    } catch (error) {
      if (first) throw error; // a bad URL, as new WebSocket() throws
      this.#emit("error", { error });
      this.#afterClose(1006, String(error && error.message), false);
      return;
    }
    this.#ws = ws;
    this.#setState("connecting");
    ws.onopen = () => { if (generation === this.#generation) this.#onOpen(ws, generation); };
    ws.onmessage = (e) => { if (generation === this.#generation) this.#onFrame(e.data); };
    ws.onerror = (e) => { if (generation === this.#generation) this.#emit("error", { error: e && e.error }); };
    ws.onclose = (e) => {
      if (generation !== this.#generation) return;
      this.#detach();
      this.#afterClose(e.code, e.reason, e.wasClean);
    };
  }

  #onOpen(ws, generation) {
    this.#attempt = 0;
    this.#startHeartbeat(ws, generation);
    const token = this.#token;
    if (typeof token === "function") {
      Promise.resolve()
        .then(() => token())
        .then((value) => value, (error) => { this.#emit("error", { error }); return null; })
        .then((value) => {
          if (generation === this.#generation && !this.#closedOnPurpose) this.#ready(value);
        });
    } else {
      this.#ready(token);
    }
  }

  // The socket is open and the token known: auth, join the rooms again,
  // send what waited, then tell the application.
  #ready(token) {
    const authWaiters = this.#authWaiters.splice(0);
    if (token) {
      this.#write({ op: "auth", token }, { op: "auth", waiters: authWaiters });
    } else {
      this.#rejectAll(authWaiters, new HubError("unauthorized", "no token to send"));
    }
    for (const [room, rec] of this.#rooms) this.#sendJoin(room, rec);
    const queue = this.#queue.splice(0);
    for (const item of queue) {
      if (item.op === "send") this.#ws.send(item.data);
      else this.#write(item.frame, item);
    }
    this.#setState("open");
    this.#emit("open", {});
  }

  // Takes the current socket out of service, its later events ignored.
  #detach() {
    const ws = this.#ws;
    this.#ws = null;
    this.#generation += 1;
    this.#stopHeartbeat();
    if (ws) ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
  }

  // A socket ended (or could not be made): settle the requests, tell the
  // application, and reconnect unless closed on purpose.
  #afterClose(code, reason, wasClean) {
    const willReconnect = !this.#closedOnPurpose && this.#options.reconnect !== false;
    this.#settle(willReconnect);
    this.#emit("close", { code, reason: reason || "", wasClean: !!wasClean, willReconnect });
    if (willReconnect) this.#scheduleReconnect();
    else this.#setState("closed");
  }

  // Requests in flight: joins are sent again on the next connection, a
  // publish with a key goes back to the front of the queue, the others are
  // rejected. Without a next connection, everything waiting is rejected.
  #settle(willReconnect) {
    for (const rec of this.#rooms.values()) rec.joinedAs = null;
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    const retry = [];
    for (const entry of pending) {
      clearTimeout(entry.timer);
      if (entry.op === "join") {
        if (!willReconnect) this.#rejectJoin(entry.room, new HubError("closed", "closed before the answer"));
      } else if (willReconnect && entry.retry) {
        retry.push(entry);
      } else if (entry.op === "auth" && willReconnect) {
        this.#authWaiters.push(...entry.waiters);
      } else {
        const error = new HubError(willReconnect ? "disconnected" : "closed",
          `the connection closed before the hub answered ${entry.op}`);
        if (entry.waiters) this.#rejectAll(entry.waiters, error);
        else entry.reject(error);
      }
    }
    this.#queue.unshift(...retry);
    if (!willReconnect) {
      const closed = new HubError("closed", "the HubSocket was closed");
      for (const item of this.#queue.splice(0)) if (item.reject) item.reject(closed);
      for (const rec of this.#rooms.values()) this.#rejectAll(rec.waiters, closed);
      this.#rejectAll(this.#authWaiters.splice(0), closed);
    }
  }

  #scheduleReconnect() {
    // Exponential backoff with full jitter: uniform in [0, min(max, base * 2^attempt)).
    const delay = this.#backoff(this.#attempt);
    this.#attempt += 1;
    this.#setState("reconnecting");
    this.#emit("reconnecting", { attempt: this.#attempt, delay });
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      this.#open(false);
    }, delay);
  }

  // Attempt n (from 0) waits uniformly in [0, min(max, base * 2^n)).
  #backoff(n) {
    const o = this.#options;
    return Math.floor(Math.random() * Math.min(o.reconnectDelayMax, o.reconnectDelay * 2 ** n));
  }

  #clearReconnect() {
    if (this.#reconnectTimer !== null) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
  }

  // The text heartbeat: `ping` every heartbeatInterval; no `pong` within
  // heartbeatTimeout of the first unanswered one means the connection is
  // dead, however quiet the socket is about it.
  #startHeartbeat(ws, generation) {
    const { heartbeatInterval, heartbeatTimeout } = this.#options;
    if (!(heartbeatInterval > 0)) return;
    this.#pingTimer = setInterval(() => {
      if (generation !== this.#generation) return;
      try { ws.send("ping"); } catch { /* closing: its close event follows */ }
      if (this.#pongTimer === null && heartbeatTimeout > 0) {
        this.#pongTimer = setTimeout(() => {
          this.#pongTimer = null;
          if (generation === this.#generation) this.#dead(ws);
        }, heartbeatTimeout);
      }
    }, heartbeatInterval);
  }

  #stopHeartbeat() {
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
    this.#pingTimer = this.#pongTimer = null;
  }

  // No pong in time: drop the socket without waiting for a closing
  // handshake that a dead link never completes, and reconnect.
  #dead(ws) {
    this.#detach();
    try {
      if (typeof ws.terminate === "function") ws.terminate(); // Node's ws
      else ws.close(4000, "heartbeat timeout");
    } catch { /* already closing */ }
    this.#afterClose(4000, "heartbeat timeout", false);
  }

  #setState(state) {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#emit("statechange", { state, previous, readyState: READY_STATES[state] });
  }

  #emit(type, detail) {
    const event = new HubEvent(type, detail);
    if (type === "message") event.data = detail;
    this.dispatchEvent(event);
    const handler = this["on" + type];
    if ((type === "open" || type === "message" || type === "error" || type === "close") && typeof handler === "function") {
      handler.call(this, event);
    }
  }

  // ---- requests -------------------------------------------------------------

  // Sends `frame` with a new request id, its answer awaited by `entry`.
  #write(frame, entry) {
    const id = ++this.#nextId;
    frame.id = id;
    entry.frame = frame;
    this.#pending.set(id, entry);
    entry.timer = setTimeout(() => {
      if (this.#pending.get(id) !== entry) return;
      this.#pending.delete(id);
      this.#answer(entry, { type: "error", code: "timeout", message: `no answer to ${entry.op} within ${this.#options.requestTimeout} ms`, id });
    }, this.#options.requestTimeout);
    this.#ws.send(JSON.stringify(frame));
  }

  #enqueue(item, refuse) {
    if (this.#queue.length >= this.#options.queueLimit) {
      refuse(new HubError("queue_full", `the offline queue holds ${this.#options.queueLimit} items already`));
      return;
    }
    this.#queue.push(item);
  }

  #sendJoin(room, rec) {
    clearTimeout(rec.retryTimer);
    rec.retryTimer = null;
    const frame = { op: "join", room };
    if (rec.name != null) frame.name = rec.name;
    rec.since = rec.position ? { epoch: rec.position.epoch, offset: rec.position.offset } : null;
    if (rec.since) frame.since = rec.since;
    this.#write(frame, { op: "join", room, rec });
  }

  #rejectAll(waiters, error) {
    for (const w of waiters.splice(0)) w.reject(error);
  }

  #rejectJoin(room, error) {
    const rec = this.#rooms.get(room);
    if (rec) this.#rejectAll(rec.waiters, error);
  }

  // The answer to a request (or its timeout, as an error).
  #answer(entry, msg) {
    const failed = msg.type === "error";
    const error = failed ? new HubError(msg.code, msg.message, msg) : null;
    switch (entry.op) {
      case "join": {
        const rec = this.#rooms.get(entry.room);
        if (rec !== entry.rec) return; // left meanwhile
        if (failed && rec.waiters.length === 0 && TRANSIENT.has(msg.code)) {
          // A rejoin refused for now: try again after a backoff.
          const delay = this.#backoff(rec.retries++);
          this.#emit("huberror", { ...msg, op: "join", room: entry.room, retrying: true, delay });
          rec.retryTimer = setTimeout(() => {
            rec.retryTimer = null;
            if (this.#state === "open" && this.#rooms.get(entry.room) === rec) this.#sendJoin(entry.room, rec);
          }, delay);
          return;
        }
        if (failed) {
          // Refused (or no answer): the room is no longer joined here.
          if (rec.joinedAs !== null) {
            // A join again on this connection: the hub keeps the membership
            // (and its name) as it was.
            rec.name = rec.joinedAs;
            this.#rejectAll(rec.waiters, error);
            return;
          }
          this.#rooms.delete(entry.room);
          if (rec.waiters.length) this.#rejectAll(rec.waiters, error);
          else this.#emit("huberror", { ...msg, op: "join", room: entry.room });
          return;
        }
        rec.retries = 0;
        rec.joinedAs = typeof msg.name === "string" ? msg.name : rec.name;
        if (typeof msg.name === "string") this.#name = msg.name;
        // recovered: true: the messages missed follow and move the position
        // on; otherwise live messages start after the room's offset.
        if (msg.recovered !== true && typeof msg.epoch === "string" && typeof msg.offset === "number") {
          rec.position = { epoch: msg.epoch, offset: msg.offset };
        }
        const waiters = rec.waiters.splice(0);
        this.#emit("joined", msg);
        if (msg.recovered === false) {
          this.#emit("gap", { room: entry.room, since: rec.since, epoch: msg.epoch, offset: msg.offset });
        }
        for (const w of waiters) w.resolve(msg);
        return;
      }
      case "auth":
        if (!failed && typeof msg.name === "string") this.#name = msg.name;
        if (!failed) this.#emit("authed", msg);
        if (entry.waiters.length === 0 && failed) this.#emit("huberror", { ...msg, op: "auth" });
        for (const w of entry.waiters) failed ? w.reject(error) : w.resolve(msg);
        return;
      default:
        if (failed) entry.reject(error);
        else entry.resolve(msg);
    }
  }

  // ---- frames from the hub ---------------------------------------------------

  #onFrame(data) {
    if (typeof data !== "string") return; // the hub never sends binary
    if (data === "pong") {
      if (this.#pongTimer !== null) clearTimeout(this.#pongTimer);
      this.#pongTimer = null;
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      this.#emit("error", { error: new HubError("bad_frame", "a frame from the hub that is not JSON") });
      return;
    }
    if (!msg || typeof msg !== "object") return;
    // `id` is a request's only on its answers (a welcome's is the connection's).
    const entry = msg.id !== undefined ? this.#pending.get(msg.id) : undefined;
    if (entry && (msg.type === "error" || msg.type === ANSWERS[entry.op])) {
      this.#pending.delete(msg.id);
      clearTimeout(entry.timer);
      this.#answer(entry, msg);
      return;
    }
    switch (msg.type) {
      case "welcome":
        this.#clientId = typeof msg.id === "number" ? msg.id : null;
        this.#name = typeof msg.name === "string" ? msg.name : null;
        this.#emit("welcome", msg);
        break;
      case "message":
        this.#onMessage(msg);
        break;
      case "presence":
        if (this.#rooms.has(msg.room)) this.#emit("presence", msg);
        break;
      case "error":
        this.#emit("huberror", msg);
        break;
      default:
        break;
    }
  }

  // A room message: delivered once, in offset order (docs/protocol.md,
  // "Delivery semantics"): one whose offset is not above the last of its
  // epoch is a replay of one delivered already.
  #onMessage(msg) {
    const rec = this.#rooms.get(msg.room);
    if (!rec) return; // a room left (its messages may still be on their way)
    if (typeof msg.epoch === "string" && typeof msg.offset === "number") {
      const p = rec.position;
      if (p && p.epoch === msg.epoch && msg.offset <= p.offset) return;
      rec.position = { epoch: msg.epoch, offset: msg.offset };
    }
    this.#emit("message", msg);
  }
}

export default HubSocket;
