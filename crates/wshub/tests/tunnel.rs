//! A WebSocket whose transport is another WebSocket, both polled on one
//! thread: reading the outer connection reads the inner one from inside the
//! outer's read. The thread's shared read buffer is then in use, and the inner
//! read must fall back to a buffer of its own rather than fail.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use wshub::{Message, WebSocket, WebSocketConfig};
use wshub_proto::Role;

/// A byte stream carried in binary messages of an inner WebSocket.
struct Tunnel {
    ws: WebSocket<DuplexStream>,
    unread: Bytes,
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.unread.is_empty() {
            match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => self.unread = bytes,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::ErrorKind::InvalidData.into()))
                }
                Some(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.unread.len().min(buf.remaining());
        buf.put_slice(&self.unread[..n]);
        self.unread.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut ws = Pin::new(&mut self.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(data)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}

fn tunnel(io: DuplexStream, role: Role) -> Tunnel {
    Tunnel {
        ws: WebSocket::from_raw(io, role, WebSocketConfig::default(), &[]),
        unread: Bytes::new(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_websocket_carried_by_a_websocket_on_one_thread_reads_its_messages() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let mut server = WebSocket::from_raw(
        tunnel(a, Role::Server),
        Role::Server,
        WebSocketConfig::default(),
        &[],
    );
    let mut client = WebSocket::from_raw(
        tunnel(b, Role::Client),
        Role::Client,
        WebSocketConfig::default(),
        &[],
    );
    // Larger than the 4 KiB a nested read takes at a time.
    let big: Bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    client
        .send(Message::text("through the tunnel"))
        .await
        .unwrap();
    client.send(Message::Binary(big.clone())).await.unwrap();
    assert_eq!(
        server.recv().await.unwrap().unwrap(),
        Message::text("through the tunnel")
    );
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::Binary(big));
    server.send(Message::text("and back")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("and back")
    );
}
