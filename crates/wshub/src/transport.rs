//! [`TcpTransport`]: a tokio TCP stream whose reads and writes are direct
//! system calls.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A TCP connection for a [`WebSocket`](crate::WebSocket): tokio's readiness
/// (epoll), with each `recv`, `send` and `sendmsg` a direct system call made
/// by [rustix] instead of a call through the C library.
///
/// In a process with more than one thread, glibc's socket calls switch the
/// thread to asynchronous cancellation and back around every system call
/// (POSIX makes them cancellation points); a tokio multi-thread runtime is
/// such a process. In `wshub serve` that switch was 1.4–1.6% of the server's
/// time (`perf`), and going around it cut user time per echoed message from
/// 638 to 557 ns (medians of 8 runs, 20 B at one message in flight).
///
/// The system calls themselves are the ones tokio makes, and readiness works
/// as in tokio's own [`TcpStream`]: a read or write that moves fewer bytes
/// than asked clears the readiness, so the next one waits for epoll rather
/// than making a call that would fail with `EAGAIN`.
///
/// Reads are fastest into a [`ReadBuf`] that is already initialised (as
/// [`WebSocket`](crate::WebSocket)'s read buffer is); an uninitialised one is
/// zeroed first, as the system call needs initialised bytes here.
#[derive(Debug)]
pub struct TcpTransport {
    inner: TcpStream,
}

impl TcpTransport {
    /// Wraps a connected tokio stream.
    pub fn new(inner: TcpStream) -> Self {
        Self { inner }
    }

    /// The tokio stream, for socket options.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// The tokio stream back.
    pub fn into_inner(self) -> TcpStream {
        self.inner
    }

    /// The remote address.
    ///
    /// # Errors
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// One system call when the socket is ready; `Pending` (and registered
    /// for the next readiness) when it is not. `op` returns the bytes moved
    /// and whether that was fewer than asked.
    fn poll_io(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut() -> io::Result<(usize, bool)>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if interest.is_readable() {
                ready!(self.inner.poll_read_ready(cx))?;
            } else {
                ready!(self.inner.poll_write_ready(cx))?;
            }
            let mut short = None;
            let done = self.inner.try_io(interest, || match op() {
                // Fewer bytes than asked: the socket is drained (or full)
                // for now. Reported to tokio as `WouldBlock`, the only way
                // to make it clear the readiness, as its own stream does.
                Ok((n, true)) if n > 0 => {
                    short = Some(n);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Ok((n, _)) => Ok(n),
                Err(e) => Err(e),
            });
            match (done, short) {
                (_, Some(n)) | (Ok(n), None) => return Poll::Ready(Ok(n)),
                (Err(e), None)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                (Err(e), None) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl From<TcpStream> for TcpTransport {
    fn from(inner: TcpStream) -> Self {
        Self::new(inner)
    }
}

impl AsyncRead for TcpTransport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        let asked = dst.len();
        let n = ready!(self.poll_io(cx, Interest::READABLE, || {
            let (n, _) =
                rustix::net::recv(&self.inner, &mut *dst, rustix::net::RecvFlags::empty())?;
            Ok((n, n < asked))
        }))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TcpTransport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // NOSIGNAL: a peer gone is an `EPIPE` error, not a SIGPIPE.
        self.poll_io(cx, Interest::WRITABLE, || {
            let n = rustix::net::send(&self.inner, buf, rustix::net::SendFlags::NOSIGNAL)?;
            Ok((n, n < buf.len()))
        })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let asked: usize = bufs.iter().map(|b| b.len()).sum();
        self.poll_io(cx, Interest::WRITABLE, || {
            let n = rustix::net::sendmsg(
                &self.inner,
                bufs,
                &mut rustix::net::SendAncillaryBuffer::default(),
                rustix::net::SendFlags::NOSIGNAL,
            )?;
            Ok((n, n < asked))
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Nothing is buffered here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
