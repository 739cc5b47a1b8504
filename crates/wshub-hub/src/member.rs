//! One `/ws` connection, a member of the hub: JSON requests in (join,
//! leave, publish), room messages out.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wshub::{CloseCode, Error, Message, WebSocket};

use crate::protocol::{decode_request, ErrorCode, Op, ServerMessage};
use crate::rooms::{outbox, Outbox, Rooms, Signal};
use crate::session::{finish, log_end};

/// The `/ws` session of connection `conn_id`. Not an `async fn`, whose
/// future keeps its arguments twice (rust-lang/rust#62958): every idle
/// member would pay for the `WebSocket` twice.
// Written out by hand on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut ws: WebSocket<S>,
    conn_id: u64,
    rooms: Arc<Rooms>,
    send_queue: usize,
    mut shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> {
    // Built before the `async move` block and captured by it: the arguments
    // moved into a `Member` inside the block would keep their own slots in
    // the future too (16 bytes per idle member).
    let (out, mut inbox) = outbox(send_queue);
    let mut member = Member {
        conn_id,
        name: format!("anon-{conn_id}"),
        joined: Vec::new(),
        rooms,
        out,
    };
    async move {
        let mut error = None;

        let welcome = ServerMessage::Welcome {
            id: member.conn_id,
            name: &member.name,
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
            let wake = tokio::select! {
                biased;
                _ = shutdown.changed() => Wake::Shutdown,
                signal = inbox.signal() => Wake::Inbox(signal),
                incoming = ws.next() => Wake::Incoming(incoming),
            };
            match wake {
                Wake::Shutdown => {
                    let _ = ws.close(CloseCode::GoingAway, "server shutting down").await;
                    break;
                }
                Wake::Inbox(Signal::Kicked) => {
                    kick(&mut ws, member.conn_id).await;
                    break;
                }
                Wake::Inbox(Signal::Frames) => {
                    // Queue every frame waiting, then write them with one flush.
                    match inbox.drain(|frame| ws.feed_prepared(frame)) {
                        Ok(()) => queued_frames = true,
                        Err(e) => error = Some(e),
                    }
                }
                Wake::Incoming(None) => break,
                Wake::Incoming(Some(Err(e))) => error = Some(e),
                Wake::Incoming(Some(Ok(Message::Binary(_)))) => {
                    let reply_json = ServerMessage::Error {
                        code: ErrorCode::BinaryUnsupported,
                        message: "the hub protocol is JSON in text messages",
                        id: None,
                    };
                    reply = Some(Message::text(reply_json.to_json()));
                }
                Wake::Incoming(Some(Ok(Message::Text(text)))) => {
                    // The bytes, not `as_str`: the protocol core validated
                    // them as UTF-8 already, and `as_str` would again.
                    reply = member.answer(text.as_bytes()).map(Message::text);
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
                    kick(&mut ws, member.conn_id).await;
                    break;
                }
                Some(Err(e)) => error = Some(e),
                Some(Ok(())) => {}
            }
        }
        for room in &member.joined {
            let _ = member.rooms.leave(room, member.conn_id);
        }
        drop(inbox);
        Box::pin(finish(&mut ws)).await;
        log_end(member.conn_id, "/ws", &ws, error.as_ref());
    }
}

/// What woke a member's task.
enum Wake {
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

/// What one member is: its identity and the rooms it is in.
struct Member {
    conn_id: u64,
    /// Display name: `anon-<id>` until a join names it.
    name: String,
    /// The rooms joined: a few, so a Vec beats a set's node allocation.
    joined: Vec<String>,
    rooms: Arc<Rooms>,
    /// Where the rooms deliver this member's frames.
    out: Outbox,
}

impl Member {
    /// Carries out one text request (`json`, a text message's bytes, valid
    /// UTF-8); returns the direct answer, if any.
    fn answer(&mut self, json: &[u8]) -> Option<String> {
        // The application heartbeat of browser clients that cannot send a
        // protocol Ping: text "ping" is answered with "pong"
        // (docs/protocol.md, "Heartbeats").
        if json == b"ping" {
            return Some("pong".to_owned());
        }
        let request = match decode_request(json) {
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
        let Self {
            conn_id,
            name,
            joined,
            rooms,
            out,
        } = self;
        let conn_id = *conn_id;
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
}
