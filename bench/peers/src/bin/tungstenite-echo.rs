//! Echo server on tokio-tungstenite with its default configuration: accept a
//! TCP connection, run the WebSocket handshake with `accept_async`, and send
//! back every text or binary message. Pings are answered and the close
//! handshake is completed by tungstenite itself.

#[path = "../args.rs"]
mod args;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(stream: TcpStream) {
    let mut ws = match tokio_tungstenite::accept_async(stream).await {
        Ok(ws) => ws,
        Err(_) => return,
    };
    while let Some(message) = ws.next().await {
        let message = match message {
            Ok(m) => m,
            Err(_) => break,
        };
        if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            break;
        }
    }
}

fn main() {
    let args = args::parse("tungstenite-echo");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!("tungstenite-echo listening on ws://{}/ ({} worker(s))", args.listen, args.workers);
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(echo(stream));
                }
                Err(e) => eprintln!("accept: {e}"),
            }
        }
    });
}
