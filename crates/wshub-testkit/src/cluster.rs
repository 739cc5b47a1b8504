//! [`RedisCluster`]: a Redis Cluster of master-only `redis-server`
//! processes, every hash slot assigned.

use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::redis::{free_port, info_has, Options, RedisServer};

/// Hash slots of a Redis Cluster.
const SLOTS: usize = 16384;
/// How long the nodes have, once told about each other, to all report
/// `cluster_state:ok`; also the limit on `redis-cli --cluster create`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The cluster bus listens on the client port plus this.
const BUS_PORT_OFFSET: u16 = 10000;

/// A Redis Cluster of `masters` nodes without replicas, each a
/// [`RedisServer`] (port, directory, log) with `--cluster-enabled yes
/// --cluster-node-timeout 2000` (ms). Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` nodes on free ports (both the port and its cluster
    /// bus port, port + 10000, free), shares the 16384 slots among them and
    /// waits until every node's `CLUSTER INFO` says `cluster_state:ok` with
    /// every slot assigned (up to 20 s).
    ///
    /// Three masters or more are joined with `redis-cli --cluster create
    /// … --cluster-replicas 0 --cluster-yes`; `redis-cli` refuses fewer, so
    /// one or two get their slots with `CLUSTER ADDSLOTS` and meet with
    /// `CLUSTER MEET`.
    ///
    /// # Panics
    /// - If `masters` is 0.
    /// - As [`RedisServer::start`], for any node.
    /// - If `redis-cli` is missing (it comes with Debian's `redis-server`,
    ///   through `redis-tools`), fails, or takes over 20 s.
    /// - If a node does not report `cluster_state:ok` within 20 s.
    pub fn start(masters: usize) -> Self {
        assert!(masters > 0, "a Redis Cluster needs at least one master");
        let options = Options {
            appendonly: false,
            args: [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
            ]
            .map(String::from)
            .to_vec(),
        };
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| RedisServer::start_on(options.clone(), free_port_with_bus))
            .collect();
        let cluster = Self { nodes };
        if masters >= 3 {
            cluster.create_with_redis_cli();
        } else {
            cluster.assign_and_meet();
        }
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:PORT` of each node, in the order of
    /// [`RedisCluster::nodes`].
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, each a master owning a contiguous range of slots.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to [`RedisServer::kill9`] or [`RedisServer::restart`] one.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    fn create_with_redis_cli(&self) {
        let mut output = tempfile::tempfile().expect("a temporary file can be created");
        let mut command = Command::new("redis-cli");
        command.args(["--cluster", "create"]);
        command.args(self.nodes.iter().map(|node| node.addr().to_string()));
        command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("the file handle can be cloned"))
            .stderr(output.try_clone().expect("the file handle can be cloned"));
        let mut child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run redis-cli (Debian: apt-get install redis-server): {e}")
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("redis-cli can be waited for") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(50));
        };
        if status.is_some_and(|status| status.success()) {
            return;
        }
        let mut text = String::new();
        let _ = output.seek(SeekFrom::Start(0));
        let _ = output.read_to_string(&mut text);
        match status {
            Some(status) => panic!("redis-cli --cluster create failed ({status}):\n{text}"),
            None => panic!("redis-cli --cluster create still ran after {READY_TIMEOUT:?}:\n{text}"),
        }
    }

    fn assign_and_meet(&self) {
        let count = self.nodes.len();
        for (i, node) in self.nodes.iter().enumerate() {
            let slots: Vec<String> = (i * SLOTS / count..(i + 1) * SLOTS / count)
                .map(|slot| slot.to_string())
                .collect();
            let mut args = vec!["CLUSTER", "ADDSLOTS"];
            args.extend(slots.iter().map(String::as_str));
            expect_ok(node, &args);
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            expect_ok(
                first,
                &["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()],
            );
        }
    }

    fn wait_ok(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        for node in &self.nodes {
            loop {
                let info = node.try_command(&["CLUSTER", "INFO"]).ok();
                let info = info.as_ref().and_then(|reply| reply.as_str()).unwrap_or("");
                if info_has(info, "cluster_state:ok")
                    && info_has(info, &format!("cluster_slots_assigned:{SLOTS}"))
                {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!(
                        "cluster node {} not ok after {READY_TIMEOUT:?}; CLUSTER INFO:\n{info}\nits log:\n{}",
                        node.addr(),
                        node.log()
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn expect_ok(node: &RedisServer, args: &[&str]) {
    let reply = node.command(args);
    assert_eq!(
        reply.as_str(),
        Some("OK"),
        "{} {:?}: {reply:?}",
        node.addr(),
        &args[..2]
    );
}

/// A free port whose cluster bus port, port + 10000, is free too (so the
/// port is at most 55535).
///
/// # Panics
/// After 100 tries, e.g. if every port the kernel hands out is above 55535
/// (`/proc/sys/net/ipv4/ip_local_port_range`).
fn free_port_with_bus() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        let Some(bus) = port.checked_add(BUS_PORT_OFFSET) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", bus)).is_ok() {
            return port;
        }
    }
    panic!("no free port P with P + 10000 free too in 100 tries")
}
