//! The Autobahn TestSuite client under test: runs every case a fuzzing
//! server offers, echoing each message back, then asks it to write reports.
//!
//! Run a fuzzing server (e.g. `kosoku -m fuzzingserver 127.0.0.1:9001`, see
//! `autobahn/README.md`), then:
//!
//! ```text
//! cargo run --release -p wshub-examples --example autobahn_client -- ws://127.0.0.1:9001
//! ```
//!
//! You will see one line per case on stderr; the verdicts are in the fuzzing
//! server's report.

use wshub::{ClientBuilder, DeflateConfig, Message, WebSocketConfig};

const AGENT: &str = "wshub";

fn config() -> WebSocketConfig {
    // Case 9 sends messages of up to 16 MiB.
    let limits = wshub::ProtocolConfig::default()
        .max_message_size(64 << 20)
        .max_frame_size(64 << 20);
    // Cases 12 and 13 negotiate permessage-deflate; compress every message
    // (threshold 0) so they exercise the compressor too. The offer carries
    // client_no_context_takeover (RFC 7692 §7.1.1.2): cases 13.2, 13.5 and
    // 13.6 have the server ask for it, which a server may only do when it
    // was offered. The server's own context takeover is still exercised.
    let mut deflate = DeflateConfig::client();
    deflate.threshold = 0;
    deflate.client_no_context_takeover = true;
    WebSocketConfig::default()
        .protocol(limits)
        .compression(Some(deflate))
}

async fn case_count(base: &str) -> anyhow::Result<u32> {
    let mut ws = wshub::connect(&format!("{base}/getCaseCount")).await?;
    while let Some(message) = ws.recv().await {
        if let Message::Text(text) = message? {
            return Ok(text.as_str().trim().parse()?);
        }
    }
    anyhow::bail!("the fuzzing server closed without sending the case count")
}

async fn run_case(base: &str, case: u32) -> anyhow::Result<()> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let mut ws = ClientBuilder::new(url).config(config()).connect().await?;
    while let Some(message) = ws.recv().await {
        match message {
            Ok(message) => {
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            // The failing Close was already sent; the case is over.
            Err(_) => break,
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let base = base.trim_end_matches('/');
    let count = case_count(base).await?;
    eprintln!("{count} cases");
    for case in 1..=count {
        if let Err(e) = run_case(base, case).await {
            eprintln!("case {case}: {e:#}");
        }
    }
    let mut ws = wshub::connect(&format!("{base}/updateReports?agent={AGENT}")).await?;
    while ws.recv().await.is_some() {}
    eprintln!("done");
    Ok(())
}
