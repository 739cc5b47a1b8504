//! [`Parked`]: an idle [`WebSocket`] over TCP without its task, its tokio
//! registration or its buffers, for a server that holds many quiet
//! connections and waits for them with one poller of its own (the netpoll
//! idea of "A Million WebSockets and Go").

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use tokio::time::Instant;

use crate::websocket::IdleParts;
use crate::{TcpTransport, WebSocket};

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
/// its own poller ([`AsFd`]), calls [`Parked::resume`] when it is readable,
/// and also by [`Parked::keepalive_deadline`], when the keepalive must send
/// a Ping or give up on the peer (the resumed connection does either at
/// once). Dropping a `Parked` closes the socket without a Close frame.
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

impl Parked {
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
    /// timeout. Resume the connection then; it sends the Ping, or fails
    /// with [`Error::KeepaliveTimeout`](crate::Error::KeepaliveTimeout).
    pub fn keepalive_deadline(&self) -> Option<Instant> {
        self.parts.keepalive_deadline()
    }

    /// The socket, for its address or options. Reading from or writing to
    /// it corrupts the WebSocket's stream.
    pub fn get_ref(&self) -> &std::net::TcpStream {
        &self.stream
    }
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
