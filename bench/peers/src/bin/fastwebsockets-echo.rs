//! Echo server on fastwebsockets, following its documented server pattern:
//! hyper serves HTTP/1.1, `upgrade::upgrade` answers the WebSocket handshake,
//! and the upgraded connection, wrapped in a `FragmentCollector` so that
//! fragmented messages arrive whole, sends back every text or binary frame.
//! Auto-close and auto-pong are on (the library's defaults, set explicitly).

#[path = "../args.rs"]
mod args;

use fastwebsockets::{upgrade, FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

fn main() {
    let args = args::parse("fastwebsockets-echo");
    // The fastwebsockets examples run on a current-thread runtime; with
    // --workers above 1 use a multi-thread one.
    let runtime = if args.workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.workers);
        b
    }
    .enable_all()
    .build()
    .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen).await.expect("bind");
        eprintln!(
            "fastwebsockets-echo listening on ws://{}/ ({} worker(s))",
            args.listen, args.workers
        );
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(upgrade_request))
                    .with_upgrades()
                    .await;
            });
        }
    });
}
