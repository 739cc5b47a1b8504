//! What operators and orchestrators ask the hub: `/healthz` (the process
//! answers), `/readyz` (it takes new connections: 503 once the drain has
//! begun) and `/metrics` (Prometheus text format), on the hub's listener or
//! on a listener of their own ([`MetricsEndpoint::Listen`](crate::MetricsEndpoint)).

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpListener;
use wshub::server::{read_handshake, Request, Response};
use wshub::WebSocketConfig;

use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::Hub;

/// `Content-Type` of the OpenMetrics text format, which `prometheus-client`
/// writes (Prometheus scrapes it natively).
const METRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The answer to an operations request, or `None` if `request` is not one.
/// `/metrics` is one only with `metrics`.
/// `/readyz` is 503 while draining, or while `hub` is not ready (its Redis
/// engine disconnected).
pub(crate) fn answer(
    request: &Request,
    metrics: Option<&Metrics>,
    drain: &Drain,
    hub: &Hub,
) -> Option<Response> {
    let text =
        |status, body: &'static str| Response::text(status, Bytes::from_static(body.as_bytes()));
    let path = request.path();
    let known = matches!(path, "/healthz" | "/readyz") || (path == "/metrics" && metrics.is_some());
    if !known {
        return None;
    }
    if request.method != "GET" {
        return Some(text(405, "use GET\n").secured(Response::TEXT_CSP));
    }
    let answer = match (path, metrics) {
        ("/healthz", _) => text(200, "ok\n"),
        ("/readyz", _) if drain.is_draining() => text(503, "draining\n"),
        ("/readyz", _) if !hub.is_ready() => text(503, "redis unavailable\n"),
        ("/readyz", _) => text(200, "ready\n"),
        (_, Some(metrics)) => Response::new(200, METRICS_TYPE, metrics.encode()),
        (_, None) => return None,
    };
    Some(answer.secured(Response::TEXT_CSP))
}

/// Serves [`answer`] on `listener` (404 for anything else) until the task
/// is aborted. Each request has `config`'s handshake timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    config: WebSocketConfig,
    hub: Hub,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics, healthz and readyz listening");
    }
    let config = Arc::new(config);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::debug!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (metrics, drain, config) = (metrics.clone(), drain.clone(), config.clone());
        let hub = hub.clone();
        tokio::spawn(async move {
            let Ok(handshake) = read_handshake(tcp, &config).await else {
                return;
            };
            let answer =
                answer(handshake.request(), Some(&metrics), &drain, &hub).unwrap_or_else(|| {
                    Response::text(404, Bytes::from_static(b"not found\n"))
                        .secured(Response::TEXT_CSP)
                });
            let _ = handshake.respond(&answer).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> Request {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: hub\r\n\r\n");
        Request::parse(head.as_bytes()).unwrap()
    }

    #[tokio::test]
    async fn readyz_turns_503_when_the_drain_begins_and_healthz_stays_200() {
        let drain = Drain::new(1);
        let hub = crate::Hub::new(crate::HubConfig::default());
        let status = |path| answer(&request("GET", path), None, &drain, &hub).map(|a| a.status);
        assert_eq!(status("/healthz"), Some(200));
        assert_eq!(status("/readyz"), Some(200));
        drain.run(std::time::Duration::ZERO).await;
        assert_eq!(status("/readyz"), Some(503));
        assert_eq!(status("/healthz"), Some(200));
    }

    #[test]
    fn metrics_is_served_only_where_configured() {
        let drain = Drain::new(1);
        let hub = crate::Hub::new(crate::HubConfig::default());
        let metrics = Metrics::new();
        assert!(answer(&request("GET", "/metrics"), None, &drain, &hub).is_none());
        let served = answer(&request("GET", "/metrics"), Some(&metrics), &drain, &hub).unwrap();
        assert_eq!((served.status, &*served.content_type), (200, METRICS_TYPE));
        let body = String::from_utf8(served.body.to_vec()).unwrap();
        assert!(body.contains("\nwshub_rate_limited_total 0\n"), "{body}");
        assert!(body.ends_with("# EOF\n"), "{body}");
        let post = answer(&request("POST", "/metrics"), Some(&metrics), &drain, &hub).unwrap();
        assert_eq!(post.status, 405);
        assert!(answer(&request("GET", "/ws"), Some(&metrics), &drain, &hub).is_none());
    }
}
