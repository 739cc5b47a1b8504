//! The node's one subscriber (docs/design/redis-engine.md, "One subscriber
//! per node"): a RESP3 connection with a push channel on which it follows
//! rooms (`SSUBSCRIBE` on their shard channels) and reads, in order, the
//! subscription confirmations and the messages. It alone delivers a room's
//! messages to the local rooms, so their order is the channel's; a gap (a
//! message past the next offset) is filled from the room's log first.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, PushInfo, PushKind};
use serde::Deserialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;

use super::keys::RoomKeys;
use super::log::COMMAND_TIMEOUT;
use super::{Control, EngineError, RedisEngine};
use crate::rooms::Delivery;

/// Wait between attempts to reconnect.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Most messages one gap repair reads.
const MAX_REPAIR: usize = 10_000;

/// How often the watchdog publishes on the node's own channel.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(2);

/// How long the subscriber may go without the watchdog's echo before its
/// connection is taken for starved (open, answering nothing) and replaced.
/// It is checked at each tick, and the last echo came a round trip after
/// a tick up to an interval before the starvation began: with 7 s, it is
/// found at the fourth tick after that echo, 6 to 8 s into the
/// starvation, within 10 s even on a busy machine. (With 8 s, the check
/// at the fourth tick missed by the round trip, and the fifth came 8 to
/// 10 s in, past 10 s with any delay.)
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(7);

/// Joins waiting for a room to be followed, by its channel.
type Waiting = HashMap<String, Vec<oneshot::Sender<Result<(), EngineError>>>>;

