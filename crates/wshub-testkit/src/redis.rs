//! [`RedisServer`]: one real `redis-server` process, on a free port of
//! 127.0.0.1, in a temporary directory of its own.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::resp::{self, Reply};

/// How long a server has to answer `PING` (and, with AOF, finish loading)
/// after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect, write and read timeout of each probe while a server starts.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between two probes while a server starts.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Connect, write and read timeout of [`RedisServer::command`]: long enough
/// for a `DEBUG SLEEP` of a few seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried by [`RedisServer::start`] when the one picked was taken
/// before `redis-server` could bind it.
const START_ATTEMPTS: usize = 5;
/// Where the server's stdout and stderr go, in its directory.
const LOG_FILE: &str = "redis.log";

/// How [`RedisServer::start`] configures the server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep an append-only file, written and fsynced before each write is
    /// acknowledged (`--appendonly yes --appendfsync always`), so an
    /// acknowledged write survives [`RedisServer::kill9`] and comes back with
    /// [`RedisServer::restart`]. Default: `false` (no persistence at all).
    pub appendonly: bool,
    /// More command-line arguments, passed after the testkit's own (a later
    /// `--option` wins), e.g. `["--maxmemory", "10mb"]`.
    pub args: Vec<String>,
}

/// A `redis-server` process of a test: started by [`RedisServer::start`],
/// killed with SIGKILL when dropped. Its temporary directory (data files and
/// the log, `redis.log`) is deleted after that.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    options: Options,
    dir: tempfile::TempDir,
}

/// Why a spawned `redis-server` ended before it answered.
struct Exited {
    status: ExitStatus,
    /// What it wrote to its log in this run.
    log: String,
}

impl Exited {
    fn address_in_use(&self) -> bool {
        self.log.contains("Address already in use")
    }
}

impl RedisServer {
    /// Starts `redis-server` (found on `PATH`) on a free port of 127.0.0.1,
    /// with `--save ""` (no RDB snapshots), `--daemonize no`,
    /// `--enable-debug-command yes` (for `DEBUG SLEEP`) and `options`,
    /// and waits until it answers `PING` (up to 10 s) and, with
    /// [`Options::appendonly`], has finished loading.
    ///
    /// If another process takes the port first, it tries again on another
    /// port, 5 times in all.
    ///
    /// # Panics
    /// - If `redis-server` is not on `PATH` (Debian: `apt-get install redis-server`).
    /// - If it exits (its log is in the message) or does not answer within 10 s.
    pub fn start(options: Options) -> Self {
        Self::start_on(options, free_port)
    }

    /// [`RedisServer::start`] on ports chosen by `pick_port`.
    pub(crate) fn start_on(options: Options, pick_port: fn() -> u16) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wshub-redis-")
            .tempdir()
            .expect("a temporary directory can be created for redis-server");
        let mut server = Self {
            child: None,
            port: 0,
            options,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            server.port = pick_port();
            match server.spawn() {
                Ok(()) => return server,
                Err(exited) if exited.address_in_use() && attempt < START_ATTEMPTS => continue,
                Err(exited) => server.fail_exited(&exited),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port on 127.0.0.1. It stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its working directory: data files (`appendonlydir/`, `nodes.conf`)
    /// and its log, `redis.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server wrote to stdout and stderr so far, every run
    /// included (for a failing test's message).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Whether the process runs (it was started and neither killed nor
    /// exited since).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the process with SIGKILL and waits until it is gone. Nothing
    /// is flushed: without [`Options::appendonly`] the data is lost. Does
    /// nothing if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on unix; it fails only if the child
            // was already reaped, which `take` rules out.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process if it runs ([`RedisServer::kill9`]) and starts it
    /// again on the same port and directory, waiting as
    /// [`RedisServer::start`] does (up to 10 s) until it answers `PING` and,
    /// with [`Options::appendonly`], `INFO persistence` says `loading:0`:
    /// every write acknowledged before the kill is back.
    ///
    /// # Panics
    /// If it exits (e.g. another process took the port meanwhile) or does
    /// not answer within 10 s.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(exited) = self.spawn() {
            self.fail_exited(&exited);
        }
    }

    /// Kills the process if it runs, deletes every file of its directory but
    /// the log (AOF, RDB, `nodes.conf`), and starts it again on the same port:
    /// a server that lost everything.
    ///
    /// # Panics
    /// As [`RedisServer::restart`], or if a data file cannot be deleted.
    pub fn restart_empty(&mut self) {
        self.kill9();
        let entries = fs::read_dir(self.dir.path()).expect("the server's directory exists");
        for entry in entries {
            let entry = entry.expect("the server's directory can be listed");
            if entry.file_name() == LOG_FILE {
                continue;
            }
            let path = entry.path();
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.unwrap_or_else(|e| panic!("cannot delete {}: {e}", path.display()));
        }
        if let Err(exited) = self.spawn() {
            self.fail_exited(&exited);
        }
    }

