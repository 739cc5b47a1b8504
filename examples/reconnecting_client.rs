//! A client that stays connected: it hands every message to a callback,
//! sends a message each time it connects, keeps a heartbeat (a Ping every
//! 10 s; no answer within 20 s means the connection is dead) and reconnects
//! after randomized, growing delays until it is closed on purpose with
//! `close_myself()`.
//!
//! The heartbeat is wshub's keepalive (`WebSocketConfig::ping_interval` and
//! `pong_timeout`) and the delays are `wshub::reconnect::Backoff`: this file
//! only decides when to connect again.
//!
//! ```text
//! cargo run -p wshub-examples --example reconnecting_client [URL]
//! ```
//!
//! The URL defaults to `ws://127.0.0.1:3000`, the `heartbeat_server` example;
//! start it first. You will see on stdout each message as the callback gets
//! it (`something`, then the echo of `立即与服务器通信` and of `传消息给服务器`),
//! and on stderr `connected`. Stop the server: stderr shows the connection
//! lost and the reconnect attempts; start it again and the client is back.
//! Ctrl-C calls `close_myself()`: the client closes with 1000 and does not
//! reconnect.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wshub::reconnect::Backoff;
use wshub::{ClientBuilder, CloseCode, Error, Message, State, WebSocket, WebSocketConfig};

/// Settings of a [`WebSocketClient`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Shown in every log line, to tell clients apart. Default: `"default"`.
    pub name: String,
    /// Time between two Pings while open. Default: 10 s.
    pub ping_interval: Duration,
    /// How long a Ping may go unanswered before the connection counts as
    /// dead and is replaced. Default: 20 s.
    pub pong_timeout: Duration,
    /// Bounds TCP connect plus opening handshake. Default: 10 s.
    pub connect_timeout: Duration,
    /// Delays between connection attempts. It starts over from its base after
    /// a connection that stayed up for a `ping_interval`. Default:
    /// [`Backoff::default`] (random, up to 500 ms doubling to 30 s).
    pub backoff: Backoff,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            ping_interval: Duration::from_secs(10),
            pong_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
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
    /// Starts connecting to `url`. `data`, if any, is sent each time a
    /// connection opens, so a subscription survives reconnects. `on_message`
    /// gets every message, in order.
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

    /// Queues a text message. It is sent on the open connection, or on the
    /// next one while reconnecting; a message in flight when a connection
    /// drops is lost. Waits while 64 messages are already queued.
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

    /// Closes the connection with 1000 and stops reconnecting. Returns once
    /// the background task has ended, so no connection attempt can follow.
    pub async fn close_myself(self) {
        let _ = self.close.send(());
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "client task failed");
        }
    }
}

/// The background task behind a [`WebSocketClient`].
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
        let config = WebSocketConfig::default()
            .ping_interval(Some(self.options.ping_interval))
            .pong_timeout(self.options.pong_timeout);
        loop {
            self.state.send_replace(State::Connecting);
            let attempt = ClientBuilder::new(self.url.clone())
                .handshake_timeout(self.options.connect_timeout)
                .config(config.clone())
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
                    let opened = Instant::now();
                    if let End::ClosedMyself = self.session(ws).await {
                        break;
                    }
                    if opened.elapsed() >= self.options.ping_interval {
                        // The connection worked: start the delays over.
                        self.options.backoff.reset();
                    }
                }
                Err(e) => {
                    tracing::warn!(name, url = self.url, error = %e.report(), "connect failed")
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

    async fn session(&mut self, mut ws: WebSocket<wshub::ClientStream>) -> End {
        let name = self.options.name.as_str();
        let mut result = match &self.data {
            Some(data) => ws.send_text(data).await,
            None => Ok(()),
        };
        while result.is_ok() {
            result = tokio::select! {
                biased;
                _ = &mut self.close => {
                    match ws.close(CloseCode::NormalClosure, "closed by the client").await {
                        Ok(event) => tracing::info!(name, close = ?event, "connection closed"),
                        Err(e) => tracing::info!(name, error = %e.report(), "close failed"),
                    }
                    return End::ClosedMyself;
                }
                Some(text) = self.outgoing.recv() => {
                    tracing::info!(name, text, "sending");
                    ws.send_text(&text).await
                }
                // The keepalive runs while `recv` is awaited: it sends the
                // Pings, and ends the stream with `Error::KeepaliveTimeout`
                // when no answer comes.
                incoming = ws.recv() => match incoming {
                    Some(Ok(message)) => {
                        (self.on_message)(message);
                        Ok(())
                    }
                    Some(Err(e)) => Err(e),
                    None => {
                        tracing::warn!(name, close = ?ws.close_event(), "closed by the server, reconnecting");
                        return End::Lost;
                    }
                },
            };
        }
        if let Err(e) = result {
            tracing::warn!(name, error = %e.report(), "connection lost, reconnecting");
        }
        End::Lost
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::args().nth(1);
    let url = url.as_deref().unwrap_or("ws://127.0.0.1:3000");
    let options = Options {
        name: "wsName".to_owned(),
        ..Options::default()
    };
    let client = WebSocketClient::connect(
        url,
        Some("立即与服务器通信".to_owned()),
        options,
        |message| match message {
            Message::Text(text) => println!("接收服务器消息的回调 (message callback): {text}"),
            Message::Binary(bytes) => {
                println!(
                    "接收服务器消息的回调 (message callback): {:02x?}",
                    &bytes[..]
                )
            }
        },
    );
    // Queued now, sent once the first connection is open.
    client.send("传消息给服务器").await?;
    tokio::signal::ctrl_c().await?;
    client.close_myself().await;
    Ok(())
}
