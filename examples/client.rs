//! Seed 001's browser client, in Rust: connect, report `open` with the
//! `readyState`, `protocol` and `url`, send `Hello Server!`, print each
//! message with its type (text or binary) for two seconds, then
//! `close(1000, "Closing connection normally")` and print the close event's
//! `code`, `reason` and `wasClean`.
//!
//! ```text
//! cargo run -p wshub-examples --example client [URL]
//! ```
//!
//! The URL defaults to `ws://127.0.0.1:9001`, the `echo_server` example; start
//! that first. You will see on stdout:
//!
//! ```text
//! open: readyState=1 (Open) protocol="" url=ws://127.0.0.1:9001
//! sent: Hello Server!
//! message (text): Hello Server!
//! close(1000, "Closing connection normally") with readyState=1 (Open)
//! closed: code=1000 reason="" wasClean=true readyState=3 (Closed)
//! ```
//!
//! (`code` and `reason` are the server's: the echo server answers our Close
//! with code 1000 and no reason.) Logs go to stderr.
//!
//! Only `ws://` URLs work for now: a `wss://` URL fails with
//! `wshub::Error::TlsUnsupported`, since TLS is not built into wshub yet (put
//! a TLS-terminating proxy in front of a `ws://` server meanwhile).

use wshub_examples::client;

#[tokio::main]
async fn main() {
    wshub_examples::init_tracing();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| client::DEFAULT_URL.to_owned());
    let mut stdout = std::io::stdout();
    // `run` has printed the error already.
    if client::run(&url, &client::Config::default(), &mut stdout)
        .await
        .is_err()
    {
        std::process::exit(1);
    }
}
