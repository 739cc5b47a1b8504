//! [`Parked`]: an idle [`WebSocket`] over TCP without its task, its tokio
//! registration or its buffers, for a server that holds many quiet
//! connections and waits for them with one poller of its own (the netpoll
//! idea of "A Million WebSockets and Go").

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use std::cell::RefCell;

use tokio::time::Instant;
use wshub_proto::frame::{
    Decoded, Decoder, FrameHeader, Limits, Opcode, MAX_CONTROL_PAYLOAD_LEN, MAX_HEADER_LEN,
};
use wshub_proto::Role;

use crate::keepalive::{KeepaliveAction, PING_PAYLOAD};
use crate::websocket::IdleParts;
use crate::{TcpTransport, WebSocket};

/// Bytes [`Parked::take_pongs`] looks at: two Pongs of the largest size
/// (RFC 6455 §5.5). More than that waiting is more than Pongs, or a peer
/// that sends them faster than a parker should answer for it.
const PEEK: usize = 2 * (MAX_HEADER_LEN + MAX_CONTROL_PAYLOAD_LEN);

thread_local! {
    /// The decoder [`Parked::take_pongs`] checks what arrived with, kept
    /// between calls, clean after each: a keepalive round then allocates
    /// nothing (its control-frame buffer is reused). Allocating even a few
    /// bytes per connection per round, and freeing them at once, left
    /// mimalloc about 0.45 KiB per parked connection more resident after
    /// each round (bench/README.md, "A million connections").
    static PONG_DECODER: RefCell<Option<(Role, Decoder)>> = const { RefCell::new(None) };
}

/// A quiet WebSocket connection taken apart: the socket, out of tokio's
/// reactor, and what rebuilds an equivalent [`WebSocket`] on it.
///
/// What it keeps: the `std::net::TcpStream` (non-blocking), the role, the
/// protocol's config (limits, auto-pong, the permessage-deflate agreement
/// if any), the settings a `WebSocket` keeps (write buffer limit, close and
/// message timeouts), the keepalive's state and the handshake's outcome
/// (`protocol`, `extensions`, `url`). No buffers and no protocol state: a
/// connection is parked only between messages.
///
/// Nothing watches the socket while parked: the holder registers it with
/// its own poller ([`AsFd`]). When it turns readable, the holder calls
/// [`Parked::take_pongs`], which keeps it parked if only Pongs arrived,
/// and [`Parked::resume`] otherwise; at [`Parked::keepalive_deadline`] it
/// calls [`Parked::ping_if_due`], which writes the keepalive's Ping itself.
/// A keepalive round thus resumes nothing: the connection is resumed only
/// for a message, a Ping or Close from the peer, the end of its stream, or
/// a peer past its pong timeout. Dropping a `Parked` closes the socket
/// without a Close frame.
pub struct Parked {
    stream: std::net::TcpStream,
    parts: IdleParts,
}

impl fmt::Debug for Parked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parked")
            .field("stream", &self.stream)
            .field("keepalive_deadline", &self.keepalive_deadline())
            .finish_non_exhaustive()
    }
}

impl WebSocket<TcpTransport> {
    /// Parks this connection if it is idle, `self` back otherwise.
    ///
    /// Idle means: open (no Close sent or received), no message or frame
    /// half received (RFC 6455 §5.4), nothing queued to send (owed Pongs
    /// included) and no message waiting to be taken, no protocol error or
    /// close or message timeout pending, not split, and no permessage-deflate
    /// context kept across messages: either no permessage-deflate, or
    /// `server_no_context_takeover` and `client_no_context_takeover` both
    /// agreed (RFC 7692 §7.1.1). [`WebSocket::poll_next_or_idle`] says when
    /// to try.
    ///
    /// The socket leaves tokio's reactor (its registration is freed); it
    /// stays open and non-blocking. `Err(self)` also when the descriptor
    /// cannot be duplicated to leave tokio (`EMFILE`): the connection goes on
    /// as it was.
    // `Err` is the connection itself, back as it came: boxing it would
    // allocate on every try that finds it busy.
    #[allow(clippy::result_large_err)]
    pub fn try_park(self) -> Result<Parked, Self> {
        // Busy: back before any system call.
        if !self.is_parkable() {
            return Err(self);
        }
        // A duplicate next, so that nothing is lost if it fails: the tokio
        // stream is then dropped (deregistered and its descriptor closed),
        // and the socket lives on in the duplicate.
        let fd = match self.get_ref().get_ref().as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!(error = %e, "cannot park: descriptor not duplicated");
                return Err(self);
            }
        };
        let (io, parts) = self.into_idle_parts()?;
        drop(io);
        Ok(Parked {
            stream: std::net::TcpStream::from(fd),
            parts,
        })
    }
}

