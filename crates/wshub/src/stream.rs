//! [`ClientStream`]: what [`connect`](crate::connect) runs a WebSocket on,
//! TCP for `ws://` and TLS over TCP for `wss://`.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The transport of a client connection opened by
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect): a
/// [`TcpStream`] for `ws://`, a TLS session over one for `wss://`.
///
/// Each read and write on a `ws://` connection costs one well-predicted
/// branch more than on a bare `TcpStream`; the TLS session sits in its own
/// allocation, so a `ws://` connection is no bigger for it. To run a
/// WebSocket on exactly the stream you built (a `TcpStream`, a Unix socket,
/// your own TLS stream), use
/// [`ClientBuilder::connect_on`](crate::ClientBuilder::connect_on).
#[derive(Debug)]
pub struct ClientStream {
    inner: Inner,
}

// Private, so the `rustls` feature does not change a public enum's shape.
#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    #[cfg(feature = "rustls")]
    Rustls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl ClientStream {
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Self {
            inner: Inner::Plain(tcp),
        }
    }

    #[cfg(feature = "rustls")]
    pub(crate) fn rustls(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self {
            inner: Inner::Rustls(Box::new(tls)),
        }
    }

    /// Whether the connection runs over TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        !matches!(self.inner, Inner::Plain(_))
    }

    /// The TCP stream underneath, for socket options and addresses.
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(tcp) => tcp,
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => tls.get_ref().0,
        }
    }

    /// The server's address (of the TCP stream underneath).
    ///
    /// # Errors
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The TLS session's state (protocol version, cipher suite, the
    /// server's certificates); `None` for `ws://`.
    #[cfg(feature = "rustls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
    pub fn tls_session(&self) -> Option<&rustls::ClientConnection> {
        match &self.inner {
            Inner::Plain(_) => None,
            Inner::Rustls(tls) => Some(tls.get_ref().1),
        }
    }
}

/// A plain (`ws://`) connection, e.g. for
/// [`ClientBuilder::connect_on`](crate::ClientBuilder::connect_on) with a
/// socket you configured, giving the same type as
/// [`ClientBuilder::connect`](crate::ClientBuilder::connect).
impl From<TcpStream> for ClientStream {
    fn from(tcp: TcpStream) -> Self {
        Self::plain(tcp)
    }
}

/// A `wss://` connection whose TLS handshake you ran.
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
impl From<tokio_rustls::client::TlsStream<TcpStream>> for ClientStream {
    fn from(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        Self::rustls(tls)
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(tcp) => tcp.is_write_vectored(),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            #[cfg(feature = "rustls")]
            Inner::Rustls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
