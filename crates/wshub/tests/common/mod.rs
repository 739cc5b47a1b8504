//! Fixtures shared by wshub's integration tests: bounded waits, an echo
//! server that reports how each connection ended, and a raw client that
//! writes handshakes and frames byte for byte.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wshub::{CloseCode, CloseEvent, Error, Message, WebSocketConfig};

/// The longest any single step may take. Generous: it only decides how soon a
/// broken test fails, never whether a working one passes.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// The `Sec-WebSocket-Key` of RFC 6455 §1.3 and its `Sec-WebSocket-Accept`.
pub(crate) const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub(crate) const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key of every frame [`client_frame`] builds.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out: {what}"),
    }
}

/// Whether `fut` is still pending after `window`: how a test shows that
/// something waits (backpressure) or does not happen.
pub(crate) async fn stays_pending<F: Future>(window: Duration, fut: F) -> bool {
    tokio::time::timeout(window, fut).await.is_err()
}

/// How one connection to an [`EchoServer`] ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// `accept_with` failed: bad handshake, rejection or transport error.
    Refused(Error),
    /// The connection was open and has ended.
    Ended {
        close_event: Option<CloseEvent>,
        /// The error the stream yielded before it ended, if any.
        error: Option<Error>,
    },
}

impl Outcome {
    /// The close event of a connection that was open; panics otherwise.
    pub(crate) fn close_event(&self) -> CloseEvent {
        match self {
            Outcome::Ended {
                close_event: Some(event),
                ..
            } => event.clone(),
            other => panic!("expected an ended connection with a close event, got {other:?}"),
        }
    }
}

/// A `wshub::accept_with` server on 127.0.0.1 that echoes every message and
/// reports each connection's [`Outcome`].
pub(crate) struct EchoServer {
    pub(crate) addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl EchoServer {
    pub(crate) async fn start(config: WebSocketConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, outcomes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let config = config.clone();
                tokio::spawn(async move {
                    let outcome =
                        match wshub::accept_with(tcp, config, |_| Ok(Default::default())).await {
                            Ok(ws) => echo(ws).await,
                            Err(e) => Outcome::Refused(e),
                        };
                    let _ = tx.send(outcome);
                });
            }
        });
        Self { addr, outcomes }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The outcome of the next connection to end.
    pub(crate) async fn next_outcome(&mut self) -> Outcome {
        within("a server-side connection to end", self.outcomes.recv())
            .await
            .expect("the server task lives as long as the test")
    }

    /// A well-behaved client still gets its messages echoed and closes
    /// cleanly: one bad connection did not take the server down.
    pub(crate) async fn assert_still_serving(&mut self) {
        let mut ws = within("connect", wshub::connect(&self.url("/healthy")))
            .await
            .expect("a second client connects");
        within("send", ws.send_text("still there?")).await.unwrap();
        let echoed = within("echo", ws.recv()).await.expect("an echo").unwrap();
        assert_eq!(echoed, Message::text("still there?"));
        let event = within("close", ws.close(CloseCode::NormalClosure, ""))
            .await
            .unwrap();
        assert!(event.was_clean, "{event:?}");
        let server_side = self.next_outcome().await.close_event();
        assert_eq!(
            (server_side.code.as_u16(), server_side.was_clean),
            (1000, true)
        );
    }
}

/// Echoes until the stream ends; any send error is left to the stream to report.
async fn echo<S>(mut ws: wshub::WebSocket<S>) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut error = None;
    while let Some(item) = ws.recv().await {
        match item {
            Ok(message) => {
                let _ = ws.send(message).await;
            }
            Err(e) => error = Some(e),
        }
    }
    Outcome::Ended {
        close_event: ws.close_event(),
        error,
    }
}

/// An opening handshake request with the §1.3 sample key.
pub(crate) fn handshake_request(host: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads an HTTP head one byte at a time, so no frame bytes after it are consumed.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = within("an HTTP head", io.read_u8())
            .await
            .expect("the head ends before EOF");
        head.push(byte);
    }
    String::from_utf8(head).expect("an ASCII head")
}

/// Asserts `head` is a 101 answer to [`SAMPLE_KEY`].
pub(crate) fn assert_switching_protocols(head: &str) {
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.lines()
            .any(|l| l.eq_ignore_ascii_case(&format!("sec-websocket-accept: {SAMPLE_ACCEPT}"))),
        "{head}"
    );
}

/// A TCP connection to `addr` upgraded by hand, ready for raw frames.
pub(crate) async fn raw_upgrade(addr: SocketAddr) -> TcpStream {
    let mut tcp = within("connect", TcpStream::connect(addr)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let request = handshake_request(&addr.to_string(), "/raw");
    within("write handshake", tcp.write_all(request.as_bytes()))
        .await
        .unwrap();
    assert_switching_protocols(&read_head(&mut tcp).await);
    tcp
}

/// One client-to-server frame, masked: `first` is the FIN/RSV/opcode byte
/// (0x81 is a final text frame), the length takes its minimal form (§5.2).
pub(crate) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// Reads one unmasked server-to-client frame: its first byte and payload.
pub(crate) async fn read_server_frame<S: AsyncRead + Unpin>(io: &mut S) -> (u8, Vec<u8>) {
    within("a frame from the server", async {
        let first = io.read_u8().await.expect("a frame header");
        let second = io.read_u8().await.expect("a frame header");
        assert_eq!(
            second & 0x80,
            0,
            "a server never masks its frames (RFC 6455 §5.1)"
        );
        let len = match second & 0x7f {
            126 => u64::from(io.read_u16().await.unwrap()),
            127 => io.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        io.read_exact(&mut payload)
            .await
            .expect("the whole payload");
        (first, payload)
    })
    .await
}

/// Reads the server's Close frame and returns its code; then asserts that the
/// server closed the TCP connection after it (RFC 6455 §7.1.1).
pub(crate) async fn read_close_code(tcp: &mut TcpStream) -> u16 {
    let (first, payload) = read_server_frame(tcp).await;
    assert_eq!(
        first, 0x88,
        "expected a final Close frame, payload {payload:?}"
    );
    assert!(payload.len() >= 2, "the Close carries a code");
    let mut rest = Vec::new();
    within("the server to close TCP", tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(
        rest.is_empty(),
        "nothing may follow a Close frame: {rest:?}"
    );
    u16::from_be_bytes([payload[0], payload[1]])
}
