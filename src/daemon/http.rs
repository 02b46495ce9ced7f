//! `/metrics` (Prometheus, never waiting on the database), `/healthz` (the process answers)
//! and `/readyz` (this process can do its work now: see `health`).

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

/// How long `/readyz` waits for the database's answer: less than a probe's usual timeout.
const PING_TIMEOUT: Duration = Duration::from_millis(900);

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
            "/metrics" => self.metrics(),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.readiness().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }

    fn metrics(&self) -> Response<Full<Bytes>> {
        let mut response = text(StatusCode::OK, self.worker.metrics.encode(Utc::now()));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        response
    }

    async fn readiness(&self) -> Response<Full<Bytes>> {
        let health = &self.worker.health;
        let waiting = health.waiting_for_database();
        let database_error = match waiting {
            Some(_) => None,
            None => match tokio::time::timeout(PING_TIMEOUT, self.store.ping()).await {
                Ok(Ok(())) => None,
                // The pool hides why it has no connection: one of its own says (refused, a
                // name that does not resolve), naming the server.
                failed => Some(match self.store.try_connect(PING_TIMEOUT).await {
                    Err(cause) => format!("{cause:#}"),
                    Ok(()) => match failed {
                        Ok(Err(error)) => format!("{error:#}"),
                        _ => format!("no answer within {} ms", PING_TIMEOUT.as_millis()),
                    },
                }),
            },
        };
        let failing = health.failing_longer_than(self.unready_after_failing, Utc::now());
        match super::health::unready_reasons(
            waiting.as_deref(),
            database_error.as_deref(),
            &failing,
        ) {
            None => text(StatusCode::OK, "ready\n".into()),
            Some(reasons) => text(StatusCode::SERVICE_UNAVAILABLE, reasons),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}
