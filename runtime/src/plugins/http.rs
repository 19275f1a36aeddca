//! Sending a plugin's requests upstream: only to the carrier's base URL,
//! with a timeout and a cap on the response size.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;

use super::bindings::types;

/// The pooled client every plugin carrier shares.
pub type HttpClient = crate::http_client::HttpsClient;

pub fn http_client() -> Result<HttpClient, UpstreamError> {
    crate::http_client::build(HttpConnector::new(), Duration::from_secs(60))
        .map_err(|e| UpstreamError::Transport(e.to_string()))
}

/// A client with its own TLS settings (Pigeon calling its own HTTPS
/// listener).
pub fn http_client_with_tls(tls: rustls::ClientConfig) -> Result<HttpClient, UpstreamError> {
    Ok(crate::http_client::build_with_tls(
        HttpConnector::new(),
        Duration::from_secs(60),
        tls,
    ))
}

/// An HTTP response, as a plugin gave it (callback answers) or as a carrier
/// gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The plugin asked for a path outside the carrier's base URL, or one
    /// that is not a valid path.
    #[error("request path `{path}` refused: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("request header `{name}` refused: {reason}")]
    Header { name: String, reason: &'static str },
    #[error("no complete answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u128 },
    #[error("response body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request failed: {0}")]
    Transport(String),
}

impl UpstreamError {
    /// The plugin did something the host refuses (as opposed to the network
    /// or the carrier failing).
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Path { .. } | Self::Header { .. })
    }
}

/// Headers the host sets itself; a plugin may not.
const RESERVED_HEADERS: [&str; 5] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
];

/// A carrier's base URL and the rules for talking to it.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: String,
    authority: String,
    /// The base URL's path without its trailing `/` (often empty).
    prefix: String,
    timeout: Duration,
    max_response_bytes: usize,
}

impl Upstream {
    pub fn new(
        base_url: &str,
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, String> {
        let uri: Uri = base_url.parse().map_err(|e| format!("{e}"))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            _ => return Err("must start with http:// or https://".into()),
        };
        let authority = uri.authority().ok_or("has no host")?.as_str().to_owned();
        if authority.contains('@') {
            return Err("must not carry credentials; put them in settings".into());
        }
        if uri.query().is_some() {
            return Err("must not have a query".into());
        }
        Ok(Self {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            timeout,
            max_response_bytes,
        })
    }

    /// The URL for a plugin's path, refused unless it stays under the base URL.
    pub fn url_for(&self, path: &str) -> Result<Uri, UpstreamError> {
        let refuse = |reason| UpstreamError::Path {
            path: path.chars().take(200).collect(),
            reason,
        };
        if !path.starts_with('/') {
            return Err(refuse("must start with `/`"));
        }
        if path.starts_with("//") {
            return Err(refuse("must not name a host"));
        }
        if path
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'\\' || b == b'#')
        {
            return Err(refuse(
                "only printable ASCII without `\\` or `#` (percent-encode the rest)",
            ));
        }
        let path_only = path.split('?').next().unwrap_or_default();
        let dot_segment = path_only.split('/').any(|segment| {
            let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
            decoded == "." || decoded == ".."
        });
        if dot_segment {
            return Err(refuse("must not contain `.` or `..` segments"));
        }
        let url = format!(
            "{}://{}{}{}",
            self.scheme, self.authority, self.prefix, path
        );
        let uri: Uri = url.parse().map_err(|_| refuse("not a valid URL path"))?;
        // Belt and braces: what was parsed is still the carrier.
        if uri.scheme_str() != Some(self.scheme.as_str())
            || uri.authority().map(|a| a.as_str()) != Some(self.authority.as_str())
        {
            return Err(refuse("leaves the carrier's base URL"));
        }
        Ok(uri)
    }

    /// Sends a plugin's request; the whole exchange (connect, send, read the
    /// body) is bounded by the timeout, the body by the size cap.
    pub async fn send(
        &self,
        client: &HttpClient,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, UpstreamError> {
        let uri = self.url_for(&request.path)?;
        let method = match request.method {
            types::Method::Get => Method::GET,
            types::Method::Post => Method::POST,
            types::Method::Put => Method::PUT,
            types::Method::Patch => Method::PATCH,
            types::Method::Delete => Method::DELETE,
        };
        let mut http = Request::builder().method(method).uri(uri);
        for header in &request.headers {
            let refuse = |reason| UpstreamError::Header {
                name: header.name.chars().take(100).collect(),
                reason,
            };
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| refuse("not a valid header name"))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(refuse("set by the host"));
            }
            let value = HeaderValue::from_str(&header.value)
                .map_err(|_| refuse("value is not a valid header value"))?;
            http = http.header(name, value);
        }
        let http = http
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        let exchange = async {
            let response = client
                .request(http)
                .await
                .map_err(|e| UpstreamError::Transport(error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_response_bytes)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        UpstreamError::TooLarge {
                            limit: self.max_response_bytes,
                        }
                    } else {
                        UpstreamError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            let headers = parts
                .headers
                .iter()
                .map(|(name, value)| types::Header {
                    name: name.as_str().to_owned(),
                    value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                })
                .collect();
            Ok(types::HttpResponse {
                status: parts.status.as_u16(),
                headers,
                body: body.to_vec(),
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .unwrap_or(Err(UpstreamError::Timeout {
                timeout_ms: self.timeout.as_millis(),
            }))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream::new(base, Duration::from_secs(1), 1024).unwrap()
    }

    #[test]
    fn paths_stay_under_the_base_url() {
        let up = upstream("https://api.example.com/v1/");
        assert_eq!(
            up.url_for("/sms/json?a=1&b=%2F").unwrap().to_string(),
            "https://api.example.com/v1/sms/json?a=1&b=%2F"
        );
        for bad in [
            "sms",
            "//evil.example/x",
            "/../admin",
            "/a/%2e%2E/b",
            "/a/./b",
            "/a\\b",
            "/a#frag",
            "/a b",
            "http://evil.example/",
            "/caf\u{e9}",
            "",
        ] {
            let err = up.url_for(bad).unwrap_err();
            assert!(matches!(err, UpstreamError::Path { .. }), "{bad}: {err}");
        }
        // `..` inside a query value or a segment name is harmless.
        up.url_for("/a..b?x=../y").unwrap();
        // `@` in a path does not make it an authority.
        let uri = up.url_for("/@evil.example").unwrap();
        assert_eq!(uri.host(), Some("api.example.com"));
    }

    #[test]
    fn base_urls_are_checked() {
        for bad in [
            "ftp://x.example",
            "x.example/path",
            "https://u:p@x.example",
            "https://x.example/?q=1",
        ] {
            assert!(
                Upstream::new(bad, Duration::from_secs(1), 1).is_err(),
                "{bad}"
            );
        }
        let up = upstream("http://127.0.0.1:9000");
        assert_eq!(
            up.url_for("/x").unwrap().to_string(),
            "http://127.0.0.1:9000/x"
        );
    }
}
