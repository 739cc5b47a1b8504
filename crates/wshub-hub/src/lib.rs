//! The wshub real-time hub: rooms with per-room offsets and a bounded
//! history to resume from, fan-out that encodes each message once, an application heartbeat for browsers
//! (text `ping` → `pong`, beside the protocol Pings), an echo route, and the
//! embedded chat page.
//!
//! The JSON protocol spoken on `/ws` is documented in `docs/protocol.md`.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! wshub_hub::serve(listener, wshub_hub::HubConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
#![forbid(unsafe_code)]

mod admission;
mod api;
mod auth;
mod config;
mod drain;
mod echo;
mod engine;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod hub;
mod in_flight;
mod log_budget;
mod member;
mod metrics;
mod ops;
mod park;
#[cfg(unix)]
mod parker;
pub mod protocol;
pub mod rooms;
mod server;
mod session;
mod tls;

pub use admission::{
    max_connections_for, AdmissionConfig, IpNetwork, IpNetworkError, DEFAULT_HANDSHAKES_PER_IP,
    DEFAULT_MAX_CONNECTIONS_PER_IP, HANDSHAKE_BURST_SECONDS,
};
pub use api::{ApiKey, ApiKeyError, MIN_API_KEY_LEN};
pub use auth::{AuthConfig, Identity, KeyError, RoomAction, TokenError, TokenVerifier};
pub use config::{HubConfig, MetricsEndpoint};
pub use engine::{RedisConfig, RedisTls, DEFAULT_PRESENCE_TTL};
pub use hub::{Hub, PublishError, PublishOptions};
pub use server::serve;
pub use tls::ServerTls;
