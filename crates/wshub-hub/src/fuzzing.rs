//! What the cargo-fuzz targets in `fuzz/` need to run a `/ws` member session
//! in-process, over a transport of their own: the session itself and the
//! WebSocket settings the server would give it. Only with the feature
//! `fuzzing`; not part of the public API.

use std::future::Future;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use wshub::{WebSocket, WebSocketConfig};

use crate::rooms::Rooms;
use crate::HubConfig;

/// The session of `/ws` connection `conn_id` on `ws`, member of `rooms`,
/// with the limits of `config`, as [`serve`](crate::serve) runs it. The hub
/// closes it with 1001 once `shutdown` changes.
pub fn member_session<S: AsyncRead + AsyncWrite + Unpin>(
    ws: WebSocket<S>,
    conn_id: u64,
    rooms: Arc<Rooms>,
    config: &HubConfig,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> {
    // Metrics of their own: the target checks the sessions, not the counts.
    let open = crate::metrics::OpenConnection::new(Arc::new(crate::metrics::Metrics::new()));
    let auth = crate::member::MemberAuth::default();
    crate::member::run(
        ws,
        conn_id,
        rooms,
        config.member_limits(),
        shutdown,
        open,
        auth,
        None,
    )
}

/// The settings [`serve`](crate::serve) gives a `/ws` connection under
/// `config`.
pub fn member_websocket_config(config: &HubConfig) -> WebSocketConfig {
    config.websocket_for("/ws")
}
