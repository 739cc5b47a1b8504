//! `TcpTransport`: reads and writes as direct system calls over tokio's
//! readiness. A read or write that moves fewer bytes than asked clears the
//! readiness; these tests push it through short reads and writes, EOF and
//! a vanished peer, where a wrongly cleared readiness would hang (caught by
//! `within`) and a wrongly kept one would lose or reorder bytes.

mod common;

use std::net::SocketAddr;

use common::within;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use wshub::{Message, TcpTransport, WebSocket, WebSocketConfig};
use wshub_proto::Role;

/// A connected pair whose client side has 4 KiB socket buffers, so that big
/// writes are cut short and wait for the peer to read.
async fn pair() -> (TcpTransport, TcpTransport) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let (client, accepted) = tokio::join!(socket.connect(addr), listener.accept());
    let (server, _) = accepted.unwrap();
    (
        TcpTransport::new(client.unwrap()),
        TcpTransport::new(server),
    )
}

/// A pattern that shows any lost, repeated or reordered byte.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[tokio::test]
async fn megabytes_cross_both_ways_at_once_through_short_reads_and_writes() {
    let (client, server) = pair().await;
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let up = pattern(3 << 20, 0x5a);
    let down = pattern(3 << 20, 0xa5);
    let (up_sent, down_sent) = (up.clone(), down.clone());
    let send_up = async move {
        client_write.write_all(&up_sent).await.unwrap();
        client_write.shutdown().await.unwrap();
    };
    let send_down = async move {
        server_write.write_all(&down_sent).await.unwrap();
        server_write.shutdown().await.unwrap();
    };
    // Read into uninitialised spare capacity: the transport zeroes it first.
    let receive_up = async move {
        let mut got = Vec::with_capacity(1000);
        server_read.read_to_end(&mut got).await.unwrap();
        got
    };
    let receive_down = async move {
        let mut got = Vec::new();
        client_read.read_to_end(&mut got).await.unwrap();
        got
    };
    let ((), (), got_up, got_down) = within("6 MiB across a 4 KiB window", async {
        tokio::join!(send_up, send_down, receive_up, receive_down)
    })
    .await;
    assert!(
        got_up == up,
        "client to server: {} of {} bytes",
        got_up.len(),
        up.len()
    );
    assert!(
        got_down == down,
        "server to client: {} of {} bytes",
        got_down.len(),
        down.len()
    );
}

#[tokio::test]
async fn websocket_messages_of_every_size_arrive_in_order() {
    let (client, server) = pair().await;
    let config = WebSocketConfig::default();
    let mut client = WebSocket::from_raw(client, Role::Client, config.clone(), &[]);
    let mut server = WebSocket::from_raw(server, Role::Server, config, &[]);
    let sizes = [0, 1, 125, 126, 2047, 2048, 65_535, 65_536, 1 << 20];
    let echo = async move {
        while let Some(message) = server.next().await {
            server.send(message.unwrap()).await.unwrap();
        }
    };
    let talk = async move {
        // Everything is sent before anything is read back, so both sides'
        // writes fill the small window and wait.
        for (i, &size) in sizes.iter().enumerate() {
            client
                .feed(Message::binary(pattern(size, i as u8)))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        for (i, &size) in sizes.iter().enumerate() {
            let echoed = client.next().await.unwrap().unwrap();
            assert_eq!(
                echoed,
                Message::binary(pattern(size, i as u8)),
                "message {i}, {size} B"
            );
        }
        client
            .close(wshub::CloseCode::NormalClosure, "done")
            .await
            .unwrap();
    };
    within("echo of 9 messages", async { tokio::join!(echo, talk) }).await;
}

#[tokio::test]
async fn a_peer_that_goes_away_ends_reads_with_eof_and_writes_with_an_error() {
    let (client, mut server) = pair().await;
    drop(client);
    let mut buf = [0u8; 64];
    let n = within("EOF", server.read(&mut buf)).await.unwrap();
    assert_eq!(n, 0, "a closed peer reads as end of stream");
    // The first write may still be accepted by the kernel; the reset that
    // answers it makes a later one fail (EPIPE or ECONNRESET, no SIGPIPE).
    let failed = within("a write error", async {
        loop {
            if let Err(e) = server.write_all(&[0; 1024]).await {
                break e;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        matches!(
            failed.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{failed:?}"
    );
}

#[tokio::test]
async fn the_stream_is_still_there_for_socket_options() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect(addr).await.unwrap();
    let local = client.local_addr().unwrap();
    let transport = TcpTransport::from(client);
    transport.get_ref().set_nodelay(true).unwrap();
    assert!(transport.get_ref().nodelay().unwrap());
    assert_eq!(transport.peer_addr().unwrap(), addr);
    assert_eq!(transport.into_inner().local_addr().unwrap(), local);
}
