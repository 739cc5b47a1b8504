//! The hub's JSON protocol (see `docs/protocol.md`): what clients send and
//! what the hub answers.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Longest token an `auth` request may carry, in bytes.
pub const MAX_TOKEN_LEN: usize = 8 << 10;
/// Longest epoch a `join`'s `since` may name, in bytes (the hub's own are
/// about 20).
pub const MAX_EPOCH_LEN: usize = 64;
/// Longest idempotency key a publish may carry, in bytes.
pub const MAX_KEY_LEN: usize = 64;

/// A request from a client, decoded from one text message.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Copied into the direct answer (`joined`, `left`, `error`), if present.
    pub id: Option<Value>,
    /// What to do.
    pub op: Op,
}

/// The operations of the protocol, named by a request's `op` field.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Join `room`, optionally setting this connection's display name.
    Join {
        /// Room name, 1–64 bytes, no control characters.
        room: String,
        /// Display name, 1–32 bytes, no control characters.
        name: Option<String>,
        /// The last message the client has of this room, to resume after.
        since: Option<Since>,
    },
    /// Leave `room`.
    Leave {
        /// Room name.
        room: String,
    },
    /// Deliver `message` to every member of `room`.
    Publish {
        /// Room name.
        room: String,
        /// Any JSON value.
        message: Value,
        /// Idempotency key, 1–[`MAX_KEY_LEN`] bytes: a publish whose key a
        /// message in the room's history has is not published again.
        key: Option<String>,
    },
    /// Authenticate, or refresh the token before it expires.
    Auth {
        /// A JWT (docs/protocol.md, "Authentication").
        token: String,
    },
}

/// Where a client resumes a room: the last message it has, by the room's
/// `epoch` and its `offset` (docs/protocol.md, "History and resume").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The room's epoch when the client got that message; at most
    /// [`MAX_EPOCH_LEN`] bytes.
    pub epoch: String,
    /// That message's offset (0: the client had none of that epoch).
    pub offset: u64,
}

/// Error codes of the `error` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The text was not a JSON object.
    BadJson,
    /// `op` is missing or unknown.
    UnknownOp,
    /// A field is missing, mistyped or out of range.
    BadRequest,
    /// `publish` or `leave` for a room not joined.
    NotJoined,
    /// The client sent a binary message.
    BinaryUnsupported,
    /// `join` of one room more than a connection may be in.
    TooManyRooms,
    /// A message over the connection's message rate; it was ignored.
    RateLimited,
    /// `join` under a display name another member of the room has.
    NameTaken,
    /// `auth` with a token the hub refuses (the message says why), or
    /// another request before `auth` on a hub that requires it.
    Unauthorized,
    /// `join` or `publish` of a room the token's `rooms` claim does not
    /// allow.
    Forbidden,
    /// `auth` on a hub that takes no tokens.
    AuthUnavailable,
    /// A `join` or `publish` the hub's engine (Redis) could not carry out
    /// now; nothing was done, try again.
    Unavailable,
}

/// Why a text message could not be decoded into a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    /// The `error` code to answer with.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub message: String,
    /// The request's `id`, when it could be read.
    pub id: Option<Value>,
}

