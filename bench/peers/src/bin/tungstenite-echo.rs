//! Echo server on tokio-tungstenite with its default configuration: accept a
//! TCP connection, run the WebSocket handshake with `accept_async`, and send
//! back every text or binary message. Pings are answered and the close
//! handshake is completed by tungstenite itself.

#[path = "../args.rs"]
mod args;
#[path = "../tungstenite.rs"]
mod tungstenite;

fn main() {
    let name = "tungstenite-echo";
    let args = args::parse(name);
    tungstenite::serve(name, "ws", &args, tungstenite::echo);
}
