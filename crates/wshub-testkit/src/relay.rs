//! [`Relay`]: a TCP proxy that can stall its connections or cut them.
//!
//! Put it between one client and Redis (say, a hub node's Pub/Sub
//! connection) and [`Relay::stall`] makes that connection starve silently
//! while Redis keeps answering everyone else: no reset, no FIN, no bytes.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long the relay tries to reach its target for each accepted connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes read from one side before they are written to the other.
const CHUNK: usize = 16 * 1024;

/// A TCP proxy on a free port of 127.0.0.1 that forwards each accepted
/// connection to a target, both directions, one thread per direction.
///
/// Dropping it stops accepting and closes every connection.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor, the pumps and the [`Relay`] handle share.
struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    /// Notified when `stalled` turns false or a link is cut.
    changed: Condvar,
}

struct State {
    stalled: bool,
    stopped: bool,
    next_id: u64,
    links: Vec<Arc<Link>>,
}

/// One relayed connection: the accepted socket and the one to the target.
struct Link {
    id: u64,
    client: TcpStream,
    upstream: TcpStream,
    /// Set under the state lock, so a pump waiting on `changed` sees it.
    cut: AtomicBool,
    /// Directions still forwarding; the link leaves the list at 0.
    open_pumps: AtomicUsize,
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and forwards every connection
    /// accepted there to `target`. A connection whose target cannot be
    /// reached within 5 s is closed.
    ///
    /// # Panics
    /// If no socket can be bound to 127.0.0.1 or no thread spawned.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("127.0.0.1:0 can be bound");
        let addr = listener
            .local_addr()
            .expect("a bound socket has an address");
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(State {
                stalled: false,
                stopped: false,
                next_id: 0,
                links: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("relay-accept-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("a thread can be spawned")
        };
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect: `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Stops forwarding on every connection, open and future, in both
    /// directions, until [`Relay::resume`]. Connections stay open (no FIN,
    /// no reset); bytes already read are held and forwarded on resume, the
    /// rest wait in the kernel's buffers. Idempotent.
    pub fn stall(&self) {
        self.shared.lock().stalled = true;
    }

    /// Forwards again, held bytes first, after [`Relay::stall`]. Idempotent.
    pub fn resume(&self) {
        self.shared.lock().stalled = false;
        self.shared.changed.notify_all();
    }

    /// Closes every open connection, both the client's side and the
    /// target's (a FIN each way; bytes held by a stall are dropped), and
    /// keeps accepting new ones.
    pub fn cut(&self) {
        let links = std::mem::take(&mut self.shared.lock().links);
        cut_links(&self.shared, &links);
    }

    /// Connections accepted and not yet closed (by [`Relay::cut`] or by both
    /// ends).
    pub fn connections(&self) -> usize {
        self.shared.lock().links.len()
    }
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let links = {
            let mut state = self.shared.lock();
            state.stopped = true;
            std::mem::take(&mut state.links)
        };
        cut_links(&self.shared, &links);
        // `accept` returns only for a connection: make one, so the acceptor
        // sees `stopped`. Pump threads end on their own once cut.
        if TcpStream::connect(self.addr).is_ok() {
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
    }
}

impl Shared {
    /// The state; a panic elsewhere cannot leave it inconsistent (every
    /// update is one assignment), so a poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Blocks while the relay is stalled. False once `link` is cut.
    fn wait_for_flow(&self, link: &Link) -> bool {
        let mut state = self.lock();
        while state.stalled && !link.cut.load(Ordering::SeqCst) {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        !link.cut.load(Ordering::SeqCst)
    }
}

fn cut_links(shared: &Shared, links: &[Arc<Link>]) {
    {
        let _state = shared.lock();
        for link in links {
            link.cut.store(true, Ordering::SeqCst);
        }
    }
    shared.changed.notify_all();
    for link in links {
        let _ = link.client.shutdown(Shutdown::Both);
        let _ = link.upstream.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.lock().stopped {
            return;
        }
        let Ok(client) = incoming else {
            // E.g. out of file descriptors: let some close.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        // Dropping `client` closes it.
        let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
            continue;
        };
        if let Err(e) = relay(shared, client, upstream) {
            eprintln!("relay {}: cannot relay a connection: {e}", shared.target);
        }
    }
}

/// Registers the link and starts its two pumps.
fn relay(shared: &Arc<Shared>, client: TcpStream, upstream: TcpStream) -> std::io::Result<()> {
    // Redis commands and replies are small: send each at once.
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let link = {
        let mut state = shared.lock();
        if state.stopped {
            // The relay is being dropped: dropping the sockets closes them.
            return Ok(());
        }
        let link = Arc::new(Link {
            id: state.next_id,
            client: client.try_clone()?,
            upstream: upstream.try_clone()?,
            cut: AtomicBool::new(false),
            open_pumps: AtomicUsize::new(2),
        });
        state.next_id += 1;
        state.links.push(Arc::clone(&link));
        link
    };
    let directions = [
        (client.try_clone()?, upstream.try_clone()?, "up"),
        (upstream, client, "down"),
    ];
    for (from, to, direction) in directions {
        let shared = Arc::clone(shared);
        let link = Arc::clone(&link);
        thread::Builder::new()
            .name(format!("relay-{direction}-{}", link.id))
            .spawn(move || pump(&shared, &link, from, to))?;
    }
    Ok(())
}

/// Copies `from` to `to` until `from` ends or the link is cut, pausing while
/// the relay is stalled. Then passes a clean end on to `to` (FIN), and
/// closes both sockets after an error (a reset on either side).
fn pump(shared: &Shared, link: &Link, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; CHUNK];
    let failed = loop {
        if !shared.wait_for_flow(link) {
            break false;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break false,
            Ok(n) => n,
            Err(_) => break true,
        };
        // A stall that began during the read holds these bytes here.
        if !shared.wait_for_flow(link) {
            break false;
        }
        if to.write_all(&buf[..n]).is_err() {
            break true;
        }
    };
    if failed {
        let _ = link.client.shutdown(Shutdown::Both);
        let _ = link.upstream.shutdown(Shutdown::Both);
    } else {
        let _ = to.shutdown(Shutdown::Write);
    }
    if link.open_pumps.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.lock().links.retain(|other| other.id != link.id);
    }
}
