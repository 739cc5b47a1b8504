//! One open connection of `connect` or `listen`: input lines (or slash
//! commands) go out, what arrives is printed, and it ends by the user's
//! hand (end of input, Ctrl-C, `/close`, --one-message) or the peer's.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use wshub::{CloseCode, Incoming, Message, WebSocket};

use crate::args::{BinaryOutput, SessionArgs};
use crate::config::SessionConfig;
use crate::console::Console;

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Input ended, Ctrl-C, `/close` or --one-message: closed on purpose.
    ByUser,
    /// The peer closed or the connection dropped.
    ByPeer { clean: bool },
}

/// What a session hands to the caller's per-message hooks (`connect
/// --reconnect` de-duplicates and watches room messages).
pub(crate) trait Hooks {
    /// A line about to be sent as text.
    fn sent(&mut self, _line: &str) {}
    /// A text message arrived; `false` to leave it unprinted.
    fn received(&mut self, _text: &str) -> bool {
        true
    }
}

/// No hooks.
pub(crate) struct Plain;
impl Hooks for Plain {}

/// A slash command (--slash).
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Send(String),
    Ping(Bytes),
    Pong(Bytes),
    Close(CloseCode, String),
}

/// What a typed line asks for; `Err` says what is wrong with a command.
fn command(line: &str, slash: bool) -> Result<Command, String> {
    if !slash || !line.starts_with('/') {
        return Ok(Command::Send(line.to_owned()));
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Ok(Command::Send(format!("/{rest}")));
    }
    let (name, rest) = line[1..].split_once(' ').unwrap_or((&line[1..], ""));
    let payload = |rest: &str| {
        if rest.len() > 125 {
            Err(format!(
                "/{name}: the payload is {} bytes; a control frame carries at most 125",
                rest.len()
            ))
        } else {
            Ok(Bytes::copy_from_slice(rest.as_bytes()))
        }
    };
    match name {
        "ping" => payload(rest).map(Command::Ping),
        "pong" => payload(rest).map(Command::Pong),
        "close" => {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code = if code.is_empty() {
                CloseCode::NormalClosure
            } else {
                let code = code
                    .parse::<u16>()
                    .map(CloseCode::from)
                    .ok()
                    .filter(|c| c.is_allowed_on_wire())
                    .ok_or_else(|| {
                        format!("/close {code}: use a close code of 1000-1003, 1007-1014 or 3000-4999")
                    })?;
                code
            };
            if reason.len() > wshub::MAX_CLOSE_REASON_LEN {
                return Err(format!(
                    "/close: the reason is {} bytes; the limit is {}",
                    reason.len(),
                    wshub::MAX_CLOSE_REASON_LEN
                ));
            }
            Ok(Command::Close(code, reason.to_owned()))
        }
        other => Err(format!(
            "unknown command /{other}: use /ping [PAYLOAD], /pong [PAYLOAD], /close [CODE [REASON]], or //text to send /text"
        )),
    }
}

/// A message as printed: text as it is, binary as hex or base64.
fn printable(message: &Message, output: BinaryOutput) -> String {
    match message {
        Message::Text(t) => t.to_string(),
        Message::Binary(b) => match output {
            BinaryOutput::Hex => b.iter().map(|byte| format!("{byte:02x}")).collect(),
            BinaryOutput::Base64 => base64::engine::general_purpose::STANDARD.encode(b),
        },
    }
}

/// A control frame's payload as printed: text when it is UTF-8, else hex.
fn payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) => format!("{text:?}"),
        Err(_) => payload.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The Pings this end sent and not yet answered, by payload.
#[derive(Default)]
struct Pings {
    sent: HashMap<Bytes, Instant>,
    next: u64,
}

impl Pings {
    /// A fresh payload for a Ping of ours.
    fn payload(&mut self) -> Bytes {
        self.next += 1;
        Bytes::from(self.next.to_string())
    }

