//! The hub's HTTP front: one listener, routes for the page, health, `/ws`
//! and `/echo` on wshub's one accept path ([`wshub::server`]), and graceful
//! shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use wshub::server::{read_handshake, Request, Response};
use wshub::{Accept, Error, TcpTransport, WebSocket};

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
/// of [`HubConfig::websocket`]) is answered 408.
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
        config,
        next_conn_id: AtomicU64::new(1),
        shutdown: stop_rx,
    });
    let open = Arc::new(OpenConnections::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let counted = OpenConnections::enter(&open);
                    tokio::spawn(connection_task(tcp, peer, state.clone(), counted));
                }
                Err(e) => {
                    // Running out of file descriptors must not end the server.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
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
    let handshake = Box::pin(async move { open_session(tcp, peer, &state).await });
    async move {
        if let Some(session) = handshake.await {
            session.await;
        }
        drop(counted);
    }
}

fn start_session(
    ws: WebSocket<TcpTransport>,
    route: WebSocketRoute,
    peer: SocketAddr,
    state: &ServerState,
) -> Session {
    let conn_id = state.next_conn_id.fetch_add(1, Ordering::Relaxed);
    tracing::info!(conn_id, %peer, path = %ws.url(), "connection opened");
    let shutdown = state.shutdown.clone();
    match route {
        WebSocketRoute::Hub => Box::pin(member::run(
            ws,
            conn_id,
            state.rooms.clone(),
            state.config.member_limits(),
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

/// Reads the request, answers plain HTTP routes, and upgrades WebSocket ones
/// into their session. Logs one line for a connection refused or failed.
async fn open_session(tcp: TcpStream, peer: SocketAddr, state: &ServerState) -> Option<Session> {
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
    let websocket = state.config.websocket_for(upgrade.request().path());
    match upgrade.accept(Accept::default(), websocket).await {
        Ok(ws) => Some(start_session(ws, route, peer, state)),
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "upgrade failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let hub = member::run(
            socket,
            2,
            Arc::new(Rooms::default()),
            member::MemberLimits::default(),
            stop_rx,
        );
        let hub_size = std::mem::size_of_val(&hub);
        assert!(
            hub_size <= socket_size + 640,
            "hub session {hub_size} B around a {socket_size} B WebSocket"
        );
    }
}
