//! The `Origin` check that stops cross-site WebSocket hijacking (RFC 6455
//! §10.2; CWE-1385).
//!
//! A browser sends `Origin` with every WebSocket handshake and lets any page
//! open a WebSocket to any host, with the visitor's cookies. A server that
//! trusts cookies (or the visitor's network position) must therefore refuse
//! handshakes whose `Origin` is a page it does not know. Non-browser
//! clients usually send no `Origin`; they are not a browser's victims, and
//! pass.
//!
//! An origin is compared by scheme, host and port, where a port left out is
//! the scheme's default (80 for `http`/`ws`, 443 for `https`/`wss`); hosts
//! compare ASCII case-insensitively (browsers send international names in
//! their `xn--` form).

use std::fmt;

use super::Request;

/// Which `Origin`s may open a WebSocket.
///
/// [`OriginPolicy::default`] (the same as [`OriginPolicy::same_host`]) admits
/// a request without `Origin`, and one whose `Origin` names the host and
/// port of the request's own `Host` header; [`allow`](Self::allow) adds
/// other origins. A request is refused with [`OriginRefused`]: answer it
/// `403 Forbidden` before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Every origin passes: the check is off.
    any: bool,
    /// Origins allowed besides the request's own host.
    allowed: Vec<OriginPattern>,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        Self::same_host()
    }
}

impl OriginPolicy {
    /// Admits requests without `Origin` and those from a page of the same
    /// host and port as the request's `Host` header. The scheme is not
    /// compared: behind a proxy that terminates TLS the server cannot tell
    /// `https` from `http`, and both name the same site.
    pub fn same_host() -> Self {
        Self {
            any: false,
            allowed: Vec::new(),
        }
    }

    /// Admits every request: the check is off. Only for servers that trust
    /// nothing a browser brings along (no cookies, no network position);
    /// `wshub serve --allowed-origin '*'` logs a warning when it does this.
    pub fn any() -> Self {
        Self {
            any: true,
            allowed: Vec::new(),
        }
    }

    /// Also admits `pattern`: an origin such as `https://app.example.com` or
    /// `http://localhost:3000`, or `https://*.example.com` for every
    /// subdomain of `example.com` (not `example.com` itself) with that scheme
    /// and port, or `*` for any origin ([`OriginPolicy::any`]).
    ///
    /// # Errors
    /// [`OriginPatternError`] when `pattern` is not an origin: no
    /// `scheme://`, a path, a bad port, an empty host, or a `*` anywhere but
    /// as the whole first label of the host.
    pub fn allow(mut self, pattern: &str) -> Result<Self, OriginPatternError> {
        if pattern.trim() == "*" {
            self.any = true;
        } else {
            self.allowed.push(OriginPattern::parse(pattern)?);
        }
        Ok(self)
    }

    /// Whether every origin is admitted.
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Checks `request`'s `Origin` against its `Host`: [`check`](Self::check).
    ///
    /// # Errors
    /// As [`check`](Self::check).
    pub fn check_request(&self, request: &Request) -> Result<(), OriginRefused> {
        self.check(request.header("origin"), request.header("host"))
    }

    /// Checks the `origin` header of a request whose `Host` header is
    /// `host` (either may be missing).
    ///
    /// # Errors
    /// [`OriginRefused`] when `origin` is present and neither names the
    /// request's host nor matches an allowed pattern (an `Origin` that is
    /// not `scheme://host[:port]`, such as `null` from a sandboxed frame or
    /// a `file:` page, never matches).
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), OriginRefused> {
        let Some(origin) = origin else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let refused = || OriginRefused {
            origin: origin.chars().take(200).collect(),
        };
        let Some(parsed) = Origin::parse(origin) else {
            return Err(refused());
        };
        let same_host = host
            .and_then(HostPort::parse)
            .is_some_and(|host| parsed.is_host(&host));
        if same_host || self.allowed.iter().any(|p| p.matches(&parsed)) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

/// A handshake refused by [`OriginPolicy::check`]: answer `403 Forbidden`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRefused {
    /// The `Origin` header as sent (its first 200 characters).
    pub origin: String,
}

