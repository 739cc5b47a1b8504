//! `wshub connect URL`: an interactive client, like wscat or websocat.
//! With `--reconnect`, talking to a wshub hub, it resumes the rooms joined
//! through it after each reconnect (see [`Resume`]).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use wshub::reconnect::Backoff;
use wshub::{ClientBuilder, ClientStream, Error, WebSocket, WsUrl};

use crate::args::ConnectArgs;
use crate::config::{connect_config, ConnectConfig};
use crate::console::Console;
use crate::session::{self, Ended, Hooks};
use crate::UsageError;

/// Redirects followed at most with -L.
const MAX_REDIRECTS: usize = 10;

pub(crate) async fn run(args: ConnectArgs) -> Result<i32> {
    let config = connect_config(&args)?;
    let tls = crate::tls::client_config(&args.tls)?;
    if let Err(e) = WsUrl::parse(&args.url) {
        return Err(UsageError(format!(
            "{}; use ws://HOST[:PORT]/PATH or wss://…",
            e.report()
        ))
        .into());
    }
    // Made once the first connection is open, so no prompt is shown for a
    // server that cannot be reached.
    let mut console: Option<Console> = None;

    let mut resume = args.reconnect.then(Resume::default);
    let mut backoff = Backoff::new(
        std::time::Duration::from_millis(500),
        args.reconnect_max_delay,
    );
    loop {
        let mut status = |line: &str| match console.as_mut() {
            Some(console) => console.status(line),
            None => eprintln!("{line}"),
        };
        let (ws, url) = match open(&args, &config, tls.as_ref(), &mut status).await {
            Ok(open) => open,
            Err(e) if e.is::<UsageError>() => return Err(e),
            Err(e) => {
                if !args.reconnect {
                    return Err(e);
                }
                let delay = backoff.next().unwrap_or_default();
                status(&format!("{e:#}; retrying in {:.1}s", delay.as_secs_f64()));
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        backoff.reset();
        let console = console.get_or_insert_with(|| {
            if args.session.execute.is_empty() {
                Console::stdin()
            } else {
                Console::scripted(args.session.execute.clone(), args.session.wait)
            }
        });
        console.status(&format!("connected to {url}{}", session::negotiated(&ws)));
        let ended = match resume.as_mut() {
            Some(resume) => {
                let mut ws = ws;
                for request in resume.requests() {
                    if let Err(e) = ws.send(wshub::Message::text(request)).await {
                        console.status(&format!("send failed: {}", e.report()));
                    }
                }
                session::run(ws, &args.session, &config.session, console, resume).await?
            }
            None => {
                let plain = &mut session::Plain;
                session::run(ws, &args.session, &config.session, console, plain).await?
            }
        };
        match ended {
            Ended::ByUser => return Ok(0),
            Ended::ByPeer { clean } if !args.reconnect => return Ok(if clean { 0 } else { 1 }),
            Ended::ByPeer { .. } => {
                let delay = backoff.next().unwrap_or_default();
                console.status(&format!("reconnecting in {:.1}s", delay.as_secs_f64()));
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Why one attempt failed.
enum Attempt {
    /// The library's error: the server's HTTP answer, TLS, I/O...
    WebSocket(Error),
    /// The proxy settings or the proxy itself.
    Proxy(anyhow::Error),
}

/// Connects to --url, through the proxy that applies, following redirects
/// with -L; the connection and the URL it ended at.
async fn open(
    args: &ConnectArgs,
    config: &ConnectConfig,
    tls: Option<&Arc<wshub::rustls::ClientConfig>>,
    status: &mut dyn FnMut(&str),
) -> Result<(WebSocket<ClientStream>, String)> {
    let mut url = args.url.clone();
    let mut hops = 0;
    loop {
        let response = match attempt(&url, args, config, tls).await {
            Ok(ws) => return Ok((ws, url)),
            Err(Attempt::Proxy(e)) => return Err(e),
            Err(Attempt::WebSocket(Error::Http(response)))
                if matches!(response.status, 301 | 302 | 303 | 307 | 308) =>
            {
                response
            }
            Err(Attempt::WebSocket(e)) => {
                return Err(anyhow!("cannot connect to {url}: {}", e.report()))
            }
        };
        let code = response.status;
        let Some(location) = response.header("location") else {
            return Err(anyhow!(
                "cannot connect to {url}: {code} redirect without a Location"
            ));
        };
        let next = redirect_target(&url, location).map_err(|why| {
            anyhow!("cannot connect to {url}: {code} redirect to {location:?}: {why}")
        })?;
        if !args.location {
            return Err(anyhow!(
                "cannot connect to {url}: {code} redirect to {next}; add -L to follow it"
            ));
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(anyhow!(
                "cannot connect to {}: more than {MAX_REDIRECTS} redirects",
                args.url
            ));
        }
        status(&format!("redirected ({code}) to {next}"));
        url = next;
    }
}

/// The URL a redirect's `Location` names, relative to `from`; http:// and
/// https:// are taken as ws:// and wss://.
fn redirect_target(from: &str, location: &str) -> Result<String, String> {
    let base = url::Url::parse(from).map_err(|e| e.to_string())?;
    let mut next = base.join(location).map_err(|e| e.to_string())?;
    let scheme = match next.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        other => return Err(format!("not a WebSocket URL ({other}://)")),
    };
    next.set_scheme(scheme)
        .map_err(|()| "cannot be made a WebSocket URL".to_owned())?;
    next.set_fragment(None);
    Ok(next.into())
}

/// One connection attempt to `url`, through a proxy if one applies.
async fn attempt(
    url: &str,
    args: &ConnectArgs,
    config: &ConnectConfig,
    tls: Option<&Arc<wshub::rustls::ClientConfig>>,
) -> Result<WebSocket<ClientStream>, Attempt> {
    let target = WsUrl::parse(url).map_err(Attempt::WebSocket)?;
    let proxy =
        crate::proxy::for_target(&args.proxy, &target.host, target.port, target.tls, |name| {
            std::env::var(name).ok()
        })
        .map_err(|e| Attempt::Proxy(UsageError(format!("{e:#}")).into()))?;
    let mut builder = ClientBuilder::new(url).config(config.session.websocket.clone());
    if let Some(tls) = tls {
        builder = builder.tls_config(tls.clone());
    }
    for (name, value) in &config.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    for p in &args.subprotocols {
        builder = builder.protocol(p.clone());
    }
    let Some(proxy) = proxy else {
        return builder.connect().await.map_err(Attempt::WebSocket);
    };
    let timeout = config.session.websocket.handshake_timeout;
    let tcp = tokio::time::timeout(
        timeout,
        crate::proxy::tunnel(&proxy, &target.host, target.port),
    )
    .await
    .map_err(|_| {
        Attempt::Proxy(anyhow!(
            "cannot connect to {url}: the proxy {}:{} ({}) did not open the tunnel within {}",
            proxy.host,
            proxy.port,
            proxy.source,
            humantime::format_duration(timeout)
        ))
    })?
    .map_err(|e| Attempt::Proxy(anyhow!("cannot connect to {url}: {e:#}")))?;
    builder.connect_tcp(tcp).await.map_err(Attempt::WebSocket)
}

impl Hooks for Resume {
    fn sent(&mut self, line: &str) {
        Resume::sent(self, line);
    }

    fn received(&mut self, text: &str) -> bool {
        Resume::received(self, text)
    }
}

/// What `--reconnect` keeps across connections to resume a wshub hub's rooms
/// (docs/protocol.md, "History and resume"): the rooms joined through this
/// client, as their `joined` answers and `message`s pass by, each with the
/// name it was joined under and the `(epoch, offset)` of the last message
/// printed; and the last `auth` request typed. Nothing else is parsed or
/// changed: any other server's messages pass through as they are.
#[derive(Debug, Default)]
struct Resume {
    rooms: HashMap<String, Room>,
    /// Names asked for in `join` requests not yet answered, by room.
    asked: HashMap<String, Option<String>>,
    /// The last `auth` request sent, sent again first after a reconnect.
    auth: Option<String>,
}

#[derive(Debug)]
struct Room {
    name: Option<String>,
    epoch: String,
    offset: u64,
}

impl Resume {
    /// Notes a request typed by the user.
    fn sent(&mut self, line: &str) {
        let Ok(request) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let room = request["room"].as_str();
        match (request["op"].as_str(), room) {
            (Some("join"), Some(room)) => {
                let name = request["name"].as_str().map(str::to_owned);
                self.asked.insert(room.to_owned(), name);
            }
            (Some("leave"), Some(room)) => {
                self.rooms.remove(room);
            }
            (Some("auth"), _) => self.auth = Some(line.to_owned()),
            _ => {}
        }
    }

    /// Notes a text message from the server; `false` if it is a room
    /// message printed already (its offset is not above the last one of its
    /// room and epoch), not to be printed again.
    fn received(&mut self, text: &str) -> bool {
        if !text.starts_with('{') {
            return true;
        }
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return true;
        };
        let (Some(room), Some(epoch)) = (frame["room"].as_str(), frame["epoch"].as_str()) else {
            return true;
        };
        let offset = frame["offset"].as_u64().or_else(|| frame["seq"].as_u64());
        match (frame["type"].as_str(), offset) {
            (Some("joined"), Some(offset)) => {
                let asked = self.asked.remove(room);
                let known = self.rooms.get_mut(room);
                if frame["recovered"] == false {
                    eprintln!(
                        "room {room}: some messages may be missing (the hub no longer has all those sent while disconnected)"
                    );
                }
                match known {
                    // Recovered: the missed messages follow and move the
                    // offset on as they are printed.
                    Some(known) if frame["recovered"] == true => {
                        if let Some(name) = asked {
                            known.name = name;
                        }
                    }
                    Some(known) => {
                        if let Some(name) = asked {
                            known.name = name;
                        }
                        known.epoch = epoch.to_owned();
                        known.offset = offset;
                    }
                    None => {
                        let state = Room {
                            name: asked.flatten(),
                            epoch: epoch.to_owned(),
                            offset,
                        };
                        self.rooms.insert(room.to_owned(), state);
                    }
                }
                true
            }
            (Some("message"), Some(offset)) => match self.rooms.get_mut(room) {
                Some(known) if known.epoch == epoch && offset <= known.offset => false,
                Some(known) => {
                    known.epoch = epoch.to_owned();
                    known.offset = offset;
                    true
                }
                None => true,
            },
            _ => true,
        }
    }

    /// The requests that resume the session on a new connection: the last
    /// `auth`, then a `join` with `since` for each room.
    fn requests(&self) -> Vec<String> {
        let joins = self.rooms.iter().map(|(room, known)| {
            let mut join = json!({
                "op": "join",
                "room": room,
                "since": {"epoch": known.epoch, "offset": known.offset},
            });
            if let Some(name) = &known.name {
                join["name"] = json!(name);
            }
            join.to_string()
        });
        self.auth.iter().cloned().chain(joins).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_url_and_http_becomes_ws() {
        let from = "wss://a.example/old/path?q=1";
        for (location, want) in [
            ("/new", "wss://a.example/new"),
            ("next", "wss://a.example/old/next"),
            ("http://b.example:8080/x#frag", "ws://b.example:8080/x"),
            ("https://c.example/", "wss://c.example/"),
        ] {
            assert_eq!(redirect_target(from, location).unwrap(), want);
        }
        assert!(redirect_target(from, "ftp://d.example/").is_err());
    }

    #[test]
    fn resume_rejoins_with_the_last_offset_and_drops_what_was_printed() {
        let mut resume = Resume::default();
        resume.sent(r#"{"op":"join","room":"lobby","name":"ada"}"#);
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":4,"seq":4,"epoch":"E"}"#
        ));
        for offset in 5..=6 {
            let m = format!(
                r#"{{"type":"message","room":"lobby","seq":{offset},"epoch":"E","offset":{offset}}}"#
            );
            assert!(resume.received(&m));
        }
        assert_eq!(
            resume.requests(),
            [r#"{"name":"ada","op":"join","room":"lobby","since":{"epoch":"E","offset":6}}"#]
        );
        // Reconnected: recovered, and the replay starts at a message
        // printed already.
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":8,"epoch":"E","recovered":true}"#
        ));
        let m = |o: u64| format!(r#"{{"type":"message","room":"lobby","epoch":"E","offset":{o}}}"#);
        assert!(!resume.received(&m(6)), "printed already");
        assert!(resume.received(&m(7)) && resume.received(&m(8)));
        // Not recovered: live messages go on from the room's offset.
        assert!(resume.received(
            r#"{"type":"joined","room":"lobby","name":"ada","offset":0,"epoch":"F","recovered":false}"#
        ));
        assert!(resume.received(&m(8)), "after the new epoch's offset 0");
        resume.sent(r#"{"op":"leave","room":"lobby"}"#);
        assert!(resume.requests().is_empty());
        assert!(resume.received("pong") && resume.received("not json"));
    }
}
