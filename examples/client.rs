//! A simple client, as a browser page would use the WebSocket API: connect,
//! report `open` with the `readyState`, `protocol` and `url`, send
//! `Hello Server!`, print each message with its type (text or binary) for two
//! seconds, then `close(1000, "Closing connection normally")` and print the
//! close event's `code`, `reason` and `wasClean`.
//!
//! ```text
//! cargo run -p wshub-examples --example client [URL]
//! ```
//!
//! The URL defaults to `ws://127.0.0.1:9001`, the `echo_server` example; start
//! that first. You will see on stdout:
//!
//! ```text
//! open: readyState=1 (Open) protocol="" url=ws://127.0.0.1:9001
//! sent: Hello Server!
//! message (text): Hello Server!
//! close(1000, "Closing connection normally") with readyState=1 (Open)
//! closed: code=1000 reason="" wasClean=true readyState=3 (Closed)
//! ```
//!
//! (`code` and `reason` are the server's: the echo server answers our Close
//! with code 1000 and no reason.) If the server closes first, its close event
//! is printed instead; an error is printed as `error: …` and the exit status
//! is 1.
//!
//! A `wss://` URL connects over TLS, verifying the server against the
//! system's roots (`wshub serve --tls-cert ... --tls-key ...` with a
//! certificate they trust). A certificate that is not trusted, expired or
//! for another name fails as `error: TLS handshake failed: ...`.

use std::io::Write;
use std::time::Duration;

use wshub::{CloseCode, CloseEvent, Error, Message, State};

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

/// `readyState` as a browser shows it, with its name: `1 (Open)`.
fn ready_state(state: State) -> String {
    format!("{} ({state:?})", state as u8)
}

/// Connects to `url`, writes one line per event to `out`, and returns how
/// the connection ended.
///
/// # Errors
/// What [`wshub::connect`] returns (including [`Error::Tls`] when the TLS
/// handshake of a `wss://` URL fails), an error of the open connection, or [`Error::Io`] if writing to
/// `out` fails. Each is also written to `out` as `error: …`.
pub async fn run<W: Write>(url: &str, config: &Config, out: &mut W) -> Result<CloseEvent, Error> {
    let result = talk(url, config, out).await;
    if let Err(e) = &result {
        writeln!(out, "error: {}", e.report())?;
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
    while let Ok(incoming) = tokio::time::timeout_at(deadline, ws.recv()).await {
        match incoming {
            // The server closed the connection.
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

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let url = std::env::args().nth(1);
    let url = url.as_deref().unwrap_or("ws://127.0.0.1:9001");
    // `run` has printed the error already.
    if run(url, &Config::default(), &mut std::io::stdout())
        .await
        .is_err()
    {
        std::process::exit(1);
    }
}