impl fmt::Display for OriginRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin {:?} is not allowed", self.origin)
    }
}

impl std::error::Error for OriginRefused {}

/// An allowed-origin pattern that is not an origin; the message says what
/// to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it and how to write it.
    pub problem: &'static str,
}

impl fmt::Display for OriginPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.pattern, self.problem)
    }
}

impl std::error::Error for OriginPatternError {}

/// The default port of `scheme`, if it has one.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `host[:port]` or `[v6]:port`, lowercased; `None` if the port is not a
/// number or the host is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: Option<u16>,
}

impl HostPort {
    fn parse(authority: &str) -> Option<Self> {
        let authority = authority.trim();
        let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
            let (v6, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':')?),
            };
            (&authority[..v6.len() + 2], port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@') {
            return None;
        }
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// A serialized origin, `scheme://host[:port]` (RFC 6454 §6.1).
#[derive(Debug)]
struct Origin {
    scheme: String,
    host: String,
    /// The port, or the scheme's default.
    port: Option<u16>,
}

impl Origin {
    fn parse(origin: &str) -> Option<Self> {
        let (scheme, authority) = origin.trim().split_once("://")?;
        if scheme.is_empty() || authority.contains('/') {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let HostPort { host, port } = HostPort::parse(authority)?;
        let port = port.or_else(|| default_port(&scheme));
        Some(Self { scheme, host, port })
    }

    /// Whether this origin names `host`: the same host and the same port,
    /// where a `Host` without a port matches an origin on its scheme's
    /// default port.
    fn is_host(&self, host: &HostPort) -> bool {
        if self.host != host.host {
            return false;
        }
        match host.port {
            Some(port) => self.port == Some(port),
            None => self.port == default_port(&self.scheme),
        }
    }
}

/// One entry of [`OriginPolicy::allow`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    /// The host, or with `subdomains` the domain whose subdomains match.
    host: String,
    subdomains: bool,
    port: Option<u16>,
}