/// What a parked connection needs after [`Parked::ping_if_due`] or
/// [`Parked::take_pongs`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Tended {
    /// It stays parked: its Ping went out whole, or only Pongs had
    /// arrived and they were taken. Its [`Parked::keepalive_deadline`] may
    /// have moved.
    Parked,
    /// Resume it now ([`Parked::resume`]): something other than Pongs
    /// arrived (a data frame, a Ping, a Close, part of a frame, more than
    /// two Pongs' worth), the peer ended its stream or the socket failed;
    /// or the Ping found no room in the socket's send buffer (the resumed
    /// connection queues it and waits for the peer to read); or the peer
    /// is past its pong timeout (the resumed connection fails with
    /// [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout)).
    /// Nothing was taken from or written to the socket.
    Resume,
    /// The connection cannot go on: the socket took only part of the Ping
    /// frame (its send buffer was full to within a few bytes, the peer not
    /// reading), so the stream now holds half a frame. Drop the `Parked`:
    /// the peer sees the connection end without a Close frame, as after a
    /// keepalive timeout.
    Failed(io::Error),
}

impl Parked {
    /// Sends the keepalive's Ping if it is due at `now`, without resuming
    /// the connection: one `write` of the frame (7 bytes from a server)
    /// to the socket. [`Tended::Parked`] when it went out whole or nothing
    /// was due yet; [`Tended::Resume`] when the peer is past its pong
    /// timeout or the socket had no room; [`Tended::Failed`] when it took
    /// part of the frame. The Ping and its timing are the keepalive's
    /// ([`WebSocketConfig::ping_interval`](crate::WebSocketConfig::ping_interval),
    /// [`WebSocketConfig::pong_timeout`](crate::WebSocketConfig::pong_timeout)),
    /// as if the connection were running.
    pub fn ping_if_due(&mut self, now: Instant) -> Tended {
        let Some(keepalive) = self.parts.keepalive_mut() else {
            return Tended::Parked;
        };
        // Committed only once the Ping is on the wire.
        let mut next = keepalive.clone();
        match next.poll(now) {
            KeepaliveAction::Wait => return Tended::Parked,
            KeepaliveAction::Dead => return Tended::Resume,
            KeepaliveAction::Ping => {}
        }
        // A server's Ping, unmasked (RFC 6455 §5.1), encoded on the stack.
        // A client's would need a masking key from its connection's
        // generator: a parked client is resumed to send it.
        if self.parts.role() != Role::Server {
            return Tended::Resume;
        }
        let header = FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode: Opcode::Ping,
            masking_key: None,
            payload_len: PING_PAYLOAD.len() as u64,
        };
        let mut frame = [0u8; MAX_HEADER_LEN + PING_PAYLOAD.len()];
        let len = header.encode(&mut frame);
        frame[len..len + PING_PAYLOAD.len()].copy_from_slice(PING_PAYLOAD);
        let frame = &frame[..len + PING_PAYLOAD.len()];
        match (&self.stream).write(frame) {
            Ok(n) if n == frame.len() => {
                if let Some(keepalive) = self.parts.keepalive_mut() {
                    *keepalive = next;
                }
                Tended::Parked
            }
            // No room, or the socket failed: the resumed connection meets
            // either on its own.
            Ok(0) | Err(_) => Tended::Resume,
            Ok(n) => Tended::Failed(io::Error::new(
                io::ErrorKind::WriteZero,
                format!(
                    "the socket took {n} of the keepalive Ping's {} bytes: the peer is not reading",
                    frame.len()
                ),
            )),
        }
    }

    /// Takes the Pongs that made the socket readable, if that is all that
    /// arrived: looks at what waits (`MSG_PEEK`, up to two Pongs' worth),
    /// decodes it as the resumed connection would (RFC 6455 §5.2: masking,
    /// reserved bits, control frame limits), and if it is one or more
    /// whole Pongs and nothing else, reads them off the socket and counts
    /// them as the keepalive counts any frame (the peer is alive).
    /// [`Tended::Parked`] then, or when nothing was there; otherwise
    /// [`Tended::Resume`] with nothing taken, so the resumed connection
    /// reads it all. [`Tended::Failed`] only if the socket gave back less
    /// than it showed.
    pub fn take_pongs(&mut self, now: Instant) -> Tended {
        let mut buf = [0u8; PEEK];
        let n = match self.stream.peek(&mut buf) {
            Ok(n) if n == 0 || n == PEEK => return Tended::Resume,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Tended::Parked,
            Err(_) => return Tended::Resume,
        };
        if !only_pongs(self.parts.role(), &buf[..n]) {
            return Tended::Resume;
        }
        match (&self.stream).read(&mut buf[..n]) {
            Ok(read) if read == n => {}
            // Nothing taken.
            Err(_) => return Tended::Resume,
            Ok(read) => {
                return Tended::Failed(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the socket gave {read} of the {n} bytes of Pongs it showed"),
                ))
            }
        }
        if let Some(keepalive) = self.parts.keepalive_mut() {
            keepalive.on_frame(|| now);
        }
        Tended::Parked
    }

    /// The connection again, registered with tokio's reactor (of the
    /// runtime this is called in): a `WebSocket` that behaves as the one
    /// parked, with empty buffers. Its quiet watch
    /// ([`WebSocket::watch_idle`]) is already running.
    ///
    /// # Errors
    /// As [`tokio::net::TcpStream::from_std`]: the socket could not be
    /// registered (the socket is closed then, as it is dropped).
    ///
    /// # Panics
    /// Outside a tokio runtime with I/O enabled, as `from_std`.
    pub fn resume(self) -> io::Result<WebSocket<TcpTransport>> {
        let stream = tokio::net::TcpStream::from_std(self.stream)?;
        Ok(WebSocket::from_idle_parts(
            TcpTransport::new(stream),
            self.parts,
        ))
    }

    /// When the keepalive must act, if it is on: the instant the next
    /// Ping is due, or, after a Ping went unanswered, the end of the pong
    /// timeout. Call [`Parked::ping_if_due`] then: it sends the Ping, or
    /// asks for the connection to be resumed, which then fails with
    /// [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout) (a
    /// connection resumed instead sends the Ping itself).
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        self.parts.keepalive_deadline()
    }

    /// The socket, for its address or options. Reading from or writing to
    /// it corrupts the WebSocket's stream.
    pub fn get_ref(&self) -> &std::net::TcpStream {
        &self.stream
    }
}

