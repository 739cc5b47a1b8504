//! The logic behind wshub's runnable examples, one module per example, so the
//! integration tests in `examples/tests/` can run each one on `127.0.0.1:0`.
//!
//! Every example file is a thin `main`: it sets up logging, binds the port
//! (or takes the URL) and calls the `run` function of its module here.
//!
//! | example | seed tutorial | module |
//! |---|---|---|
//! | `echo_server` | 001: the point-to-point reply | [`echo_server`] |
//! | `broadcast_server` | 000: chat broadcast + JSON heartbeat | [`broadcast_server`] |
//! | `heartbeat_server` | 004: broadcast, `ping` → `pong`, heartbeat | [`heartbeat_server`] |
//! | `periodic_push` | 002: express-ws route `/websocket/test` | [`periodic_push`] |
//! | `client` | 001: browser API, `close(code, reason)` | [`client`] |
//! | `reconnecting_client` | 003: `WebSocketClass` | [`reconnecting_client`] |
//!
//! The seeds' servers keep a `setInterval` per client and clear it "when the
//! socket is no longer OPEN", which leaks the timer of a client that never
//! comes back. Here each timer belongs to its connection's task, so it stops
//! when the connection ends.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wshub::{Error, WebSocket};

/// How long a client may take to send its opening handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `tracing` output to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The seeds' JSON message, `{"type":<kind>,"message":<text>}`, with the keys
/// in the order `JSON.stringify` writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the message is: the seeds' `state` table (for example 1 for a
    /// heartbeat, 2 for a chat message in seed 000; 0 for a pong in seed 004).
    #[serde(rename = "type")]
    pub kind: u8,
    /// The payload text.
    pub message: String,
}

impl Envelope {
    /// An envelope of `kind` around `message`.
    pub fn new(kind: u8, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// The JSON text, e.g. `{"type":2,"message":"hi"}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of a number and a string always serializes")
    }

    /// Parses a text message as an envelope; `None` if it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }
}

/// Accepts connections on `listener` and runs `handle(tcp, peer, conn_id)` for
/// each in its own task. Never returns; dropping the future stops the server
/// and ends every connection with it, because the tasks live in a [`JoinSet`].
async fn serve<F, Fut>(listener: TcpListener, mut handle: F)
where
    F: FnMut(TcpStream, SocketAddr, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    next_id += 1;
                    connections.spawn(handle(tcp, peer, next_id));
                }
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Performs the opening handshake, bounded by [`HANDSHAKE_TIMEOUT`], and logs
/// the outcome once.
async fn accept(tcp: TcpStream, peer: SocketAddr, conn_id: u64) -> Option<WebSocket<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, wshub::accept(tcp)).await {
        Ok(Ok(ws)) => {
            tracing::info!(conn_id, %peer, "connection opened");
            Some(ws)
        }
        Ok(Err(e)) => {
            tracing::info!(conn_id, %peer, error = %Chain(&e), "handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(conn_id, %peer, "handshake timed out");
            None
        }
    }
}

/// The one log line of a connection that has ended.
fn log_closed(conn_id: u64, ws: &WebSocket<TcpStream>, error: Option<&Error>) {
    let event = ws.close_event();
    let close_code = event.as_ref().map_or(1006, |e| e.code.as_u16());
    let was_clean = event.as_ref().is_some_and(|e| e.was_clean);
    match error {
        Some(e) => tracing::info!(conn_id, close_code, error = %Chain(e), "connection failed"),
        None => tracing::info!(conn_id, close_code, was_clean, "connection closed"),
    }
}

