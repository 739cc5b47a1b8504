//! `wshub connect URL`: an interactive client, like wscat or websocat.

use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use base64::Engine;
use futures_util::StreamExt;
use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use wshub::reconnect::Backoff;
use wshub::{ClientBuilder, Message};

use crate::args::{BinaryOutput, ConnectArgs};
use crate::config::{connect_config, ConnectConfig};

/// How one connection ended.
enum Ended {
    /// Input ended or Ctrl-C: the user closed on purpose.
    ByUser,
    /// The server closed or the connection dropped.
    ByPeer { clean: bool },
}

pub(crate) async fn run(args: ConnectArgs) -> Result<i32> {
    let config = connect_config(&args)?;
    let tls = crate::tls::client_config(&args.tls)?;
    let (lines_tx, mut lines) = mpsc::channel::<String>(64);
    tokio::spawn(async move {
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = stdin.next_line().await {
            if lines_tx.send(line).await.is_err() {
                break;
            }
        }
        // Dropping the sender tells the session that input ended.
    });

    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        args.reconnect_max_delay,
    );
    loop {
        let ws = match builder(&args, &config, tls.as_ref()).connect().await {
            Ok(ws) => ws,
            Err(e) => {
                let reason = e.report();
                if !args.reconnect {
                    return Err(anyhow!("cannot connect to {}: {reason}", args.url));
                }
                let delay = backoff.next().unwrap_or_default();
                eprintln!(
                    "cannot connect to {}: {reason}; retrying in {:.1}s",
                    args.url,
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        eprintln!(
            "connected to {}{}{}",
            args.url,
            ws.protocol()
                .map(|p| format!(" (subprotocol {p})"))
                .unwrap_or_default(),
            ws.extensions()
                .map(|e| format!(" (extensions {e})"))
                .unwrap_or_default()
        );
        match session(ws, &args, &config, &mut lines).await? {
            Ended::ByUser => return Ok(0),
            Ended::ByPeer { clean } if !args.reconnect => return Ok(if clean { 0 } else { 1 }),
            Ended::ByPeer { .. } => {
                let delay = backoff.next().unwrap_or_default();
                eprintln!("reconnecting in {:.1}s", delay.as_secs_f64());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

fn builder(
    args: &ConnectArgs,
    config: &ConnectConfig,
    tls: Option<&Arc<wshub::rustls::ClientConfig>>,
) -> ClientBuilder {
    let mut b = ClientBuilder::new(args.url.clone()).config(config.websocket.clone());
    if let Some(tls) = tls {
        b = b.tls_config(tls.clone());
    }
    for (name, value) in &config.headers {
        b = b.header(name.clone(), value.clone());
    }
    for p in &args.subprotocols {
        b = b.protocol(p.clone());
    }
    b
}

fn print_message(message: &Message, output: BinaryOutput) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match message {
        Message::Text(t) => writeln!(stdout, "{t}")?,
        Message::Binary(b) => match output {
            BinaryOutput::Hex => {
                let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
                writeln!(stdout, "{hex}")?;
            }
            BinaryOutput::Base64 => writeln!(
                stdout,
                "{}",
                base64::engine::general_purpose::STANDARD.encode(b)
            )?,
        },
    }
    stdout.flush()
}

async fn session(
    mut ws: wshub::WebSocket<wshub::ClientStream>,
    args: &ConnectArgs,
    config: &ConnectConfig,
    lines: &mut mpsc::Receiver<String>,
) -> Result<Ended> {
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    let message = if args.binary { Message::binary(line.into_bytes()) } else { Message::text(line) };
                    if let Err(e) = ws.send(message).await {
                        eprintln!("send failed: {}", e.report());
                    }
                }
                None => return close(ws, config, args).await,
            },
            _ = tokio::signal::ctrl_c() => return close(ws, config, args).await,
            incoming = ws.next() => match incoming {
                Some(Ok(message)) => print_message(&message, args.binary_output)?,
                Some(Err(e)) => eprintln!("connection error: {}", e.report()),
                None => {
                    let event = ws.close_event();
                    let clean = event.as_ref().is_some_and(|e| e.was_clean);
                    match event {
                        Some(e) => eprintln!("disconnected: code {} reason {:?} (clean: {})", e.code, e.reason, e.was_clean),
                        None => eprintln!("disconnected"),
                    }
                    return Ok(Ended::ByPeer { clean });
                }
            },
        }
    }
}

/// Starts the close handshake, printing what the server still sends until
/// its Close arrives.
async fn close(
    mut ws: wshub::WebSocket<wshub::ClientStream>,
    config: &ConnectConfig,
    args: &ConnectArgs,
) -> Result<Ended> {
    ws.start_close(config.close_code, &args.close_reason)?;
    while let Some(incoming) = ws.next().await {
        match incoming {
            Ok(message) => print_message(&message, args.binary_output)?,
            Err(e) => eprintln!("connection error: {}", e.report()),
        }
    }
    match ws.close_event() {
        Some(e) => eprintln!(
            "closed: code {} reason {:?} (clean: {})",
            e.code, e.reason, e.was_clean
        ),
        None => eprintln!("closed"),
    }
    Ok(Ended::ByUser)
}
