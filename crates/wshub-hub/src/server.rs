//! The hub's HTTP front: one listener, routes for the page, health, `/ws`
//! and `/echo` on wshub's one accept path ([`wshub::server`]), and graceful
//! shutdown.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use wshub::server::{read_handshake, Request, Response};
use wshub::{Accept, Error, TcpTransport, WebSocket, WebSocketConfig};

use crate::admission::{Admission, Admitted};
use crate::auth::{Identity, Tokens};
use crate::drain::Drain;
use crate::log_budget::LogBudget;
use crate::member::MemberAuth;
use crate::metrics::{Metrics, OpenConnection};
use crate::park::{IdleSession, Parkable};
use crate::parker::{self, Parker};
use crate::rooms::Rooms;
use crate::session::Session;
use crate::{echo, member, ops, tls, Hub, HubConfig, MetricsEndpoint, ServerTls};

/// The chat page, embedded at build time.
pub(crate) const CHAT_PAGE: &str = include_str!("../assets/index.html");

/// The browser client library (`GET /wshub.js`, an ES module the chat page
/// imports) and its TypeScript declarations (`GET /wshub.d.ts`), embedded
/// at build time; `assets/package.json` publishes both to npm.
const CLIENT_LIBRARY: &str = include_str!("../assets/wshub.js");
const CLIENT_TYPES: &str = include_str!("../assets/wshub.d.ts");

/// `Content-Security-Policy` of the chat page: its own origin only, its
/// one inline `<style>` and one inline module `<script>` allowed by their
/// SHA-256 (a unit test recomputes both, so an edit of the page fails it
/// until these are updated), scripts of its own origin (`/wshub.js`, which
/// the inline script imports), WebSockets to any host (`ws:`/`wss:`;
/// `'self'` alone does not cover them in every browser), and no framing.
const PAGE_CSP: &str = "default-src 'self'; \
    style-src 'sha256-+Y2TXW1nYbzirjy7uutvEv52ZNyrcYdVKC4WJ/+vhMo='; \
    script-src 'self' 'sha256-/t/ic4AqrtMysuEwrkVU6s9e5z7UZVjeGk9Svs+X9cA='; \
    connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What every connection's task of one server shares.
struct ServerState {
    config: Arc<HubConfig>,
    /// The hub served, for the HTTP API.
    hub: Hub,
    rooms: Arc<Rooms>,
    next_conn_id: AtomicU64,
    /// Which connections are told to close, when.
    drain: Arc<Drain>,
    admission: Arc<Admission>,
    metrics: Arc<Metrics>,
    /// [`HubConfig::auth`], when the hub takes tokens.
    tokens: Option<Arc<Tokens>>,
    /// Lines about connections refused before their session:
    /// [`REFUSAL_LINES_PER_SECOND`].
    refusal_log: Mutex<LogBudget>,
    /// Where quiet connections go (see [`crate::parker`]).
    parker: Parker<Held>,
}

/// What a connection's task holds for it besides its session, and a parked
/// connection keeps in the parker: its admission slots
/// (`max_connections`, per address) and its place in the count shutdown
/// waits for.
type Held = (Admitted, Counted);

/// At most this many `info` lines a second about connections refused before
/// their session (bad request, 401, 403, 408, 503, refused upgrade); each line after a
/// gap says how many were left out (`suppressed`).
const REFUSAL_LINES_PER_SECOND: u32 = 20;