/// The text of a message as the seeds' `message.toString()` gives it: binary
/// payloads are read as UTF-8, invalid sequences replaced.
fn text_of(message: &wshub::Message) -> String {
    match message {
        wshub::Message::Text(text) => text.as_str().to_owned(),
        wshub::Message::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Displays an error with its causes, `outer: inner: root`: wshub's errors
/// keep their cause in `source()` (for example `i/o error: Connection
/// refused`), which `Display` alone does not show.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A ticker that first fires one `period` from now, and after a stall waits a
/// full `period` again rather than firing a burst to catch up.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

pub mod echo_server {
    //! Echoes every message back to its sender, text as text and binary as
    //! binary: seed 001's point-to-point `ws.send(message)`.

    use futures_util::StreamExt;
    use tokio::net::TcpListener;

    /// The address the example listens on.
    pub const ADDR: &str = "127.0.0.1:9001";

    /// Serves the echo on `listener`. Never returns; drop it to stop.
    pub async fn run(listener: TcpListener) {
        super::serve(listener, |tcp, peer, conn_id| async move {
            let Some(mut ws) = super::accept(tcp, peer, conn_id).await else {
                return;
            };
            let mut error = None;
            while let Some(incoming) = ws.next().await {
                let sent = match incoming {
                    Ok(message) => {
                        tracing::debug!(
                            conn_id,
                            text = message.is_text(),
                            len = message.len(),
                            "echo"
                        );
                        ws.send(message).await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = sent {
                    error = Some(e);
                    break;
                }
            }
            super::log_closed(conn_id, &ws, error.as_ref());
        })
        .await;
    }
}

pub mod fanout {
    //! Broadcast to every open connection: each message is encoded once as a
    //! [`PreparedMessage`] and queued on every client's bounded channel. A
    //! client whose queue is full is dropped, so one slow reader never
    //! blocks the broadcaster or grows the server's memory.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, MutexGuard};

    use tokio::sync::mpsc;
    use wshub::{Message, PreparedMessage};

    /// The open connections of one server (the seeds' `wss.clients`).
    #[derive(Debug)]
    pub struct Clients {
        // A std Mutex is fine: no `.await` happens under it, and a broadcast
        // only does non-blocking `try_send`s.
        queues: Mutex<HashMap<u64, mpsc::Sender<PreparedMessage>>>,
        capacity: usize,
    }

    /// One connection's membership: its queue of frames to write. Dropping
    /// it removes the connection from [`Clients`].
    #[derive(Debug)]
    pub struct Member {
        id: u64,
        clients: Arc<Clients>,
        queue: mpsc::Receiver<PreparedMessage>,
    }

    impl Clients {
        /// No clients yet; each will queue at most `capacity` frames.
        pub fn new(capacity: usize) -> Self {
            Self {
                queues: Mutex::new(HashMap::new()),
                capacity: capacity.max(1),
            }
        }

        fn lock(&self) -> MutexGuard<'_, HashMap<u64, mpsc::Sender<PreparedMessage>>> {
            self.queues.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Adds connection `id`; it receives every broadcast from now on.
        pub fn join(self: &Arc<Self>, id: u64) -> Member {
            let (tx, queue) = mpsc::channel(self.capacity);
            self.lock().insert(id, tx);
            Member {
                id,
                clients: self.clone(),
                queue,
            }
        }

        /// Queues `message`, encoded once, for every client, the sender
        /// included. A client whose queue is full is dropped: its
        /// [`Member::next`] returns `None`. Returns how many clients got it.
        pub fn broadcast(&self, message: &Message) -> usize {
            let frame = PreparedMessage::new(message);
            let mut queues = self.lock();
            queues.retain(|&conn_id, tx| match tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(conn_id, "send queue full, dropping slow client");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            queues.len()
        }

        /// Number of open clients.
        pub fn len(&self) -> usize {
            self.lock().len()
        }

        /// Whether no client is open.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl Member {
        /// The next frame to write; `None` once this client was dropped for
        /// falling behind (what it had queued is discarded).
        pub async fn next(&mut self) -> Option<PreparedMessage> {
            if self.queue.is_closed() {
                return None;
            }
            self.queue.recv().await
        }

        /// A frame already queued, without waiting.
        pub fn try_next(&mut self) -> Option<PreparedMessage> {
            self.queue.try_recv().ok()
        }
    }

    impl Drop for Member {
        fn drop(&mut self) {
            self.clients.lock().remove(&self.id);
        }
    }
}

/// Writes `first` and every frame already queued behind it with one flush.
async fn write_queued(
    ws: &mut WebSocket<TcpStream>,
    first: wshub::PreparedMessage,
    member: &mut fanout::Member,
) -> Result<(), Error> {
    ws.feed_prepared(&first)?;
    while let Some(more) = member.try_next() {
        ws.feed_prepared(&more)?;
    }
    ws.flush().await
}

pub mod broadcast_server {
    //! Seed 000's chat server: every message a client sends goes to all open
    //! clients as `{"type":2,"message":"<text>"}`, and each client gets
    //! `{"type":1,"message":"心跳检测"}` every 3 s while it is open.

    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use wshub::{CloseCode, Message, PreparedMessage, State};

    use super::fanout::Clients;
    use super::Envelope;

    /// The address the example listens on.
    pub const ADDR: &str = "127.0.0.1:8080";
    /// `state.heart`: the heartbeat's `type`.
    pub const HEART: u8 = 1;
    /// `state.message`: a broadcast chat message's `type`.
    pub const MESSAGE: u8 = 2;
    /// The heartbeat's text.
    pub const HEARTBEAT_TEXT: &str = "心跳检测";

    /// Settings of the broadcast server.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Time between two heartbeats to one client. Default: 3 s.
        pub heartbeat_interval: Duration,
        /// Frames queued per client before it counts as too slow and is
        /// dropped with 1008. Default: 64.
        pub send_queue: usize,
    }

    impl Default for Config {
        fn default() -> Self {
            Self {
                heartbeat_interval: Duration::from_secs(3),
                send_queue: 64,
            }
        }
    }

    /// Serves the chat broadcast on `listener`. Never returns; drop it to stop.
    pub async fn run(listener: TcpListener, config: Config) {
        let clients = Arc::new(Clients::new(config.send_queue));
        // Every client's heartbeat is the same frame: encode it once.
        let heartbeat = PreparedMessage::new(&Message::text(
            Envelope::new(HEART, HEARTBEAT_TEXT).to_json(),
        ));
        super::serve(listener, |tcp, peer, conn_id| {
            connection(
                tcp,
                peer,
                conn_id,
                clients.clone(),
                heartbeat.clone(),
                config.heartbeat_interval,
            )
        })
        .await;
    }

    async fn connection(
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        conn_id: u64,
        clients: Arc<Clients>,
        heartbeat: PreparedMessage,
        heartbeat_interval: Duration,
    ) {
        let Some(mut ws) = super::accept(tcp, peer, conn_id).await else {
            return;
        };
        let mut member = clients.join(conn_id);
        // The heartbeat timer lives as long as this loop: it stops with the
        // connection, whichever way that ends.
        let mut heart = super::ticker(heartbeat_interval);
        let mut error = None;
        loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    None => break,
                    Some(Err(e)) => {
                        error = Some(e);
                        break;
                    }
                    Some(Ok(message)) => {
                        let text = super::text_of(&message);
                        tracing::info!(conn_id, text, "message from client");
                        let json = Envelope::new(MESSAGE, text).to_json();
                        let reached = clients.broadcast(&Message::text(json));
                        tracing::debug!(conn_id, reached, "broadcast");
                    }
                },
                frame = member.next() => match frame {
                    Some(frame) => {
                        if let Err(e) = super::write_queued(&mut ws, frame, &mut member).await {
                            error = Some(e);
                            break;
                        }
                    }
                    None => {
                        let _ = ws.close(CloseCode::PolicyViolation, "send queue full").await;
                        break;
                    }
                },
                _ = heart.tick() => {
                    if ws.ready_state() == State::Open {
                        if let Err(e) = ws.send_prepared(&heartbeat).await {
                            error = Some(e);
                            break;
                        }
                    }
                }
            }
        }
        drop(member);
        super::log_closed(conn_id, &ws, error.as_ref());
    }
}

pub mod heartbeat_server {
    //! Seed 004's server: `something` on connect; every message broadcast
    //! as-is to all open clients (`wss.clients.forEach`); the text `ping`
    //! answered to its sender alone with `{"type":0,"message":"pong"}`; and
    //! `{"type":1,"message":"ping"}` to each client every 5 s.

    use std::sync::Arc;
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use wshub::{CloseCode, Message, PreparedMessage, State};

    use super::fanout::Clients;
    use super::Envelope;

    /// The address the example listens on.
    pub const ADDR: &str = "127.0.0.1:3000";
    /// `state.message`: the pong's `type`.
    pub const MESSAGE: u8 = 0;
    /// `state.heart`: the server's ping's `type`.
    pub const HEART: u8 = 1;
    /// Sent to each client as it connects (the seed's last snippet).
    pub const GREETING: &str = "something";

    /// Settings of the heartbeat server.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Time between two `{"type":1,"message":"ping"}` to one client.
        /// Default: 5 s.
        pub ping_interval: Duration,
        /// Frames queued per client before it counts as too slow and is
        /// dropped with 1008. Default: 64.
        pub send_queue: usize,
    }

    impl Default for Config {
        fn default() -> Self {
            Self {
                ping_interval: Duration::from_secs(5),
                send_queue: 64,
            }
        }
    }

    /// Serves on `listener`. Never returns; drop it to stop.
    pub async fn run(listener: TcpListener, config: Config) {
        let clients = Arc::new(Clients::new(config.send_queue));
        let ping = PreparedMessage::new(&Message::text(Envelope::new(HEART, "ping").to_json()));
        let pong = PreparedMessage::new(&Message::text(Envelope::new(MESSAGE, "pong").to_json()));
        super::serve(listener, |tcp, peer, conn_id| {
            connection(
                tcp,
                peer,
                conn_id,
                clients.clone(),
                [ping.clone(), pong.clone()],
                config.ping_interval,
            )
        })
        .await;
    }

    async fn connection(
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        conn_id: u64,
        clients: Arc<Clients>,
        [ping, pong]: [PreparedMessage; 2],
        ping_interval: Duration,
    ) {
        let Some(mut ws) = super::accept(tcp, peer, conn_id).await else {
            return;
        };
        let mut member = clients.join(conn_id);
        let mut heart = super::ticker(ping_interval);
        let mut error = ws.send_text(GREETING).await.err();
        while error.is_none() {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    None => break,
                    Some(Err(e)) => error = Some(e),
                    Some(Ok(Message::Text(text))) if text.as_str() == "ping" => {
                        error = ws.send_prepared(&pong).await.err();
                    }
                    Some(Ok(message)) => {
                        tracing::info!(conn_id, text = message.is_text(), len = message.len(), "received, broadcasting");
                        clients.broadcast(&message);
                    }
                },
                frame = member.next() => match frame {
                    Some(frame) => {
                        error = super::write_queued(&mut ws, frame, &mut member).await.err();
                    }
                    None => {
                        let _ = ws.close(CloseCode::PolicyViolation, "send queue full").await;
                        break;
                    }
                },
                _ = heart.tick() => {
                    if ws.ready_state() == State::Open {
                        error = ws.send_prepared(&ping).await.err();
                    }
                }
            }
        }
        drop(member);
        super::log_closed(conn_id, &ws, error.as_ref());
    }
}

