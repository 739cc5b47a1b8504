//! One `/ws` connection: requests in, room messages out.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wshub::{CloseCode, Error, Message, WebSocket};

use crate::protocol::{decode_request, ErrorCode, Op, ServerMessage};
use crate::rooms::{outbox, Rooms, Signal};

/// Drives a finished session's stream to its end, so a queued Close (ours,
/// an echo, or the one failing the connection) is written and the transport
/// closed. Bounded by the connection's close timeout.
pub(crate) async fn finish<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>) {
    let drain = async { while ws.next().await.is_some() {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

/// Why a session ended, for the one log line per closed connection.
pub(crate) fn log_end<S: AsyncRead + AsyncWrite + Unpin>(
    conn_id: u64,
    route: &str,
    ws: &WebSocket<S>,
    error: Option<&Error>,
) {
    let event = ws.close_event();
    let code = event.as_ref().map_or(1006, |e| e.code.as_u16());
    let clean = event.as_ref().is_some_and(|e| e.was_clean);
    match error {
        Some(Error::Protocol(e)) => {
            tracing::warn!(conn_id, route, close_code = e.close_code().as_u16(), error = %e, "protocol error, connection failed");
        }
        Some(e) => {
            tracing::info!(conn_id, route, close_code = code, error = %e.report(), "connection closed with error")
        }
        None => tracing::info!(
            conn_id,
            route,
            close_code = code,
            was_clean = clean,
            "connection closed"
        ),
    }
}

/// The `/ws` session. Not an `async fn`, whose future keeps its arguments
/// twice (rust-lang/rust#62958): every idle member would pay for the
/// `WebSocket` twice.
// Written out by hand on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    conn_id: u64,
    rooms: Arc<Rooms>,
    send_queue: usize,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    async move {
        let (out, mut inbox) = outbox(send_queue);
        let mut name = format!("anon-{conn_id}");
        // The rooms joined: a few, so a Vec beats a set's node allocation.
        let mut joined: Vec<String> = Vec::new();
        let mut error = None;

        let welcome = ServerMessage::Welcome {
            id: conn_id,
            name: &name,
        }
        .to_json();
        if let Err(e) = ws.send(Message::text(welcome)).await {
            error = Some(e);
        }
        while error.is_none() {
            let mut reply = None;
            let mut queued_frames = false;
            // Only picks what happened; the work is done after it, so the
            // futures polled here and the work's own never coexist in the
            // session's state.
            let happened = tokio::select! {
                biased;
                _ = shutdown.changed() => Happened::Shutdown,
                signal = inbox.signal() => Happened::Inbox(signal),
                incoming = ws.next() => Happened::Incoming(incoming),
            };
            match happened {
                Happened::Shutdown => {
                    let _ = ws.close(CloseCode::GoingAway, "server shutting down").await;
                    break;
                }
                Happened::Inbox(Signal::Kicked) => {
                    kick(&mut ws, conn_id).await;
                    break;
                }
                Happened::Inbox(Signal::Frames) => {
                    // Queue every frame waiting, then write them with one flush.
                    match inbox.drain(|frame| ws.feed_prepared(frame)) {
                        Ok(()) => queued_frames = true,
                        Err(e) => error = Some(e),
                    }
                }
                Happened::Incoming(None) => break,
                Happened::Incoming(Some(Err(e))) => error = Some(e),
                Happened::Incoming(Some(Ok(Message::Binary(_)))) => {
                    let reply_json = ServerMessage::Error {
                        code: ErrorCode::BinaryUnsupported,
                        message: "the hub protocol is JSON in text messages",
                        id: None,
                    };
                    reply = Some(Message::text(reply_json.to_json()));
                }
                Happened::Incoming(Some(Ok(Message::Text(text)))) => {
                    reply =
                        handle_text(text.as_str(), conn_id, &mut name, &mut joined, &rooms, &out)
                            .map(Message::text);
                }
            }
            if error.is_some() || (reply.is_none() && !queued_frames) {
                continue;
            }
            // A reader that stopped reading blocks this write; its queue then
            // fills and the kick must still get through.
            let write = async {
                if let Some(reply) = reply {
                    ws.feed(reply).await?;
                }
                ws.flush().await
            };
            let written = tokio::select! {
                biased;
                _ = inbox.kicked() => None,
                result = write => Some(result),
            };
            match written {
                None => {
                    kick(&mut ws, conn_id).await;
                    break;
                }
                Some(Err(e)) => error = Some(e),
                Some(Ok(())) => {}
            }
        }
        for room in &joined {
            let _ = rooms.leave(room, conn_id);
        }
        drop(inbox);
        Box::pin(finish(&mut ws)).await;
        log_end(conn_id, "/ws", &ws, error.as_ref());
    }
}

/// What woke a session.
enum Happened {
    Shutdown,
    Inbox(Signal),
    Incoming(Option<Result<Message, Error>>),
}

/// Disconnects a member whose send queue overflowed (docs/protocol.md,
/// "Slow consumers").
async fn kick<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocket<S>, conn_id: u64) {
    tracing::info!(
        conn_id,
        close_code = 1008,
        "send queue full, disconnecting slow consumer"
    );
    let _ = ws
        .close(CloseCode::PolicyViolation, "send queue full")
        .await;
}

/// Carries out one text request; returns the direct answer, if any.
fn handle_text(
    text: &str,
    conn_id: u64,
    name: &mut String,
    joined: &mut Vec<String>,
    rooms: &Rooms,
    out: &crate::rooms::Outbox,
) -> Option<String> {
    // The seeds' application heartbeat: text "ping" is answered with "pong".
    if text == "ping" {
        return Some("pong".to_owned());
    }
    let request = match decode_request(text) {
        Ok(r) => r,
        Err(e) => {
            return Some(
                ServerMessage::Error {
                    code: e.code,
                    message: &e.message,
                    id: e.id.as_ref(),
                }
                .to_json(),
            )
        }
    };
    let id = request.id.as_ref();
    let not_joined = |room: &str| {
        ServerMessage::Error {
            code: ErrorCode::NotJoined,
            message: &format!("not a member of room {room:?}; join it first"),
            id,
        }
        .to_json()
    };
    match &request.op {
        Op::Join {
            room,
            name: new_name,
        } => {
            if let Some(n) = new_name {
                name.clone_from(n);
            }
            let result = rooms.join(room, conn_id, name, out);
            if !joined.contains(room) {
                joined.push(room.clone());
            }
            let members = result.members.iter().map(String::as_str).collect();
            Some(
                ServerMessage::Joined {
                    room,
                    name,
                    members,
                    member_count: result.member_count,
                    seq: result.seq,
                    id,
                }
                .to_json(),
            )
        }
        Op::Leave { room } => match rooms.leave(room, conn_id) {
            Ok(()) => {
                joined.retain(|r| r != room);
                Some(ServerMessage::Left { room, id }.to_json())
            }
            Err(_) => Some(not_joined(room)),
        },
        Op::Publish { room, message } => match rooms.publish(room, conn_id, message) {
            // The sender gets its own message through the room, like everyone.
            Ok(_) => None,
            Err(_) => Some(not_joined(room)),
        },
    }
}