impl ServerState {
    /// `Some(lines left out since the last)` when a refusal may be logged now.
    fn log_refusal(&self) -> Option<u64> {
        let mut budget = self.refusal_log.lock().unwrap_or_else(|e| e.into_inner());
        budget.admit(std::time::Instant::now())
    }
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
/// | `GET /wshub.js`, `GET /wshub.d.ts` | the browser client library and its TypeScript declarations |
/// | `GET /healthz` | `200 ok` while the process runs |
/// | `GET /readyz` | `200 ready`; `503 draining` once shutdown has begun |
/// | `GET /metrics` | Prometheus text, with [`MetricsEndpoint::Main`] (else 404) |
/// | `GET /ws` | the JSON hub (`docs/protocol.md`) |
/// | `/api/…` | the HTTP API (docs/protocol.md, "HTTP API"), with [`HubConfig::api_key`] (else 404) |
/// | `GET /echo` | echoes every message (404 with [`HubConfig::echo`] off) |
/// | `/ws` or `/echo` from a page whose `Origin` [`HubConfig::origin`] refuses | 403 |
/// | plain HTTP to `/ws` or `/echo` | 426 with a one-line explanation |
/// | another method on `/`, `/wshub.js`, `/wshub.d.ts`, `/healthz`, `/readyz` or a served `/metrics` | 405 |
/// | anything else | 404 |
///
/// Every plain HTTP answer written here carries `Content-Security-Policy`
/// (the page's allows only itself, its inline style and script by hash,
/// and WebSockets; the others allow nothing), `X-Frame-Options: DENY`,
/// `X-Content-Type-Options: nosniff` and `Cache-Control: no-store`.
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
    Hub::new(config).serve(listener, shutdown).await
}

/// [`Hub::serve`]: [`serve`] with the hub's own rooms and settings.
pub(crate) async fn serve_hub(
    hub: &Hub,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = hub.config.clone();
    let (parker, inbox) = parker::channel();
    let state = Arc::new(ServerState {
        hub: hub.clone(),
        rooms: hub.rooms.clone(),
        admission: Arc::new(Admission::new(&config.admission)),
        drain: Arc::new(Drain::new(config.drain_batches)),
        metrics: hub.metrics.clone(),
        tokens: config.auth.tokens(),
        config,
        next_conn_id: AtomicU64::new(1),
        refusal_log: Mutex::new(LogBudget::new(REFUSAL_LINES_PER_SECOND)),
        parker,
    });
    let parker = tokio::spawn(parker::run(
        inbox,
        state.drain.first(),
        state.metrics.clone(),
        Box::new({
            // The parker lives as long as the server (aborted below), so
            // this reference cycle through `state.parker` ends with it.
            let state = state.clone();
            move |ws, conn_id, session, held| resume(&state, ws, conn_id, session, held)
        }),
    ));
    let sweeper = tokio::spawn({
        let rooms = hub.rooms.clone();
        async move { rooms.sweep_idle_rooms().await }
    });
    let ops_listener = match state.config.metrics {
        MetricsEndpoint::Listen(addr) => {
            let listener = TcpListener::bind(addr).await?;
            Some(tokio::spawn(ops::serve(
                listener,
                state.metrics.clone(),
                state.drain.clone(),
                state.config.websocket.clone(),
                state.hub.clone(),
            )))
        }
        _ => None,
    };
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
    let timeout = state.config.shutdown_timeout;
    // At most half the timeout: the last batch needs time for its close
    // handshakes too.
    let spread = state.config.drain_spread.min(timeout / 2);
    tracing::info!(
        connections = open.count(),
        batches = state.config.drain_batches,
        spread_ms = spread.as_millis() as u64,
        "shutting down: closing connections with 1001, a batch at a time"
    );
    let drain = async {
        state.drain.run(spread).await;
        open.drained().await;
    };
    if tokio::time::timeout(timeout, drain).await.is_err() {
        tracing::warn!(
            connections = open.count(),
            "shutdown timeout: returning while connections still close"
        );
    }
    sweeper.abort();
    parker.abort();
    if let Some(ops) = ops_listener {
        ops.abort();
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
#[derive(Debug)]
struct AcceptBackoff {
    /// The last wait; zero after a successful accept.
    delay: Duration,
    /// One line a second.
    log: LogBudget,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            log: LogBudget::new(1),
        }
    }
}

impl AcceptBackoff {
    /// The first wait: 50 ms.
    const FIRST: Duration = Duration::from_millis(50);
    /// The longest wait: 1 s.
    const MAX: Duration = Duration::from_secs(1);

    fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed at `now`: the wait before the next one, and
    /// `Some(failures left out since the last line)` when this one is to be
    /// logged.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.delay = (self.delay * 2).clamp(Self::FIRST, Self::MAX);
        (self.delay, self.log.admit(now.into_std()))
    }
}

/// The connections still running, so shutdown can wait for them. A counter
/// rather than a `JoinSet`, whose entry cost every idle connection 72 bytes.
#[derive(Default)]
struct OpenConnections {
    count: AtomicUsize,
    drained: Notify,
}

/// One connection counted in [`OpenConnections`], held by its task (or the
/// parker) for its whole life.
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
    let parker = state.parker.clone();
    let handshake = Box::pin(async move {
        // A handshake still under way when the server stops is dropped:
        // nothing was promised to it yet, and shutdown need not wait for it.
        let mut shutdown = state.drain.first();
        tokio::select! {
            opened = open(tcp, peer, &state) => opened,
            _ = shutdown.changed() => None,
        }
    });
    async move {
        if let Some((session, admitted)) = handshake.await {
            if let Some(parked) = session.await {
                parker.park(parked, (admitted, counted));
                return;
            }
            drop(admitted);
        }
        drop(counted);
    }
}

/// A parked connection back in a session of its own, which may park it
/// again.
fn resume(
    state: &ServerState,
    ws: WebSocket<TcpTransport>,
    conn_id: u64,
    idle: IdleSession,
    held: Held,
) {
    let shutdown = state.drain.receiver(conn_id);
    let session: Session = match idle {
        IdleSession::Echo(open) => Box::pin(echo::run(ws, conn_id, shutdown, open)),
        IdleSession::Member(member) => Box::pin(member::resume(
            ws,
            *member,
            state.config.member_limits(),
            shutdown,
        )),
    };
    let parker = state.parker.clone();
    tokio::spawn(async move {
        if let Some(parked) = session.await {
            parker.park(parked, held);
        }
    });
}

fn start_session<S: Parkable + Send + 'static>(
    ws: WebSocket<S>,
    route: WebSocketRoute,
    identity: Option<Identity>,
    peer: SocketAddr,
    client: IpAddr,
    state: &ServerState,
) -> Session {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    tracing::info!(conn_id, %peer, %client, path = %ws.url(), "connection opened");
    let shutdown = state.drain.receiver(conn_id);
    match route {
        WebSocketRoute::Hub => Box::pin(member::run(
            ws,
            conn_id,
            state.rooms.clone(),
            state.config.member_limits(),
            shutdown,
            OpenConnection::new(state.metrics.clone()),
            MemberAuth {
                tokens: state.tokens.clone(),
                identity,
            },
            state.hub.engine.clone(),
        )),
        WebSocketRoute::Echo => Box::pin(echo::run(
            ws,
            conn_id,
            shutdown,
            OpenConnection::new(state.metrics.clone()),
        )),
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
/// Without `echo` ([`HubConfig::echo`]), `/echo` is answered 404.
fn route(request: &Request, echo: bool) -> Result<WebSocketRoute, Response> {
    let text = |status, body: &'static str| {
        let answer = Response::text(status, Bytes::from_static(body.as_bytes()));
        answer.secured(Response::TEXT_CSP)
    };
    match (request.method.as_str(), request.path()) {
        (_, "/ws") => Ok(WebSocketRoute::Hub),
        (_, "/echo") if echo => Ok(WebSocketRoute::Echo),
        ("GET", "/" | "/index.html") => {
            let html = "text/html; charset=utf-8";
            let page = Response::new(200, html, Bytes::from_static(CHAT_PAGE.as_bytes()));
            Err(page.secured(PAGE_CSP))
        }
        ("GET", "/wshub.js") => Err(asset("text/javascript; charset=utf-8", CLIENT_LIBRARY)),
        // `application/typescript` is not registered; a .d.ts is read as text.
        ("GET", "/wshub.d.ts") => Err(asset("text/plain; charset=utf-8", CLIENT_TYPES)),
        (_, "/" | "/index.html" | "/wshub.js" | "/wshub.d.ts") => Err(text(405, "use GET\n")),
        _ => Err(text(404, "not found\n")),
    }
}

/// A static file of the hub: the client library or its types. Pages of
/// other origins may import it (`Access-Control-Allow-Origin: *`: it is
/// public, and fetched without credentials), as a module from another
/// origin must be fetched with CORS.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let answer = Response::new(200, content_type, Bytes::from_static(body.as_bytes()));
    answer
        .secured(Response::TEXT_CSP)
        .header("Access-Control-Allow-Origin", "*")
}

