//! S3 and STS errors as one line a person can act on: the operation, what it was done to, the
//! service's error code and message, the HTTP status and the request id to quote to AWS.

use std::fmt;

use aws_sdk_s3::config::http::HttpResponse as Response;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;

/// An error answered (or not) by S3 or STS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    /// `S3` or `STS`.
    pub service: &'static str,
    pub operation: &'static str,
    /// The object or role the request was about.
    pub subject: String,
    /// The service's error code, e.g. `AccessDenied`.
    pub code: Option<String>,
    pub message: Option<String>,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    /// What happened when there was no answer: a timeout, a refused connection.
    pub detail: Option<String>,
}

impl RemoteError {
    /// The error of one request to `service` at `endpoint`. A request that failed because its
    /// credentials could not be had (an STS error) is that STS error.
    pub fn from_sdk<E>(
        (service, endpoint): (&'static str, &str),
        operation: &'static str,
        subject: &str,
        e: &SdkError<E, Response>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        if let Some(inner) = chain(e).find_map(|c| c.downcast_ref::<RemoteError>()) {
            return inner.clone();
        }
        let body = e
            .raw_response()
            .and_then(|r| r.body().bytes())
            .map(String::from_utf8_lossy);
        // Some STS-protocol servers answer in a shape the SDK does not parse; their body still
        // holds the code and message.
        let code = e
            .code()
            .map(str::to_owned)
            .or_else(|| body.as_deref().and_then(|b| xml_element(b, "Code")));
        let message = e
            .message()
            .map(str::to_owned)
            .or_else(|| body.as_deref().and_then(|b| xml_element(b, "Message")));
        let request_id = e.request_id().map(str::to_owned).or_else(|| {
            body.as_deref()
                .and_then(|b| xml_element(b, "RequestId"))
                .or_else(|| {
                    e.raw_response()
                        .and_then(|r| r.headers().get("x-amzn-requestid"))
                        .map(str::to_owned)
                })
        });
        let detail = (code.is_none() && message.is_none()).then(|| {
            let cause = match e {
                SdkError::TimeoutError(_) => "timed out (exporter.request_timeout_secs)".to_owned(),
                SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".to_owned(),
                SdkError::DispatchFailure(_) => network_cause(e),
                other => DisplayErrorContext(other).to_string(),
            };
            format!("no answer from {endpoint}: {cause}")
        });
        Self {
            service,
            operation,
            subject: subject.to_owned(),
            code,
            message,
            status: e.raw_response().map(|r| r.status().as_u16()),
            request_id,
            detail,
        }
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {}: ",
            self.service, self.operation, self.subject
        )?;
        match (&self.code, &self.message, &self.detail) {
            (Some(code), Some(message), _) => write!(f, "{code}: {message}")?,
            (Some(code), None, _) => write!(f, "{code}")?,
            (None, Some(message), _) => write!(f, "{message}")?,
            (None, None, Some(detail)) => write!(f, "{detail}")?,
            (None, None, None) => write!(f, "no answer")?,
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// The SDK's error as one line naming the operation, the object, the code and the request id.
pub(super) fn s3_error<E>(
    endpoint: &str,
    operation: &'static str,
    location: &str,
    e: &SdkError<E, Response>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    anyhow::Error::new(RemoteError::from_sdk(
        ("S3", endpoint),
        operation,
        location,
        e,
    ))
}

/// An error and its sources, outermost first.
fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// Why a request got no answer, in a few words: connection refused, timed out, a host name that
/// does not resolve, or the innermost cause's own message; never a debug dump.
fn network_cause(e: &(dyn std::error::Error + 'static)) -> String {
    use std::io::ErrorKind;
    for cause in chain(e) {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return "connection refused".into(),
                ErrorKind::TimedOut => return "timed out".into(),
                ErrorKind::ConnectionReset => return "connection reset".into(),
                _ => {}
            }
        }
    }
    let innermost = chain(e).last().map(|c| c.to_string()).unwrap_or_default();
    if chain(e).any(|c| {
        let text = c.to_string();
        text.contains("dns error") || text.contains("failed to lookup address")
    }) {
        return format!("the host name does not resolve (DNS: {innermost})");
    }
    innermost
}

/// Whether a write was refused because the object exists (`If-None-Match: *`).
pub fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, Response>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 412)
        || e.code() == Some("PreconditionFailed")
}

/// The text of the first `<name>` element, for error bodies the SDK did not parse.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{name}>"))?;
    let text = body[start..end].trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: Option<&str>, message: Option<&str>, detail: Option<&str>) -> RemoteError {
        RemoteError {
            service: "S3",
            operation: "PutObject",
            subject: "s3://bucket/key".into(),
            code: code.map(Into::into),
            message: message.map(Into::into),
            status: Some(403),
            request_id: Some("REQ1".into()),
            detail: detail.map(Into::into),
        }
    }

    #[test]
    fn one_line_with_code_message_status_and_request_id() {
        assert_eq!(
            error(Some("AccessDenied"), Some("Access Denied"), None).to_string(),
            "S3 PutObject on s3://bucket/key: AccessDenied: Access Denied (HTTP 403) (request id REQ1)"
        );
        assert_eq!(
            error(None, None, Some("connection refused")).to_string(),
            "S3 PutObject on s3://bucket/key: connection refused (HTTP 403) (request id REQ1)"
        );
    }

    #[derive(Debug)]
    struct Wrapped(&'static str, Box<dyn std::error::Error + 'static>);
    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.1.as_ref())
        }
    }

    #[test]
    fn a_network_cause_in_a_few_words() {
        let refused = Wrapped(
            "dispatch failure",
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        );
        assert_eq!(network_cause(&refused), "connection refused");
        let dns = Wrapped(
            "dns error",
            Box::new(std::io::Error::other(
                "failed to lookup address information",
            )),
        );
        assert_eq!(
            network_cause(&dns),
            "the host name does not resolve (DNS: failed to lookup address information)"
        );
        let other = Wrapped("io error", Box::new(std::io::Error::other("broken pipe")));
        assert_eq!(network_cause(&other), "broken pipe");
    }

    #[test]
    fn reads_code_and_message_from_an_unparsed_body() {
        let body = "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>\
                    <Message>not authorized</Message></Error><RequestId>r-1</RequestId></ErrorResponse>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            xml_element(body, "Message").as_deref(),
            Some("not authorized")
        );
        assert_eq!(xml_element(body, "RequestId").as_deref(), Some("r-1"));
        assert_eq!(xml_element(body, "HostId"), None);
        assert_eq!(xml_element("<Code></Code>", "Code"), None);
    }
}