fn valid_label(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

/// A room name: 1–[`MAX_ROOM_LEN`] bytes without control characters.
pub(crate) fn valid_room(s: &str) -> bool {
    valid_label(s, MAX_ROOM_LEN)
}

/// What [`valid_room`] asks, for error messages.
pub(crate) const ROOM_RULE: &str = "room must be a string of 1-64 bytes without control characters";

/// An idempotency key: 1–[`MAX_KEY_LEN`] bytes without control characters.
pub(crate) fn valid_key(s: &str) -> bool {
    valid_label(s, MAX_KEY_LEN)
}

/// What [`valid_key`] asks, for error messages.
pub(crate) const KEY_RULE: &str = "key must be a string of 1-64 bytes without control characters";

/// What [`valid_name`] asks, for error messages.
pub(crate) const NAME_RULE: &str = "name must be a string of 1-32 bytes without control, bidirectional-override or zero-width characters";

/// A display name: a label without the characters that make one name look
/// like another or reorder the text around it: bidirectional embeddings,
/// overrides and isolates (U+202A–U+202E, U+2066–U+2069), the implicit
/// direction marks (U+200E, U+200F, U+061C) and the zero-width characters
/// (U+200B–U+200D, U+2060, U+FEFF).
pub(crate) fn valid_name(s: &str) -> bool {
    valid_label(s, MAX_NAME_LEN)
        && !s.chars().any(|c| {
            matches!(
                c,
                '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}'
                    | '\u{200B}'..='\u{200F}'
                    | '\u{061C}'
                    | '\u{2060}'
                    | '\u{FEFF}'
            )
        })
}

/// A request's fields as sent, each kept as whatever JSON it was, so that
/// a missing or mistyped field can be answered with its own [`ErrorCode`].
/// Fields of no operation are skipped unparsed.
#[derive(Deserialize)]
struct WireRequest {
    #[serde(default, deserialize_with = "present")]
    id: Option<Value>,
    #[serde(default)]
    op: Option<Value>,
    #[serde(default)]
    room: Option<Value>,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    message: Option<Value>,
    #[serde(default)]
    token: Option<Value>,
    #[serde(default)]
    since: Option<Value>,
    #[serde(default)]
    key: Option<Value>,
}

/// A field that is present, `null` included (`Option<Value>` alone would
/// read `null` as absent): a request's `id` is echoed as sent, and `null` is
/// a message that may be published.
fn present<'de, D: Deserializer<'de>>(field: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(field).map(Some)
}

/// Decodes one client text message, the bytes of a text message (UTF-8,
/// as the protocol core checked): the JSON is parsed once, straight into
/// the request's fields.
///
/// # Errors
/// A [`DecodeError`] with [`ErrorCode::BadJson`] (not a JSON object),
/// [`ErrorCode::UnknownOp`] (missing or unknown `op`) or
/// [`ErrorCode::BadRequest`] (fields missing, mistyped or out of range).
pub fn decode_request(json: &[u8]) -> Result<Request, DecodeError> {
    let err = |code, message: String, id| DecodeError { code, message, id };
    // A struct also deserialises from a JSON array (its fields in order);
    // the protocol takes objects only.
    if json.trim_ascii_start().first() != Some(&b'{') {
        let message = match serde_json::from_slice::<serde::de::IgnoredAny>(json) {
            Ok(_) => "expected a JSON object".to_owned(),
            Err(e) => format!("invalid JSON: {e}"),
        };
        return Err(err(ErrorCode::BadJson, message, None));
    }
    let wire: WireRequest = serde_json::from_slice(json)
        .map_err(|e| err(ErrorCode::BadJson, format!("invalid JSON: {e}"), None))?;
    let WireRequest {
        id,
        op,
        room,
        name,
        message,
        token,
        since,
        key,
    } = wire;
    let op_name = match &op {
        Some(Value::String(op)) => op.as_str(),
        _ => {
            return Err(err(
                ErrorCode::UnknownOp,
                "missing string field \"op\"".into(),
                id,
            ))
        }
    };
    if !matches!(op_name, "join" | "leave" | "publish" | "auth") {
        return Err(err(
            ErrorCode::UnknownOp,
            format!("unknown op {op_name:?}"),
            id,
        ));
    }
    if op_name == "auth" {
        return match token {
            Some(Value::String(token)) if !token.is_empty() && token.len() <= MAX_TOKEN_LEN => {
                Ok(Request {
                    id,
                    op: Op::Auth { token },
                })
            }
            _ => Err(err(
                ErrorCode::BadRequest,
                format!("token must be a string of 1-{MAX_TOKEN_LEN} bytes"),
                id,
            )),
        };
    }
    let room = match room {
        Some(Value::String(room)) if valid_room(&room) => room,
        _ => return Err(err(ErrorCode::BadRequest, ROOM_RULE.into(), id)),
    };
    let op = match op_name {
        "join" => {
            let name = match name {
                None | Some(Value::Null) => None,
                Some(Value::String(name)) if valid_name(&name) => Some(name),
                Some(_) => return Err(err(ErrorCode::BadRequest, NAME_RULE.into(), id)),
            };
            let since = match since {
                None | Some(Value::Null) => None,
                Some(since) => match decode_since(since) {
                    Some(since) => Some(since),
                    None => return Err(err(
                        ErrorCode::BadRequest,
                        format!("since must be {{\"epoch\": a string of 1-{MAX_EPOCH_LEN} bytes, \"offset\": a whole number}}"),
                        id,
                    )),
                },
            };
            Op::Join { room, name, since }
        }
        "leave" => Op::Leave { room },
        _ => {
            let Some(message) = message else {
                return Err(err(
                    ErrorCode::BadRequest,
                    "missing field \"message\"".into(),
                    id,
                ));
            };
            let key = match key {
                None | Some(Value::Null) => None,
                Some(Value::String(key)) if valid_key(&key) => Some(key),
                Some(_) => return Err(err(ErrorCode::BadRequest, KEY_RULE.into(), id)),
            };
            Op::Publish { room, message, key }
        }
    };
    Ok(Request { id, op })
}

/// A `join`'s `since`, `{"epoch": "…", "offset": N}`; `None` if malformed.
fn decode_since(since: Value) -> Option<Since> {
    let Value::Object(mut fields) = since else {
        return None;
    };
    let offset = fields.get("offset")?.as_u64()?;
    match fields.remove("epoch")? {
        Value::String(epoch) if !epoch.is_empty() && epoch.len() <= MAX_EPOCH_LEN => {
            Some(Since { epoch, offset })
        }
        _ => None,
    }
}

/// A message from the hub to a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMessage<'a> {
    /// Sent once after the handshake.
    Welcome {
        /// This connection's id.
        id: u64,
        /// Its display name until it picks one.
        name: &'a str,
    },
    /// Answer to `join`.
    Joined {
        /// The room.
        room: &'a str,
        /// This connection's display name.
        name: &'a str,
        /// Display names of up to 100 members, this one included when the
        /// room is that small.
        members: Vec<&'a str>,
        /// Number of members, this one included.
        member_count: usize,
        /// The room's last offset (0 before any message); this member's
        /// live messages start after it.
        offset: u64,
        /// `offset` again, under its earlier name.
        seq: u64,
        /// The room's epoch: `offset` counts within it. A room freed (no
        /// members, no history) and used again starts a new epoch, its
        /// offsets again from 1.
        epoch: &'a str,
        /// With `since` in the `join`: whether every message after it
        /// follows (`true`), or none does because the room no longer has
        /// them all (`false`).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// Answer to `leave`.
    Left {
        /// The room.
        room: &'a str,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// Another member joined or left.
    Presence {
        /// The room.
        room: &'a str,
        /// `"join"` or `"leave"`.
        event: &'a str,
        /// The member's display name.
        name: &'a str,
        /// Milliseconds since the Unix epoch.
        ts: u64,
    },
    /// A publish to a room.
    Message {
        /// The room.
        room: &'a str,
        /// The sender's display name.
        from: &'a str,
        /// `offset`, under its earlier name.
        seq: u64,
        /// Milliseconds since the Unix epoch when the hub accepted it.
        ts: u64,
        /// The published JSON value.
        message: &'a Value,
        /// The sender's connection id (its `welcome` id): unlike names,
        /// unique for the hub's life. After `message`, so that a client
        /// reading `seq` and the start of `message` by position (as `wshub
        /// bench fanout` does) finds them where they were.
        from_id: u64,
        /// The room's epoch (see [`ServerMessage::Joined`]): `(epoch,
        /// offset)` identifies a message of a room for the hub's life.
        epoch: &'a str,
        /// Per-room offset, from 1, one more per message (gap-free).
        offset: u64,
    },
    /// Answer to a `publish` that carried an `id`: where the message is.
    Published {
        /// The room.
        room: &'a str,
        /// The room's epoch.
        epoch: &'a str,
        /// The message's offset.
        offset: u64,
        /// The publish's `key` was that of a message in the room's history:
        /// nothing was published again, and `offset` is that message's.
        duplicate: bool,
        /// The request's id.
        id: &'a Value,
    },
    /// Answer to `auth`: who the token says this connection is.
    Authed {
        /// The token's `sub`: this connection's name in every room.
        name: &'a str,
        /// When the token expires, seconds since the Unix epoch; the
        /// connection is closed with 4002 then unless a fresh `auth` came.
        #[serde(skip_serializing_if = "Option::is_none")]
        exp: Option<u64>,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
    /// A request that could not be carried out; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail.
        message: &'a str,
        /// The request's id.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a Value>,
    },
}

impl ServerMessage<'_> {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("hub messages contain only serialisable values")
    }
}

