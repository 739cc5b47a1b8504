//! The tiny command line both peers share: `--listen ADDR` and `--workers N`
//! (or the `WORKERS` environment variable), with the defaults `bench/compare`
//! expects.

use std::net::SocketAddr;

pub struct Args {
    pub listen: SocketAddr,
    pub workers: usize,
}

pub fn parse(name: &str) -> Args {
    let mut listen: SocketAddr = "127.0.0.1:9001".parse().unwrap();
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
            "-h" | "--help" => {
                println!("usage: {name} [--listen ADDR] [--workers N]\n\nEchoes every text and binary message at the root path.\n--workers (or WORKERS) sets the tokio worker threads (default 1).");
                std::process::exit(0);
            }
            other => {
                eprintln!("{name}: unknown argument {other:?} (try --help)");
                std::process::exit(2);
            }
        }
    }
    Args { listen, workers }
}