pub mod periodic_push {
    //! Seed 002's express-ws route: only `/websocket/test` upgrades. On
    //! connect it says `连接成功`, then pushes a random number in `[0, 1]` with
    //! two decimals (`Math.random().toFixed(2)`) every second while open, and
    //! echoes whatever it receives.
    //!
    //! Routing happens between reading the request and upgrading it:
    //! [`read_request`] → check the path → [`validate_request`] → [`upgrade`].

    use std::net::SocketAddr;
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::net::{TcpListener, TcpStream};
    use wshub::server::{read_request, upgrade, write_rejection};
    use wshub::{Accept, Error, State, WebSocketConfig};
    use wshub_proto::handshake::{validate_request, HandshakeError, DEFAULT_MAX_HEAD_LEN};

    /// The address the example listens on.
    pub const ADDR: &str = "127.0.0.1:3000";
    /// The one WebSocket route.
    pub const PATH: &str = "/websocket/test";
    /// Sent as each client connects.
    pub const GREETING: &str = "连接成功";

    /// Settings of the push server.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// Time between two pushed numbers. Default: 1 s.
        pub push_interval: Duration,
    }

    impl Default for Config {
        fn default() -> Self {
            Self {
                push_interval: Duration::from_secs(1),
            }
        }
    }

    /// `Math.random().toFixed(2)`: `"0.00"` to `"1.00"`.
    pub fn random_number() -> String {
        format!("{:.2}", rand::random::<f64>())
    }

    /// Serves the route on `listener`. Never returns; drop it to stop.
    pub async fn run(listener: TcpListener, config: Config) {
        super::serve(listener, |tcp, peer, conn_id| {
            route(tcp, peer, conn_id, config.push_interval)
        })
        .await;
    }

    async fn route(mut tcp: TcpStream, peer: SocketAddr, conn_id: u64, push_interval: Duration) {
        let read = tokio::time::timeout(
            super::HANDSHAKE_TIMEOUT,
            read_request(&mut tcp, DEFAULT_MAX_HEAD_LEN),
        )
        .await;
        let (request, early) = match read {
            Ok(Ok(ok)) => ok,
            Ok(Err(Error::Handshake(e))) => {
                tracing::info!(conn_id, %peer, error = %e, "bad HTTP request");
                let _ = write_rejection(&mut tcp, e.status(), &[], &format!("{e}\n")).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(conn_id, %peer, error = %super::Chain(&e), "connection ended before its request");
                return;
            }
            Err(_) => {
                tracing::info!(conn_id, %peer, "handshake timed out");
                let _ = write_rejection(&mut tcp, 408, &[], "request not received in time\n").await;
                return;
            }
        };
        if request.path() != PATH {
            tracing::info!(conn_id, %peer, path = request.path(), status = 404, "no such route");
            let _ = write_rejection(&mut tcp, 404, &[], "not found\n").await;
            return;
        }
        let upgrade_request = match validate_request(request) {
            Ok(r) => r,
            Err(e) => {
                // A plain GET gets 426 Upgrade Required (RFC 6455 §4.2.2).
                let body = match e {
                    HandshakeError::NotUpgrade => {
                        format!("{PATH} is a WebSocket endpoint: connect with ws://\n")
                    }
                    ref other => format!("{other}\n"),
                };
                tracing::info!(conn_id, %peer, error = %e, status = e.status(), "handshake refused");
                let _ = write_rejection(&mut tcp, e.status(), &[], &body).await;
                return;
            }
        };
        let config = WebSocketConfig::default();
        let mut ws = match upgrade(tcp, &upgrade_request, &early, Accept::default(), config).await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(conn_id, %peer, error = %super::Chain(&e), "upgrade failed");
                return;
            }
        };
        tracing::info!(conn_id, %peer, path = PATH, "connection opened");

        let mut push = super::ticker(push_interval);
        let mut error = ws.send_text(GREETING).await.err();
        while error.is_none() {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    None => break,
                    Some(Err(e)) => error = Some(e),
                    Some(Ok(message)) => error = ws.send(message).await.err(),
                },
                _ = push.tick() => {
                    // The seed's `if (ws.readyState === ws.OPEN)`.
                    if ws.ready_state() == State::Open {
                        error = ws.send_text(&random_number()).await.err();
                    }
                }
            }
        }
        super::log_closed(conn_id, &ws, error.as_ref());
    }
}

