//! What wshub's tests start and stop: real `redis-server` processes
//! (Debian's package, which `.ci/run` installs), each on a free port of
//! 127.0.0.1 in a directory of its own, killed when dropped.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server has to answer `PING` after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` of a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    appendonly: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one without persistence.
    ///
    /// # Panics
    /// If `redis-server` is not installed (`apt-get install redis-server`)
    /// or does not answer within 10 s.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts one that keeps an append-only file written at every command
    /// (`appendfsync always`), so a write it acknowledged survives
    /// [`RedisServer::kill9`] and [`RedisServer::restart`].
    ///
    /// # Panics
    /// As [`RedisServer::start`].
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(appendonly: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("wshub-redis-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            appendonly,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--dir"])
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"]);
        if self.appendonly {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.command(&["PING"]).as_deref() == Some("+PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING; its log:\n{}",
            self.port,
            std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
        );
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills it with SIGKILL and waits for it to end.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (after
    /// [`RedisServer::kill9`]; kills it first if it runs): with
    /// persistence, with the data it had.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Starts it again on the same port with no data.
    pub fn restart_empty(&mut self) {
        self.kill9();
        for entry in std::fs::read_dir(self.dir.path()).unwrap().flatten() {
            if entry.file_name() != "redis.log" {
                let path = entry.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
        self.spawn();
    }

    /// Sends one command (arguments without spaces or line breaks, as an
    /// inline command) and returns the first line of the answer; `None` if
    /// the server cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut tcp = TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        tcp.write_all(format!("{}\r\n", args.join(" ")).as_bytes())
            .ok()?;
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n") {
            if tcp.read(&mut byte).ok()? == 0 {
                return None;
            }
            answer.push(byte[0]);
        }
        answer.truncate(answer.len() - 2);
        String::from_utf8(answer).ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A port of 127.0.0.1 free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persistent_server_keeps_a_key_through_kill_9_and_an_empty_one_does_not() {
        let mut redis = RedisServer::start_persistent();
        assert_eq!(redis.command(&["SET", "k", "v"]).as_deref(), Some("+OK"));
        redis.kill9();
        assert_eq!(redis.command(&["PING"]), None, "down");
        redis.restart();
        assert_eq!(redis.command(&["EXISTS", "k"]).as_deref(), Some(":1"));
        redis.restart_empty();
        assert_eq!(redis.command(&["EXISTS", "k"]).as_deref(), Some(":0"));
    }
}
