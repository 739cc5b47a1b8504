//! The HTTP API for backends (docs/protocol.md, "HTTP API"): publish into a
//! room, read a room's members and history, behind an API key.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/publish` | `{"room","epoch","offset","duplicate"}` once the message is in the room's history |
//! | `GET /api/rooms/{room}` | `{"room","member_count","members","epoch","offset"}` |
//! | `GET /api/rooms/{room}/history?epoch=E&offset=N&limit=L` | `{"room","epoch","offset","recovered","messages"}` |
//!
//! Every request carries `Authorization: Bearer <key>`; every answer is
//! JSON, errors `{"error": code, "message": text}`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use wshub::server::{BodyError, Handshake, Request, Response};

use crate::protocol::{Since, MAX_EPOCH_LEN};
use crate::{Hub, PublishError, PublishOptions};

/// Shortest API key, in bytes: 128 bits of a random base64 or hex string.
pub const MIN_API_KEY_LEN: usize = 16;

/// The key the HTTP API takes, `Authorization: Bearer <key>`
/// ([`HubConfig::api_key`](crate::HubConfig::api_key)). It is compared in
/// constant time: the hub keeps an HMAC-SHA256 of it under a random key of
/// its own and verifies the presented key's HMAC against it (ring's
/// `hmac::verify`), so neither the bytes nor the length of a wrong guess
/// shows in the time taken. `Debug` does not print it.
#[derive(Clone)]
pub struct ApiKey {
    key: ring::hmac::Key,
    tag: ring::hmac::Tag,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a string is not an [`ApiKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// Under [`MIN_API_KEY_LEN`] bytes.
    #[error("an API key needs at least {MIN_API_KEY_LEN} bytes (e.g. `openssl rand -hex 32`), this one has {len}")]
    TooShort {
        /// Its length, in bytes.
        len: usize,
    },
    /// A byte outside printable ASCII (`!` to `~`): it could not travel in
    /// an `Authorization` header.
    #[error("an API key is printable ASCII without spaces (e.g. `openssl rand -hex 32`)")]
    NotPrintable,
}

impl ApiKey {
    /// `secret` as an API key: at least [`MIN_API_KEY_LEN`] bytes of
    /// printable ASCII without spaces.
    ///
    /// # Errors
    /// An [`ApiKeyError`] saying which rule `secret` breaks.
    pub fn new(secret: &str) -> Result<Self, ApiKeyError> {
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiKeyError::NotPrintable);
        }
        if secret.len() < MIN_API_KEY_LEN {
            return Err(ApiKeyError::TooShort { len: secret.len() });
        }
        let rng = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
            .expect("the system's random number generator works");
        let tag = ring::hmac::sign(&key, secret.as_bytes());
        Ok(Self { key, tag })
    }

    /// Whether `presented` is this key, in time independent of where they
    /// differ.
    pub fn matches(&self, presented: &str) -> bool {
        ring::hmac::verify(&self.key, presented.as_bytes(), self.tag.as_ref()).is_ok()
    }
}

/// Whether `request` is for the API: `/api` or below.
pub(crate) fn is_api(request: &Request) -> bool {
    let path = request.path();
    path == "/api" || path.starts_with("/api/")
}

/// A JSON answer.
fn json_answer(status: u16, body: &Value) -> Response {
    let body = serde_json::to_vec(body).expect("a JSON value serialises");
    Response::new(status, "application/json", Bytes::from(body)).secured(Response::TEXT_CSP)
}

/// An error answer, `{"error": code, "message": message}`.
fn error(status: u16, code: &str, message: impl fmt::Display) -> Response {
    json_answer(
        status,
        &json!({"error": code, "message": message.to_string()}),
    )
}

/// The answer to an API request, or `None` if the client went away while
/// its body was read (nothing can be answered then).
pub(crate) async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    handshake: &mut Handshake<S>,
    hub: &Hub,
    key: &ApiKey,
) -> Option<Response> {
    let request = handshake.request();
    let presented = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    if !presented.is_some_and(|p| key.matches(p)) {
        let message = if presented.is_some() {
            "the API key is wrong"
        } else {
            "send the API key as Authorization: Bearer <key>"
        };
        let answer = error(401, "unauthorized", message);
        return Some(answer.header("WWW-Authenticate", "Bearer realm=\"wshub api\""));
    }
    let path = request.path().to_owned();
    let method = request.method.clone();
    let query = request.query().map(str::to_owned);
    if path == "/api/publish" {
        if method != "POST" {
            return Some(error(405, "method_not_allowed", "use POST").header("Allow", "POST"));
        }
        let limit = hub.config.max_hub_message_size;
        let timeout = hub.config.websocket.handshake_timeout;
        return publish(handshake, hub, limit, timeout).await;
    }
    let Some(rest) = path.strip_prefix("/api/rooms/") else {
        return Some(error(404, "not_found", format!("no API route {path}")));
    };
    let (room, history) = match rest.strip_suffix("/history") {
        Some(room) => (room, true),
        None => (rest, false),
    };
    if room.contains('/') {
        return Some(error(
            404,
            "not_found",
            format!("no API route {path} (a / in a room name is sent as %2F)"),
        ));
    }
    let Ok(room) = percent_encoding::percent_decode_str(room).decode_utf8() else {
        return Some(error(
            400,
            "bad_request",
            "the room name is not UTF-8 once percent-decoded",
        ));
    };
    if !crate::protocol::valid_room(&room) {
        return Some(error(400, "bad_request", crate::protocol::ROOM_RULE));
    }
    if method != "GET" {
        return Some(error(405, "method_not_allowed", "use GET").header("Allow", "GET"));
    }
    Some(if history {
        room_history(hub, &room, query.as_deref()).await
    } else {
        room_info(hub, &room).await
    })
}

/// The body of `POST /api/publish`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    room: String,
    message: Value,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /api/publish`.
async fn publish<S: AsyncRead + AsyncWrite + Unpin>(
    handshake: &mut Handshake<S>,
    hub: &Hub,
    limit: usize,
    timeout: Duration,
) -> Option<Response> {
    let body = match handshake.read_body(limit, timeout).await {
        Ok(body) => body,
        Err(BodyError::Io(e)) => {
            tracing::debug!(error = %e, "API request body not received");
            return None;
        }
        Err(e) => {
            let status = e.status().unwrap_or(400);
            let code = match status {
                411 => "length_required",
                413 => "too_large",
                408 => "timeout",
                _ => "bad_request",
            };
            return Some(error(status, code, e));
        }
    };
    let request: PublishRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!(
                "the body must be a JSON object {{\"room\", \"message\", \"from\"?, \"idempotency_key\"?}}: {e}"
            );
            return Some(error(400, "bad_json", message));
        }
    };
    let mut options = PublishOptions::new();
    if let Some(from) = request.from {
        options = options.from(from);
    }
    if let Some(key) = request.idempotency_key {
        options = options.idempotency_key(key);
    }
    Some(
        match hub.publish(&request.room, &request.message, &options).await {
            Ok(published) => json_answer(
                200,
                &json!({
                    "room": request.room,
                    "epoch": &*published.epoch,
                    "offset": published.offset,
                    "duplicate": published.duplicate,
                }),
            ),
            Err(e @ PublishError::Unavailable(_)) => unavailable(e),
            Err(e) => error(400, "bad_request", e),
        },
    )
}

