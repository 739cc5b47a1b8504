//! `wshub connect --reconnect` against a real `wshub serve`, through a TCP
//! proxy the test cuts: after each reconnect it joins its rooms again with
//! `since`, prints every message once, and says on stderr when the hub no
//! longer has what was missed (docs/protocol.md, "History and resume").

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command};
use std::sync::{mpsc, Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::timeout;
use wshub::Message;

use common::{spawn_piped, Server, WAIT};

/// Forwards connections to `target` until [`Proxy::cut`] drops them all.
struct Proxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    open: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = Arc::new(Mutex::new(target));
        let open = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (to, conns) = (target.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = *to.lock().unwrap();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { addr, target, open }
    }

    /// Drops every connection, as a network failure would.
    fn cut(&self) {
        for task in self.open.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A running `wshub connect --reconnect`, its output line by line.
struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Client {
    fn start(url: &str) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_wshub"));
        command.args([
            "connect",
            "--reconnect",
            "--reconnect-max-delay",
            "200ms",
            url,
        ]);
        let (mut child, stdout, stderr) = spawn_piped(command);
        let stdin = child.stdin.take().unwrap();
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    fn type_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next stdout line, as JSON.
    fn next(&self) -> Value {
        let line = self.stdout.recv_timeout(WAIT).expect("a line in time");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// The next stdout line of type `kind`.
    fn next_of_type(&self, kind: &str) -> Value {
        loop {
            let v = self.next();
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn stderr_line(&self, needle: &str) -> String {
        loop {
            let line = self
                .stderr
                .recv_timeout(WAIT)
                .expect("a stderr line in time");
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws = wshub::WebSocket<wshub::ClientStream>;

async fn publisher(hub: SocketAddr) -> Ws {
    let mut ws = timeout(WAIT, wshub::connect(&format!("ws://{hub}/ws")))
        .await
        .unwrap()
        .unwrap();
    let join = json!({"op":"join","room":"r","name":"pub"}).to_string();
    ws.send(Message::text(join)).await.unwrap();
    loop {
        let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        let v: Value = serde_json::from_slice(m.as_bytes()).unwrap();
        if v["type"] == "joined" {
            return ws;
        }
    }
}

/// Publishes `n` and waits for its own copy.
async fn publish(ws: &mut Ws, n: u64) {
    let publish = json!({"op":"publish","room":"r","message":n}).to_string();
    ws.send(Message::text(publish)).await.unwrap();
    loop {
        let m = timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        let v: Value = serde_json::from_slice(m.as_bytes()).unwrap();
        if v["type"] == "message" && v["message"] == n {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_resumes_rooms_prints_each_message_once_and_marks_a_gap() {
    let hub = Server::start(&[]);
    let proxy = Proxy::start(hub.addr).await;
    let mut client = Client::start(&format!("ws://{}/ws", proxy.addr));
    client.stderr_line("connected to");
    client.type_line(r#"{"op":"join","room":"r","name":"cli"}"#);
    let joined = client.next_of_type("joined");
    let epoch = joined["epoch"].as_str().unwrap().to_owned();

    let mut publisher = publisher(hub.addr).await;
    for n in 1..=3 {
        publish(&mut publisher, n).await;
    }
    for offset in 1..=3 {
        assert_eq!(client.next_of_type("message")["offset"], offset);
    }

    // Cut off: what is published meanwhile is replayed after the rejoin,
    // and what was printed is not printed again.
    proxy.cut();
    client.stderr_line("disconnected");
    for n in 4..=6 {
        publish(&mut publisher, n).await;
    }
    client.stderr_line("connected to");
    let rejoined = client.next_of_type("joined");
    assert_eq!(
        (
            &rejoined["recovered"],
            &rejoined["epoch"],
            &rejoined["name"]
        ),
        (&json!(true), &json!(epoch), &json!("cli")),
        "{rejoined}"
    );
    publish(&mut publisher, 7).await;
    for offset in 4..=7 {
        let v = client.next();
        assert_eq!(
            (&v["type"], &v["offset"]),
            (&json!("message"), &json!(offset)),
            "{v}"
        );
    }

    // The hub restarts: its rooms, epochs and history are gone, so the
    // rejoin recovers nothing and the client says so.
    drop(publisher);
    drop(hub);
    let hub = Server::start(&[]);
    *proxy.target.lock().unwrap() = hub.addr;
    proxy.cut();
    client.stderr_line("room r: some messages may be missing");
    let rejoined = client.next_of_type("joined");
    assert_eq!(rejoined["recovered"], false, "{rejoined}");
    let mut publisher = self::publisher(hub.addr).await;
    publish(&mut publisher, 8).await;
    let v = client.next_of_type("message");
    assert_eq!((&v["message"], &v["offset"]), (&json!(8), &json!(1)), "{v}");
}