/// [`open_session`] on `tcp` as it is, or after a TLS handshake with
/// [`HubConfig::tls`]. Each path is its own instance of `open_session`, so
/// the plain one runs as it did before TLS.
async fn open(
    tcp: TcpStream,
    peer: SocketAddr,
    state: &ServerState,
) -> Option<(Session, Admitted)> {
    let _ = tcp.set_nodelay(true);
    let config = &state.config.websocket;
    match &state.config.tls {
        None => open_session(tcp, peer, state, config, TcpTransport::new).await,
        // In an allocation of its own: the TLS handshake's state (rustls'
        // buffers, the TLS stream) inline would size every plain
        // connection's handshake future for it too (17 KiB rather than
        // 5 KiB per connection still sending its head, attacks.rs).
        Some(server_tls) => Box::pin(open_tls(tcp, peer, state, server_tls)).await,
    }
}

/// [`open_session`] after a TLS handshake, within the one handshake deadline.
async fn open_tls(
    tcp: TcpStream,
    peer: SocketAddr,
    state: &ServerState,
    server_tls: &ServerTls,
) -> Option<(Session, Admitted)> {
    let accepted = Instant::now();
    let config = &state.config.websocket;
    let handshake = tls::handshake(tcp, peer, accepted, server_tls, config).await;
    state.metrics.tls_handshake(handshake.is_some());
    let (stream, config) = handshake?;
    open_session(stream, peer, state, &config, std::convert::identity).await
}

