//! The node's one subscriber (docs/design/redis-engine.md, "One subscriber
//! per node"): a RESP3 connection with a push channel on which it follows
//! rooms (`SSUBSCRIBE` on their shard channels) and reads, in order, the
//! subscription confirmations and the messages. It alone delivers a room's
//! messages to the local rooms, so their order is the channel's; a gap (a
//! message past the next offset) is filled from the room's log first.
//!
//! On a Redis Cluster the connection is redis-rs' cluster connection: one
//! connection per master, each `SSUBSCRIBE` sent to the master of its
//! channel's slot, all pushes into the one channel read here. A
//! subscription the cluster ends (its slot moved: an `sunsubscribe` push
//! nobody asked for) is taken again, and its confirmation repairs the gap
//! as after a reconnect; the watchdog has a channel on every master.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::{PushInfo, PushKind};
use serde::Deserialize;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::oneshot;

use super::connection::SubscriberConnection;
use super::keys::RoomKeys;
use super::{Control, EngineError, RedisEngine};
use crate::rooms::Delivery;

/// Wait between attempts to reconnect.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Most messages one gap repair reads.
const MAX_REPAIR: usize = 10_000;

/// How often the watchdog publishes on the node's own channel.
const WATCHDOG_INTERVAL: Duration = Duration::from_secs(2);

/// How long the subscriber may go without the watchdog's echo on one of
/// its channels before its connection is taken for starved (open,
/// answering nothing) and replaced. It is checked at each tick, and the last echo came a round trip after
/// a tick up to an interval before the starvation began: with 7 s, it is
/// found at the fourth tick after that echo, 6 to 8 s into the
/// starvation, within 10 s even on a busy machine. (With 8 s, the check
/// at the fourth tick missed by the round trip, and the fifth came 8 to
/// 10 s in, past 10 s with any delay.)
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(7);

/// How many watchdog intervals pass between two looks at which channels the
/// watchdog needs (on a cluster, one per master: slots move, masters come
/// and go).
const WATCHDOG_REFRESH_TICKS: u32 = 15;

/// Most channels of rooms no longer followed that one server's subscriber
/// connection stays subscribed to (see
/// [`SubscriberConnection::sunsubscribe`]) before it is replaced by one
/// subscribed to the followed rooms only: their messages are dropped on
/// arrival, and a node that has held many rooms would otherwise receive
/// them all.
const MAX_LINGERING: usize = 4096;

/// Joins waiting for a room to be followed, by its channel.
type Waiting = HashMap<String, Vec<oneshot::Sender<Result<(), EngineError>>>>;

