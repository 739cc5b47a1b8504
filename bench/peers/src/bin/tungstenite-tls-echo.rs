//! Echo server on tokio-tungstenite over tokio-rustls (wss://): accept a TCP
//! connection, run the TLS handshake with a `TlsAcceptor`, then what
//! `tungstenite-echo` runs over plain TCP on the TLS stream: the WebSocket
//! handshake with `accept_async` and an echo of every text or binary
//! message.

#[path = "../args.rs"]
mod args;
#[path = "../tls.rs"]
mod tls;
#[path = "../tungstenite.rs"]
mod tungstenite;

use tokio_rustls::TlsAcceptor;

fn main() {
    let name = "tungstenite-tls-echo";
    let (args, files) = args::parse_tls(name);
    let acceptor = TlsAcceptor::from(tls::server_config(name, &files));
    tungstenite::serve(name, "wss", &args, move |stream| {
        let accept = acceptor.accept(stream);
        async move {
            if let Ok(stream) = accept.await {
                tungstenite::echo(stream).await;
            }
        }
    });
}
