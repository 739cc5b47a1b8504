//! A member's side of the Redis engine: its publishes sent and not yet
//! answered, and the answers that wait behind them. A session queues a
//! publish on the node's publish queue and goes on reading its client
//! (docs/design/redis-engine.md, "Publishing"); the client still gets
//! every answer in the order of its requests.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::sync::oneshot::error::TryRecvError;

use crate::engine::{published, EngineError, PublishAnswer, RedisEngine};
use crate::protocol::{published_json, ErrorCode, ServerMessage};

/// Publishes a member may have in flight; at this many, its session
/// stops reading requests until the oldest is answered (its client's
/// socket then holds the rest: backpressure, as for a full socket).
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// The engine, and what this member has in flight with it, oldest first.
pub(crate) struct EngineSide {
    pub(crate) engine: Arc<RedisEngine>,
    pending: VecDeque<Pending>,
}

/// A request not answered yet, in request order.
enum Pending {
    /// A publish sent to the engine.
    Publish {
        answer: PublishAnswer,
        room: String,
        id: Option<Value>,
    },
    /// An answer ready (or `None`: a publish without an `id`, answered by
    /// nothing), waiting for those before it.
    Answered(Option<String>),
}

impl EngineSide {
    pub(crate) fn new(engine: Arc<RedisEngine>) -> Self {
        Self {
            engine,
            pending: VecDeque::new(),
        }
    }

    /// Nothing is in flight: an answer can go out at once.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// [`MAX_IN_FLIGHT`] requests wait for their answers.
    pub(crate) fn is_full(&self) -> bool {
        self.pending.len() >= MAX_IN_FLIGHT
    }

    /// Publishes `message` from `from` (connection `from_id`) to `room`,
    /// behind this node's publishes so far; answered in turn (with `id`,
    /// `published`; on failure, an `unavailable` error).
    pub(crate) fn publish(
        &mut self,
        room: String,
        from: &str,
        from_id: u64,
        message: &Value,
        key: Option<&str>,
        id: Option<Value>,
    ) {
        let answer = self
            .engine
            .queue_publish(&room, from, from_id, message, key);
        self.pending
            .push_back(Pending::Publish { answer, room, id });
    }

    /// Queues `reply` behind the answers still to come.
    pub(crate) fn push_answer(&mut self, reply: String) {
        self.pending.push_back(Pending::Answered(Some(reply)));
    }

    /// Ready once the oldest request is answered.
    pub(crate) fn poll_answered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(oldest) = self.pending.front_mut() else {
            return Poll::Pending;
        };
        if let Pending::Publish { answer, room, id } = oldest {
            let result = std::task::ready!(Pin::new(answer).poll(cx)).ok();
            *oldest = Pending::Answered(publish_reply(room, id.as_ref(), published(result)));
        }
        Poll::Ready(())
    }

    /// Takes the answers that are in, oldest first, up to the first one
    /// still awaited, and hands each to `send`.
    pub(crate) fn take_answered<E>(
        &mut self,
        mut send: impl FnMut(String) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(oldest) = self.pending.front_mut() {
            if let Pending::Publish { answer, room, id } = oldest {
                let result = match answer.try_recv() {
                    Ok(result) => Some(result),
                    Err(TryRecvError::Empty) => return Ok(()),
                    Err(TryRecvError::Closed) => None,
                };
                *oldest = Pending::Answered(publish_reply(room, id.as_ref(), published(result)));
            }
            if let Some(Pending::Answered(Some(reply))) = self.pending.pop_front() {
                send(reply)?;
            }
        }
        Ok(())
    }
}

/// The answer to a publish to `room` (request `id`): `published` with an
/// `id`, nothing without; an `unavailable` error if it failed.
fn publish_reply(
    room: &str,
    id: Option<&Value>,
    result: Result<crate::rooms::Published, EngineError>,
) -> Option<String> {
    match result {
        Ok(published) => id.map(|id| published_json(room, &published, id)),
        Err(e) => Some(
            ServerMessage::Error {
                code: ErrorCode::Unavailable,
                message: &e.to_string(),
                id,
            }
            .to_json(),
        ),
    }
}
