//! Token authentication: JSON Web Tokens (RFC 7519) checked with the
//! `jsonwebtoken` crate, and what their claims allow (docs/protocol.md,
//! "Authentication").
//!
//! A token names its member (`sub`), may end its connection (`exp`), and
//! may limit the rooms it joins and publishes to (`rooms`, lists of
//! `*`-patterns). It comes with the handshake (`?token=` or
//! `Authorization: Bearer`), or in an `auth` request once the connection is
//! open, since browsers cannot set headers on a WebSocket.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use wshub::server::Request;

/// Whether and how the hub checks tokens ([`HubConfig::auth`](crate::HubConfig::auth)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The keys tokens are verified with; `None`: tokens are not accepted
    /// (an `auth` request is answered `auth_unavailable`) and every
    /// connection is anonymous. Default: `None`.
    pub verifier: Option<TokenVerifier>,
    /// Whether a connection must authenticate: one that has not within
    /// [`AuthConfig::timeout`] of opening is closed with 4001, and until it
    /// has, its other requests are answered `unauthorized`. Default: off
    /// (anonymous members keep the hub's behaviour without tokens).
    pub require: bool,
    /// How long a connection that must authenticate has to send its `auth`
    /// request. Default: 10 s.
    pub timeout: Duration,
}

/// What a hub that takes tokens checks them with: an [`AuthConfig`] whose
/// verifier is there.
#[derive(Debug)]
pub(crate) struct Tokens {
    pub(crate) verifier: TokenVerifier,
    pub(crate) require: bool,
    pub(crate) timeout: Duration,
}

impl AuthConfig {
    /// The token settings, if the hub takes tokens.
    pub(crate) fn tokens(&self) -> Option<Arc<Tokens>> {
        self.verifier.clone().map(|verifier| {
            Arc::new(Tokens {
                verifier,
                require: self.require,
                timeout: self.timeout,
            })
        })
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            verifier: None,
            require: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Verifies tokens against a set of keys.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<Vec<Key>>,
}

struct Key {
    /// The JWKS `kid`, matched against the token header's when both exist.
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithms: Vec<_> = self.keys.iter().map(|k| k.algorithm).collect();
        f.debug_struct("TokenVerifier")
            .field("algorithms", &algorithms)
            .finish_non_exhaustive()
    }
}