pub mod client {
    //! Seed 001's browser client in Rust: open, send `Hello Server!`, print
    //! each message, then `close(1000, "Closing connection normally")` and
    //! print the close event.

    use std::io::Write;
    use std::time::Duration;

    use futures_util::StreamExt;
    use wshub::{CloseCode, CloseEvent, Error, Message, State};

    /// The URL used when none is given: the `echo_server` example.
    pub const DEFAULT_URL: &str = "ws://127.0.0.1:9001";
    /// Sent once the connection is open.
    pub const GREETING: &str = "Hello Server!";
    /// The close reason.
    pub const CLOSE_REASON: &str = "Closing connection normally";

    /// Settings of the client.
    #[derive(Debug, Clone)]
    pub struct Config {
        /// How long to print incoming messages before closing. Default: 2 s.
        pub listen_for: Duration,
    }

    impl Default for Config {
        fn default() -> Self {
            Self {
                listen_for: Duration::from_secs(2),
            }
        }
    }

    fn ready_state(state: State) -> String {
        format!("{} ({state:?})", state as u8)
    }

    /// Connects to `url`, writes one line per event to `out`, and returns how
    /// the connection ended.
    ///
    /// # Errors
    /// What [`wshub::connect`] returns (including [`Error::TlsUnsupported`]
    /// for `wss://`), an error of the open connection, or [`Error::Io`] if
    /// writing to `out` fails. Each is also written to `out` as `error: …`.
    pub async fn run<W: Write>(
        url: &str,
        config: &Config,
        out: &mut W,
    ) -> Result<CloseEvent, Error> {
        let result = talk(url, config, out).await;
        if let Err(e) = &result {
            writeln!(out, "error: {}", super::Chain(e))?;
        }
        result
    }