/// A JSON value as text, for [`message_json`].
pub(crate) fn encode_value(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value has string keys only")
}

/// [`ServerMessage::Message`] as text, around a value encoded already by
/// [`encode_value`], so that a room can encode the published value before it
/// takes its lock and only write this envelope under it. The same bytes as
/// `ServerMessage::Message { .. }.to_json()` (a unit test holds them to it).
pub(crate) fn message_json(
    room: &str,
    from: &str,
    from_id: u64,
    offset: u64,
    epoch: &str,
    ts: u64,
    value: &str,
) -> String {
    use std::fmt::Write as _;
    let quoted = |s: &str| serde_json::to_string(s).expect("a str is serialisable");
    let mut json = String::with_capacity(value.len() + room.len() + from.len() + epoch.len() + 128);
    let _ = write!(
        json,
        r#"{{"type":"message","room":{},"from":{},"seq":{offset},"ts":{ts},"message":{value},"from_id":{from_id},"epoch":{},"offset":{offset}}}"#,
        quoted(room),
        quoted(from),
        quoted(epoch),
    );
    json
}

/// The `published` answer to a publish with request `id` that landed as
/// `published` in `room`.
pub(crate) fn published_json(
    room: &str,
    published: &crate::rooms::Published,
    id: &serde_json::Value,
) -> String {
    ServerMessage::Published {
        room,
        epoch: &published.epoch,
        offset: published.offset,
        duplicate: published.duplicate,
        id,
    }
    .to_json()
}

