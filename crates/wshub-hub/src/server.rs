//! The hub's HTTP front: one listener, routes for the page, health, `/ws`
//! and `/echo` on wshub's one accept path ([`wshub::server`]), and graceful
//! shutdown.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use wshub::server::{read_handshake, Request, Response};
use wshub::{Accept, Error, TcpTransport, WebSocket};

use crate::admission::{Admission, Admitted};
use crate::rooms::Rooms;
use crate::session::Session;
use crate::{echo, member, HubConfig};

/// The chat page, embedded at build time.
pub(crate) const CHAT_PAGE: &str = include_str!("../assets/index.html");

/// What every connection's task of one server shares.
struct ServerState {
    config: HubConfig,
    rooms: Arc<Rooms>,
    next_conn_id: AtomicU64,
    shutdown: watch::Receiver<bool>,
    admission: Arc<Admission>,
}

/// Serves the hub on `listener` until `shutdown` completes, then closes every
/// connection with 1001 (going away) and returns once they are closed or
/// [`HubConfig::shutdown_timeout`] has passed. Connections still closing then
/// finish in the background (each bounded by its close timeout) unless the
/// runtime is shut down first, as `wshub serve` does when `serve` returns.
///
/// Routes:
///
/// | route | answer |
/// |---|---|
/// | `GET /` | the chat page (HTML) |
/// | `GET /healthz` | `200 ok` |
/// | `GET /ws` | the JSON hub (`docs/protocol.md`) |
/// | `GET /echo` | echoes every message |
/// | plain HTTP to `/ws` or `/echo` | 426 with a one-line explanation |
/// | another method on `/` or `/healthz` | 405 |
/// | anything else | 404 |
///
/// A request head not received within the handshake timeout
/// ([`WebSocketConfig::handshake_timeout`](wshub::WebSocketConfig::handshake_timeout)
/// of [`HubConfig::websocket`]) is answered 408. A request beyond a limit of
/// [`HubConfig::admission`] is answered `503 Service Unavailable` with
/// `Retry-After`, before any upgrade; open connections are not touched.
///
/// When `accept` fails for want of file descriptors or memory (EMFILE,
/// ENFILE, ENOMEM, ENOBUFS), the loop waits 50 ms, doubling up to 1 s until
/// an accept succeeds, and logs at most one line a second (with how many it
/// left out); new connections wait in the listen backlog meanwhile.
///
/// On shutdown the listener is closed, connections still in their
/// handshake are dropped, and every session is told to close with 1001.
///
/// # Errors
/// Only if the listener itself fails; a bad client never ends the server.
pub async fn serve(
    listener: TcpListener,
    config: HubConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = Arc::new(ServerState {
        rooms: Arc::new(Rooms::new(config.presence_limit)),
        admission: Arc::new(Admission::new(&config.admission)),
        config,
        next_conn_id: AtomicU64::new(1),
        shutdown: stop_rx,
    });
    let open = Arc::new(OpenConnections::default());
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                backoff.succeeded();
                let counted = OpenConnections::enter(&open);
                tokio::spawn(connection_task(tcp, peer, state.clone(), counted));
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "accept failed for one connection");
            }
            Err(e) => {
                // Out of descriptors or memory: retrying at once would spin,
                // and giving up would end the server.
                let (delay, log) = backoff.failed(Instant::now());
                if let Some(suppressed) = log {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = delay.as_millis() as u64,
                        suppressed,
                        connections = open.count(),
                        "accept failed: out of file descriptors or memory, backing off"
                    );
                }
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = open.count(),
        "shutting down: closing connections with 1001"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(state.config.shutdown_timeout, open.drained()).await;
    if drained.is_err() {
        tracing::warn!(
            connections = open.count(),
            "shutdown timeout: returning while connections still close"
        );
    }
    Ok(())
}

/// Whether an accept error concerns only the connection being accepted (it
/// was reset or aborted before we took it, or a firewall refused it), so
/// the next accept can follow at once.
fn is_per_connection(error: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | PermissionDenied
    )
}

/// The wait between accepts after the process ran out of descriptors or
/// memory, and when to log it. Time is an argument, for the tests.
#[derive(Debug, Default)]
struct AcceptBackoff {
    /// The last wait; zero after a successful accept.
    delay: Duration,
    /// When a failure was last logged.
    logged_at: Option<Instant>,
    /// Failures since then, not logged.
    suppressed: u64,
}

