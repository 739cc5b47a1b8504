//! What the cargo-fuzz targets in `fuzz/` need to run a `/ws` member session
//! in-process, over a transport of their own: the session itself and the
//! WebSocket settings the server would give it. Only with the feature
//! `fuzzing`; not part of the public API.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use wshub::{WebSocket, WebSocketConfig};

use crate::rooms::Rooms;
use crate::HubConfig;

/// Whether a transport's idle connections can be parked: implement it with
/// no methods for a fuzz target's transport (never parked).
pub use crate::park::Parkable;

/// The session of `/ws` connection `conn_id` on `ws`, member of `rooms`,
/// with the limits of `config`, as [`serve`](crate::serve) runs it. The hub
/// closes it with 1001 once `shutdown` changes.
pub fn member_session<S: Parkable>(
    ws: WebSocket<S>,
    conn_id: u64,
    rooms: Arc<Rooms>,
    config: &HubConfig,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> {
    // Metrics of their own: the target checks the sessions, not the counts.
    let open = crate::metrics::OpenConnection::new(Arc::new(crate::metrics::Metrics::new()));
    let auth = crate::member::MemberAuth::default();
    let session = crate::member::run(
        ws,
        conn_id,
        rooms,
        config.member_limits(),
        shutdown,
        open,
        auth,
        None,
    );
    async move {
        // Never parked: the transport is not a socket.
        let _ = session.await;
    }
}

/// The settings [`serve`](crate::serve) gives a `/ws` connection under
/// `config`.
pub fn member_websocket_config(config: &HubConfig) -> WebSocketConfig {
    config.websocket_for("/ws")
}