    async fn talk<W: Write>(url: &str, config: &Config, out: &mut W) -> Result<CloseEvent, Error> {
        let mut ws = wshub::connect(url).await?;
        writeln!(
            out,
            "open: readyState={} protocol={:?} url={}",
            ready_state(ws.ready_state()),
            ws.protocol().unwrap_or_default(),
            ws.url()
        )?;
        ws.send_text(GREETING).await?;
        writeln!(out, "sent: {GREETING}")?;

        let deadline = tokio::time::Instant::now() + config.listen_for;
        while let Ok(incoming) = tokio::time::timeout_at(deadline, ws.next()).await {
            match incoming {
                None => break,
                Some(Ok(Message::Text(text))) => writeln!(out, "message (text): {text}")?,
                Some(Ok(Message::Binary(bytes))) => writeln!(
                    out,
                    "message (binary, {} bytes): {:02x?}",
                    bytes.len(),
                    &bytes[..]
                )?,
                Some(Err(e)) => return Err(e),
            }
        }

        let event = match ws.close_event() {
            Some(event) => event,
            None => {
                writeln!(
                    out,
                    "close(1000, {CLOSE_REASON:?}) with readyState={}",
                    ready_state(ws.ready_state())
                )?;
                ws.close(CloseCode::NormalClosure, CLOSE_REASON).await?
            }
        };
        writeln!(
            out,
            "closed: code={} reason={:?} wasClean={} readyState={}",
            event.code,
            event.reason,
            event.was_clean,
            ready_state(ws.ready_state())
        )?;
        Ok(event)
    }
}

