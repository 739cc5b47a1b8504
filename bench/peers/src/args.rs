//! The tiny command line the peers share: `--listen ADDR` and `--workers N`
//! (or the `WORKERS` environment variable), with the defaults `bench/compare`
//! expects; the TLS peers also take `--tls-cert FILE --tls-key FILE`.

use std::net::SocketAddr;
use std::path::PathBuf;

pub struct Args {
    pub listen: SocketAddr,
    pub workers: usize,
}

/// The PEM files of a TLS peer: its certificate chain and private key.
#[allow(dead_code)] // only the TLS peers use it
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The arguments of a plain (`ws://`) peer.
#[allow(dead_code)] // only the plain peers use it
pub fn parse(name: &str) -> Args {
    parse_with(name, false).0
}

/// The arguments of a TLS (`wss://`) peer: `--tls-cert` and `--tls-key`
/// are required.
#[allow(dead_code)] // only the TLS peers use it
pub fn parse_tls(name: &str) -> (Args, TlsFiles) {
    let (args, cert, key) = parse_with(name, true);
    match (cert, key) {
        (Some(cert), Some(key)) => (args, TlsFiles { cert, key }),
        _ => {
            eprintln!("{name}: --tls-cert FILE and --tls-key FILE are required");
            std::process::exit(2)
        }
    }
}

fn parse_with(name: &str, tls: bool) -> (Args, Option<PathBuf>, Option<PathBuf>) {
    let mut listen: SocketAddr = "127.0.0.1:9001".parse().unwrap();
    let mut tls_cert = None;
    let mut tls_key = None;
    let mut workers: usize = std::env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |flag: &str| {
            inline.clone().or_else(|| it.next()).unwrap_or_else(|| {
                eprintln!("{name}: {flag} needs a value");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--listen" => {
                let v = value("--listen");
                listen = v.parse().unwrap_or_else(|e| {
                    eprintln!("{name}: --listen {v:?}: {e}");
                    std::process::exit(2)
                });
            }
            "--workers" => {
                let v = value("--workers");
                workers = v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    eprintln!("{name}: --workers {v:?}: expected a positive integer");
                    std::process::exit(2)
                });
            }
            "--tls-cert" if tls => tls_cert = Some(PathBuf::from(value("--tls-cert"))),
            "--tls-key" if tls => tls_key = Some(PathBuf::from(value("--tls-key"))),
            "-h" | "--help" => {
                let tls_usage = if tls {
                    " --tls-cert FILE --tls-key FILE"
                } else {
                    ""
                };
                println!("usage: {name} [--listen ADDR] [--workers N]{tls_usage}\n\nEchoes every text and binary message at the root path.\n--workers (or WORKERS) sets the tokio worker threads (default 1).");
                if tls {
                    println!("--tls-cert: the certificate chain (PEM, the server's first); --tls-key: its private key (PEM).");
                }
                std::process::exit(0);
            }
            other => {
                eprintln!("{name}: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    (Args { listen, workers }, tls_cert, tls_key)
}
