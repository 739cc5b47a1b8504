//! Connections: the opening handshake over TCP (and TLS for `wss://`), then
//! one loop per connection that reads and writes without waiting on either.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use wshub::tokio_rustls::TlsConnector;
use wshub_proto::handshake::{validate_response, ClientRequest, HeadReader, Response};

use crate::error::ConnectionError;
use crate::target::Target;
use wshub::ClientStream as Stream;

/// Connects over TCP, for `wss://` performs the TLS handshake, and performs
/// the opening handshake (RFC 6455 §4.1), all within `timeout`. Returns the stream and any bytes the server sent after
/// its 101 response (frames that arrived with it).
pub(crate) async fn open(
    target: &Target,
    timeout: Duration,
) -> Result<(Stream, Vec<u8>), ConnectionError> {
    open_offering(target, timeout, None)
        .await
        .map(|(tcp, early, _)| (tcp, early))
}

/// [`open`], offering `extensions` (a `Sec-WebSocket-Extensions` value); the
/// third value says whether the server accepted permessage-deflate.
pub(crate) async fn open_offering(
    target: &Target,
    timeout: Duration,
    extensions: Option<&str>,
) -> Result<(Stream, Vec<u8>, bool), ConnectionError> {
    let handshake = async {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let mut tcp = match &target.tls {
            None => Stream::from(tcp),
            Some(tls) => {
                let connector = TlsConnector::from(tls.config.clone());
                Stream::from(connector.connect(tls.server_name.clone(), tcp).await?)
            }
        };
        let mut request = ClientRequest::new(target.authority.as_str(), target.resource.as_str());
        request.extensions = extensions.map(str::to_owned);
        tcp.write_all(&request.encode()?).await?;
        tcp.flush().await?;
        let mut head = HeadReader::default();
        // On the heap: a task's future keeps its largest state for its whole
        // life, and an idle connection lives long after its handshake.
        let mut chunk = vec![0u8; 1024];
        loop {
            let n = tcp.read(&mut chunk).await?;
            if n == 0 {
                return Err(ConnectionError::Eof);
            }
            if head.push(&chunk[..n])? {
                break;
            }
        }
        let response = Response::parse(head.head().unwrap_or_default())?;
        let accepted = validate_response(&response, &request)?;
        let deflate = accepted
            .extensions
            .iter()
            .any(|e| e.name == wshub_proto::deflate::EXTENSION_NAME);
        Ok((tcp, head.remainder().to_vec(), deflate))
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| ConnectionError::Timeout)?
}

/// The protocol logic of one connection, driven by [`drive`].
pub(crate) trait Session {
    /// Handles bytes read at `now`. Returns `false` once the connection is
    /// done (its close handshake finished, or it failed).
    fn on_read(&mut self, data: &[u8], now: Instant) -> bool;
    /// Bytes to write next; empty when there are none.
    fn pending(&self) -> &[u8];
    /// `n` bytes of [`Session::pending`] were written.
    fn wrote(&mut self, n: usize);
}

/// Why [`drive`] returned.
#[derive(Debug)]
pub(crate) enum Driven {
    /// `stop` completed.
    Stopped,
    /// [`Session::on_read`] returned `false`.
    Done,
    /// The server closed the TCP connection.
    Eof,
    /// The socket failed.
    Io(io::Error),
}

/// Reads into `buf` (shared by every connection of a thread, borrowed only
/// inside one poll) and writes what `session` has pending, both without
/// blocking each other, until `stop` completes or the session ends.
///
/// One poll drains the socket and the write queue as far as they go, so a
/// pipelining connection answers a whole read's worth of replies with one
/// write. tokio's cooperative budget bounds a poll that could run forever.
pub(crate) async fn drive<S: Session, F: Future>(
    tcp: &mut Stream,
    session: &mut S,
    buf: &std::cell::RefCell<Vec<u8>>,
    stop: Pin<&mut F>,
) -> Driven {
    let mut stop = stop;
    poll_fn(|cx| loop {
        let mut progressed = false;
        loop {
            let out = session.pending();
            if out.is_empty() {
                break;
            }
            match Pin::new(&mut *tcp).poll_write(cx, out) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Driven::Io(io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => {
                    session.wrote(n);
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Driven::Io(e)),
                Poll::Pending => break,
            }
        }
        // TLS keeps records its socket did not take yet until a flush (a
        // no-op for plain TCP); pending, it waits for writability.
        if let Poll::Ready(Err(e)) = Pin::new(&mut *tcp).poll_flush(cx) {
            return Poll::Ready(Driven::Io(e));
        }
        let mut buf = buf.borrow_mut();
        let mut read = ReadBuf::new(&mut buf);
        match Pin::new(&mut *tcp).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    return Poll::Ready(Driven::Eof);
                }
                if !session.on_read(&buf[..n], Instant::now()) {
                    return Poll::Ready(Driven::Done);
                }
                progressed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Driven::Io(e)),
            Poll::Pending => {}
        }
        if !progressed {
            return match stop.as_mut().poll(cx) {
                Poll::Ready(_) => Poll::Ready(Driven::Stopped),
                Poll::Pending => Poll::Pending,
            };
        }
    })
    .await
}

/// Writes what `session` still has pending, best effort and within 1 s:
/// the answer to a Close the server sent, after [`Driven::Done`].
pub(crate) async fn flush<S: Session>(tcp: &mut Stream, session: &mut S) {
    let write = async {
        while !session.pending().is_empty() {
            match tcp.write(session.pending()).await {
                Ok(0) | Err(_) => break,
                Ok(n) => session.wrote(n),
            }
        }
        let _ = tcp.flush().await;
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_an_io_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // Bind then drop, so the port is very likely closed.
            let addr = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap();
            let target = Target {
                addr,
                authority: addr.to_string(),
                resource: "/".into(),
                tls: None,
            };
            let err = open(&target, Duration::from_secs(5)).await.unwrap_err();
            assert!(matches!(err, ConnectionError::Io(_)), "{err}");
        });
    }
}