/// 503: the engine could not answer; nothing was done.
fn unavailable(e: PublishError) -> Response {
    error(503, "unavailable", e).header("Retry-After", "1")
}

/// `GET /api/rooms/{room}`.
async fn room_info(hub: &Hub, room: &str) -> Response {
    let info = match hub.room(room).await {
        Ok(info) => info,
        Err(e) => return unavailable(e),
    };
    json_answer(
        200,
        &json!({
            "room": room,
            "member_count": info.member_count,
            "members": info.members,
            "epoch": info.epoch,
            "offset": info.offset,
        }),
    )
}

/// `GET /api/rooms/{room}/history?epoch=E&offset=N&limit=L`.
async fn room_history(hub: &Hub, room: &str, query: Option<&str>) -> Response {
    let (mut epoch, mut offset, mut limit) = (None, None, None);
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "epoch" => epoch = Some(value.into_owned()),
            "offset" => match value.parse::<u64>() {
                Ok(n) => offset = Some(n),
                Err(_) => return error(400, "bad_request", "offset must be a whole number"),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) => limit = Some(n),
                Err(_) => return error(400, "bad_request", "limit must be a whole number"),
            },
            other => {
                return error(
                    400,
                    "bad_request",
                    format!("unknown parameter {other:?}: epoch, offset and limit are known"),
                )
            }
        }
    }
    let since = match (epoch, offset) {
        (Some(epoch), Some(offset)) if !epoch.is_empty() && epoch.len() <= MAX_EPOCH_LEN => {
            Some(Since { epoch, offset })
        }
        (None, None) => None,
        _ => {
            return error(
                400,
                "bad_request",
                format!("give epoch (1-{MAX_EPOCH_LEN} bytes) and offset together, or neither"),
            )
        }
    };
    let limit = limit.unwrap_or(hub.config.history_max_replay);
    let page = match hub.history(room, since.as_ref(), limit).await {
        Ok(page) => page,
        Err(e) => return unavailable(e),
    };
    let messages: Vec<Value> = page
        .messages
        .iter()
        .map(|m| serde_json::from_slice(m.payload()).expect("the hub's own messages are JSON"))
        .collect();
    json_answer(
        200,
        &json!({
            "room": room,
            "epoch": page.epoch,
            "offset": page.offset,
            "recovered": page.recovered,
            "messages": messages,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_itself_only() {
        let key = ApiKey::new("0123456789abcdef0123").unwrap();
        assert!(key.matches("0123456789abcdef0123"));
        assert!(!key.matches("0123456789abcdef012"));
        assert!(!key.matches("0123456789abcdef01234"));
        assert!(!key.matches(""));
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn short_or_unprintable_keys_are_refused_with_the_rule() {
        assert_eq!(
            ApiKey::new("short").unwrap_err(),
            ApiKeyError::TooShort { len: 5 }
        );
        assert_eq!(
            ApiKey::new("0123456789 abcdef").unwrap_err(),
            ApiKeyError::NotPrintable
        );
        assert!(ApiKey::new("0123456789abcdef\n")
            .unwrap_err()
            .to_string()
            .contains("printable ASCII"));
    }
}