    /// Round-trip time of the Ping a Pong answers.
    fn answered(&mut self, payload: &Bytes) -> Option<Duration> {
        self.sent.remove(payload).map(|at| at.elapsed())
    }
}

/// What was negotiated, as the status line after `connected to URL` or
/// `client ADDR connected` shows it: ` (subprotocol P)`, ` (extensions E)`.
pub(crate) fn negotiated<S: AsyncRead + AsyncWrite + Unpin>(ws: &WebSocket<S>) -> String {
    let protocol = ws.protocol().map(|p| format!(" (subprotocol {p})"));
    let extensions = ws.extensions().map(|e| format!(" (extensions {e})"));
    format!(
        "{}{}",
        protocol.unwrap_or_default(),
        extensions.unwrap_or_default()
    )
}

/// Runs one connection until it ends.
pub(crate) async fn run<S, H>(
    mut ws: WebSocket<S>,
    args: &SessionArgs,
    config: &SessionConfig,
    console: &mut Console,
    hooks: &mut H,
) -> Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Hooks,
{
    let mut pings = Pings::default();
    let mut input_open = true;
    let own_pings = config.own_pings;
    let mut ticker = tokio::time::interval(own_pings.unwrap_or(Duration::from_secs(3600)));
    ticker.reset();
    let pong_timeout = config.websocket.pong_timeout;
    // With our own Pings: when the oldest unanswered one went out, the
    // deadline for hearing anything.
    let mut awaiting: Option<Instant> = None;
    loop {
        let deadline = awaiting.map(|at| at + pong_timeout);
        tokio::select! {
            line = console.lines.recv(), if input_open => match line {
                Some(line) => match command(&line, args.slash) {
                    Ok(Command::Send(text)) => {
                        if !args.binary {
                            hooks.sent(&text);
                        }
                        let message = if args.binary { Message::binary(text.into_bytes()) } else { Message::text(text) };
                        if let Err(e) = ws.send(message).await {
                            console.status(&format!("send failed: {}", e.report()));
                        }
                    }
                    Ok(Command::Ping(payload)) => {
                        let payload = if payload.is_empty() { pings.payload() } else { payload };
                        pings.sent.insert(payload.clone(), Instant::now());
                        if let Err(e) = ws.ping(&payload).await {
                            console.status(&format!("ping failed: {}", e.report()));
                        }
                    }
                    Ok(Command::Pong(payload)) => {
                        if let Err(e) = ws.pong(&payload).await {
                            console.status(&format!("pong failed: {}", e.report()));
                        }
                    }
                    Ok(Command::Close(code, reason)) => {
                        return close(ws, code, &reason, args, console).await;
                    }
                    Err(why) => console.status(&why),
                },
                // --one-message waits for its message.
                None if args.keep_open || args.one_message => input_open = false,
                None => return close(ws, config.close_code, &args.close_reason, args, console).await,
            },
            _ = tokio::signal::ctrl_c() => {
                return close(ws, config.close_code, &args.close_reason, args, console).await;
            }
            _ = ticker.tick(), if own_pings.is_some() => {
                let payload = pings.payload();
                pings.sent.insert(payload.clone(), Instant::now());
                awaiting.get_or_insert_with(Instant::now);
                if let Err(e) = ws.ping(&payload).await {
                    console.status(&format!("ping failed: {}", e.report()));
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                console.status(&format!(
                    "no answer to a Ping within {}; the connection is taken as dead",
                    humantime::format_duration(pong_timeout)
                ));
                return Ok(Ended::ByPeer { clean: false });
            }
            incoming = ws.recv_incoming() => {
                awaiting = None;
                match incoming {
                    Some(Ok(Incoming::Message(message))) => {
                        let fresh = match &message {
                            Message::Text(text) => hooks.received(text.as_str()),
                            Message::Binary(_) => true,
                        };
                        if fresh {
                            console.message(&printable(&message, args.binary_output))?;
                            if args.one_message {
                                return close_quietly(ws, config, args, console).await;
                            }
                        }
                    }
                    Some(Ok(Incoming::Ping(payload))) => {
                        if args.show_ping_pong {
                            console.status(&format!("ping received (payload {})", payload_text(&payload)));
                        }
                    }
                    Some(Ok(Incoming::Pong(payload))) => {
                        if args.show_ping_pong {
                            let line = match pings.answered(&payload) {
                                Some(rtt) => format!(
                                    "pong received (payload {}), round trip {:.3} ms",
                                    payload_text(&payload),
                                    rtt.as_secs_f64() * 1000.0
                                ),
                                None => format!("pong received (payload {})", payload_text(&payload)),
                            };
                            console.status(&line);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => console.status(&format!("connection error: {}", e.report())),
                    None => {
                        let event = ws.close_event();
                        let clean = event.as_ref().is_some_and(|e| e.was_clean);
                        match event {
                            Some(e) => console.status(&format!(
                                "disconnected: code {} reason {:?} (clean: {})",
                                e.code, e.reason, e.was_clean
                            )),
                            None => console.status("disconnected"),
                        }
                        return Ok(Ended::ByPeer { clean });
                    }
                }
            }
        }
    }
}

/// Starts the close handshake, printing what the peer still sends until
/// its Close arrives.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    code: CloseCode,
    reason: &str,
    args: &SessionArgs,
    console: &mut Console,
) -> Result<Ended> {
    ws.start_close(code, reason)?;
    while let Some(incoming) = ws.recv().await {
        match incoming {
            Ok(message) => console.message(&printable(&message, args.binary_output))?,
            Err(e) => console.status(&format!("connection error: {}", e.report())),
        }
    }
    report_closed(&ws, console);
    Ok(Ended::ByUser)
}

/// --one-message: closes, printing nothing more.
async fn close_quietly<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    config: &SessionConfig,
    args: &SessionArgs,
    console: &mut Console,
) -> Result<Ended> {
    ws.start_close(config.close_code, &args.close_reason)?;
    while ws.recv().await.is_some() {}
    report_closed(&ws, console);
    Ok(Ended::ByUser)
}

fn report_closed<S: AsyncRead + AsyncWrite + Unpin>(ws: &WebSocket<S>, console: &mut Console) {
    match ws.close_event() {
        Some(e) => console.status(&format!(
            "closed: code {} reason {:?} (clean: {})",
            e.code, e.reason, e.was_clean
        )),
        None => console.status("closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_parse_and_bad_ones_say_what_to_type() {
        assert_eq!(command("/ping", true), Ok(Command::Ping(Bytes::new())));
        assert_eq!(command("/ping hi", true), Ok(Command::Ping("hi".into())));
        assert_eq!(command("/pong x", true), Ok(Command::Pong("x".into())));
        assert_eq!(
            command("/close", true),
            Ok(Command::Close(CloseCode::NormalClosure, String::new()))
        );
        assert_eq!(
            command("/close 4000 gone away", true),
            Ok(Command::Close(CloseCode::from(4000), "gone away".into()))
        );
        assert_eq!(command("//text", true), Ok(Command::Send("/text".into())));
        assert_eq!(command("/ping", false), Ok(Command::Send("/ping".into())));
        assert!(command("/close 1005", true)
            .unwrap_err()
            .contains("close code"));
        assert!(command("/nope", true)
            .unwrap_err()
            .starts_with("unknown command /nope"));
        assert!(command(&format!("/ping {}", "x".repeat(126)), true).is_err());
    }

    #[test]
    fn a_pong_is_timed_against_its_ping_once() {
        let mut pings = Pings::default();
        let payload = pings.payload();
        assert_ne!(payload, pings.payload(), "payloads differ");
        pings.sent.insert(payload.clone(), Instant::now());
        assert!(pings.answered(&payload).is_some());
        assert!(pings.answered(&payload).is_none(), "answered once");
        assert!(pings.answered(&Bytes::from_static(b"wshub")).is_none());
    }
}
