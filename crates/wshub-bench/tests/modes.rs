//! Every mode against an in-process hub on 127.0.0.1:0, with runs of a few
//! hundred milliseconds. These check behaviour (counts, errors, exit
//! codes), never speed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wshub::rustls::pki_types::PrivatePkcs8KeyDer;
use wshub::rustls::{ClientConfig, RootCertStore, ServerConfig};
use wshub::Message;
use wshub_bench::{
    Config, ConnectConfig, EchoConfig, Error, FanoutConfig, IdleConfig, Mode, Report, Results,
};
use wshub_hub::HubConfig;

/// A server on its own runtime and thread, stopped when dropped.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The wshub hub (`/ws`, `/echo`).
    fn hub() -> Self {
        Self::hub_with(None)
    }

    /// The wshub hub, over TLS with `tls`.
    fn hub_with(tls: Option<wshub_hub::ServerTls>) -> Self {
        Self::start(|listener, stopped| async move {
            // The fan-out publisher sends as fast as its window allows, far
            // over the hub's default message rate (100 a second).
            let mut config = HubConfig::default();
            config.message_rate = u32::MAX;
            config.message_burst = u32::MAX;
            config.tls = tls;
            let _ = wshub_hub::serve(listener, config, async {
                let _ = stopped.await;
            })
            .await;
        })
    }

    /// An echo server that changes one byte of every message it echoes.
    fn corrupting_echo() -> Self {
        Self::start(|listener, stopped| async move {
            let accept_loop = async {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let Ok(mut ws) = wshub::accept(tcp).await else {
                            return;
                        };
                        while let Some(Ok(message)) = ws.recv().await {
                            let mut bytes = message.as_bytes().to_vec();
                            if let Some(b) = bytes.last_mut() {
                                // ASCII stays ASCII, so text stays valid UTF-8.
                                *b = if *b == b'x' { b'y' } else { b'x' };
                            }
                            let reply = match message {
                                Message::Text(_) => {
                                    Message::text(String::from_utf8(bytes).unwrap())
                                }
                                Message::Binary(_) => Message::binary(bytes),
                            };
                            if ws.send(reply).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            };
            tokio::select! {
                () = accept_loop => {}
                _ = stopped => {}
            }
        })
    }

    /// A hub (just enough of docs/protocol.md for `fanout`) that answers
    /// every `join` with `since` `recovered: true` and then replays nothing:
    /// what a subscriber missed while away never comes.
    fn hub_forgetting_replays() -> Self {
        Self::start(|listener, stopped| async move {
            let members = Arc::new(Mutex::new(Vec::<mpsc::UnboundedSender<String>>::new()));
            let offset = Arc::new(AtomicU64::new(0));
            let accept_loop = async {
                for id in 1.. {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (members, offset) = (members.clone(), offset.clone());
                    tokio::spawn(async move {
                        let Ok(ws) = wshub::accept(tcp).await else {
                            return;
                        };
                        let (mut reader, mut writer) = ws.split();
                        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                        tokio::spawn(async move {
                            while let Some(text) = rx.recv().await {
                                if writer.send(Message::text(text)).await.is_err() {
                                    return;
                                }
                            }
                        });
                        let name = format!("anon-{id}");
                        let _ =
                            tx.send(format!(r#"{{"type":"welcome","id":{id},"name":"{name}"}}"#));
                        while let Some(Ok(message)) = reader.recv().await {
                            let request: serde_json::Value =
                                serde_json::from_slice(message.as_bytes()).unwrap_or_default();
                            // Under the lock, as the hub's room lock: every
                            // member gets the messages after its `joined`.
                            let mut members = members.lock().unwrap();
                            match request["op"].as_str() {
                                Some("join") => {
                                    let last = offset.load(Ordering::SeqCst);
                                    let recovered = if request.get("since").is_some() {
                                        r#","recovered":true"#
                                    } else {
                                        ""
                                    };
                                    let _ = tx.send(format!(
                                        r#"{{"type":"joined","room":"r","name":"{name}","members":[],"member_count":1,"offset":{last},"seq":{last},"epoch":"fake-1"{recovered}}}"#
                                    ));
                                    members.push(tx.clone());
                                }
                                Some("publish") => {
                                    let n = offset.fetch_add(1, Ordering::SeqCst) + 1;
                                    let text = format!(
                                        r#"{{"type":"message","room":"r","from":"p","seq":{n},"ts":1,"message":{},"from_id":1,"epoch":"fake-1","offset":{n}}}"#,
                                        request["message"]
                                    );
                                    for member in members.iter() {
                                        let _ = member.send(text.clone());
                                    }
                                }
                                _ => {}
                            }
                        }
                    });
                }
            };
            tokio::select! {
                () = accept_loop => {}
                _ = stopped => {}
            }
        })
    }

    fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(tokio::net::TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                serve(listener, stopped).await;
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server starts");
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A short run: 100 ms warm-up, 300 ms measured, no progress line.
fn short(url: String, mode: Mode) -> Config {
    let mut config = Config::new(url, mode);
    config.warmup = Duration::from_millis(100);
    config.duration = Duration::from_millis(300);
    config.timeout = Duration::from_secs(5);
    config.progress = false;
    config
}

fn echo(
    server: &Server,
    connections: usize,
    size: usize,
    binary: bool,
    in_flight: usize,
) -> Report {
    let mut echo = EchoConfig::default();
    echo.connections = connections;
    echo.size = size;
    echo.binary = binary;
    echo.in_flight = in_flight;
    wshub_bench::run(&short(server.url("/echo"), Mode::Echo(echo))).unwrap()
}

fn assert_clean_echo(report: &Report) {
    let Results::Echo(r) = &report.results else {
        panic!("not an echo report: {report:?}");
    };
    assert!(r.messages > 0, "{report}");
    assert_eq!(r.mismatches, 0, "{report}");
    assert_eq!(r.connection_errors, 0, "{report}");
    assert_eq!(r.round_trip.samples, r.messages);
    assert!(report.passed);
    assert_eq!(report.exit_code(), 0);
}

#[test]
fn echo_text_one_in_flight_counts_messages_and_no_errors() {
    let hub = Server::hub();
    assert_clean_echo(&echo(&hub, 10, 20, false, 1));
}

#[test]
fn echo_text_eight_in_flight_counts_messages_and_no_errors() {
    let hub = Server::hub();
    assert_clean_echo(&echo(&hub, 10, 20, false, 8));
}

#[test]
fn echo_binary_one_in_flight_counts_messages_and_no_errors() {
    let hub = Server::hub();
    assert_clean_echo(&echo(&hub, 4, 100_000, true, 1));
}

#[test]
fn echo_binary_eight_in_flight_counts_messages_and_no_errors() {
    let hub = Server::hub();
    assert_clean_echo(&echo(&hub, 4, 300, true, 8));
}

#[test]
fn echo_on_two_threads_counts_messages_and_no_errors() {
    let hub = Server::hub();
    let mut echo = EchoConfig::default();
    echo.connections = 5;
    echo.in_flight = 4;
    let mut config = short(hub.url("/echo"), Mode::Echo(echo));
    config.threads = 2;
    let report = wshub_bench::run(&config).unwrap();
    assert_clean_echo(&report);
    let Results::Echo(r) = &report.results else {
        unreachable!()
    };
    assert_eq!(r.connections_open, 5);
}

#[test]
fn a_corrupted_echo_is_a_counted_error_and_fails_the_run() {
    let server = Server::corrupting_echo();
    for (binary, in_flight) in [(false, 1), (true, 8)] {
        let report = echo(&server, 2, 20, binary, in_flight);
        let Results::Echo(r) = &report.results else {
            panic!("not an echo report");
        };
        assert!(r.mismatches > 0, "{report}");
        assert_eq!(r.messages, 0, "a bad echo is not a message: {report}");
        assert!(!report.passed);
        assert_eq!(report.exit_code(), 1);
        let first = r.first_error.as_deref().unwrap_or_default();
        assert!(first.contains("differ"), "{first}");
    }
}

#[test]
fn a_refused_connection_is_counted_not_fatal() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut echo = EchoConfig::default();
    echo.connections = 3;
    let report = wshub_bench::run(&short(format!("ws://{addr}/"), Mode::Echo(echo))).unwrap();
    let Results::Echo(r) = &report.results else {
        panic!("not an echo report");
    };
    assert_eq!((r.connections_open, r.connection_errors), (0, 3));
    assert!(!report.passed);
}

#[test]
fn connect_mode_counts_handshakes() {
    let hub = Server::hub();
    for path in ["/echo", "/ws"] {
        let mut connect = ConnectConfig::default();
        connect.concurrency = 4;
        let report = wshub_bench::run(&short(hub.url(path), Mode::Connect(connect))).unwrap();
        let Results::Connect(r) = &report.results else {
            panic!("not a connect report");
        };
        assert!(r.handshakes > 0, "{report}");
        assert_eq!(r.failures, 0, "{report}");
        assert_eq!(r.handshake_latency.samples, r.handshakes);
        assert!(report.passed);
    }
}

#[test]
fn idle_opens_and_holds_fifty_connections() {
    let hub = Server::hub();
    let mut idle = IdleConfig::default();
    idle.connections = 50;
    idle.handshake_concurrency = 8;
    idle.hold = Duration::from_millis(300);
    let report = wshub_bench::run(&short(hub.url("/echo"), Mode::Idle(idle))).unwrap();
    let Results::Idle(r) = &report.results else {
        panic!("not an idle report");
    };
    assert_eq!(
        (r.opened, r.failed, r.dropped, r.errors),
        (50, 0, 0, 0),
        "{report}"
    );
    assert_eq!(r.kib_per_connection, None);
    assert!(report.passed);
}

#[test]
fn idle_with_a_pid_samples_its_rss_and_can_join_a_room() {
    // The hub runs in this process, so our own pid is the server's.
    let hub = Server::hub();
    let mut idle = IdleConfig::default();
    idle.connections = 20;
    idle.hold = Duration::from_millis(300);
    idle.pid = Some(std::process::id());
    idle.join = Some("idle-room".into());
    let report = wshub_bench::run(&short(hub.url("/ws"), Mode::Idle(idle))).unwrap();
    let Results::Idle(r) = &report.results else {
        panic!("not an idle report");
    };
    assert_eq!((r.opened, r.dropped, r.errors), (20, 0, 0), "{report}");
    assert!(r.rss_before_kib.is_some() && r.rss_open_kib.is_some());
    assert!(r.kib_per_connection.is_some());
    assert!(report.to_string().contains("KiB of server RSS"));
}

#[test]
fn an_unknown_pid_is_an_error_before_anything_starts() {
    let hub = Server::hub();
    let mut idle = IdleConfig::default();
    idle.connections = 1;
    idle.pid = Some(u32::MAX);
    let err = wshub_bench::run(&short(hub.url("/echo"), Mode::Idle(idle))).unwrap_err();
    assert!(matches!(err, Error::Rss { .. }), "{err}");
}

#[test]
fn fanout_to_twenty_subscribers_loses_and_reorders_nothing() {
    let hub = Server::hub();
    let mut fanout = FanoutConfig::default();
    fanout.subscribers = 20;
    fanout.verify = true;
    let report = wshub_bench::run(&short(hub.url("/ws"), Mode::Fanout(fanout))).unwrap();
    let Results::Fanout(r) = &report.results else {
        panic!("not a fanout report");
    };
    assert_eq!(r.joined, 20, "{report}");
    assert!(r.published > 0 && r.deliveries > 0, "{report}");
    assert_eq!((r.lost, r.out_of_order, r.errors), (0, 0, 0), "{report}");
    assert_eq!(r.latency.samples, r.deliveries);
    // Every delivery was checked by its epoch and offset.
    let d = &r.delivery;
    assert_eq!(
        (
            d.subscribers,
            d.lost,
            d.duplicated,
            d.unverified,
            d.epoch_changes
        ),
        (20, 0, 0, 0, 0),
        "{report}"
    );
    assert!(
        report
            .to_string()
            .contains("delivery      0 lost, 0 duplicated across 20 subscribers"),
        "{report}"
    );
    assert!(report.passed);
}

#[test]
fn fanout_at_a_fixed_rate_loses_nothing() {
    let hub = Server::hub();
    let mut fanout = FanoutConfig::default();
    fanout.subscribers = 5;
    fanout.rate = Some(500.0);
    fanout.size = 16;
    let report = wshub_bench::run(&short(hub.url("/ws"), Mode::Fanout(fanout))).unwrap();
    let Results::Fanout(r) = &report.results else {
        panic!("not a fanout report");
    };
    assert!(r.published > 0, "{report}");
    assert_eq!((r.lost, r.out_of_order, r.errors), (0, 0, 0), "{report}");
}

#[test]
fn fanout_resumes_lose_nothing_and_are_all_recovered() {
    let hub = Server::hub();
    let mut fanout = FanoutConfig::default();
    fanout.subscribers = 10;
    fanout.rate = Some(2_000.0);
    fanout.resume_share = 0.3;
    fanout.resume_every = Duration::from_millis(100);
    fanout.verify = true;
    let report = wshub_bench::run(&short(hub.url("/ws"), Mode::Fanout(fanout))).unwrap();
    let Results::Fanout(r) = &report.results else {
        panic!("not a fanout report");
    };
    let resume = r.resume.as_ref().expect("resumes were on");
    assert!(resume.resumes > 0, "{report}");
    assert_eq!(
        (resume.recovered, resume.not_recovered, resume.failed),
        (resume.resumes, 0, 0),
        "{report}"
    );
    assert_eq!((r.delivery.lost, r.delivery.duplicated), (0, 0), "{report}");
    assert!(report.passed, "{report}");
}

#[test]
fn a_resume_said_recovered_without_its_replay_is_caught_as_lost() {
    let hub = Server::hub_forgetting_replays();
    let mut fanout = FanoutConfig::default();
    fanout.subscribers = 10;
    fanout.resume_share = 0.5;
    fanout.resume_every = Duration::from_millis(100);
    fanout.verify = true;
    let report = wshub_bench::run(&short(hub.url("/ws"), Mode::Fanout(fanout))).unwrap();
    let Results::Fanout(r) = &report.results else {
        panic!("not a fanout report");
    };
    let resume = r.resume.as_ref().expect("resumes were on");
    assert!(resume.resumes > 0, "{report}");
    assert_eq!(resume.recovered, resume.resumes, "{report}");
    assert!(r.delivery.lost > 0, "{report}");
    assert!(r.delivery.subscribers_with_lost > 0, "{report}");
    assert_eq!(r.lost, r.delivery.lost);
    assert!(!report.passed, "{report}");
    assert_eq!(report.exit_code(), 1);
}

#[test]
fn fanout_against_a_server_that_is_not_the_hub_fails_clearly() {
    let hub = Server::hub();
    let mut fanout = FanoutConfig::default();
    fanout.subscribers = 2;
    let err = wshub_bench::run(&short(hub.url("/echo"), Mode::Fanout(fanout))).unwrap_err();
    assert!(matches!(err, Error::Publisher(_)), "{err}");
}

/// A self-signed certificate for 127.0.0.1: the hub's TLS, and a client
/// configuration that trusts it.
fn tls_pair() -> (wshub_hub::ServerTls, Arc<ClientConfig>) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = made.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(made.key_pair.serialize_der());
    let server = ServerConfig::builder_with_provider(wshub::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.into())
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = wshub::tls::client_config(roots);
    (
        wshub_hub::ServerTls::new(Arc::new(server)),
        Arc::new(client),
    )
}

#[test]
fn echo_connect_and_idle_run_over_wss() {
    let (server_tls, client_tls) = tls_pair();
    let hub = Server::hub_with(Some(server_tls));
    let url = hub.url("/echo").replacen("ws://", "wss://", 1);
    let mut echo = EchoConfig::default();
    echo.connections = 4;
    echo.in_flight = 8;
    echo.size = 20_000;
    let mut idle = IdleConfig::default();
    idle.connections = 20;
    idle.hold = Duration::from_millis(100);
    for mode in [
        Mode::Echo(echo),
        Mode::Connect(ConnectConfig::default()),
        Mode::Idle(idle.clone()),
    ] {
        let mut config = short(url.clone(), mode);
        config.tls = Some(client_tls.clone());
        let report = wshub_bench::run(&config).unwrap();
        assert!(report.passed, "{report}");
        if let Results::Echo(_) = report.results {
            assert_clean_echo(&report);
        }
    }
    // Without the certificate among its roots, every connection fails.
    let report = wshub_bench::run(&short(url, Mode::Idle(idle))).unwrap();
    assert!(!report.passed, "{report}");
    assert!(report.to_string().contains("UnknownIssuer"), "{report}");
}
