//! `wshub serve`: the hub.

use std::io::Write;

use anyhow::{Context, Result};

use crate::args::ServeArgs;
use crate::config::{admission, hub_config, runtime};
use crate::sources::Sources;

/// `serve --check-config`: every check `serve` makes before it binds, then
/// the settings in effect on stdout.
pub(crate) fn check(args: &ServeArgs, sources: &Sources) -> Result<()> {
    runtime(args)?;
    prepare(args)?;
    print!("{}", sources.effective());
    std::io::stdout().flush()?;
    Ok(())
}

/// The hub's settings from `args`, and the open-file limit they assume.
fn prepare(args: &ServeArgs) -> Result<(wshub_hub::HubConfig, Option<u64>)> {
    let mut config = hub_config(args)?;
    let open_files = raise_open_file_limit();
    config.admission = admission(&args.admission, open_files)?;
    config.echo = !args.admission.no_echo;
    config.tls = crate::tls::server_tls(&args.tls)?;
    Ok((config, open_files))
}

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let (config, open_files) = prepare(&args)?;
    if config.origin.allows_any() {
        tracing::warn!(
            "--allowed-origin '*': the Origin check is OFF; any web page a visitor has open can \
             connect to this hub through the visitor's browser (cross-site WebSocket hijacking)"
        );
    }
    let limits = &config.admission;
    // One line with the figures, 0 where a limit is off or unknown.
    tracing::info!(
        open_files = open_files.unwrap_or(0),
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        handshakes_per_ip = limits.handshakes_per_ip,
        "connection limits"
    );
    let listener = listen(args.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another server using the port? (choose one with --listen)",
            args.listen
        )
    })?;
    let addr = listener.local_addr()?;
    #[cfg(unix)]
    if let Some(tls) = &config.tls {
        crate::tls::reload_on_sighup(&args.tls, tls.clone())?;
    }
    let (http, ws) = match config.tls {
        Some(_) => ("https", "wss"),
        None => ("http", "ws"),
    };
    // One machine-readable line on stdout, for scripts that use port 0.
    println!("listening on {http}://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, "wshub hub ready: chat page at {http}://{addr}/, hub at {ws}://{addr}/ws, echo at {ws}://{addr}/echo");
    wshub_hub::serve(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// The listening socket, with a listen backlog as long as the kernel
/// allows (`net.core.somaxconn`, 4,096 on current Linux; longer requests are
/// cut to it). tokio's `TcpListener::bind` asks for 1,024: a burst of
/// thousands of connects (a reconnect storm after a restart) then overflowed
/// the queue while the accept loop caught up, and each refused SYN costs the
/// client a retransmission a second or more later.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    const BACKLOG: u32 = 65_535;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As tokio's bind does: a restarted server can bind while connections
    // of the previous one are in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so the process may
/// hold as many connections as it is allowed, and returns the soft limit in
/// force (`None` where there is none to read). Logs once if it cannot.
fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!(error = %e, "cannot raise the open-file limit");
                rlimit::getrlimit(rlimit::Resource::NOFILE)
                    .ok()
                    .map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the hub");
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