/// Whether `data` is one or more whole Pong frames and nothing else, as a
/// connection of `role` decodes them (RFC 6455 §5.2, §5.5: masking,
/// reserved bits, FIN, at most 125 bytes of payload).
fn only_pongs(role: Role, data: &[u8]) -> bool {
    PONG_DECODER.with_borrow_mut(|decoder_kept| {
        let decoder = match decoder_kept {
            Some((kept, decoder)) if *kept == role => decoder,
            // The limits are those of data frames, which end the check
            // anyway; the control frames' rules do not depend on them.
            _ => {
                &mut decoder_kept
                    .insert((role, Decoder::new(role, Limits::NONE, false)))
                    .1
            }
        };
        let mut rest = data;
        let mut pongs = 0;
        let clean = loop {
            if rest.is_empty() {
                // Whole frames only: nothing left in progress.
                break !decoder.mid_frame() && pongs > 0;
            }
            match decoder.decode(rest) {
                Ok((used, Some(Decoded::Pong(_)))) => {
                    pongs += 1;
                    rest = &rest[used..];
                }
                // Part of a header, or of a frame: the rest decides.
                Ok((used, None)) if used > 0 => rest = &rest[used..],
                _ => break false,
            }
        };
        if !clean {
            // Not left as it was: the next check starts afresh.
            *decoder_kept = None;
        }
        clean
    })
}

impl AsFd for Parked {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Parked {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    use super::*;
    use crate::{Message, NextOrIdle, Role, WebSocketConfig};

    /// "Hello" from a client, masked: the example of RFC 6455 §5.7.
    const HELLO: [u8; 11] = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];

    const WAIT: Duration = Duration::from_secs(10);

    /// A server `WebSocket` and the raw client socket of its peer.
    async fn pair(config: WebSocketConfig) -> (WebSocket<TcpTransport>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = WebSocket::from_raw(TcpTransport::new(tcp), Role::Server, config, &[]);
        (ws, client)
    }

    async fn recv(ws: &mut WebSocket<TcpTransport>) -> Message {
        let next = timeout(WAIT, ws.recv()).await.expect("a message in time");
        next.expect("open").expect("no error")
    }

