// Types of wshub.js, the client for the wshub hub's `/ws` protocol
// (docs/protocol.md). Every duration is in milliseconds.

/** A room's place: the `epoch` (life of the room) and the `offset` of a
 * message in it. Offsets compare only within one epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A room message (`type: "message"`), as the hub sent it. */
export interface RoomMessage {
  type: "message";
  room: string;
  /** The sender's display name. */
  from: string;
  /** The sender's connection id: compare with `HubSocket.clientId` to tell
   * one's own messages (0 for a publish through the HTTP API). */
  from_id: number;
  /** The message as published: any JSON value. */
  message: unknown;
  epoch: string;
  offset: number;
  /** `offset` under its earlier name. */
  seq: number;
  /** The hub's clock when it accepted the publish, in milliseconds since
   * the Unix epoch. */
  ts: number;
}

/** The hub's answer to a join. */
export interface Joined {
  type: "joined";
  room: string;
  /** This member's name in the room. */
  name: string;
  /** Up to 100 member names. */
  members: string[];
  member_count: number;
  /** The room's last offset: live messages start after it. */
  offset: number;
  seq: number;
  epoch: string;
  /** Only when the join carried `since`: `true` if every message missed
   * follows, `false` if none does (see the `gap` event). */
  recovered?: boolean;
  id?: number | string;
}

/** The hub's answer to a publish. */
export interface Published {
  type: "published";
  room: string;
  epoch: string;
  offset: number;
  /** `true`: the idempotency key was a kept message's; nothing was
   * published again and `offset` is that message's. */
  duplicate: boolean;
  id?: number | string;
}

/** The hub's answer to a leave (or, while disconnected, the library's own). */
export interface Left {
  type: "left";
  room: string;
  id?: number | string;
}

/** The hub's answer to an auth. */
export interface Authed {
  type: "authed";
  /** The token's `sub`: this connection's name from now on. */
  name: string;
  /** The token's `exp`, in seconds since the Unix epoch. */
  exp?: number;
  id?: number | string;
}

/** The hub's `welcome`, once per connection. */
export interface Welcome {
  type: "welcome";
  /** This connection's id (sequential per hub process: never a credential). */
  id: number;
  name: string;
}

/** Another member joined or left a room this client is in. */
export interface Presence {
  type: "presence";
  room: string;
  event: "join" | "leave";
  name: string;
  /** Milliseconds since the Unix epoch. */
  ts: number;
}

/** An `error` frame of the hub. */
export interface HubErrorFrame {
  type: "error";
  /** The hub's error code (docs/protocol.md, "Error codes"), or `timeout`. */
  code: string;
  message: string;
  id?: number | string;
}

export type HubSocketState = "connecting" | "open" | "reconnecting" | "closing" | "closed";

export interface HubSocketOptions {
  /** The WebSocket constructor: the global one by default; in Node 20,
   * which has none, the `ws` package's (`import WebSocket from "ws"`). */
  WebSocket?: new (url: string, protocols?: string | string[]) => unknown;
  /** Subprotocols, as for `new WebSocket(url, protocols)`. */
  protocols?: string | string[];
  /** A JWT sent in an `auth` request first on every connection; a function
   * is called (and awaited) for each connection, so it can fetch a fresh
   * one. */
  token?: string | null | (() => string | null | Promise<string | null>);
  /** Reconnect when a connection ends other than by close(). Default true. */
  reconnect?: boolean;
  /** Backoff base in milliseconds. Attempt n (from 0) waits a uniformly
   * random time in [0, min(reconnectDelayMax, reconnectDelay * 2^n)) (full
   * jitter). Default 500. The attempt count starts again at each open. */
  reconnectDelay?: number;
  /** Backoff ceiling in milliseconds. Default 30000. */
  reconnectDelayMax?: number;
  /** Milliseconds between the text `ping`s the hub answers with `pong`.
   * Default 10000; 0 turns the heartbeat off. */
  heartbeatInterval?: number;
  /** Milliseconds from the first unanswered `ping` after which the
   * connection counts as dead: it is dropped (close event code 4000,
   * reason "heartbeat timeout") and a reconnect follows. Default 20000. */
  heartbeatTimeout?: number;
  /** Milliseconds a request (join, leave, publish, auth) waits for its
   * answer once written to the socket (not while it waits in the offline
   * queue); then it rejects with code `timeout`. Default 10000. */
  requestTimeout?: number;
  /** How many sends and publishes the offline queue holds while
   * disconnected. One more is refused: publish() rejects and send() throws
   * a HubError with code `queue_full`; what is queued already is kept.
   * Default 100. */
  queueLimit?: number;
}

