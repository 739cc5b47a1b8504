//! `Relay` in front of a real `redis-server`.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use wshub_testkit::{Options, RedisServer, Relay};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const PONG: &[u8] = b"+PONG\r\n";

fn connect(relay: &Relay) -> TcpStream {
    let stream = TcpStream::connect(relay.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

fn read_exactly(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    stream.read_exact(&mut buf).unwrap();
    buf
}

fn ping(stream: &mut TcpStream) -> Vec<u8> {
    stream.write_all(PING).unwrap();
    read_exactly(stream, PONG.len())
}

/// Asserts that nothing arrives within 500 ms and the connection is still
/// open (a read timing out, not an end of stream or a reset).
fn assert_silent_and_open(stream: &mut TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence on an open connection, got {other:?}"),
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
}

/// Waits up to 5 s for `relay.connections()` to be `count`.
fn wait_connections(relay: &Relay, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.connections() != count {
        assert!(
            Instant::now() < deadline,
            "{} connections, expected {count}",
            relay.connections()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn forwards_commands_and_replies() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    assert_eq!(relay.target(), redis.addr());
    assert_ne!(relay.addr(), redis.addr());
    let mut stream = connect(&relay);
    assert_eq!(ping(&mut stream), PONG);
    assert_eq!(relay.connections(), 1);
    // A reply bigger than one read of the relay.
    let value = "v".repeat(100_000);
    assert!(redis.command(&["SET", "big", &value]).as_str() == Some("OK"));
    stream
        .write_all(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n")
        .unwrap();
    let reply = read_exactly(&mut stream, 100_000 + 11);
    assert_eq!(&reply[..10], b"$100000\r\nv");
}

#[test]
fn a_stalled_connection_stays_open_and_silent_until_resumed() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let mut stream = connect(&relay);
    assert_eq!(ping(&mut stream), PONG);

    relay.stall();
    stream.write_all(PING).unwrap();
    assert_silent_and_open(&mut stream);
    // Redis itself still answers others.
    assert_eq!(redis.command(&["PING"]).as_str(), Some("PONG"));
    assert_eq!(relay.connections(), 1);

    relay.resume();
    assert_eq!(read_exactly(&mut stream, PONG.len()), PONG);
    assert_eq!(ping(&mut stream), PONG);
}

#[test]
fn a_connection_opened_while_stalled_is_stalled_too() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    relay.stall();
    let mut stream = connect(&relay);
    stream.write_all(PING).unwrap();
    assert_silent_and_open(&mut stream);
    relay.resume();
    assert_eq!(read_exactly(&mut stream, PONG.len()), PONG);
}

#[test]
fn a_reply_that_arrives_during_a_stall_is_held_not_dropped() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let mut stream = connect(&relay);
    // The relay forwards the command at once; the reply comes back 300 ms
    // later, by which time the relay is stalled.
    stream
        .write_all(b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.3\r\n")
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    relay.stall();
    thread::sleep(Duration::from_millis(400));
    assert_silent_and_open(&mut stream);
    relay.resume();
    assert_eq!(read_exactly(&mut stream, 5), b"+OK\r\n");
}

#[test]
fn cut_closes_every_connection_and_the_relay_keeps_accepting() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let mut first = connect(&relay);
    let mut second = connect(&relay);
    assert_eq!(ping(&mut first), PONG);
    assert_eq!(ping(&mut second), PONG);
    assert_eq!(relay.connections(), 2);

    relay.cut();
    assert_eq!(relay.connections(), 0);
    for stream in [&mut first, &mut second] {
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected the connection closed, got {other:?}"),
        }
    }
    // Redis saw its side closed too: only this command's connection is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = redis.command(&["CLIENT", "LIST"]);
        if list.as_str().unwrap().lines().count() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{list:?}");
        thread::sleep(Duration::from_millis(10));
    }

    let mut third = connect(&relay);
    assert_eq!(ping(&mut third), PONG);
    assert_eq!(relay.connections(), 1);
}

#[test]
fn a_connection_closed_by_the_client_leaves_the_count() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let mut stream = connect(&relay);
    assert_eq!(ping(&mut stream), PONG);
    wait_connections(&relay, 1);
    drop(stream);
    wait_connections(&relay, 0);
}

#[test]
fn dropping_the_relay_closes_its_connections_and_its_port() {
    let redis = RedisServer::start(Options::default());
    let relay = Relay::start(redis.addr());
    let addr = relay.addr();
    let mut stream = connect(&relay);
    assert_eq!(ping(&mut stream), PONG);
    relay.stall();
    drop(relay);
    let mut byte = [0u8; 1];
    assert!(matches!(stream.read(&mut byte), Ok(0) | Err(_)));
    assert!(TcpStream::connect(addr).is_err());
}