    /// Sends one command on a new connection and returns the reply; an error
    /// reply (`-ERR …`) is a [`Reply::Error`], not a panic. Arguments may hold
    /// any text (they are sent as bulk strings). Waits up to 30 s for the
    /// reply, so `DEBUG SLEEP 5` works.
    ///
    /// # Panics
    /// If the server cannot be reached or closes the connection before
    /// replying; [`RedisServer::try_command`] returns that as an error.
    pub fn command(&self, args: &[&str]) -> Reply {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis {} {args:?}: {e}", self.addr()))
    }

    /// [`RedisServer::command`] that returns I/O failures (refused while the
    /// server is down, a 30 s timeout, the connection closed) instead of
    /// panicking.
    ///
    /// # Errors
    /// The [`io::Error`] of connecting, writing or reading.
    pub fn try_command(&self, args: &[&str]) -> io::Result<Reply> {
        resp::request(self.addr(), args, COMMAND_TIMEOUT)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// Spawns `redis-server` on `self.port` and waits until it is ready.
    fn spawn(&mut self) -> Result<(), Exited> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("the server's log file can be opened");
        let log_start = log.metadata().map(|meta| meta.len()).unwrap_or(0);
        let stderr = log.try_clone().expect("the log file handle can be cloned");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--daemonize", "no"])
            // Redis 7 refuses DEBUG by default; tests use `DEBUG SLEEP`.
            .args(["--enable-debug-command", "yes"])
            .args([
                "--appendonly",
                if self.options.appendonly { "yes" } else { "no" },
            ]);
        if self.options.appendonly {
            command.args(["--appendfsync", "always"]);
        }
        command
            .args(&self.options.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH; install it (Debian: apt-get install redis-server)"
            ),
            Err(e) => panic!("cannot run redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready(log_start)
    }

    /// Waits until the spawned process answers `PING` itself (not another
    /// server that holds the port) and, with AOF, has loaded its data.
    fn wait_ready(&mut self, log_start: u64) -> Result<(), Exited> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut answered = false;
        loop {
            let child = self.child.as_mut().expect("spawn stored the child");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(Exited {
                    status,
                    log: self.log_since(log_start),
                });
            }
            let pid = child.id();
            if !answered {
                answered = self.probe(&["PING"]).as_deref() == Some("PONG")
                    && self
                        .probe(&["INFO", "server"])
                        .is_some_and(|info| info_has(&info, &format!("process_id:{pid}")));
            }
            if answered
                && (!self.options.appendonly
                    || self
                        .probe(&["INFO", "persistence"])
                        .is_some_and(|info| info_has(&info, "loading:0")))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                panic!(
                    "redis-server on port {} not ready after {START_TIMEOUT:?}; its log:\n{}",
                    self.port,
                    self.log_since(log_start)
                );
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }

    /// The text of a command's reply, or `None` if it failed in any way.
    fn probe(&self, args: &[&str]) -> Option<String> {
        let reply = resp::request(self.addr(), args, PROBE_TIMEOUT).ok()?;
        reply.as_str().map(str::to_owned)
    }

    fn log_since(&self, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(self.log_path()) {
            if file.seek(SeekFrom::Start(start)).is_ok() {
                let _ = file.read_to_string(&mut text);
            }
        }
        text
    }

    fn fail_exited(&self, exited: &Exited) -> ! {
        panic!(
            "redis-server on port {} exited ({}); its log:\n{}",
            self.port, exited.status, exited.log
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether the text of an `INFO` reply has the line `field:value`.
pub(crate) fn info_has(info: &str, line: &str) -> bool {
    info.lines().any(|l| l.trim_end() == line)
}

/// A port of 127.0.0.1 that was free a moment ago (the kernel's choice for
/// port 0, released at once).
///
/// # Panics
/// If no socket can be bound to 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a socket can be bound to 127.0.0.1:0")
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_has_matches_whole_lines_of_crlf_text() {
        let info = "# Persistence\r\nloading:0\r\nasync_loading:0\r\n";
        assert!(info_has(info, "loading:0"));
        assert!(!info_has(info, "loading:1"));
        assert!(!info_has(info, "oading:0"));
    }
}
