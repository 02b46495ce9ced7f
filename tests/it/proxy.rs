//! A recording, fault-injecting HTTP proxy between the exporter and a real server (S3 or STS):
//! it forwards every request unchanged (the Host header included, so signatures still hold),
//! records what it saw, and answers with an injected error where a fault says so.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A request as the proxy saw it, and how it was answered (a stalled one is also recorded
/// when it arrives, with status 0).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The access key id that signed it, from the Authorization header.
    pub access_key: Option<String>,
    /// The STS action, from a form body (`Action=AssumeRole&…`).
    pub action: Option<String>,
    /// For a granted AssumeRole*: the role, the session name and the session's access key id.
    pub issued: Option<(String, String, String)>,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The status recorded for a request whose connection the proxy dropped without an answer.
pub const RESET: u16 = 1;

/// Answers `times` requests matching `when` with `status` and an S3/STS-style error body; a
/// status of 0 forwards them after `delay` instead (or, with `after`, forwards them at once
/// and holds the answer for `delay`); a status of `RESET` drops the connection unanswered.
pub struct Fault {
    pub when: Box<dyn Fn(&Seen) -> bool + Send + Sync>,
    pub times: usize,
    pub status: u16,
    pub code: &'static str,
    pub delay: std::time::Duration,
    pub after: bool,
}

impl Fault {
    /// An error answer.
    pub fn answer(
        when: impl Fn(&Seen) -> bool + Send + Sync + 'static,
        times: usize,
        status: u16,
        code: &'static str,
    ) -> Self {
        Self {
            when: Box::new(when),
            times,
            status,
            code,
            delay: std::time::Duration::ZERO,
            after: false,
        }
    }

    /// A stall before the request is forwarded.
    pub fn stall(
        when: impl Fn(&Seen) -> bool + Send + Sync + 'static,
        times: usize,
        delay: std::time::Duration,
    ) -> Self {
        Self {
            when: Box::new(when),
            times,
            status: 0,
            code: "",
            delay,
            after: false,
        }
    }

    /// The request reaches the server, but its answer is held for `delay`: the store has the
    /// object, the client does not know yet.
    pub fn stall_answer(
        when: impl Fn(&Seen) -> bool + Send + Sync + 'static,
        times: usize,
        delay: std::time::Duration,
    ) -> Self {
        Self {
            after: true,
            ..Self::stall(when, times, delay)
        }
    }

    /// The connection is dropped without an answer, as by a reset.
    pub fn reset(when: impl Fn(&Seen) -> bool + Send + Sync + 'static, times: usize) -> Self {
        Self {
            status: RESET,
            ..Self::stall(when, times, std::time::Duration::ZERO)
        }
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    faults: Mutex<Vec<Fault>>,
}

pub struct Proxy {
    pub endpoint: String,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy to `upstream` (`http://host:port`) on a thread and runtime of its own.
    pub fn start(upstream: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let (upstream, served) = (upstream.to_owned(), state.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(listener, upstream, served));
        });
        Self { endpoint, state }
    }

    pub fn inject(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push(fault);
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

async fn serve(listener: std::net::TcpListener, upstream: String, state: Arc<State>) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let (client, upstream, state) = (client.clone(), upstream.clone(), state.clone());
        let service = hyper::service::service_fn(move |request| {
            forward(request, client.clone(), upstream.clone(), state.clone())
        });
        let connection = http
            .serve_connection(TokioIo::new(socket), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn forward(
    request: Request<Incoming>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        access_key: parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("Credential=").nth(1))
            .and_then(|v| v.split('/').next())
            .map(str::to_owned),
        action: form_value(&body, "Action"),
        issued: None,
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        status: 0,
    };

    let injected = {
        let mut faults = state.faults.lock().unwrap();
        faults
            .iter_mut()
            .find(|f| f.times > 0 && (f.when)(&seen))
            .map(|fault| {
                fault.times -= 1;
                (fault.status, fault.code, fault.delay, fault.after)
            })
    };
    let (injected, answer_delay) = match injected {
        Some((0, _, delay, true)) => (None, delay),
        Some((status, code, delay, _)) => (Some((status, code, delay)), Duration::ZERO),
        None => (None, Duration::ZERO),
    };
    if let Some((RESET, _, _)) = injected {
        seen.status = RESET;
        state.seen.lock().unwrap().push(seen);
        return Err(Dropped);
    }
    if let Some((0, _, delay)) = injected {
        state.seen.lock().unwrap().push(Seen {
            status: 0,
            ..seen.clone()
        });
        tokio::time::sleep(delay).await;
    }
    let response = match injected.filter(|(status, _, _)| *status != 0) {
        Some((status, code, _)) => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
                 <Message>injected by the test proxy</Message><RequestId>proxy-{status}</RequestId></Error>"
            );
            Response::builder()
                .status(status)
                .header("content-type", "application/xml")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
        None => {
            let uri = format!(
                "{upstream}{}",
                parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
            );
            let mut out = Request::builder().method(parts.method.clone()).uri(uri);
            for (name, value) in &parts.headers {
                if name != "transfer-encoding" {
                    out = out.header(name, value);
                }
            }
            let request_body = body.clone();
            match client.request(out.body(Full::new(body)).unwrap()).await {
                Ok(answer) => {
                    let (parts, body) = answer.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let body = moto_complete_multipart(body);
                    if seen
                        .action
                        .as_deref()
                        .is_some_and(|a| a.starts_with("AssumeRole"))
                        && let Some(key) = xml_text(&body, "AccessKeyId")
                    {
                        seen.issued = form_value(&request_body, "RoleArn")
                            .zip(form_value(&request_body, "RoleSessionName"))
                            .map(|(role, name)| (role, name, key));
                    }
                    let mut back = Response::builder().status(parts.status);
                    for (name, value) in &parts.headers {
                        if name != "transfer-encoding" && name != "content-length" {
                            back = back.header(name, value);
                        }
                    }
                    back.body(Full::new(body)).unwrap()
                }
                Err(e) => Response::builder()
                    .status(502)
                    .body(Full::new(Bytes::from(format!("proxy: {e}"))))
                    .unwrap(),
            }
        }
    };
    seen.status = response.status().as_u16();
    state.seen.lock().unwrap().push(seen);
    tokio::time::sleep(answer_delay).await;
    Ok(response)
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the test proxy")
    }
}

impl std::error::Error for Dropped {}

fn form_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn xml_text(body: &[u8], element: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{element}>"))? + element.len() + 2;
    let end = start + text[start..].find('<')?;
    Some(text[start..end].to_owned())
}

/// moto answers CompleteMultipartUpload under the root element `CompleteMultipartUploadResponse`,
/// which the Rust SDK refuses; S3's is `CompleteMultipartUploadResult`.
fn moto_complete_multipart(body: Bytes) -> Bytes {
    const MOTO: &str = "CompleteMultipartUploadResponse";
    match std::str::from_utf8(&body) {
        Ok(text) if text.contains(MOTO) => {
            Bytes::from(text.replace(MOTO, "CompleteMultipartUploadResult"))
        }
        _ => body,
    }
}

/// A PutObject or UploadPart: a PUT of an object's bytes.
pub fn is_put_object(seen: &Seen) -> bool {
    seen.method == "PUT" && !seen.query.contains("uploadId")
}

pub fn is_assume_role(seen: &Seen) -> bool {
    seen.action.as_deref() == Some("AssumeRole")
}