/// Runs the subscriber until the engine is dropped: connects (again after
/// every loss), follows every room the rooms need, delivers.
pub(super) async fn run(
    engine: Arc<RedisEngine>,
    client: redis::Client,
    mut control: UnboundedReceiver<Control>,
    mut released: UnboundedReceiver<String>,
) {
    let mut waiting = Waiting::new();
    let mut logged_down = false;
    loop {
        let (push_tx, mut pushes) = unbounded_channel::<PushInfo>();
        let config = AsyncConnectionConfig::new()
            .set_push_sender(push_tx)
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(COMMAND_TIMEOUT));
        let mut conn = match client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(conn) => conn,
            Err(e) => {
                if !logged_down {
                    tracing::warn!(error = %e, "Redis engine: subscriber cannot connect; retrying");
                    logged_down = true;
                }
                fail_all(&mut waiting, &e.to_string());
                // Joins asked meanwhile fail at once rather than wait.
                while let Ok(Control::Follow(_, reply)) = control.try_recv() {
                    let _ = reply.send(Err(EngineError(e.to_string())));
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if logged_down {
            tracing::info!("Redis engine: subscriber connected again");
            logged_down = false;
        }
        engine.up.store(true, Ordering::Relaxed);
        // The watchdog's channel first, then what was followed: each
        // confirmation re-reads the room's head and repairs what was
        // missed while away.
        let mut ok = ssubscribe(&mut conn, &engine.node).await.is_ok();
        for room in engine.remote.followed_rooms() {
            if !ok {
                break;
            }
            ok = ssubscribe(&mut conn, &RoomKeys::new(&room).channel)
                .await
                .is_ok();
        }
        let mut echoed = tokio::time::Instant::now();
        let mut watchdog = tokio::time::interval(WATCHDOG_INTERVAL);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if ok {
            loop {
                tokio::select! {
                    push = pushes.recv() => match push {
                        None => break,
                        Some(push) if is_echo(&push, &engine.node) => {
                            echoed = tokio::time::Instant::now();
                        }
                        Some(push) => {
                            if !on_push(&engine, push, &mut waiting).await {
                                break;
                            }
                        }
                    },
                    _ = watchdog.tick() => {
                        if echoed.elapsed() > WATCHDOG_TIMEOUT {
                            tracing::warn!(
                                silent_ms = echoed.elapsed().as_millis() as u64,
                                "Redis engine: the subscriber connection delivers nothing (the watchdog's messages do not come back); replacing it"
                            );
                            break;
                        }
                        // From the command connection, so a subscriber
                        // connection that is open but starved misses it.
                        let engine = engine.clone();
                        tokio::spawn(async move {
                            let _ = engine.log.spublish(&engine.node, "watchdog").await;
                        });
                    },
                    request = control.recv() => match request {
                        None => return,
                        Some(Control::Follow(room, reply)) => {
                            if engine.remote.follows(&room) {
                                let _ = reply.send(Ok(()));
                                continue;
                            }
                            let channel = RoomKeys::new(&room).channel;
                            let first = !waiting.contains_key(&channel);
                            waiting.entry(channel.clone()).or_default().push(reply);
                            if first && ssubscribe(&mut conn, &channel).await.is_err() {
                                break;
                            }
                        }
                    },
                    room = released.recv() => match room {
                        None => return,
                        Some(room) => {
                            if engine.remote.unfollow(&room, &engine.rooms) {
                                let channel = RoomKeys::new(&room).channel;
                                let unsubscribed: redis::RedisResult<()> = redis::cmd("SUNSUBSCRIBE")
                                    .arg(&channel)
                                    .exec_async(&mut conn)
                                    .await;
                                if unsubscribed.is_err() {
                                    break;
                                }
                            }
                        }
                    },
                }
            }
        }
        engine.up.store(false, Ordering::Relaxed);
        tracing::warn!("Redis engine: subscriber connection lost; reconnecting");
        fail_all(&mut waiting, "the subscriber connection was lost");
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Whether `push` is the watchdog's message on `node`'s channel.
fn is_echo(push: &PushInfo, node: &str) -> bool {
    push.kind == PushKind::SMessage
        && push
            .data
            .first()
            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .is_some_and(|channel| channel == node)
}

async fn ssubscribe(conn: &mut MultiplexedConnection, channel: &str) -> redis::RedisResult<()> {
    redis::cmd("SSUBSCRIBE").arg(channel).exec_async(conn).await
}

fn fail_all(waiting: &mut Waiting, why: &str) {
    for (_, replies) in waiting.drain() {
        for reply in replies {
            let _ = reply.send(Err(EngineError(why.to_owned())));
        }
    }
}

/// Handles one push; `false` when the connection is gone.
async fn on_push(engine: &RedisEngine, push: PushInfo, waiting: &mut Waiting) -> bool {
    match push.kind {
        PushKind::Disconnection => false,
        PushKind::SSubscribe => {
            let Some(channel) = push
                .data
                .first()
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            else {
                return true;
            };
            let Some(room) = RoomKeys::room_of(&channel) else {
                return true;
            };
            // Every message pushed after this confirmation is read after
            // this head: one published before it is at or below `last`.
            let result = match engine.head(&room).await {
                Ok(head) => {
                    if engine.rooms.delivered(&room).is_some() {
                        repair(engine, &room, &head.epoch, head.last + 1).await;
                    }
                    engine.remote.followed(&room, &head.epoch, head.last);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            let failed = result.is_err();
            for reply in waiting.remove(&channel).unwrap_or_default() {
                let _ = reply.send(result.clone());
            }
            !failed
        }
        PushKind::SMessage => {
            let Ok((channel, frame)) =
                redis::from_redis_value::<(String, String)>(redis::Value::Array(push.data))
            else {
                return true;
            };
            if let Some(room) = RoomKeys::room_of(&channel) {
                deliver(engine, &room, frame).await;
            }
            true
        }
        _ => true,
    }
}

/// Where a frame is in its room.
#[derive(Deserialize)]
struct Place {
    epoch: String,
    offset: u64,
}

/// Delivers `frame` to `room`'s local members, after the messages missing
/// before it; a presence notice from another node goes to them at once.
async fn deliver(engine: &RedisEngine, room: &str, frame: String) {
    if engine.on_notice(room, &frame) {
        return;
    }
    let Ok(place) = serde_json::from_str::<Place>(&frame) else {
        tracing::warn!(
            room,
            "Redis engine: a message without epoch and offset, dropped"
        );
        return;
    };
    let rooms = &engine.rooms;
    if let Delivery::Gap { .. } =
        rooms.deliver(room, &place.epoch, place.offset, frame.clone(), false)
    {
        repair(engine, room, &place.epoch, place.offset).await;
        rooms.deliver(room, &place.epoch, place.offset, frame, true);
    }
}

/// Delivers `room`'s messages of `epoch` from its delivered offset up to
/// (not including) `upto`, read from its log; those the log no longer has
/// are lost, and logged.
async fn repair(engine: &RedisEngine, room: &str, epoch: &str, upto: u64) {
    let Some((here, delivered)) = engine.rooms.delivered(room) else {
        return;
    };
    let after = if here == epoch {
        delivered
    } else {
        // Redis began the room again (restarted empty, keys lost): so does
        // this node, even before the new life's first message.
        engine.rooms.enter_epoch(room, epoch);
        0
    };
    if upto <= after + 1 {
        return;
    }
    let wanted = ((upto - after - 1) as usize).min(MAX_REPAIR);
    match engine.read(room, after, wanted).await {
        Ok(read) if read.epoch == epoch => {
            if read.first > after + 1 || read.frames.is_empty() {
                tracing::warn!(
                    room,
                    after,
                    first = read.first,
                    "Redis engine: messages no longer in the log are lost to this node's members"
                );
            }
            for (i, frame) in read.frames.into_iter().enumerate() {
                let offset = read.first + i as u64;
                if offset >= upto {
                    break;
                }
                engine.rooms.deliver(room, epoch, offset, frame, true);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(room, error = %e, "Redis engine: cannot repair a gap"),
    }
}