/// Reads the request (within `config`'s handshake timeout), admits it or
/// answers 503, answers plain HTTP routes, and upgrades WebSocket ones into
/// their session on `transport(io)`, returned with its admission. Logs one
/// line for a connection refused or failed.
async fn open_session<S, T>(
    io: S,
    peer: SocketAddr,
    state: &ServerState,
    config: &WebSocketConfig,
    transport: impl FnOnce(S) -> T,
) -> Option<(Session, Admitted)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Parkable + Send + 'static,
{
    let handshake = match read_handshake(io, config).await {
        Ok(handshake) => handshake,
        Err(Error::Handshake(e)) => {
            state.metrics.answered(e.status());
            if let Some(suppressed) = state.log_refusal() {
                tracing::info!(%peer, error = %e, status = e.status(), suppressed, "bad HTTP request");
            }
            return None;
        }
        Err(Error::HandshakeTimeout) => {
            state.metrics.answered(408);
            if let Some(suppressed) = state.log_refusal() {
                tracing::info!(%peer, status = 408, suppressed, "handshake timeout");
            }
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
            let answer = refusal.response().secured(Response::TEXT_CSP);
            if let Some(suppressed) = state.log_refusal() {
                let limit = refusal.limit.field();
                tracing::info!(%peer, %client, status = 503, limit, suppressed, "connection refused");
            }
            respond(handshake, &answer, peer, state).await;
            return None;
        }
    };
    let metrics = (state.config.metrics == MetricsEndpoint::Main).then_some(&*state.metrics);
    if let Some(answer) = ops::answer(handshake.request(), metrics, &state.drain, &state.hub) {
        respond(handshake, &answer, peer, state).await;
        return None;
    }
    if let Some(key) = &state.config.api_key {
        if crate::api::is_api(handshake.request()) {
            let mut handshake = handshake;
            let answer = crate::api::answer(&mut handshake, &state.hub, key).await;
            if let Some(answer) = answer {
                respond(handshake, &answer, peer, state).await;
            }
            return None;
        }
    }
    let route = match route(handshake.request(), state.config.echo) {
        Ok(route) => route,
        Err(answer) => {
            respond(handshake, &answer, peer, state).await;
            return None;
        }
    };
    if let Err(refused) = state.config.origin.check_request(handshake.request()) {
        if let Some(suppressed) = state.log_refusal() {
            tracing::info!(%peer, %client, status = 403, origin = %refused.origin, suppressed, "cross-origin handshake refused");
        }
        let answer = Response::from(wshub::Reject::from(refused));
        respond(handshake, &answer, peer, state).await;
        return None;
    }
    let identity = match handshake_identity(handshake.request(), &route, state) {
        Ok(identity) => identity,
        Err(refused) => {
            if let Some(suppressed) = state.log_refusal() {
                tracing::info!(%peer, %client, status = 401, error = %refused, suppressed, "handshake token refused");
            }
            let body = format!("{refused}\n");
            let challenge =
                format!("Bearer error=\"invalid_token\", error_description=\"{refused}\"");
            let answer = Response::text(401, body)
                .header("WWW-Authenticate", challenge)
                .secured(Response::TEXT_CSP);
            respond(handshake, &answer, peer, state).await;
            return None;
        }
    };
    let upgrade = match handshake.into_upgrade().await {
        Ok(upgrade) => upgrade,
        Err(Error::Handshake(e)) => {
            state.metrics.answered(e.status());
            if let Some(suppressed) = state.log_refusal() {
                tracing::info!(%peer, error = %e, status = e.status(), suppressed, "handshake refused");
            }
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
    let upgrade = upgrade.map_io(transport);
    let websocket = state.config.websocket_for(upgrade.request().path());
    match upgrade.accept(Accept::default(), websocket).await {
        Ok(ws) => {
            state.metrics.answered(101);
            Some((
                start_session(ws, route, identity, peer, client, state),
                admitted,
            ))
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "upgrade failed");
            None
        }
    }
}

/// Who the handshake's token (`?token=`, `Authorization: Bearer`) says the
/// client is, on a hub that takes tokens; `None` without a token, which
/// `/ws` may still send in an `auth` request.
///
/// # Errors
/// The token is refused, or `/echo` of a hub that requires authentication
/// came without one: answer 401.
fn handshake_identity(
    request: &Request,
    route: &WebSocketRoute,
    state: &ServerState,
) -> Result<Option<Identity>, String> {
    let Some(tokens) = &state.tokens else {
        return Ok(None);
    };
    match crate::auth::handshake_token(request) {
        Some(token) => tokens
            .verifier
            .verify(&token, std::time::SystemTime::now())
            .map(Some)
            .map_err(|e| e.to_string()),
        None if tokens.require && matches!(route, WebSocketRoute::Echo) => {
            Err("this hub requires a token: ?token=<JWT> or Authorization: Bearer <JWT>".to_owned())
        }
        None => Ok(None),
    }
}

/// Answers a request that gets no WebSocket with `answer`, counted by status.
async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    handshake: wshub::server::Handshake<S>,
    answer: &Response,
    peer: SocketAddr,
    state: &ServerState,
) {
    state.metrics.answered(answer.status);
    if let Err(e) = handshake.respond(answer).await {
        tracing::debug!(%peer, status = answer.status, error = %e.report(), "answer not sent");
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
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let metrics = Arc::new(Metrics::new());

        let (socket, _client) = server_socket(&listener).await;
        let socket_size = std::mem::size_of_val(&socket);
        let echo = echo::run(
            socket,
            1,
            stop_rx.clone(),
            OpenConnection::new(metrics.clone()),
        );
        let echo_size = std::mem::size_of_val(&echo);
        // The echo session keeps its shutdown `changed()` future pinned for
        // its life, with a second receiver and the waker it registered, so
        // that a wake-up checks the shutdown with one atomic load; and its
        // metrics handle and per-batch counts. On 2026-12-05 it was 1,024 B
        // around a 624 B WebSocket: at the bound.
        assert!(
            echo_size <= socket_size + 400,
            "echo session {echo_size} B around a {socket_size} B WebSocket"
        );
        // The session is one allocation, and the allocator (mimalloc) rounds
        // it up to a size class: 1,024 B is one, the next is 1,280 B. At
        // 1,056 B (the incomplete-message deadline's 32 B) bench/compare's
        // idle row went from 1.65 to 1.85-2.05 KiB per connection.
        assert!(
            echo_size <= 1024,
            "echo session {echo_size} B: past mimalloc's 1 KiB size class"
        );

        let (socket, _client) = server_socket(&listener).await;
        let hub = member::run(
            socket,
            2,
            Arc::new(Rooms::default()),
            member::MemberLimits::default(),
            stop_rx,
            OpenConnection::new(metrics),
            member::MemberAuth::default(),
            None,
        );
        let hub_size = std::mem::size_of_val(&hub);
        assert!(
            hub_size <= socket_size + 656,
            "hub session {hub_size} B around a {socket_size} B WebSocket"
        );
        // As the echo session: one allocation, in mimalloc's 1,280 B size
        // class. On 2026-12-06 it was at the bound, 1,280 B, with a
        // member's first room inline and its room limit in the session
        // rather than in the state a parked member keeps.
        assert!(
            hub_size <= 1280,
            "hub session {hub_size} B: past mimalloc's 1,280 B size class"
        );
    }

    /// A parked connection costs its parker slot (and, with keepalive, one
    /// deadline entry and its url string): the socket, what rebuilds its
    /// `WebSocket`, and the guards its task held; a member adds its own
    /// state. The bounds are the point of parking, 0.5 KiB per idle
    /// `/echo` connection and 1 KiB per member in all
    /// (tests/idle_memory.rs counts the rest).
    #[test]
    fn parked_connections_stay_small() {
        // On 2026-12-06: 168 B and 240 B.
        let parked = std::mem::size_of::<wshub::Parked>();
        let slot = std::mem::size_of::<parker::Slot<Held>>();
        assert!(parked <= 192, "Parked {parked} B");
        assert!(slot <= 256, "parker slot {slot} B");
        // A parked member's own state, boxed beside its slot: one
        // allocation in mimalloc's 192 B size class (192 B on 2026-12-06).
        let member = std::mem::size_of::<member::IdleMember>();
        assert!(member <= 192, "IdleMember {member} B");
    }

    fn request(method: &str, path: &str) -> Request {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: hub\r\n\r\n");
        Request::parse(head.as_bytes()).unwrap()
    }

    fn header<'a>(answer: &'a Response, name: &str) -> Option<&'a str> {
        let found = answer
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_plain_answer_forbids_framing_and_the_page_allows_only_itself() {
        for (method, path, status) in [
            ("GET", "/", 200),
            ("POST", "/", 405),
            ("GET", "/nope", 404),
            ("GET", "/wshub.js", 200),
            ("POST", "/wshub.js", 405),
        ] {
            let Err(answer) = route(&request(method, path), true) else {
                panic!("{method} {path} is not a WebSocket route");
            };
            assert_eq!(answer.status, status, "{method} {path}");
            assert_eq!(header(&answer, "X-Frame-Options"), Some("DENY"));
            let csp = header(&answer, "Content-Security-Policy").unwrap();
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            let expected = if path == "/" && status == 200 {
                PAGE_CSP
            } else {
                Response::TEXT_CSP
            };
            assert_eq!(csp, expected, "{method} {path}");
        }
        assert!(PAGE_CSP.starts_with("default-src 'self'; "));
        assert!(PAGE_CSP.contains("; connect-src 'self' ws: wss:; "));
    }

    #[test]
    fn without_echo_the_echo_route_is_404() {
        assert!(matches!(
            route(&request("GET", "/echo"), true),
            Ok(WebSocketRoute::Echo)
        ));
        let Err(answer) = route(&request("GET", "/echo"), false) else {
            panic!("/echo still routed");
        };
        assert_eq!(answer.status, 404);
        assert!(matches!(
            route(&request("GET", "/ws"), false),
            Ok(WebSocketRoute::Hub)
        ));
    }

    /// The page's CSP names the SHA-256 of its one inline style and one
    /// inline script (CSP Level 2 hash sources): a change to either must
    /// update [`PAGE_CSP`], or the browser would refuse to run it.
    #[test]
    fn the_page_csp_hashes_are_those_of_its_inline_style_and_script() {
        for (tag, open) in [("style", "<style>"), ("script", "<script type=\"module\">")] {
            let close = format!("</{tag}>");
            assert_eq!(
                CHAT_PAGE.matches(&format!("<{tag}")).count(),
                1,
                "one {tag}"
            );
            let start = CHAT_PAGE.find(open).unwrap() + open.len();
            let end = start + CHAT_PAGE[start..].find(&close).unwrap();
            let hash = format!(
                "'sha256-{}'",
                base64(&sha256::digest(&CHAT_PAGE.as_bytes()[start..end]))
            );
            let directive = if tag == "script" {
                format!("{tag}-src 'self' {hash}")
            } else {
                format!("{tag}-src {hash}")
            };
            assert!(
                PAGE_CSP.contains(&directive),
                "{directive} not in {PAGE_CSP}"
            );
        }
        assert!(
            !CHAT_PAGE.contains(" style=\""),
            "inline style attributes need 'unsafe-inline'"
        );
        assert!(
            !CHAT_PAGE.contains(" onclick="),
            "inline handlers need 'unsafe-inline'"
        );
    }

    /// Standard base64 with padding (RFC 4648 §4).
    fn base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    /// SHA-256 (FIPS 180-4), for the test above only.
    mod sha256 {
        /// The first 32 bits of the fractional parts of the cube roots of
        /// the first 64 primes (§4.2.2).
        const K: [u32; 64] = [
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
            0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
            0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
            0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
            0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
            0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
            0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
            0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
            0xc67178f2,
        ];

        pub(super) fn digest(message: &[u8]) -> [u8; 32] {
            // §6.2.1: the square roots of the first 8 primes (§5.3.3).
            let mut h: [u32; 8] = [
                0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
                0x5be0cd19,
            ];
            // §5.1.1: a 1 bit, zeros, and the length in bits, to 64-byte blocks.
            let mut padded = message.to_vec();
            padded.push(0x80);
            while padded.len() % 64 != 56 {
                padded.push(0);
            }
            padded.extend_from_slice(&(message.len() as u64 * 8).to_be_bytes());
            for block in padded.chunks_exact(64) {
                let mut w = [0u32; 64];
                for (i, word) in block.chunks_exact(4).enumerate() {
                    w[i] = u32::from_be_bytes(word.try_into().unwrap());
                }
                for t in 16..64 {
                    let s0 =
                        w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
                    let s1 =
                        w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
                    w[t] = w[t - 16]
                        .wrapping_add(s0)
                        .wrapping_add(w[t - 7])
                        .wrapping_add(s1);
                }
                let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
                for t in 0..64 {
                    let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
                    let ch = (e & f) ^ (!e & g);
                    let t1 = hh
                        .wrapping_add(s1)
                        .wrapping_add(ch)
                        .wrapping_add(K[t])
                        .wrapping_add(w[t]);
                    let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
                    let maj = (a & b) ^ (a & c) ^ (b & c);
                    let t2 = s0.wrapping_add(maj);
                    hh = g;
                    g = f;
                    f = e;
                    e = d.wrapping_add(t1);
                    d = c;
                    c = b;
                    b = a;
                    a = t1.wrapping_add(t2);
                }
                for (h, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
                    *h = h.wrapping_add(v);
                }
            }
            let mut out = [0u8; 32];
            for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            out
        }

        #[test]
        fn matches_the_fips_180_2_example_abc() {
            let hex: String = digest(b"abc").iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                hex,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            );
        }
    }
}