/** A request refused by the hub (`code` is its error code) or not carried
 * out here: `timeout` (no answer within `requestTimeout`), `disconnected`
 * (the connection dropped before the answer; the request may or may not
 * have been carried out), `closed` (close() was called, or the socket
 * closed for good), `queue_full`, `left` (a join that leave() undid). */
export class HubError extends Error {
  readonly code: string;
  /** The hub's `error` frame, when the hub refused. */
  readonly answer?: HubErrorFrame;
}

/** An event of a HubSocket: what it tells is in `detail`. */
export interface HubEvent<T> extends Event {
  readonly detail: T;
}

/** The `message` event also has `data`, as a WebSocket's does: the same
 * object as `detail`. */
export interface HubMessageEvent extends HubEvent<RoomMessage> {
  readonly data: RoomMessage;
}

export interface HubSocketEventMap {
  /** A connection opened and its auth, rejoins and queued requests were
   * sent. `detail`: `{}`. */
  open: HubEvent<Record<string, never>>;
  /** A room message, once per (epoch, offset): replays already seen are
   * dropped. Only for rooms joined and not left. */
  message: HubMessageEvent;
  /** The socket reported an error (a close event follows), a frame was not
   * JSON, or the token function threw. `detail.error`: what, if known. */
  error: HubEvent<{ error?: unknown }>;
  /** A connection ended. `detail.code` and `detail.reason` are the close
   * frame's (4000 "heartbeat timeout" when the heartbeat dropped it),
   * `detail.wasClean` whether the closing handshake completed, and
   * `detail.willReconnect` whether a reconnect follows. */
  close: HubEvent<{ code: number; reason: string; wasClean: boolean; willReconnect: boolean }>;
  /** The state changed. `detail.readyState` is the new readyState. */
  statechange: HubEvent<{ state: HubSocketState; previous: HubSocketState; readyState: number }>;
  /** A reconnect is scheduled. `detail.attempt` counts from 1 since the last
   * open; `detail.delay` is the wait in milliseconds before it. */
  reconnecting: HubEvent<{ attempt: number; delay: number }>;
  /** The hub's `welcome` on each new connection. */
  welcome: HubEvent<Welcome>;
  /** An auth was accepted. */
  authed: HubEvent<Authed>;
  /** A join was answered, the application's or a rejoin after a reconnect.
   * `detail` is the hub's `joined`. */
  joined: HubEvent<Joined>;
  /** A rejoin with `since` was answered `recovered: false`: messages sent
   * to `detail.room` while away are lost to this client (the hub no longer
   * had them all, or it restarted). `detail.since` is the position resumed
   * from; live messages go on after `detail.epoch` / `detail.offset`. */
  gap: HubEvent<{ room: string; since: Position | null; epoch: string; offset: number }>;
  /** Another member joined or left a room this client is in. */
  presence: HubEvent<Presence>;
  /** An `error` of the hub that answers no pending promise: a refused
   * rejoin after a reconnect (`detail.op` "join", `detail.room`), a refused
   * auth of the `token` option (`detail.op` "auth"), or an error to
   * something sent with send() or to a `ping` (`rate_limited`). A rejoin
   * refused with `name_taken` (the hub may still hold the previous
   * connection under that name until its keepalive drops it),
   * `rate_limited` or `unavailable` is tried again after a backoff:
   * `detail.retrying` is true and `detail.delay` the wait in milliseconds,
   * until it succeeds or leave() is called. Refused otherwise, the room is
   * no longer joined. */
  huberror: HubEvent<HubErrorFrame & { op?: string; room?: string; retrying?: boolean; delay?: number }>;
}

