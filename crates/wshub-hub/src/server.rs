//! The hub's HTTP front: one listener, routes for the page, health, `/ws`
//! and `/echo`, and graceful shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use wshub::server::{read_request_within, upgrade, write_rejection};
use wshub::server::{validate_request, HandshakeError, DEFAULT_MAX_HEAD_LEN};
use wshub::{Accept, Error, TcpTransport, WebSocket};

use crate::rooms::Rooms;
use crate::{echo, session, HubConfig};

/// The chat page, embedded at build time.
pub(crate) const CHAT_PAGE: &str = include_str!("../assets/index.html");

struct Shared {
    config: HubConfig,
    rooms: Arc<Rooms>,
    next_id: AtomicU64,
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
/// | anything else | 404 |
///
/// # Errors
/// Only if the listener itself fails; a bad client never ends the server.
pub async fn serve(
    listener: TcpListener,
    config: HubConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        rooms: Arc::new(Rooms::new(config.presence_limit)),
        config,
        next_id: AtomicU64::new(1),
        shutdown: stop_rx,
    });
    let live = Arc::new(Live::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(handle(tcp, peer, shared.clone(), Live::enter(&live)));
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
        connections = live.count(),
        "shutting down: closing connections with 1001"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(shared.config.shutdown_timeout, live.drained()).await;
    if drained.is_err() {
        tracing::warn!(
            connections = live.count(),
            "shutdown timeout: returning while connections still close"
        );
    }
    Ok(())
}

/// The connections still running, so shutdown can wait for them. A counter
/// rather than a `JoinSet`, whose entry cost every idle connection 72 bytes.
#[derive(Default)]
struct Live {
    count: AtomicUsize,
    drained: Notify,
}

/// Held by a connection's task for its whole life.
struct LiveGuard(Arc<Live>);

impl Live {
    fn enter(live: &Arc<Live>) -> LiveGuard {
        live.count.fetch_add(1, Ordering::Relaxed);
        LiveGuard(live.clone())
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

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// After an answer that ends the connection: close our side, then read and
/// discard what the client still sends for a moment, so unread request bytes
/// do not turn the close into a reset that destroys the answer in flight.
async fn linger(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 4096];
    let mut budget: usize = 64 * 1024;
    let drain = async {
        while budget > 0 {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => budget = budget.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
}

async fn respond(
    tcp: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await?;
    tcp.write_all(body).await?;
    tcp.flush().await
}

/// A connection's life after its handshake, in an allocation of its own.
type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The connection's task: the handshake, then the session. Each lives in an
/// allocation of its own: the handshake's state (request, buffers) is freed
/// once the connection is open, and the session is sized for what an open
/// connection needs. The task's own future holds only the two pointers, so
/// tokio's task cell stays small too; every idle connection pays for it.
fn handle(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    shared: Arc<Shared>,
    live: LiveGuard,
) -> impl Future<Output = ()> + Send {
    let handshake = Box::pin(async move { handshake(tcp, peer, &shared).await });
    async move {
        if let Some(session) = handshake.await {
            session.await;
        }
        drop(live);
    }
}

fn start_session(
    ws: WebSocket<TcpTransport>,
    route: Route,
    peer: std::net::SocketAddr,
    shared: &Shared,
) -> Session {
    let conn_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    tracing::info!(conn_id, %peer, path = %ws.url(), "connection opened");
    let shutdown = shared.shutdown.clone();
    match route {
        Route::Hub => Box::pin(session::run(
            ws,
            conn_id,
            shared.rooms.clone(),
            shared.config.send_queue,
            shutdown,
        )),
        Route::Echo => Box::pin(echo::run(ws, conn_id, shutdown)),
    }
}

/// Reads the request, answers plain HTTP routes, and upgrades WebSocket ones.
async fn handshake(
    mut tcp: TcpStream,
    peer: std::net::SocketAddr,
    shared: &Shared,
) -> Option<Session> {
    let _ = tcp.set_nodelay(true);
    let config = &shared.config;
    let read = read_request_within(&mut tcp, DEFAULT_MAX_HEAD_LEN, config.handshake_timeout).await;
    let (request, early) = match read {
        Ok(ok) => ok,
        Err(Error::Handshake(e)) => {
            tracing::info!(%peer, error = %e, "bad HTTP request");
            let _ = write_rejection(&mut tcp, e.status(), &[], &format!("{e}\n")).await;
            linger(&mut tcp).await;
            return None;
        }
        Err(Error::HandshakeTimeout) => {
            tracing::info!(%peer, "handshake timeout");
            let _ =
                write_rejection(&mut tcp, 408, &[], "request head not received in time\n").await;
            linger(&mut tcp).await;
            return None;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "connection ended before its request");
            return None;
        }
    };
    let page = |status, content_type, body: &'static [u8]| Some((status, content_type, body));
    let (route, answer) = match (request.method.as_str(), request.path()) {
        (_, "/ws") => (Some(Route::Hub), None),
        (_, "/echo") => (Some(Route::Echo), None),
        ("GET", "/" | "/index.html") => (
            None,
            page("200 OK", "text/html; charset=utf-8", CHAT_PAGE.as_bytes()),
        ),
        ("GET", "/healthz") => (None, page("200 OK", "text/plain; charset=utf-8", b"ok\n")),
        (_, "/" | "/index.html" | "/healthz") => (
            None,
            page(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                b"use GET\n",
            ),
        ),
        _ => (
            None,
            page("404 Not Found", "text/plain; charset=utf-8", b"not found\n"),
        ),
    };
    let Some(route) = route else {
        if let Some((status, content_type, body)) = answer {
            let _ = respond(&mut tcp, status, content_type, body).await;
        }
        linger(&mut tcp).await;
        return None;
    };
    let upgrade_request = match validate_request(request) {
        Ok(r) => r,
        Err(e) => {
            let body = match e {
                HandshakeError::NotUpgrade => {
                    "this is a WebSocket endpoint: connect with a WebSocket client (ws://)\n"
                        .to_owned()
                }
                ref other => format!("{other}\n"),
            };
            tracing::info!(%peer, error = %e, status = e.status(), "handshake refused");
            let _ = write_rejection(&mut tcp, e.status(), &[], &body).await;
            linger(&mut tcp).await;
            return None;
        }
    };
    // After the handshake, reads and writes are direct system calls
    // (`TcpTransport`): 2.3% more echoes per second at 16 messages in
    // flight, no measurable change at 1 (A/B runs, 2026-11-29).
    match upgrade(
        TcpTransport::new(tcp),
        &upgrade_request,
        &early,
        Accept::default(),
        config.websocket_config(),
    )
    .await
    {
        Ok(ws) => {
            if let Some(origin) = upgrade_request.origin() {
                tracing::debug!(%peer, origin, "upgrade");
            }
            Some(start_session(ws, route, peer, shared))
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e.report(), "upgrade failed");
            None
        }
    }
}

enum Route {
    Hub,
    Echo,
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
            wshub_proto::Role::Server,
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
        let hub = session::run(socket, 2, Arc::new(Rooms::default()), 16, stop_rx);
        let hub_size = std::mem::size_of_val(&hub);
        assert!(
            hub_size <= socket_size + 640,
            "hub session {hub_size} B around a {socket_size} B WebSocket"
        );
    }
}
