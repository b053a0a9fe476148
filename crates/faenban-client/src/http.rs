//! The HTTP transport: JSON over HTTPS to the faenban server, request
//! bodies gzip-compressed, retried with backoff when the network or the
//! server fails, and certificates always verified (a custom CA can be
//! trusted).

use std::io::Write as _;
use std::time::Duration;

use faenban_core::sync::{
    ErrorBody, HelloRequest, HelloResponse, PullPage, PushRequest, PushResponse, RelayRequest,
    RelayResponse, PROTOCOL_VERSION,
};
use reqwest::blocking::{Client as Http, Response};

use crate::transport::{Transport, TransportError};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How hard to try before giving up.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// The first wait; each next wait doubles, up to 30 s.
    pub first_delay: Duration,
}

/// A connection to one server with one token.
#[derive(Debug)]
pub struct HttpTransport {
    http: Http,
    base: String,
    token: String,
    retry: Retry,
}

impl HttpTransport {
    /// A client for `server` (https://… or http://…). `ca_pem`: a
    /// certificate authority to trust besides the usual ones.
    pub fn new(
        server: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
        retry: Retry,
    ) -> Result<HttpTransport, TransportError> {
        let base = server.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base)
            .ok()
            .filter(|url| url.host_str().is_some());
        if !(base.starts_with("https://") || base.starts_with("http://")) || parsed.is_none() {
            return Err(TransportError::BadAddress {
                en: format!(
                    "`{base}` is not a server address: it must look like https://faenban.example.go.th (or http:// on a trusted network)"
                ),
                th: format!(
                    "`{base}` ไม่ใช่ที่อยู่เซิร์ฟเวอร์ ต้องเขียนแบบ https://faenban.example.go.th (หรือ http:// ในเครือข่ายที่ไว้ใจได้)"
                ),
            });
        }
        let mut builder = Http::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("faenban/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            let certificate = reqwest::Certificate::from_pem(pem).map_err(|error| {
                TransportError::BadAddress {
                    en: format!("the CA file is not a PEM certificate: {error}"),
                    th: format!("ไฟล์ CA ไม่ใช่ใบรับรองแบบ PEM: {error}"),
                }
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        let http = builder
            .build()
            .map_err(|error| TransportError::Setup(format!("cannot set up HTTPS: {error}")))?;
        Ok(HttpTransport {
            http,
            base,
            token: token.to_owned(),
            retry,
        })
    }
}

impl Transport for HttpTransport {
    fn hello(&self, request: &HelloRequest) -> Result<HelloResponse, TransportError> {
        self.post("/v1/hello", request)
    }

    fn push(&self, request: &PushRequest) -> Result<PushResponse, TransportError> {
        self.post("/v1/push", request)
    }

    fn relay(&self, request: &RelayRequest) -> Result<RelayResponse, TransportError> {
        self.post("/v1/relay", request)
    }

    fn pull(
        &self,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PullPage, TransportError> {
        let mut url = format!(
            "{}/v1/changes?since={since}&limit={limit}&protocol={PROTOCOL_VERSION}",
            self.base
        );
        // A stamp: digits, dots, hex digits and dashes, safe in a URL as is.
        let safe = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if let Some(check) = check.filter(|check| check.chars().all(safe)) {
            url.push_str("&check=");
            url.push_str(check);
        }
        self.send(|| self.http.get(&url).bearer_auth(&self.token))
    }
}

impl HttpTransport {
    fn post<T: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<R, TransportError> {
        let json = serde_json::to_vec(body)
            .map_err(|error| TransportError::BadAnswer(format!("encoding the request: {error}")))?;
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(json.len() / 4),
            flate2::Compression::fast(),
        );
        encoder
            .write_all(&json)
            .map_err(|error| TransportError::BadAnswer(error.to_string()))?;
        let gzipped = encoder
            .finish()
            .map_err(|error| TransportError::BadAnswer(error.to_string()))?;
        let url = format!("{}{path}", self.base);
        self.send(|| {
            self.http
                .post(&url)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_ENCODING, "gzip")
                .body(gzipped.clone())
        })
    }

    /// Sends a request, retrying network failures and server troubles
    /// (5xx, 429) with exponential backoff. Requests are safe to repeat:
    /// pushes are idempotent, pulls read.
    fn send<R: DeserializeOwned>(
        &self,
        request: impl Fn() -> reqwest::blocking::RequestBuilder,
    ) -> Result<R, TransportError> {
        let mut delay = self.retry.first_delay;
        let mut attempt = 0;
        loop {
            // How long the server asked to be left alone (503's Retry-After).
            let mut asked = Duration::ZERO;
            let failure = match request().send() {
                Ok(response) if response.status().is_success() => return read(response),
                Ok(response) if retryable(response.status()) => {
                    asked = retry_after(&response);
                    format!("the server answered {}", response.status())
                }
                Ok(response) => return Err(refusal(response)),
                Err(error) if is_certificate_error(&error) => {
                    return Err(TransportError::Setup(format!(
                        "the server's TLS certificate is not trusted ({}); if your office uses its own certificate authority, log in again with --ca FILE",
                        root_cause(&error)
                    )));
                }
                Err(error) => root_cause(&error),
            };
            if attempt >= self.retry.retries {
                return Err(TransportError::Network(format!(
                    "{failure} (tried {} times)",
                    attempt + 1
                )));
            }
            attempt += 1;
            std::thread::sleep(delay.max(asked).min(MAX_DELAY));
            delay = (delay * 2).min(MAX_DELAY);
        }
    }
}

/// The longest wait between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The wait a `Retry-After` header asks for, in seconds (zero if none).
fn retry_after(response: &Response) -> Duration {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn read<R: DeserializeOwned>(response: Response) -> Result<R, TransportError> {
    let bytes = response
        .bytes()
        .map_err(|error| TransportError::Network(root_cause(&error)))?;
    serde_json::from_slice(&bytes).map_err(|error| TransportError::BadAnswer(error.to_string()))
}

fn refusal(response: Response) -> TransportError {
    let status = response.status().as_u16();
    let body = response.bytes().unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(body) => TransportError::Refused {
            status,
            code: body.error,
            message: body.message,
        },
        Err(_) => TransportError::Refused {
            status,
            code: "http".into(),
            message: format!("HTTP {status} (is this a faenban server?)"),
        },
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

fn is_certificate_error(error: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = cause {
        let text = current.to_string().to_lowercase();
        if text.contains("certificate") || text.contains("unknownissuer") {
            return true;
        }
        cause = current.source();
    }
    false
}