/**
 * A connection to the hub in the shape of the browser's WebSocket, that
 * reconnects, keeps a heartbeat, joins rooms again and resumes them.
 * It connects when constructed; events of that first connection (open,
 * statechange from "connecting") come after the constructor returns.
 */
export class HubSocket extends EventTarget {
  /** @param url the hub's `/ws` URL, `ws:` or `wss:`. */
  constructor(url: string | URL, options?: HubSocketOptions);

  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;

  readonly url: string;
  /** 0 while connecting, 1 open, 2 closing on purpose, 3 closed or
   * waiting to reconnect (no socket then). */
  readonly readyState: number;
  /** The subprotocol the hub chose, or "". */
  readonly protocol: string;
  /** The extensions negotiated (e.g. permessage-deflate), or "". */
  readonly extensions: string;
  /** Bytes not yet sent: the socket's, plus those waiting in the offline
   * queue. */
  readonly bufferedAmount: number;
  /** The finer state behind readyState. */
  readonly state: HubSocketState;
  /** This connection's id from `welcome`, or null. */
  readonly clientId: number | null;
  /** The name the hub knows this connection by, or null. */
  readonly name: string | null;
  /** The rooms joined or being joined (joined again after a reconnect). */
  readonly rooms: string[];

  onopen: ((this: HubSocket, ev: HubSocketEventMap["open"]) => unknown) | null;
  onmessage: ((this: HubSocket, ev: HubMessageEvent) => unknown) | null;
  onerror: ((this: HubSocket, ev: HubSocketEventMap["error"]) => unknown) | null;
  onclose: ((this: HubSocket, ev: HubSocketEventMap["close"]) => unknown) | null;

  /** Sends text as it is (a JSON request the library has no method for).
   * While disconnected it waits in the offline queue. Throws a HubError
   * `queue_full` over `queueLimit`, or `closed` after close(). */
  send(data: string | ArrayBufferLike | Blob | ArrayBufferView): void;
  /** Closes on purpose (default code 1000): no reconnect follows; pending
   * and queued requests reject with `closed`. Rooms are kept for connect().
   * Throws as WebSocket.close does on a code other than 1000 or
   * 3000–4999. */
  close(code?: number, reason?: string): void;
  /** Connects again after close(), or at once while waiting to reconnect. */
  connect(): void;

  /** Joins `room`; resolves with `joined`, rejects with a HubError (e.g.
   * `name_taken`, `timeout`, `closed`). Rejoined with `since` after every
   * reconnect. `options.since` resumes from a position saved earlier (say,
   * across a page load). Joining a room joined already changes the name;
   * refused, the room stays joined under the name it had. */
  join(room: string, options?: { name?: string; since?: Position }): Promise<Joined>;
  /** Leaves `room`; resolves with `left` (at once while disconnected). */
  leave(room: string): Promise<Left>;
  /** Publishes to a joined room; resolves with `published`. `options.key`
   * (1–64 bytes) is an idempotency key: with one, a publish cut off by a
   * disconnect is sent again after the reconnect and published once. */
  publish(room: string, message: unknown, options?: { key?: string }): Promise<Published>;
  /** Authenticates with a JWT now (or on the next connection) and on every
   * later one. */
  auth(token: string): Promise<Authed>;
  /** The last (epoch, offset) this client has of `room`, or null. */
  position(room: string): Position | null;

  addEventListener<K extends keyof HubSocketEventMap>(
    type: K,
    listener: (this: HubSocket, ev: HubSocketEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof HubSocketEventMap>(
    type: K,
    listener: (this: HubSocket, ev: HubSocketEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null, options?: boolean | EventListenerOptions): void;
}

/** The defaults of HubSocketOptions. */
export const DEFAULTS: Readonly<{
  reconnect: true;
  reconnectDelay: 500;
  reconnectDelayMax: 30000;
  heartbeatInterval: 10000;
  heartbeatTimeout: 20000;
  requestTimeout: 10000;
  queueLimit: 100;
}>;

export default HubSocket;