/// [`message_json`] in two parts, for a writer that fills in the offset
/// and the epoch later (the Redis engine's publish script, which gives
/// them): the frame is `prefix + offset + middle + "epoch" + ,"offset":
/// + offset + }`, the same bytes as [`message_json`] for epochs that need
/// no JSON escaping (the hub's own: hex digits, base-36 digits and `-`).
pub(crate) fn message_parts(
    room: &str,
    from: &str,
    from_id: u64,
    ts: u64,
    value: &str,
) -> (String, String) {
    let quoted = |s: &str| serde_json::to_string(s).expect("a str is serialisable");
    let prefix = format!(
        r#"{{"type":"message","room":{},"from":{},"seq":"#,
        quoted(room),
        quoted(from)
    );
    let middle = format!(r#","ts":{ts},"message":{value},"from_id":{from_id},"epoch":"#);
    (prefix, middle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_each_op() {
        let r = decode_request(br#"{"op":"join","room":"lobby","name":"alice","id":1}"#).unwrap();
        assert_eq!(r.id, Some(json!(1)));
        assert_eq!(
            r.op,
            Op::Join {
                room: "lobby".into(),
                name: Some("alice".into()),
                since: None,
            }
        );
        let r = decode_request(
            br#"{"op":"join","room":"lobby","since":{"epoch":"5f3a9c2e9d41b7a0-1k","offset":7}}"#,
        )
        .unwrap();
        assert_eq!(
            r.op,
            Op::Join {
                room: "lobby".into(),
                name: None,
                since: Some(Since {
                    epoch: "5f3a9c2e9d41b7a0-1k".into(),
                    offset: 7
                }),
            }
        );
        let r =
            decode_request(br#"{"op":"publish","room":"lobby","message":{"x":[1,2]}}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Publish {
                room: "lobby".into(),
                message: json!({"x":[1,2]}),
                key: None,
            }
        );
        let r = decode_request(br#"{"op":"publish","room":"a","message":1,"key":"k-1"}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Publish {
                room: "a".into(),
                message: json!(1),
                key: Some("k-1".into()),
            }
        );
        for key in [r#""""#, "7", &format!("{:?}", "k".repeat(MAX_KEY_LEN + 1))] {
            let json = format!(r#"{{"op":"publish","room":"a","message":1,"key":{key},"id":3}}"#);
            let e = decode_request(json.as_bytes()).unwrap_err();
            assert_eq!(
                (e.code, e.message.as_str()),
                (ErrorCode::BadRequest, KEY_RULE)
            );
            assert_eq!(e.id, Some(json!(3)));
        }
        assert_eq!(
            decode_request(br#"{"op":"leave","room":"a"}"#).unwrap().op,
            Op::Leave { room: "a".into() }
        );
    }

    #[test]
    fn each_kind_of_bad_input_has_its_code() {
        let code = |s: &str| decode_request(s.as_bytes()).unwrap_err().code;
        assert_eq!(code("not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"room":"a"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"op":"shout"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"op":"join"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"join","room":7}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"join","room":""}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(&format!(r#"{{"op":"join","room":"{}"}}"#, "r".repeat(65))),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"join","room":"a","name":"x\ny"}"#),
            ErrorCode::BadRequest
        );
        // Names that would pass for another or turn the text around them.
        for name in [
            "ad\u{200B}min",
            "\u{202E}nimda",
            "a\u{2066}b",
            "\u{FEFF}x",
            "x\u{200F}",
        ] {
            let request = json!({"op":"join","room":"a","name":name}).to_string();
            assert_eq!(code(&request), ErrorCode::BadRequest, "{name:?}");
        }
        assert!(decode_request(r#"{"op":"join","room":"a","name":"Zoë 🙂"}"#.as_bytes()).is_ok());
        // A malformed `since` is a bad request, never a panic or a guess.
        for since in [
            json!(7),
            json!("e-1"),
            json!([]),
            json!({}),
            json!({"epoch":"e-1"}),
            json!({"offset":3}),
            json!({"epoch":"e-1","offset":-1}),
            json!({"epoch":"e-1","offset":1.5}),
            json!({"epoch":"e-1","offset":"3"}),
            json!({"epoch":"","offset":3}),
            json!({"epoch":7,"offset":3}),
            json!({"epoch":"e".repeat(MAX_EPOCH_LEN + 1),"offset":3}),
        ] {
            let request = json!({"op":"join","room":"a","since":since}).to_string();
            assert_eq!(code(&request), ErrorCode::BadRequest, "{since}");
        }
        assert_eq!(
            code(
                r#"{"op":"join","room":"a","since":{"epoch":"e-1","offset":18446744073709551616}}"#
            ),
            ErrorCode::BadRequest
        );
        let null = decode_request(br#"{"op":"join","room":"a","since":null}"#).unwrap();
        assert!(matches!(null.op, Op::Join { since: None, .. }));
        assert_eq!(
            code(r#"{"op":"publish","room":"a"}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn message_parts_assemble_to_message_json() {
        let value = encode_value(&json!({"text": "h\u{e9}\"llo"}));
        let (prefix, middle) = message_parts("r\"1", "ann", 7, 1_763_791_200_000, &value);
        let epoch = "5f3a9c2e9d41b7a0-1k";
        let assembled = format!(r#"{prefix}42{middle}"{epoch}","offset":42}}"#);
        assert_eq!(
            assembled,
            message_json("r\"1", "ann", 7, 42, epoch, 1_763_791_200_000, &value)
        );
    }

    #[test]
    fn the_rules_in_error_messages_name_the_limits() {
        assert!(ROOM_RULE.contains(&format!("1-{MAX_ROOM_LEN} bytes")));
        assert!(NAME_RULE.contains(&format!("1-{MAX_NAME_LEN} bytes")));
        assert!(KEY_RULE.contains(&format!("1-{MAX_KEY_LEN} bytes")));
    }

    #[test]
    fn a_null_id_is_echoed_and_a_null_message_published() {
        let r = decode_request(br#"{"op":"publish","room":"a","message":null,"id":null}"#).unwrap();
        assert_eq!(r.id, Some(Value::Null));
        assert_eq!(
            r.op,
            Op::Publish {
                room: "a".into(),
                message: Value::Null,
                key: None,
            }
        );
        let r = decode_request(br#" {"op":"join","room":"a","name":null,"extra":[1]}"#).unwrap();
        assert_eq!(
            r.op,
            Op::Join {
                room: "a".into(),
                name: None,
                since: None,
            }
        );
    }

    #[test]
    fn a_message_written_around_its_encoded_value_is_the_server_message() {
        for value in [
            json!("hi"),
            json!({"a":[1,2.5,null],"\u{7}":"\"é\n"}),
            Value::Null,
        ] {
            let envelope = message_json(
                "lo\"bby",
                "ali\u{1}ce",
                3,
                7,
                "e\"1",
                1,
                &encode_value(&value),
            );
            let whole = ServerMessage::Message {
                room: "lo\"bby",
                from: "ali\u{1}ce",
                from_id: 3,
                seq: 7,
                ts: 1,
                message: &value,
                epoch: "e\"1",
                offset: 7,
            }
            .to_json();
            assert_eq!(envelope, whole);
        }
    }

    #[test]
    fn errors_keep_the_request_id() {
        let e = decode_request(br#"{"op":"shout","id":"q7"}"#).unwrap_err();
        assert_eq!(e.id, Some(json!("q7")));
    }

    #[test]
    fn server_messages_serialise_as_documented() {
        let v = json!("hi");
        let m = ServerMessage::Message {
            room: "lobby",
            from: "alice",
            from_id: 3,
            seq: 7,
            ts: 1,
            message: &v,
            epoch: "5f3a9c2e9d41b7a0-1",
            offset: 7,
        };
        assert_eq!(
            m.to_json(),
            r#"{"type":"message","room":"lobby","from":"alice","seq":7,"ts":1,"message":"hi","from_id":3,"epoch":"5f3a9c2e9d41b7a0-1","offset":7}"#
        );
        let e = ServerMessage::Error {
            code: ErrorCode::NotJoined,
            message: "x",
            id: None,
        };
        assert_eq!(
            e.to_json(),
            r#"{"type":"error","code":"not_joined","message":"x"}"#
        );
    }
}