/// Runs the subscriber until the engine is dropped: connects (again after
/// every loss), follows every room the rooms need, delivers.
pub(super) async fn run(
    engine: Arc<RedisEngine>,
    mut control: UnboundedReceiver<Control>,
    mut released: UnboundedReceiver<String>,
) {
    let mut waiting = Waiting::new();
    let mut logged_down = false;
    loop {
        let (push_tx, mut pushes) = unbounded_channel::<PushInfo>();
        let connected = match engine.target.subscriber_connection(push_tx).await {
            Ok(mut conn) => conn
                .watchdog_channels(engine.node)
                .await
                .map(|watched| (conn, watched)),
            Err(e) => Err(e),
        };
        let (mut conn, watched) = match connected {
            Ok(connected) => connected,
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
        // Every room held here is subscribed to again, and none counts as
        // followed until its confirmation has re-read its head.
        engine.remote.forget_all();
        let held = engine.rooms.synced_rooms();
        engine.up.store(true, Ordering::Relaxed);
        // Channels of rooms let go of but still subscribed, and whether
        // this connection is being replaced to drop them.
        let (mut lingering, mut replacing) = (0usize, false);
        // The watchdog's channels first, then what was followed: each
        // confirmation re-reads the room's head and repairs what was
        // missed while away.
        let mut ok = true;
        for channel in &watched {
            ok = ok && conn.ssubscribe(channel).await.is_ok();
        }
        for room in held {
            if !ok {
                break;
            }
            ok = conn.ssubscribe(&RoomKeys::new(&room).channel).await.is_ok();
        }
        // Each watchdog channel, and when its message last came back.
        let now = tokio::time::Instant::now();
        let mut echoed: HashMap<String, tokio::time::Instant> =
            watched.into_iter().map(|channel| (channel, now)).collect();
        let mut ticks = 0u32;
        let mut watchdog = tokio::time::interval(WATCHDOG_INTERVAL);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if ok {
            loop {
                tokio::select! {
                    push = pushes.recv() => match push {
                        None => break,
                        Some(push) => {
                            if let Some(silent) = echo_channel(&push, &mut echoed) {
                                *silent = tokio::time::Instant::now();
                            } else if let Some(channel) = ended(&engine, &push, &echoed, &waiting) {
                                // The cluster ended it (its slot moved):
                                // taken again where the slot is now.
                                tracing::info!(channel, "Redis engine: a subscription ended by Redis is taken again");
                                if conn.ssubscribe(&channel).await.is_err() {
                                    break;
                                }
                            } else if !on_push(&engine, push, &mut waiting).await {
                                break;
                            }
                        }
                    },
                    _ = watchdog.tick() => {
                        let silent = echoed.values().map(|at| at.elapsed()).max().unwrap_or_default();
                        if silent > WATCHDOG_TIMEOUT {
                            tracing::warn!(
                                silent_ms = silent.as_millis() as u64,
                                "Redis engine: the subscriber connection delivers nothing (the watchdog's messages do not come back); replacing it"
                            );
                            break;
                        }
                        ticks += 1;
                        if ticks.is_multiple_of(WATCHDOG_REFRESH_TICKS)
                            && refresh_watchdog(&engine, &mut conn, &mut echoed).await.is_err()
                        {
                            break;
                        }
                        // From the command connection, so a subscriber
                        // connection that is open but starved misses it.
                        for channel in echoed.keys() {
                            let engine = engine.clone();
                            let channel = channel.clone();
                            tokio::spawn(async move {
                                let _ = engine.log.spublish(&channel, "watchdog").await;
                            });
                        }
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
                            if first && conn.ssubscribe(&channel).await.is_err() {
                                break;
                            }
                        }
                    },
                    room = released.recv() => match room {
                        None => return,
                        Some(room) => {
                            if engine.remote.unfollow(&room, &engine.rooms) {
                                let channel = RoomKeys::new(&room).channel;
                                match conn.sunsubscribe(&channel).await {
                                    Err(_) => break,
                                    Ok(true) => {}
                                    Ok(false) => {
                                        lingering += 1;
                                        if lingering > MAX_LINGERING {
                                            tracing::info!(
                                                lingering,
                                                "Redis engine: replacing the subscriber connection to drop the subscriptions of rooms no longer held here"
                                            );
                                            replacing = true;
                                            break;
                                        }
                                    }
                                }
                            }
                        }
                    },
                }
            }
        }
        engine.up.store(false, Ordering::Relaxed);
        fail_all(&mut waiting, "the subscriber connection was lost");
        if !replacing {
            tracing::warn!("Redis engine: subscriber connection lost; reconnecting");
            tokio::time::sleep(RECONNECT_DELAY).await;
        }
    }
}

/// The channel of `push`, its first element.
fn channel_of(push: &PushInfo) -> Option<String> {
    push.data
        .first()
        .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
}

/// If `push` is the watchdog's message on one of the watched channels,
/// when that channel was last heard from.
fn echo_channel<'a>(
    push: &PushInfo,
    echoed: &'a mut HashMap<String, tokio::time::Instant>,
) -> Option<&'a mut tokio::time::Instant> {
    if push.kind != PushKind::SMessage {
        return None;
    }
    echoed.get_mut(channel_of(push)?.as_str())
}

/// If `push` ends a subscription this node still wants (a followed room's
/// or a watchdog's, none of which the node unsubscribes while it wants
/// them), its channel: Redis Cluster ends the subscriptions of a slot
/// that moved to another node.
fn ended(
    engine: &RedisEngine,
    push: &PushInfo,
    watched: &HashMap<String, tokio::time::Instant>,
    waiting: &Waiting,
) -> Option<String> {
    if push.kind != PushKind::SUnsubscribe {
        return None;
    }
    let channel = channel_of(push)?;
    let wanted = watched.contains_key(&channel)
        || (!waiting.contains_key(&channel)
            && RoomKeys::room_of(&channel).is_some_and(|room| engine.remote.follows(&room)));
    wanted.then_some(channel)
}

/// Brings the watchdog's channels in line with the masters there are now
/// (a cluster's slots moved, a master came or went): subscribes the new
/// ones, drops the old. One server's never change.
///
/// # Errors
/// If Redis does not answer, or a subscription fails: the connection is
/// then replaced.
async fn refresh_watchdog(
    engine: &RedisEngine,
    conn: &mut SubscriberConnection,
    echoed: &mut HashMap<String, tokio::time::Instant>,
) -> redis::RedisResult<()> {
    let wanted = conn.watchdog_channels(engine.node).await?;
    let gone: Vec<String> = echoed
        .keys()
        .filter(|channel| !wanted.contains(channel))
        .cloned()
        .collect();
    for channel in gone {
        echoed.remove(&channel);
        conn.sunsubscribe(&channel).await?;
    }
    for channel in wanted {
        if let std::collections::hash_map::Entry::Vacant(entry) = echoed.entry(channel) {
            conn.ssubscribe(entry.key()).await?;
            entry.insert(tokio::time::Instant::now());
        }
    }
    Ok(())
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
            let Some(channel) = channel_of(&push) else {
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