impl AcceptBackoff {
    /// The first wait: 50 ms.
    const FIRST: Duration = Duration::from_millis(50);
    /// The longest wait: 1 s.
    const MAX: Duration = Duration::from_secs(1);
    /// At most one log line per this: 1 s.
    const LOG_EVERY: Duration = Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed at `now`: the wait before the next one, and
    /// `Some(failures left out since the last line)` when this one is to be
    /// logged.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        let due = self.logged_at.map_or(true, |at| {
            now.saturating_duration_since(at) >= Self::LOG_EVERY
        });
        if !due {
            self.suppressed += 1;
            return (self.delay, None);
        }
        self.logged_at = Some(now);
        (self.delay, Some(std::mem::take(&mut self.suppressed)))
    }
}

/// The connections still running, so shutdown can wait for them. A counter
/// rather than a `JoinSet`, whose entry cost every idle connection 72 bytes.
#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    drained: Notify,
}

/// One connection counted in [`OpenConnections`], held by its task for its
/// whole life.
struct Counted(Arc<OpenConnections>);

impl OpenConnections {
    fn enter(open: &Arc<OpenConnections>) -> Counted {
        open.count.fetch_add(1, Ordering::Relaxed);
        Counted(open.clone())
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Resolves once no connection is left.
    async fn drained(&self) {
        loop {
            let drained = self.drained.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            drained.await;
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// The connection's task: the handshake, then the session. Each lives in an
/// allocation of its own: the handshake's state (request, buffers) is freed
/// once the connection is open, and the session is sized for what an open
/// connection needs. The task's own future holds only the two pointers, so
/// tokio's task cell stays small too; every idle connection pays for it.
fn connection_task(
    tcp: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    counted: Counted,
) -> impl Future<Output = ()> + Send {
    let handshake = Box::pin(async move {
        // A handshake still under way when the server stops is dropped:
        // nothing was promised to it yet, and shutdown need not wait for it.
        let mut shutdown = state.shutdown.clone();
        tokio::select! {
            opened = open_session(tcp, peer, &state) => opened,
            _ = shutdown.changed() => None,
        }
    });
    async move {
        if let Some((session, admitted)) = handshake.await {
            session.await;
            drop(admitted);
        }
        drop(counted);
    }
}

fn start_session(
    ws: WebSocket<TcpTransport>,
    route: WebSocketRoute,
    peer: SocketAddr,
    client: IpAddr,
    state: &ServerState,
) -> Session {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    tracing::info!(conn_id, %peer, %client, path = %ws.url(), "connection opened");
    let shutdown = state.shutdown.clone();
    match route {
        WebSocketRoute::Hub => Box::pin(member::run(
            ws,
            conn_id,
            state.rooms.clone(),
            state.config.send_queue,
            shutdown,
        )),
        WebSocketRoute::Echo => Box::pin(echo::run(ws, conn_id, shutdown)),
    }
}

/// The WebSocket routes.
enum WebSocketRoute {
    /// `/ws`: the JSON hub.
    Hub,
    /// `/echo`.
    Echo,
}

/// Where a request goes: a WebSocket route, or a plain HTTP answer.
fn route(request: &Request) -> Result<WebSocketRoute, Response> {
    let page = |status, content_type, body: &'static str| {
        Response::new(status, content_type, Bytes::from_static(body.as_bytes()))
            .header("Cache-Control", "no-store")
            .header("X-Content-Type-Options", "nosniff")
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    match (request.method.as_str(), request.path()) {
        (_, "/ws") => Ok(WebSocketRoute::Hub),
        (_, "/echo") => Ok(WebSocketRoute::Echo),
        ("GET", "/" | "/index.html") => Err(page(200, "text/html; charset=utf-8", CHAT_PAGE)),
        ("GET", "/healthz") => Err(page(200, TEXT, "ok\n")),
        (_, "/" | "/index.html" | "/healthz") => Err(page(405, TEXT, "use GET\n")),
        _ => Err(page(404, TEXT, "not found\n")),
    }
}

/// Reads the request, admits it or answers 503, answers plain HTTP routes,
/// and upgrades WebSocket ones into their session, returned with its
/// admission. Logs one line for a connection refused or failed.
async fn open_session(
    tcp: TcpStream,
    peer: SocketAddr,
    state: &ServerState,
) -> Option<(Session, Admitted)> {
    let _ = tcp.set_nodelay(true);
    let config = &state.config.websocket;
    let handshake = match read_handshake(tcp, config).await {
        Ok(handshake) => handshake,
        Err(Error::Handshake(e)) => {
            tracing::info!(%peer, error = %e, status = e.status(), "bad HTTP request");
            return None;
        }
        Err(Error::HandshakeTimeout) => {
            tracing::info!(%peer, status = 408, "handshake timeout");
            return None;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "connection ended before its request");
            return None;
        }
    };
    let client = state.admission.client_ip(peer.ip(), handshake.request());
    let admitted = match state.admission.admit(client, std::time::Instant::now()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let answer = refusal.response();
            tracing::info!(%peer, %client, status = 503, limit = refusal.limit.field(), "connection refused");
            if let Err(e) = handshake.respond(&answer).await {
                tracing::debug!(%peer, error = %e.report(), "answer not sent");
            }
            return None;
        }
    };
    let route = match route(handshake.request()) {
        Ok(route) => route,
        Err(answer) => {
            if let Err(e) = handshake.respond(&answer).await {
                tracing::debug!(%peer, status = answer.status, error = %e.report(), "answer not sent");
            }
            return None;
        }
    };
    let upgrade = match handshake.into_upgrade().await {
        Ok(upgrade) => upgrade,
        Err(Error::Handshake(e)) => {
            tracing::info!(%peer, error = %e, status = e.status(), "handshake refused");
            return None;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "handshake refused");
            return None;
        }
    };
    if let Some(origin) = upgrade.request().origin() {
        tracing::debug!(%peer, origin, "upgrade");
    }
    // After the handshake, reads and writes are direct system calls
    // (`TcpTransport`): 2.3% more echoes per second at 16 messages in
    // flight, no measurable change at 1 (A/B runs, 2026-11-29).
    let upgrade = upgrade.map_io(TcpTransport::new);
    match upgrade.accept(Accept::default(), config.clone()).await {
        Ok(ws) => Some((start_session(ws, route, peer, client, state), admitted)),
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "upgrade failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_logs_once_a_second() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.failed(t0), (ms(50), Some(0)));
        assert_eq!(backoff.failed(t0 + ms(50)), (ms(100), None));
        assert_eq!(backoff.failed(t0 + ms(150)), (ms(200), None));
        assert_eq!(backoff.failed(t0 + ms(350)), (ms(400), None));
        assert_eq!(backoff.failed(t0 + ms(750)), (ms(800), None));
        assert_eq!(backoff.failed(t0 + ms(1550)), (ms(1000), Some(4)));
        assert_eq!(backoff.failed(t0 + ms(2550)), (ms(1000), Some(0)));
        backoff.succeeded();
        assert_eq!(backoff.failed(t0 + ms(2600)), (ms(50), None));
    }

    #[test]
    fn only_resource_errors_back_off() {
        use io::ErrorKind::*;
        for kind in [
            ConnectionAborted,
            ConnectionReset,
            Interrupted,
            PermissionDenied,
        ] {
            assert!(is_per_connection(&io::Error::from(kind)), "{kind:?}");
        }
        // EMFILE: "Too many open files" has no kind of its own.
        assert!(!is_per_connection(&io::Error::from_raw_os_error(24)));
        assert!(!is_per_connection(&io::Error::from(OutOfMemory)));
    }

    async fn server_socket(listener: &TcpListener) -> (WebSocket<TcpTransport>, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::from_raw(
            TcpTransport::new(tcp),
            wshub::Role::Server,
            Default::default(),
            &[],
        );
        (ws, client)
    }

    /// Every idle connection holds its session future, so its size is most
    /// of the hub's memory per connection (bench/README.md, idle rows). This
    /// catches a change that makes it balloon, such as an `async fn` keeping
    /// the `WebSocket` twice (it did: 1,840 B for the echo route).
    #[tokio::test]
    async fn idle_session_futures_stay_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_stop, stop_rx) = watch::channel(false);

        let (socket, _client) = server_socket(&listener).await;
        let socket_size = std::mem::size_of_val(&socket);
        let echo = echo::run(socket, 1, stop_rx.clone());
        let echo_size = std::mem::size_of_val(&echo);
        // The echo session keeps its shutdown `changed()` future pinned for
        // its life, with a second receiver and the waker it registered, so
        // that a wake-up checks the shutdown with one atomic load. On
        // 2026-11-29 it was 1,032 B around a 648 B WebSocket: at the bound.
        assert!(
            echo_size <= socket_size + 384,
            "echo session {echo_size} B around a {socket_size} B WebSocket"
        );

        let (socket, _client) = server_socket(&listener).await;
        let hub = member::run(socket, 2, Arc::new(Rooms::default()), 16, stop_rx);
        let hub_size = std::mem::size_of_val(&hub);
        assert!(
            hub_size <= socket_size + 640,
            "hub session {hub_size} B around a {socket_size} B WebSocket"
        );
    }
}