pub mod reconnecting_client {
    //! Seed 003's `WebSocketClass`: a client that hands every message to a
    //! callback, sends a message on open, keeps an application heartbeat
    //! (text `ping` every 10 s, expecting `pong` within 20 s) and reconnects
    //! with backoff unless it was closed on purpose with
    //! [`WebSocketClient::close_myself`].
    //!
    //! Besides the seed's text `pong`, [`is_pong`] accepts seed 004's
    //! `{"type":0,"message":"pong"}`, so this client keeps its heartbeat with
    //! the `heartbeat_server` example.

    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::net::TcpStream;
    use tokio::sync::{mpsc, oneshot, watch};
    use tokio::task::JoinHandle;
    use tokio::time::Instant;
    use wshub::reconnect::Backoff;
    use wshub::{ClientBuilder, CloseCode, Error, Message, State, WebSocket};

    use super::Envelope;

    /// The URL used when none is given: the `heartbeat_server` example.
    pub const DEFAULT_URL: &str = "ws://127.0.0.1:3000";

    /// Settings of a [`WebSocketClient`].
    #[derive(Debug, Clone)]
    pub struct Options {
        /// Shown in every log line, to tell clients apart (the seed's `name`).
        /// Default: `"default"`.
        pub name: String,
        /// Time between two text `ping`s while open. Default: 10 s.
        pub ping_interval: Duration,
        /// How long a `ping` may go unanswered before the connection counts
        /// as dead and is replaced. Default: 20 s.
        pub pong_timeout: Duration,
        /// Bounds TCP connect plus opening handshake. Default: 10 s.
        pub connect_timeout: Duration,
        /// Delays between connection attempts. Restarts from its base once a
        /// connection answers a `ping`. Default: [`Backoff::default`]
        /// (random, up to 500 ms doubling to 30 s).
        pub backoff: Backoff,
        /// Which messages answer a `ping`. Default: [`is_pong`].
        pub is_pong: fn(&Message) -> bool,
    }

    impl Default for Options {
        fn default() -> Self {
            Self {
                name: "default".to_owned(),
                ping_interval: Duration::from_secs(10),
                pong_timeout: Duration::from_secs(20),
                connect_timeout: Duration::from_secs(10),
                backoff: Backoff::default(),
                is_pong,
            }
        }
    }

    /// Whether `message` is the text `pong` (seed 003) or the JSON
    /// `{"type":0,"message":"pong"}` (seed 004).
    pub fn is_pong(message: &Message) -> bool {
        let Message::Text(text) = message else {
            return false;
        };
        text.as_str() == "pong"
            || Envelope::parse(text.as_str()).is_some_and(|e| e.kind == 0 && e.message == "pong")
    }