/// A key that cannot verify tokens; the message says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl TokenVerifier {
    /// HS256 tokens signed with `secret` (surrounding whitespace, such as a
    /// file's final newline, is not part of it).
    ///
    /// # Errors
    /// A secret shorter than 32 bytes (RFC 7518 §3.2: at least the hash's
    /// size).
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let secret = secret.trim_ascii();
        if secret.len() < 32 {
            return Err(KeyError(format!(
                "an HS256 secret needs at least 32 bytes (RFC 7518 §3.2), this one has {}",
                secret.len()
            )));
        }
        Ok(Self::one(
            None,
            Algorithm::HS256,
            DecodingKey::from_secret(secret),
        ))
    }

    /// Tokens signed by the private half of a PEM public key: RSA (RS256),
    /// P-256 (ES256) or Ed25519 (EdDSA), told apart by the key itself.
    ///
    /// # Errors
    /// `pem` is not one of those public keys.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let (algorithm, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (Algorithm::EdDSA, key)
        } else {
            return Err(KeyError(
                "not a PEM public key (-----BEGIN PUBLIC KEY-----) of RSA, P-256 or Ed25519".into(),
            ));
        };
        Ok(Self::one(None, algorithm, key))
    }

    /// Tokens signed by any key of a JWK Set (RFC 7517 §5), chosen by the
    /// token's `kid` when it has one. A key's algorithm is its `alg`, or
    /// RS256, ES256, EdDSA or HS256 by its type.
    ///
    /// # Errors
    /// Not a JWK Set, no key in it, or a key that cannot be used.
    pub fn jwks(json: &str) -> Result<Self, KeyError> {
        let set: JwkSet = serde_json::from_str(json)
            .map_err(|e| KeyError(format!("not a JWK Set ({{\"keys\": [...]}}): {e}")))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        for (i, jwk) in set.keys.iter().enumerate() {
            let algorithm = match jwk.common.key_algorithm.map(|a| a.to_string().parse()) {
                Some(Ok(algorithm)) => algorithm,
                Some(Err(_)) => {
                    return Err(KeyError(format!(
                        "key {i}: its alg is not one tokens can use"
                    )))
                }
                None => match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
                    AlgorithmParameters::OctetKey(_) => Algorithm::HS256,
                },
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| KeyError(format!("key {i}: cannot be used: {e}")))?;
            keys.push(Key {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            });
        }
        if keys.is_empty() {
            return Err(KeyError("the JWK Set has no key".into()));
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    fn one(kid: Option<String>, algorithm: Algorithm, key: DecodingKey) -> Self {
        Self {
            keys: Arc::new(vec![Key {
                kid,
                algorithm,
                key,
            }]),
        }
    }

    /// The identity `token` proves, at `now`.
    ///
    /// # Errors
    /// [`TokenError`]: a token that is malformed, signed by no key here,
    /// expired (no leeway) or not yet valid (`nbf`), or without `sub`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let candidates = self.keys.iter().filter(|k| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        let mut last = TokenError::NoKey;
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            // `sub` is checked below, with its own error.
            validation.required_spec_claims = HashSet::new();
            validation.leeway = 0;
            // Checked below against `now`, which the tests control.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                Ok(data) => return Identity::from_claims(data.claims, now),
                Err(e) => {
                    last = match e.kind() {
                        jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                            TokenError::BadSignature
                        }
                        jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                            TokenError::NoSubject
                        }
                        _ => TokenError::Malformed,
                    }
                }
            }
        }
        Err(last)
    }
}

/// Why a token was refused; its `Display` is what the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a JWT, or its claims are not what the hub reads.
    Malformed,
    /// No configured key has the token's algorithm (and `kid`).
    NoKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is still to come.
    NotYetValid,
    /// No `sub` claim, or an empty one.
    NoSubject,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "the token is not a JWT the hub can read",
            TokenError::NoKey => "the token's algorithm or key id matches no key of the hub",
            TokenError::BadSignature => "the token's signature does not verify",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet (nbf)",
            TokenError::NoSubject => "the token has no sub claim",
        })
    }
}

impl std::error::Error for TokenError {}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    rooms: Option<RoomClaims>,
}

/// The `rooms` claim: patterns of the rooms a member may join and publish
/// to; a list left out allows every room.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
struct RoomClaims {
    join: Option<Vec<String>>,
    publish: Option<Vec<String>>,
}

/// Who a verified token says the member is, and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim: the member's name in every room.
    pub sub: String,
    /// When the token expires (`exp`), if it does.
    pub expires: Option<SystemTime>,
    rooms: RoomClaims,
}

/// What [`Identity::allows`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomAction {
    /// `join`: the claim's `rooms.join` patterns.
    Join,
    /// `publish`: the claim's `rooms.publish` patterns.
    Publish,
}

impl Identity {
    fn from_claims(claims: Claims, now: SystemTime) -> Result<Self, TokenError> {
        let at = |secs: u64| UNIX_EPOCH + Duration::from_secs(secs);
        let sub = claims.sub.filter(|s| !s.trim().is_empty());
        let Some(sub) = sub else {
            return Err(TokenError::NoSubject);
        };
        if claims.nbf.is_some_and(|nbf| at(nbf) > now) {
            return Err(TokenError::NotYetValid);
        }
        let expires = claims.exp.map(at);
        if expires.is_some_and(|exp| exp <= now) {
            return Err(TokenError::Expired);
        }
        Ok(Self {
            sub,
            expires,
            rooms: claims.rooms.unwrap_or_default(),
        })
    }