    #[tokio::test]
    async fn a_connection_between_messages_parks_and_resumes_whole() {
        let (ws, mut client) = pair(WebSocketConfig::default()).await;
        let parked = ws.try_park().expect("idle");
        client.write_all(&HELLO).await.unwrap();
        let mut ws = parked.resume().unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("Hello"));
        // Parked again after a message, and its keepalive state kept.
        let parked = ws.try_park().expect("idle");
        assert_eq!(parked.keepalive_deadline(), None);
        client.write_all(&HELLO).await.unwrap();
        assert_eq!(
            recv(&mut parked.resume().unwrap()).await,
            Message::text("Hello")
        );
    }

    #[tokio::test]
    async fn half_a_frame_is_not_parked_rfc_6455_section_5_2() {
        let (mut ws, mut client) = pair(WebSocketConfig::default()).await;
        client.write_all(&HELLO[..4]).await.unwrap();
        // Reads the half frame, then waits for the rest.
        assert!(timeout(Duration::from_millis(200), ws.recv())
            .await
            .is_err());
        let mut ws = ws.try_park().expect_err("half a frame is not idle");
        client.write_all(&HELLO[4..]).await.unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("Hello"));
        assert!(ws.try_park().is_ok());
    }

    #[tokio::test]
    async fn a_close_started_is_not_parked() {
        let (mut ws, _client) = pair(WebSocketConfig::default()).await;
        ws.start_close(crate::CloseCode::NormalClosure, "").unwrap();
        assert!(ws.try_park().is_err());
    }

    #[cfg(feature = "deflate")]
    #[tokio::test]
    async fn deflate_is_parked_only_without_context_takeover_rfc_7692_section_7_1_1() {
        use wshub_proto::deflate::{negotiate, DeflateConfig};
        for (config, parkable) in [
            (DeflateConfig::server(), true),
            (
                DeflateConfig::server().server_no_context_takeover(false),
                false,
            ),
            (
                DeflateConfig::server().client_no_context_takeover(false),
                false,
            ),
        ] {
            let (agreement, _) = negotiate(["permessage-deflate"], &config).unwrap();
            let protocol = crate::ProtocolConfig::default().deflate(Some(agreement.clone()));
            let (ws, _client) = pair(WebSocketConfig::default().protocol(protocol)).await;
            match ws.try_park() {
                Ok(parked) => {
                    assert!(parkable, "{agreement:?} parked");
                    let ws = parked.resume().unwrap();
                    assert_eq!(ws.extensions(), None);
                }
                Err(_) => assert!(!parkable, "{agreement:?} not parked"),
            }
        }
    }

    /// A masked Pong from a client carrying `wshub`, as a browser answers
    /// the keepalive's Ping (RFC 6455 §5.5.3), masking key 1, 2, 3, 4.
    fn client_pong() -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![0x8a, 0x80 | 5, 1, 2, 3, 4];
        frame.extend(b"wshub".iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        frame
    }

    fn keepalive(interval_ms: u64) -> WebSocketConfig {
        WebSocketConfig::default()
            .ping_interval(Some(Duration::from_millis(interval_ms)))
            .pong_timeout(Duration::from_secs(5))
    }

    async fn read_exactly(client: &mut TcpStream, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; n];
        timeout(WAIT, client.read_exact(&mut buf))
            .await
            .expect("bytes in time")
            .unwrap();
        buf
    }

    /// Waits until `parked`'s socket has something to read, as its poller would.
    async fn readable(parked: &Parked) {
        let mut byte = [0u8; 1];
        let deadline = std::time::Instant::now() + WAIT;
        while !matches!(parked.get_ref().peek(&mut byte), Ok(1)) {
            assert!(std::time::Instant::now() < deadline, "nothing arrived");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_keepalive_pings_and_takes_the_pong_while_parked_rfc_6455_section_5_5_2() {
        let (ws, mut client) = pair(keepalive(100)).await;
        let mut parked = ws.try_park().expect("idle");
        let due = parked.keepalive_deadline().expect("keepalive on");
        // Not due yet: nothing written.
        assert!(matches!(
            parked.ping_if_due(due - Duration::from_millis(1)),
            Tended::Parked
        ));
        assert_eq!(parked.keepalive_deadline(), Some(due));
        assert!(matches!(parked.ping_if_due(due), Tended::Parked));
        // An unmasked Ping from the server, `wshub`.
        assert_eq!(read_exactly(&mut client, 7).await, b"\x89\x05wshub");
        // Now awaiting the Pong, for the pong timeout.
        assert_eq!(
            parked.keepalive_deadline(),
            Some(due + Duration::from_secs(5))
        );
        client.write_all(&client_pong()).await.unwrap();
        readable(&parked).await;
        let answered = due + Duration::from_millis(20);
        assert!(matches!(parked.take_pongs(answered), Tended::Parked));
        // Taken off the socket, and the next Ping an interval after the Pong.
        let mut byte = [0u8; 1];
        let peeked = parked.get_ref().peek(&mut byte);
        assert_eq!(peeked.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            parked.keepalive_deadline(),
            Some(answered + Duration::from_millis(100))
        );
        // Two at once (an answer and one unasked, RFC 6455 §5.5.3): both taken.
        let mut two = client_pong();
        two.extend(client_pong());
        client.write_all(&two).await.unwrap();
        readable(&parked).await;
        assert!(matches!(parked.take_pongs(answered), Tended::Parked));
        let peeked = parked.get_ref().peek(&mut byte);
        assert_eq!(peeked.unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // Still whole: a message after it is echoed by the resumed connection.
        client.write_all(&HELLO).await.unwrap();
        readable(&parked).await;
        assert!(matches!(parked.take_pongs(answered), Tended::Resume));
        let mut ws = parked.resume().unwrap();
        assert_eq!(recv(&mut ws).await, Message::text("Hello"));
    }

    #[tokio::test]
    async fn anything_but_whole_pongs_resumes_with_nothing_taken() {
        let pong = client_pong();
        let ping = [0x89, 0x80, 9, 9, 9, 9];
        let unmasked_pong = [0x8a, 0x00];
        let mut pong_then_hello = pong.clone();
        pong_then_hello.extend(HELLO);
        let cases: [(&str, &[u8]); 5] = [
            ("half a Pong", &pong[..4]),
            ("a Pong and a message", &pong_then_hello),
            ("a Ping", &ping),
            ("an unmasked Pong (RFC 6455 §5.1)", &unmasked_pong),
            ("a message", &HELLO),
        ];
        for (what, bytes) in cases {
            let (ws, mut client) = pair(keepalive(60_000)).await;
            let mut parked = ws.try_park().expect("idle");
            client.write_all(bytes).await.unwrap();
            readable(&parked).await;
            assert!(
                matches!(parked.take_pongs(Instant::now()), Tended::Resume),
                "{what}"
            );
            let mut all = vec![0u8; 64];
            assert_eq!(
                parked.get_ref().peek(&mut all).unwrap(),
                bytes.len(),
                "{what}"
            );
        }
        // The peer's FIN: resumed, to read the end of the stream.
        let (ws, client) = pair(keepalive(60_000)).await;
        let mut parked = ws.try_park().expect("idle");
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(parked.take_pongs(Instant::now()), Tended::Resume));
        let mut ws = parked.resume().unwrap();
        assert!(timeout(WAIT, ws.recv())
            .await
            .unwrap()
            .is_none_or(|r| r.is_err()));
    }

    #[tokio::test]
    async fn a_peer_past_its_pong_timeout_is_resumed_to_fail() {
        let config = keepalive(100).pong_timeout(Duration::from_millis(100));
        let (ws, _client) = pair(config).await;
        let mut parked = ws.try_park().expect("idle");
        let due = parked.keepalive_deadline().unwrap();
        assert!(matches!(parked.ping_if_due(due), Tended::Parked));
        let overdue = parked.keepalive_deadline().unwrap();
        assert!(matches!(parked.ping_if_due(overdue), Tended::Resume));
        let mut ws = parked.resume().unwrap();
        let end = timeout(WAIT, ws.recv()).await.expect("ends in time");
        assert!(
            matches!(end, Some(Err(crate::Error::KeepaliveTimeout))),
            "{end:?}"
        );
    }

    async fn next_or_idle(ws: &mut WebSocket<TcpTransport>, wait: Duration) -> Option<NextOrIdle> {
        let next = std::future::poll_fn(|cx| ws.poll_next_or_idle(cx));
        let next = timeout(wait, next).await.ok()?;
        Some(next.expect("open").expect("no error"))
    }

    #[tokio::test]
    async fn a_quiet_connection_is_reported_idle_once_per_quiet_spell() {
        let (mut ws, mut client) = pair(WebSocketConfig::default()).await;
        ws.watch_idle();
        let hello = NextOrIdle::Message(Message::text("Hello"));
        for _ in 0..2 {
            client.write_all(&HELLO).await.unwrap();
            assert_eq!(next_or_idle(&mut ws, WAIT).await, Some(hello.clone()));
            assert_eq!(next_or_idle(&mut ws, WAIT).await, Some(NextOrIdle::Idle));
            // Once: polled on, it waits for the next message.
            let more = next_or_idle(&mut ws, Duration::from_millis(800)).await;
            assert_eq!(more, None);
        }
    }
}