    /// A handle on a client that connects, and keeps reconnecting, in a
    /// background task until [`WebSocketClient::close_myself`] is called or the
    /// handle is dropped.
    #[derive(Debug)]
    pub struct WebSocketClient {
        outgoing: mpsc::Sender<String>,
        close: oneshot::Sender<()>,
        state: watch::Receiver<State>,
        task: JoinHandle<()>,
    }

    impl WebSocketClient {
        /// Starts connecting to `url` (the seed's `new WebSocketClass(url,
        /// msgCallback, name).connect(data)`). `data`, if any, is sent each
        /// time a connection opens, so a subscription survives reconnects;
        /// the seed sends it on the first open only. `on_message` gets every
        /// message, pongs included, in order.
        ///
        /// # Panics
        /// Outside a Tokio runtime.
        pub fn connect<F>(
            url: impl Into<String>,
            data: Option<String>,
            options: Options,
            on_message: F,
        ) -> Self
        where
            F: FnMut(Message) + Send + 'static,
        {
            let (outgoing, outgoing_rx) = mpsc::channel(64);
            let (close, close_rx) = oneshot::channel();
            let (state_tx, state) = watch::channel(State::Connecting);
            let task = tokio::spawn(
                Task {
                    url: url.into(),
                    data,
                    options,
                    on_message,
                    outgoing: outgoing_rx,
                    close: close_rx,
                    state: state_tx,
                }
                .run(),
            );
            Self {
                outgoing,
                close,
                state,
                task,
            }
        }

        /// Queues a text message (the seed's `sendHandle`). It is sent on the
        /// open connection, or on the next one while reconnecting; a message
        /// in flight when a connection drops is lost. Waits while 64 messages
        /// are already queued.
        ///
        /// # Errors
        /// [`Error::ConnectionClosed`] if the client has stopped.
        pub async fn send(&self, text: impl Into<String>) -> Result<(), Error> {
            self.outgoing
                .send(text.into())
                .await
                .map_err(|_| Error::ConnectionClosed)
        }

        /// `Open` while connected, `Connecting` while (re)connecting, `Closed`
        /// between attempts and once stopped.
        pub fn ready_state(&self) -> State {
            *self.state.borrow()
        }

        /// Closes the connection with 1000 and stops reconnecting (the seed's
        /// `closeMyself`). Returns once the background task has ended, so no
        /// connection attempt can follow.
        pub async fn close_myself(self) {
            let _ = self.close.send(());
            if let Err(e) = self.task.await {
                tracing::warn!(error = %e, "client task failed");
            }
        }
    }

    struct Task<F> {
        url: String,
        data: Option<String>,
        options: Options,
        on_message: F,
        outgoing: mpsc::Receiver<String>,
        /// Fires on `close_myself`, or with an error when the handle is dropped.
        close: oneshot::Receiver<()>,
        state: watch::Sender<State>,
    }

    /// Why a connection ended.
    enum End {
        ClosedMyself,
        Lost,
    }

