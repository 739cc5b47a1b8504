//! `RedisServer` against a real `redis-server`.

use std::net::TcpStream;

use wshub_testkit::{Options, RedisServer, Reply};

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(text.as_bytes().to_vec()))
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn a_started_server_answers_ping_and_keeps_what_is_set() {
    let redis = RedisServer::start(Options::default());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.addr().port(), redis.port());
    assert_eq!(redis.command(&["PING"]), Reply::Simple("PONG".into()));
    assert_eq!(redis.command(&["SET", "greeting", "hello world\r\n"]), ok());
    assert_eq!(redis.command(&["GET", "greeting"]), bulk("hello world\r\n"));
    assert_eq!(redis.command(&["GET", "missing"]), Reply::Bulk(None));
    assert_eq!(redis.command(&["DBSIZE"]), Reply::Integer(1));
    assert!(matches!(
        redis.command(&["NO-SUCH-COMMAND"]),
        Reply::Error(_)
    ));
    let keys = redis.command(&["KEYS", "*"]);
    assert_eq!(keys.as_array(), Some(&[bulk("greeting")][..]));
}

#[test]
fn the_server_runs_with_the_options_asked_for() {
    let redis = RedisServer::start(Options {
        appendonly: false,
        args: vec!["--maxmemory".into(), "12345678".into()],
    });
    let config = |name: &str| redis.command(&["CONFIG", "GET", name]);
    assert_eq!(
        config("maxmemory").as_array(),
        Some(&[bulk("maxmemory"), bulk("12345678")][..])
    );
    assert_eq!(
        config("appendonly").as_array(),
        Some(&[bulk("appendonly"), bulk("no")][..])
    );
    assert_eq!(
        config("save").as_array(),
        Some(&[bulk("save"), bulk("")][..])
    );
    assert!(redis.dir().join("redis.log").exists());
    assert!(redis.log().contains("Ready to accept connections"));
}

#[test]
fn two_servers_get_two_ports() {
    let a = RedisServer::start(Options::default());
    let b = RedisServer::start(Options::default());
    assert_ne!(a.port(), b.port());
    assert_eq!(a.command(&["SET", "k", "a"]), ok());
    assert_eq!(b.command(&["GET", "k"]), Reply::Bulk(None));
}

#[test]
fn with_aof_a_key_survives_kill_9_and_restart_empty_loses_it() {
    let mut redis = RedisServer::start(Options {
        appendonly: true,
        ..Options::default()
    });
    let port = redis.port();
    assert_eq!(redis.command(&["SET", "k", "v"]), ok());
    assert_eq!(
        redis
            .command(&["XADD", "s", "*", "f", "1"])
            .as_str()
            .map(|id| id.contains('-')),
        Some(true)
    );

    redis.kill9();
    assert!(!redis.is_running());
    assert!(
        TcpStream::connect(redis.addr()).is_err(),
        "down after kill9"
    );
    assert!(redis.try_command(&["PING"]).is_err());

    redis.restart();
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]), bulk("v"));
    assert_eq!(redis.command(&["XLEN", "s"]), Reply::Integer(1));

    redis.restart_empty();
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]), Reply::Bulk(None));
    assert_eq!(redis.command(&["DBSIZE"]), Reply::Integer(0));
}

#[test]
fn without_aof_kill_9_loses_the_data() {
    let mut redis = RedisServer::start(Options::default());
    assert_eq!(redis.command(&["SET", "k", "v"]), ok());
    redis.restart();
    assert_eq!(redis.command(&["GET", "k"]), Reply::Bulk(None));
}

#[test]
fn dropping_the_server_kills_it() {
    let redis = RedisServer::start(Options::default());
    let addr = redis.addr();
    drop(redis);
    assert!(TcpStream::connect(addr).is_err());
}
