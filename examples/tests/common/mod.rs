//! Fixtures shared by the examples' integration tests: bounded waits and
//! servers on `127.0.0.1:0` that stop when the test drops them.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use wshub::{Message, WebSocket};

/// The longest any single step may take. Generous: it only decides how soon a
/// broken test fails, never whether a working one passes.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// A server task; dropping it stops the server and all its connections.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Runs `run` on a fresh listener on `127.0.0.1:0`.
    pub(crate) async fn start<F, Fut>(run: F) -> Self
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, run)
    }

    /// Runs `run` on `listener`.
    pub(crate) fn on<F, Fut>(listener: TcpListener, run: F) -> Self
    where
        F: FnOnce(TcpListener) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        Self {
            addr,
            task: tokio::spawn(run(listener)),
        }
    }

    /// `ws://<addr><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the server and waits until its connections are dropped.
    pub(crate) async fn stop(mut self) {
        self.task.abort();
        let _ = within("server stops", &mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The next message, which must arrive within [`WAIT`].
pub(crate) async fn next(ws: &mut WebSocket<wshub::ClientStream>) -> Message {
    within("next message", ws.recv())
        .await
        .expect("the connection is open")
        .expect("no error")
}

/// The next message, which must be text.
pub(crate) async fn next_text(ws: &mut WebSocket<wshub::ClientStream>) -> String {
    match next(ws).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}