    /// Whether this member may `action` `room`.
    pub fn allows(&self, action: RoomAction, room: &str) -> bool {
        let patterns = match action {
            RoomAction::Join => &self.rooms.join,
            RoomAction::Publish => &self.rooms.publish,
        };
        patterns
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| glob_matches(p, room)))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of
/// characters (none included) and everything else for itself.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The token a handshake carries: `token=` in the query, or
/// `Authorization: Bearer` (the header wins when both are there).
pub(crate) fn handshake_token(request: &Request) -> Option<String> {
    if let Some(value) = request.header("authorization") {
        let (scheme, token) = value.trim().split_once(' ')?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().to_owned());
        }
    }
    let query = request.query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("token=")?;
        // A JWT is base64url and dots: nothing to percent-decode.
        Some(value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_hs256_token_names_its_member_and_its_expiry() {
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        let identity = verifier
            .verify(&token(json!({"sub": "ada", "exp": 2000})), at(1000))
            .unwrap();
        assert_eq!(identity.sub, "ada");
        assert_eq!(identity.expires, Some(at(2000)));
        assert!(identity.allows(RoomAction::Join, "anything"));
        let forever = verifier
            .verify(&token(json!({"sub": "bob"})), at(1000))
            .unwrap();
        assert_eq!(forever.expires, None);
    }

    #[test]
    fn refused_tokens_say_why() {
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        let check = |t: &str, now| verifier.verify(t, at(now)).unwrap_err();
        assert_eq!(
            check(&token(json!({"sub": "ada", "exp": 1000})), 1000),
            TokenError::Expired
        );
        assert_eq!(
            check(&token(json!({"sub": "ada", "nbf": 1001})), 1000),
            TokenError::NotYetValid
        );
        assert_eq!(
            check(&token(json!({"exp": 2000})), 1000),
            TokenError::NoSubject
        );
        assert_eq!(
            check(&token(json!({"sub": " "})), 1000),
            TokenError::NoSubject
        );
        assert_eq!(check("not.a.jwt", 1000), TokenError::Malformed);
        let other = encode(
            &Header::default(),
            &json!({"sub": "eve"}),
            &EncodingKey::from_secret(b"another secret, also 32 bytes long!"),
        )
        .unwrap();
        assert_eq!(check(&other, 1000), TokenError::BadSignature);
        // alg "none", the classic forgery: refused before any key is tried.
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let unsigned = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(r#"{"sub":"eve"}"#)
        );
        assert_eq!(check(&unsigned, 1000), TokenError::Malformed);
        // An RS256 header against an HS256 hub: no key for it.
        let rs256 = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(r#"{"sub":"eve"}"#)
        );
        assert_eq!(check(&rs256, 1000), TokenError::NoKey);
    }

    /// A PEM `PUBLIC KEY` (SPKI) of `key` behind the DER `prefix` of its
    /// algorithm identifier.
    fn spki_pem(prefix: &[u8], key: &[u8]) -> String {
        use base64::Engine;
        let der = [prefix, key].concat();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
    }

    #[test]
    fn es256_and_eddsa_tokens_verify_against_their_pem_public_keys() {
        use ring::rand::SystemRandom;
        use ring::signature::{self, KeyPair};
        let rng = SystemRandom::new();
        let claims = json!({"sub": "ada"});

        let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        // SPKI of an Ed25519 key: the OID 1.3.101.112, then the 32 bytes.
        let ed_prefix = [
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        let pem = spki_pem(&ed_prefix, pair.public_key().as_ref());
        let verifier = TokenVerifier::public_key_pem(pem.as_bytes()).unwrap();
        let signed = encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_der(pkcs8.as_ref()),
        )
        .unwrap();
        assert_eq!(verifier.verify(&signed, at(0)).unwrap().sub, "ada");
        // An HS256 token against the Ed25519 key: no key for its algorithm.
        assert_eq!(
            verifier.verify(&token(claims.clone()), at(0)),
            Err(TokenError::NoKey)
        );

        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        // SPKI of a P-256 key: id-ecPublicKey, prime256v1, then the point.
        let ec_prefix = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let pem = spki_pem(&ec_prefix, pair.public_key().as_ref());
        let verifier = TokenVerifier::public_key_pem(pem.as_bytes()).unwrap();
        let signed = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
        .unwrap();
        assert_eq!(verifier.verify(&signed, at(0)).unwrap().sub, "ada");
    }

    #[test]
    fn short_secrets_and_bad_keys_are_refused() {
        let e = TokenVerifier::hs256(b"short\n").unwrap_err();
        assert!(e.to_string().contains("at least 32 bytes"), "{e}");
        let e = TokenVerifier::public_key_pem(
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("RSA, P-256 or Ed25519"), "{e}");
        assert!(TokenVerifier::jwks("{}").is_err());
        assert!(TokenVerifier::jwks(r#"{"keys": []}"#).is_err());
    }

    #[test]
    fn a_jwks_key_is_chosen_by_kid() {
        use base64::Engine;
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let set = format!(
            r#"{{"keys": [{{"kty": "oct", "kid": "old", "k": "{other}"}}, {{"kty": "oct", "kid": "new", "k": "{k}", "alg": "HS256"}}]}}"#
        );
        let verifier = TokenVerifier::jwks(&set).unwrap();
        let mut header = Header {
            kid: Some("new".into()),
            ..Header::default()
        };
        let signed = encode(
            &header,
            &json!({"sub": "ada"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(verifier.verify(&signed, at(0)).unwrap().sub, "ada");
        header.kid = Some("old".into());
        let wrong = encode(
            &header,
            &json!({"sub": "ada"}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&wrong, at(0)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn the_rooms_claim_limits_join_and_publish_by_pattern() {
        let verifier = TokenVerifier::hs256(SECRET).unwrap();
        let claims =
            json!({"sub": "ada", "rooms": {"join": ["lobby", "team-*"], "publish": ["team-a*"]}});
        let identity = verifier.verify(&token(claims), at(0)).unwrap();
        assert!(identity.allows(RoomAction::Join, "lobby"));
        assert!(identity.allows(RoomAction::Join, "team-blue"));
        assert!(!identity.allows(RoomAction::Join, "lobby2"));
        assert!(!identity.allows(RoomAction::Join, "admin"));
        assert!(identity.allows(RoomAction::Publish, "team-alpha"));
        assert!(!identity.allows(RoomAction::Publish, "lobby"));
        let only_join = verifier
            .verify(&token(json!({"sub": "bob", "rooms": {"join": []}})), at(0))
            .unwrap();
        assert!(!only_join.allows(RoomAction::Join, "lobby"));
        assert!(only_join.allows(RoomAction::Publish, "lobby"));
    }

    #[test]
    fn globs_match_star_runs_only() {
        for (pattern, text, matches) in [
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "a", true),
            ("a*c", "abc", true),
            ("a*c", "ab", false),
            ("*b*", "abc", true),
            ("a*b*c", "axbyc", true),
            ("a*b*c", "acb", false),
            ("ab", "ab", true),
            ("ab", "abc", false),
            ("a*a", "a", false),
        ] {
            assert_eq!(glob_matches(pattern, text), matches, "{pattern} {text}");
        }
    }

    #[test]
    fn the_handshake_token_comes_from_the_header_or_the_query() {
        let request = |head: &str| Request::parse(head.as_bytes()).unwrap();
        let from_query = request("GET /ws?room=a&token=abc.def.ghi HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(handshake_token(&from_query).as_deref(), Some("abc.def.ghi"));
        let from_header =
            request("GET /ws?token=q HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer h.e.d\r\n\r\n");
        assert_eq!(handshake_token(&from_header).as_deref(), Some("h.e.d"));
        assert_eq!(
            handshake_token(&request("GET /ws HTTP/1.1\r\nHost: h\r\n\r\n")),
            None
        );
    }
}
