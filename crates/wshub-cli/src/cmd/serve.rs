//! `wshub serve`: the hub.

use std::io::Write;

use anyhow::{Context, Result};

use crate::args::ServeArgs;
use crate::config::hub_config;

pub(crate) async fn run(args: ServeArgs) -> Result<()> {
    let config = hub_config(&args)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another server using the port? (choose one with --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    // One machine-readable line on stdout, for scripts that use port 0.
    println!("listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, "wshub hub ready: chat page at http://{addr}/, hub at ws://{addr}/ws, echo at ws://{addr}/echo");
    wshub_hub::serve(listener, config, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
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
