//! `wshub listen [ADDR:]PORT`: a WebSocket server for one client at a time,
//! like `wscat -l` and `websocat -s`: what the client sends is printed,
//! stdin lines are sent to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use wshub::{Accept, DeflateConfig, Reject, WebSocketConfig};

use crate::args::ListenArgs;
use crate::config::session_config;
use crate::console::Console;
use crate::session::{self, Ended};
use crate::UsageError;

/// `PORT` (on 127.0.0.1) or `ADDR:PORT`.
fn listen_addr(value: &str) -> Result<SocketAddr, UsageError> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    value.parse().map_err(|_| {
        UsageError(format!(
            "listen address {value:?}: give a port (8080) or ADDR:PORT (0.0.0.0:8080, [::1]:8080)"
        ))
    })
}

pub(crate) async fn run(args: ListenArgs) -> Result<i32> {
    let addr = listen_addr(&args.listen)?;
    let config = session_config(&args.session, &args.compression, DeflateConfig::server())?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    // With --execute, the messages go to the client once it connects.
    let scripted = !args.session.execute.is_empty();
    let mut console = if scripted {
        Console::idle()
    } else {
        Console::stdin()
    };
    console.status(&format!("listening on ws://{local}"));
    let busy = Arc::new(AtomicBool::new(false));
    let mut clients = accept_loop(listener, busy.clone(), config.websocket.clone());
    let mut input_open = true;
    loop {
        // Waiting for a client: lines typed now have nobody to go to.
        let (tcp, peer) = tokio::select! {
            accepted = clients.recv() => match accepted {
                Some(accepted) => accepted,
                None => anyhow::bail!("the listener stopped accepting"),
            },
            line = console.lines.recv(), if input_open => match line {
                Some(_) => {
                    console.status("no client connected; line dropped");
                    continue;
                }
                None if args.session.keep_open => {
                    input_open = false;
                    continue;
                }
                None => return Ok(0),
            },
            _ = tokio::signal::ctrl_c() => return Ok(0),
        };
        let accepted = wshub::accept_with(tcp, config.websocket.clone(), |request| {
            let protocol = args
                .subprotocols
                .iter()
                .find(|p| request.protocols.contains(p))
                .cloned();
            Ok::<_, Reject>(Accept {
                protocol,
                ..Accept::default()
            })
        })
        .await;
        let ended = match accepted {
            Ok(ws) => {
                console.status(&format!(
                    "client {peer} connected{}",
                    session::negotiated(&ws)
                ));
                if scripted {
                    console = Console::scripted(args.session.execute.clone(), args.session.wait);
                }
                let plain = &mut session::Plain;
                session::run(ws, &args.session, &config, &mut console, plain).await?
            }
            Err(e) => {
                console.status(&format!("handshake with {peer} failed: {}", e.report()));
                Ended::ByPeer { clean: false }
            }
        };
        busy.store(false, Ordering::SeqCst);
        match ended {
            Ended::ByUser => return Ok(0),
            Ended::ByPeer { .. } if args.once => return Ok(0),
            Ended::ByPeer { .. } => {}
        }
    }
}

/// Accepts connections for ever: the first while not `busy` is handed
/// over (and makes it busy), the others are answered 503 meanwhile.
fn accept_loop(
    listener: TcpListener,
    busy: Arc<AtomicBool>,
    websocket: WebSocketConfig,
) -> mpsc::Receiver<(TcpStream, SocketAddr)> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: try again soon.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if busy.swap(true, Ordering::SeqCst) {
                tokio::spawn(wshub::accept_with(tcp, websocket.clone(), |_| {
                    Err::<Accept, _>(
                        Reject::new(503, "busy: wshub listen serves one client at a time")
                            .header("Retry-After", "5"),
                    )
                }));
                continue;
            }
            if tx.send((tcp, peer)).await.is_err() {
                return;
            }
        }
    });
    rx
}
