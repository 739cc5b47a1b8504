//! `wshub connect URL`: an interactive client, like wscat or websocat.
//! With `--reconnect`, talking to a wshub hub, it resumes the rooms joined
//! through it after each reconnect (see [`Resume`]).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};
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

    let mut resume = args.reconnect.then(Resume::default);
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
        match session(ws, &args, &config, &mut lines, resume.as_mut()).await? {
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
    mut resume: Option<&mut Resume>,
) -> Result<Ended> {
    if let Some(resume) = resume.as_deref() {
        for request in resume.requests() {
            if let Err(e) = ws.send(Message::text(request)).await {
                eprintln!("send failed: {}", e.report());
            }
        }
    }
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    if let (Some(resume), false) = (resume.as_deref_mut(), args.binary) {
                        resume.sent(&line);
                    }
                    let message = if args.binary { Message::binary(line.into_bytes()) } else { Message::text(line) };
                    if let Err(e) = ws.send(message).await {
                        eprintln!("send failed: {}", e.report());
                    }
                }
                None => return close(ws, config, args).await,
            },
            _ = tokio::signal::ctrl_c() => return close(ws, config, args).await,
            incoming = ws.next() => match incoming {
                Some(Ok(message)) => {
                    let fresh = match (resume.as_deref_mut(), &message) {
                        (Some(resume), Message::Text(text)) => resume.received(text.as_str()),
                        _ => true,
                    };
                    if fresh {
                        print_message(&message, args.binary_output)?;
                    }
                }
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

/// What `--reconnect` keeps across connections to resume a wshub hub's rooms
/// (docs/protocol.md, "History and resume"): the rooms joined through this
/// client, as their `joined` answers and `message`s pass by, each with the
/// name it was joined under and the `(epoch, offset)` of the last message
/// printed; and the last `auth` request typed. Nothing else is parsed or
/// changed: any other server's messages pass through as they are.
#[derive(Debug, Default)]
struct Resume {
    rooms: HashMap<String, Room>,
    /// Names asked for in `join` requests not yet answered, by room.
    asked: HashMap<String, Option<String>>,
    /// The last `auth` request sent, sent again first after a reconnect.
    auth: Option<String>,
}

#[derive(Debug)]
struct Room {
    name: Option<String>,
    epoch: String,
    offset: u64,
}

impl Resume {
    /// Notes a request typed by the user.
    fn sent(&mut self, line: &str) {
        let Ok(request) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let room = request["room"].as_str();
        match (request["op"].as_str(), room) {
            (Some("join"), Some(room)) => {
                let name = request["name"].as_str().map(str::to_owned);
                self.asked.insert(room.to_owned(), name);
            }
            (Some("leave"), Some(room)) => {
                self.rooms.remove(room);
            }
            (Some("auth"), _) => self.auth = Some(line.to_owned()),
            _ => {}
        }
    }

    /// Notes a text message from the server; `false` if it is a room
    /// message printed already (its offset is not above the last one of its
    /// room and epoch), not to be printed again.
    fn received(&mut self, text: &str) -> bool {
        if !text.starts_with('{') {
            return true;
        }
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return true;
        };
        let (Some(room), Some(epoch)) = (frame["room"].as_str(), frame["epoch"].as_str()) else {
            return true;
        };
        let offset = frame["offset"].as_u64().or_else(|| frame["seq"].as_u64());
        match (frame["type"].as_str(), offset) {
            (Some("joined"), Some(offset)) => {
                let asked = self.asked.remove(room);
                let known = self.rooms.get_mut(room);
                if frame["recovered"] == false {
                    eprintln!(
                        "room {room}: some messages may be missing (the hub no longer has all those sent while disconnected)"
                    );
                }
                match known {
                    // Recovered: the missed messages follow and move the
                    // offset on as they are printed.
                    Some(known) if frame["recovered"] == true => {
                        if let Some(name) = asked {
                            known.name = name;
                        }
                    }
                    Some(known) => {
                        if let Some(name) = asked {
                            known.name = name;
                        }
                        known.epoch = epoch.to_owned();
                        known.offset = offset;
                    }
                    None => {
                        let state = Room {
                            name: asked.flatten(),
                            epoch: epoch.to_owned(),
                            offset,
                        };
                        self.rooms.insert(room.to_owned(), state);
                    }
                }
                true
            }
            (Some("message"), Some(offset)) => match self.rooms.get_mut(room) {
                Some(known) if known.epoch == epoch && offset <= known.offset => false,
                Some(known) => {
                    known.epoch = epoch.to_owned();
                    known.offset = offset;
                    true
                }
                None => true,
            },
            _ => true,
        }
    }

    /// The requests that resume the session on a new connection: the last
    /// `auth`, then a `join` with `since` for each room.
    fn requests(&self) -> Vec<String> {
        let joins = self.rooms.iter().map(|(room, known)| {
            let mut join = json!({
                "op": "join",
                "room": room,
                "since": {"epoch": known.epoch, "offset": known.offset},
            });
            if let Some(name) = &known.name {
                join["name"] = json!(name);
            }
            join.to_string()
        });
        self.auth.iter().cloned().chain(joins).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_rejoins_with_the_last_offset_and_drops_what_was_printed() {
        let mut resume = Resume::default();
        resume.sent(r#"{"op":"join","room":"lobby","name":"ada"}"#);
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":4,"seq":4,"epoch":"E"}"#
        ));
        for offset in 5..=6 {
            let m = format!(
                r#"{{"type":"message","room":"lobby","seq":{offset},"epoch":"E","offset":{offset}}}"#
            );
            assert!(resume.received(&m));
        }
        assert_eq!(
            resume.requests(),
            [r#"{"name":"ada","op":"join","room":"lobby","since":{"epoch":"E","offset":6}}"#]
        );
        // Reconnected: recovered, and the replay starts at a message
        // printed already.
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":8,"epoch":"E","recovered":true}"#
        ));
        let m = |o: u64| format!(r#"{{"type":"message","room":"lobby","epoch":"E","offset":{o}}}"#);
        assert!(!resume.received(&m(6)), "printed already");
        assert!(resume.received(&m(7)) && resume.received(&m(8)));
        // Not recovered: live messages go on from the room's offset.
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":0,"epoch":"F","recovered":false}"#
        ));
        assert!(resume.received(&m(8)), "after the new epoch's offset 0");
        resume.sent(r#"{"op":"leave","room":"lobby"}"#);
        assert!(resume.requests().is_empty());
        assert!(resume.received("pong") && resume.received("not json"));
    }
}