impl OriginPattern {
    fn parse(pattern: &str) -> Result<Self, OriginPatternError> {
        let error = |problem| OriginPatternError {
            pattern: pattern.to_owned(),
            problem,
        };
        let Some((scheme, authority)) = pattern.trim().split_once("://") else {
            return Err(error(
                "an origin starts with its scheme, e.g. https://app.example.com",
            ));
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(error(
                "an origin has no path: write scheme://host[:port], e.g. https://app.example.com",
            ));
        }
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(error("the scheme must be letters, e.g. https"));
        }
        let (subdomains, authority) = match authority.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, authority),
        };
        let Some(HostPort { host, port }) = HostPort::parse(authority) else {
            return Err(error(
                "expected host[:port] after the scheme, with a port from 0 to 65535",
            ));
        };
        if host.contains('*') {
            return Err(error(
                "a wildcard may only be the whole first label, e.g. https://*.example.com",
            ));
        }
        let scheme = scheme.to_ascii_lowercase();
        let port = port.or_else(|| default_port(&scheme));
        Ok(Self {
            scheme,
            host,
            subdomains,
            port,
        })
    }

    fn matches(&self, origin: &Origin) -> bool {
        let host_matches = if self.subdomains {
            origin
                .host
                .strip_suffix(self.host.as_str())
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty())
        } else {
            origin.host == self.host
        };
        host_matches && origin.scheme == self.scheme && origin.port == self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(patterns: &[&str]) -> OriginPolicy {
        patterns.iter().fold(OriginPolicy::default(), |p, pattern| {
            p.allow(pattern).unwrap()
        })
    }

    #[test]
    fn a_request_without_origin_passes_whatever_the_policy() {
        assert_eq!(
            OriginPolicy::default().check(None, Some("hub:8080")),
            Ok(())
        );
        assert_eq!(OriginPolicy::default().check(None, None), Ok(()));
    }

    #[test]
    fn the_default_admits_the_requests_own_host_and_port_only() {
        let p = OriginPolicy::default();
        assert!(p
            .check(Some("http://hub.example:8080"), Some("hub.example:8080"))
            .is_ok());
        assert!(p
            .check(Some("https://Hub.Example:8080"), Some("hub.example:8080"))
            .is_ok());
        assert!(p
            .check(Some("https://hub.example"), Some("hub.example"))
            .is_ok());
        assert!(p
            .check(Some("https://hub.example:443"), Some("hub.example"))
            .is_ok());
        assert!(p
            .check(Some("http://hub.example"), Some("hub.example:80"))
            .is_ok());
        assert!(p
            .check(Some("http://[::1]:8080"), Some("[::1]:8080"))
            .is_ok());
        // Another host, another port, a lookalike, no Host to compare with.
        let refused = p.check(Some("https://evil.example"), Some("hub.example"));
        assert_eq!(
            refused,
            Err(OriginRefused {
                origin: "https://evil.example".into()
            })
        );
        assert!(p
            .check(Some("http://hub.example:8081"), Some("hub.example:8080"))
            .is_err());
        assert!(p
            .check(Some("https://hub.example:8443"), Some("hub.example"))
            .is_err());
        assert!(p
            .check(Some("http://hub.example.evil.example"), Some("hub.example"))
            .is_err());
        assert!(p.check(Some("http://hub.example"), None).is_err());
    }

    #[test]
    fn null_and_malformed_origins_never_match() {
        let p = OriginPolicy::default();
        for origin in [
            "null",
            "",
            "hub.example",
            "http://",
            "http://hub.example/x",
            "http://hub.example:99999",
            "http://a@hub.example",
        ] {
            assert!(
                p.check(Some(origin), Some("hub.example")).is_err(),
                "{origin}"
            );
        }
        assert!(OriginPolicy::any().check(Some("null"), None).is_ok());
    }

    #[test]
    fn allowed_origins_match_scheme_host_and_port() {
        let p = policy(&["https://app.example.com", "http://localhost:3000"]);
        assert!(p
            .check(Some("https://app.example.com"), Some("hub"))
            .is_ok());
        assert!(p
            .check(Some("https://app.example.com:443"), Some("hub"))
            .is_ok());
        assert!(p.check(Some("http://localhost:3000"), Some("hub")).is_ok());
        assert!(p
            .check(Some("http://app.example.com"), Some("hub"))
            .is_err());
        assert!(p
            .check(Some("https://app.example.com:8443"), Some("hub"))
            .is_err());
        assert!(p.check(Some("http://localhost:3001"), Some("hub")).is_err());
        // The request's own host still passes.
        assert!(p.check(Some("http://hub"), Some("hub")).is_ok());
    }

    #[test]
    fn a_wildcard_matches_subdomains_at_any_depth_but_not_the_domain() {
        let p = policy(&["https://*.example.com"]);
        assert!(p.check(Some("https://a.example.com"), Some("hub")).is_ok());
        assert!(p
            .check(Some("https://a.b.example.com"), Some("hub"))
            .is_ok());
        assert!(p.check(Some("https://example.com"), Some("hub")).is_err());
        assert!(p
            .check(Some("https://badexample.com"), Some("hub"))
            .is_err());
        assert!(p.check(Some("https://.example.com"), Some("hub")).is_err());
        assert!(p.check(Some("http://a.example.com"), Some("hub")).is_err());
    }

    #[test]
    fn star_turns_the_check_off() {
        let p = policy(&["*"]);
        assert!(p.allows_any());
        assert!(p
            .check(Some("https://anything.example"), Some("hub"))
            .is_ok());
        assert!(!OriginPolicy::default().allows_any());
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        for (pattern, says) in [
            ("app.example.com", "starts with its scheme"),
            ("https://app.example.com/chat", "no path"),
            ("https://app.*.com", "whole first label"),
            ("https://*example.com", "whole first label"),
            ("https://", "host[:port]"),
            ("https://app.example.com:70000", "port"),
            ("ht tp://x", "scheme"),
        ] {
            let e = OriginPolicy::default().allow(pattern).unwrap_err();
            assert!(e.to_string().contains(says), "{pattern}: {e}");
        }
        // A trailing slash, as copied from an address bar, is forgiven.
        assert!(OriginPolicy::default()
            .allow("https://app.example.com/")
            .is_ok());
    }
}