    impl<F: FnMut(Message) + Send + 'static> Task<F> {
        async fn run(mut self) {
            let name = self.options.name.clone();
            loop {
                self.state.send_replace(State::Connecting);
                let attempt = ClientBuilder::new(self.url.clone())
                    .handshake_timeout(self.options.connect_timeout)
                    .connect();
                let connected = tokio::select! {
                    biased;
                    _ = &mut self.close => break,
                    connected = attempt => connected,
                };
                match connected {
                    Ok(ws) => {
                        tracing::info!(name, url = self.url, "connected");
                        self.state.send_replace(State::Open);
                        if let End::ClosedMyself = self.session(ws).await {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(name, url = self.url, error = %super::Chain(&e), "connect failed")
                    }
                }
                self.state.send_replace(State::Closed);
                let delay = self
                    .options
                    .backoff
                    .next()
                    .expect("Backoff is an endless iterator");
                tracing::info!(name, ?delay, "reconnecting after a delay");
                tokio::select! {
                    biased;
                    _ = &mut self.close => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            self.state.send_replace(State::Closed);
            tracing::info!(name, "closed on purpose, not reconnecting");
        }

        async fn session(&mut self, mut ws: WebSocket<TcpStream>) -> End {
            let name = self.options.name.as_str();
            if let Some(data) = &self.data {
                if let Err(e) = ws.send_text(data).await {
                    tracing::warn!(name, error = %super::Chain(&e), "connection lost");
                    return End::Lost;
                }
            }
            let mut ping = super::ticker(self.options.ping_interval);
            // When the oldest unanswered `ping` went out.
            let mut unanswered_since: Option<Instant> = None;
            loop {
                let pong_deadline = unanswered_since.map(|t| t + self.options.pong_timeout);
                let result = tokio::select! {
                    biased;
                    _ = &mut self.close => {
                        match ws.close(CloseCode::NormalClosure, "closed by the client").await {
                            Ok(event) => tracing::info!(name, close_code = event.code.as_u16(), was_clean = event.was_clean, "connection closed"),
                            Err(e) => tracing::info!(name, error = %super::Chain(&e), "close failed"),
                        }
                        return End::ClosedMyself;
                    }
                    _ = tokio::time::sleep_until(pong_deadline.unwrap_or_else(Instant::now)), if pong_deadline.is_some() => {
                        // Dropping `ws` closes the TCP connection: the peer
                        // is not answering, so a close handshake would only
                        // wait out its timeout.
                        tracing::warn!(name, pong_timeout = ?self.options.pong_timeout, "no pong in time, reconnecting");
                        return End::Lost;
                    }
                    _ = ping.tick() => {
                        unanswered_since.get_or_insert_with(Instant::now);
                        ws.send_text("ping").await
                    }
                    Some(text) = self.outgoing.recv() => {
                        tracing::info!(name, text, "sending");
                        ws.send_text(&text).await
                    }
                    incoming = ws.next() => match incoming {
                        None => {
                            let event = ws.close_event();
                            tracing::warn!(name, close_code = event.as_ref().map(|e| e.code.as_u16()), "closed by the server, reconnecting");
                            return End::Lost;
                        }
                        Some(Err(e)) => Err(e),
                        Some(Ok(message)) => {
                            if (self.options.is_pong)(&message) {
                                unanswered_since = None;
                                // The connection works: start the backoff over.
                                self.options.backoff.reset();
                            }
                            (self.on_message)(message);
                            Ok(())
                        }
                    },
                };
                if let Err(e) = result {
                    tracing::warn!(name, error = %super::Chain(&e), "connection lost, reconnecting");
                    return End::Lost;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wshub::Message;

    #[test]
    fn envelopes_keep_the_key_order_of_json_stringify() {
        assert_eq!(
            Envelope::new(2, "hi").to_json(),
            r#"{"type":2,"message":"hi"}"#
        );
        assert_eq!(
            Envelope::new(1, "心跳检测").to_json(),
            r#"{"type":1,"message":"心跳检测"}"#
        );
        assert_eq!(Envelope::parse("hi"), None);
    }

    #[test]
    fn random_numbers_have_two_decimals_between_zero_and_one() {
        for _ in 0..1000 {
            let n = periodic_push::random_number();
            assert_eq!(n.len(), 4, "{n}");
            assert!(n.starts_with("0.") || n == "1.00", "{n}");
            assert!(n[2..].bytes().all(|b| b.is_ascii_digit()), "{n}");
        }
    }

    #[test]
    fn pong_is_plain_text_or_the_seed_004_json() {
        use reconnecting_client::is_pong;
        assert!(is_pong(&Message::text("pong")));
        assert!(is_pong(&Message::text(r#"{"type":0,"message":"pong"}"#)));
        assert!(!is_pong(&Message::text(r#"{"type":1,"message":"ping"}"#)));
        assert!(!is_pong(&Message::text("ping")));
        assert!(!is_pong(&Message::binary(&b"pong"[..])));
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_slow_client_and_not_the_others() {
        let clients = std::sync::Arc::new(fanout::Clients::new(2));
        let mut slow = clients.join(1);
        let mut fast = clients.join(2);
        for i in 0..2 {
            assert_eq!(clients.broadcast(&Message::text(format!("m{i}"))), 2);
            assert!(fast.next().await.is_some());
        }
        assert_eq!(clients.broadcast(&Message::text("m2")), 1);
        assert!(slow.next().await.is_none(), "the slow client is dropped");
        assert!(fast.next().await.is_some());
        drop(fast);
        assert!(clients.is_empty());
    }
}
