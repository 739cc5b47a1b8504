//! `/echo`: every message back to its sender, text as text, binary as binary.

use std::future::Future;
use std::task::{Poll, Waker};

use tokio::sync::watch;
use wshub::{CloseCode, NextOrIdle, WebSocket};

use crate::metrics::{HubClose, OpenConnection};
use crate::park::{IdleSession, Parkable, ParkedConn};
use crate::session::{finish, log_end};

/// The `/echo` session: every message back to its sender, in batches.
///
/// Every idle connection holds this future, so its size is the echo route's
/// memory per connection. Two things keep it small:
/// - it is not an `async fn`: an `async fn` future keeps its arguments twice
///   (as arguments and as locals, rust-lang/rust#62958), which would pay for
///   the `WebSocket` twice; the `async move` block uses its captures in place;
/// - the wait (`poll_fn` below) only picks what happened and the work is
///   done after it, so the futures it polls and the echo's own never
///   coexist.
///
/// Once the connection has gone quiet (`WebSocket::poll_next_or_idle`:
/// 250 to 500 ms without a message, where the WebSocket gives its buffers
/// back anyway) and can be parked (plain TCP, between messages, nothing
/// queued, no deflate context), the session ends and returns it parked, for
/// the hub's parker ([`crate::parker`]) to hold without a task.
// Written out by hand on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub(crate) fn run<S: Parkable>(
    mut ws: WebSocket<S>,
    conn_id: u64,
    mut shutdown: watch::Receiver<bool>,
    open: OpenConnection<false>,
) -> impl std::future::Future<Output = Option<ParkedConn>> {
    async move {
        ws.watch_idle();
        // This receiver was cloned from the server's before any shutdown was
        // sent, so a change is the shutdown (or the server gone, `Err`).
        //
        // The `changed()` future is polled only to register this task's
        // waker (on the first poll, and whenever the waker changes): a
        // registered watch wakes the task when it changes, and between
        // registrations one atomic load (`has_changed` on a second receiver)
        // tells whether it did. Polling the registered future instead takes
        // the watch's waiter lock on every wake-up, twice per message at one
        // message in flight.
        let probe = shutdown.clone();
        let mut shutdown_changed = std::pin::pin!(shutdown.changed());
        let mut registered: Option<Waker> = None;
        let error = loop {
            let incoming = std::future::poll_fn(|cx| {
                let fired = match &registered {
                    Some(waker) if waker.will_wake(cx.waker()) => {
                        probe.has_changed().unwrap_or(true)
                    }
                    _ => {
                        let fired = shutdown_changed.as_mut().poll(cx).is_ready();
                        registered = Some(cx.waker().clone());
                        fired
                    }
                };
                if fired {
                    return Poll::Ready(None);
                }
                ws.poll_next_or_idle(cx).map(Some)
            })
            .await;
            let first = match incoming {
                Some(Some(Ok(NextOrIdle::Idle))) => match S::try_park(ws) {
                    Ok(socket) => {
                        return Some(ParkedConn {
                            socket,
                            conn_id,
                            session: IdleSession::Echo(open),
                        })
                    }
                    Err(back) => {
                        ws = back;
                        continue;
                    }
                },
                None => {
                    open.hub_closed(HubClose::Shutdown);
                    let _ = ws.close(CloseCode::GoingAway, "server shutting down").await;
                    break None;
                }
                Some(None) => break None,
                Some(Some(Err(e))) => break Some(e),
                Some(Some(Ok(NextOrIdle::Message(message)))) => message,
                // `NextOrIdle` is non-exhaustive; it has no other variant.
                Some(Some(Ok(_))) => continue,
            };
            // Echo `first` and every message ready without waiting, then
            // write them all with one flush: a pipelining client gets a batch
            // of echoes per write instead of a write per message. `next_ready`
            // reads the socket again only in the middle of a frame (a 16 KiB
            // message cut by the read buffer): elsewhere that read would
            // mostly find nothing and cost a readiness and a timer
            // registration per batch (7% at 1 message in flight). The echoes
            // are queued without waiting for room: `next_ready` stops reading
            // once the write buffer limit is queued, and the flush below
            // drains the batch before anything more is read. Inline rather
            // than a helper `async fn`, whose future would sit beside the
            // wait's in every idle connection.
            let mut failed = None;
            let mut next = Some(first);
            // Counted per batch, not per message (see `metrics`); 4-byte
            // counts keep the session in its 1 KiB size class, and a batch
            // stops reading at the write buffer limit, far below 4 GiB.
            let (mut messages, mut bytes) = (0u32, 0u32);
            while let Some(message) = next {
                if let Err(e) = ws.feed_message(&message) {
                    failed = Some(e);
                    break;
                }
                messages = messages.saturating_add(1);
                bytes = bytes.saturating_add(u32::try_from(message.len()).unwrap_or(u32::MAX));
                next = ws.next_ready().await;
            }
            open.echoed(messages.into(), bytes.into());
            if failed.is_none() {
                failed = ws.flush().await.err();
            }
            if failed.is_some() {
                break failed;
            }
        };
        Box::pin(finish(&mut ws)).await;
        open.ended(log_end(conn_id, "/echo", &ws, error.as_ref()));
        None
    }
}
