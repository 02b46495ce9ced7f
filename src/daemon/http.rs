//! `/metrics` (Prometheus), `/healthz` (the process answers) and `/readyz` (the database is
//! reachable and no destination has been failing for too long).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::worker::Worker;
use crate::store::Store;

pub struct Server {
    pub worker: Arc<Worker>,
    pub store: Store,
    pub unready_after_failing: Duration,
}

/// Binds `address` and serves until the task is dropped.
pub async fn serve(
    address: SocketAddr,
    server: Server,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("run.listen: cannot listen on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "Serving /metrics, /healthz and /readyz.");
    let server = Arc::new(server);
    Ok(tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let server = server.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.answer(request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    }))
}

impl Server {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match request.uri().path() {
            "/metrics" => self.metrics().await,
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.readiness().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }

    async fn metrics(&self) -> Response<Full<Bytes>> {
        let now = Utc::now();
        for target in &self.worker.plan().targets {
            let destination = &target.destination;
            let waiting = async {
                let watermark = self
                    .store
                    .destination_state(&destination.name)
                    .await?
                    .map_or(0, |s| s.watermark);
                self.store
                    .waiting_events(watermark, destination.tenant_id.as_deref())
                    .await
            };
            match waiting.await {
                Ok((events, oldest)) => {
                    let lag = oldest
                        .and_then(|at| (now - at).to_std().ok())
                        .unwrap_or_default();
                    self.worker
                        .metrics
                        .set_waiting(&destination.name, events, lag);
                }
                Err(error) => {
                    tracing::warn!(destination = %destination.name, error = format!("{error:#}"), "Could not read what waits for /metrics.");
                }
            }
        }
        let mut response = text(StatusCode::OK, self.worker.metrics.encode());
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        response
    }

    async fn readiness(&self) -> Response<Full<Bytes>> {
        let reachable = tokio::time::timeout(Duration::from_secs(2), self.store.ping()).await;
        if !matches!(reachable, Ok(Ok(()))) {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the database is unreachable\n".into(),
            );
        }
        let failing = self
            .worker
            .metrics
            .failing_longer_than(self.unready_after_failing, Utc::now());
        if failing.is_empty() {
            return text(StatusCode::OK, "ready\n".into());
        }
        let lines: String = failing
            .iter()
            .map(|(name, since)| {
                format!("not ready: {name} failing since {}\n", since.to_rfc3339())
            })
            .collect();
        text(StatusCode::SERVICE_UNAVAILABLE, lines)
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
