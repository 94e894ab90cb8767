//! A signed HTTP client of the relay API (docs/API.md).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2ee_proto::{
    AckRequest, AckResponse, ErrorBody, ErrorCode, HEADER_ACCOUNT, HEADER_SIGNATURE,
    HEADER_TIMESTAMP, PollAckRequest, PollAckResponse, PollResponse, PreKeyBundle, PreKeyCount,
    RegisterRequest, RegisterResponse, SendRequest, SendResponse, UploadPreKeysRequest,
    VerifyRequest, encode_b64, request_signing_bytes,
};
use e2ee_ratchet::IdentityKeyPair;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RelayError;

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any request but a long poll may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of a long poll's own timeout before we give up on the relay.
const POLL_SLACK: Duration = Duration::from_secs(15);

/// Current unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The relay at one base URL.
#[derive(Debug, Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
}

/// Who signs a request.
pub(crate) struct Signer<'a> {
    pub(crate) email: &'a str,
    pub(crate) identity: &'a IdentityKeyPair,
}

/// The innermost cause of an error, in the words a user can act on.
fn root_cause(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut last = error.to_string();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
                _ => {}
            }
        }
        last = current.to_string();
        source = current.source();
    }
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    last
}

impl RelayClient {
    /// A client of the relay at `base_url` (`http://host:port` or `https://…`).
    pub fn new(base_url: &str) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|e| RelayError::BadUrl {
            url: base_url.to_owned(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RelayError::BadUrl {
                url: base_url.to_owned(),
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| RelayError::BadUrl {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self { http, base })
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, error: &reqwest::Error) -> RelayError {
        RelayError::Unreachable {
            url: self.base.clone(),
            cause: root_cause(error),
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        signer: &Signer<'_>,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<T, RelayError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| RelayError::Protocol(format!("encoding the request: {e}")))?,
            None => Vec::new(),
        };
        let timestamp = now_ms();
        let signature = signer.identity.sign(&request_signing_bytes(
            method.as_str(),
            path_and_query,
            timestamp,
            &body,
        ));
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .timeout(timeout)
            .header(HEADER_ACCOUNT, signer.email)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, encode_b64(&signature));
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RelayError::RateLimited {
                retry_after_secs: retry_after,
            });
        }
        if !status.is_success() {
            let (code, message, refused) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => (body.error, body.message, body.refused.unwrap_or_default()),
                Err(_) => (
                    ErrorCode::Unrecognized,
                    String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    Vec::new(),
                ),
            };
            return Err(RelayError::Status {
                status: status.as_u16(),
                code,
                message,
                refused,
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| RelayError::Protocol(format!("{path_and_query}: {e}")))
    }

    /// `POST /v1/accounts`, signed by the new identity itself.
    pub(crate) async fn register(
        &self,
        signer: &Signer<'_>,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, RelayError> {
        self.call(
            signer,
            Method::POST,
            "/v1/accounts",
            Some(request),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/accounts/verify`: the mailed code, signed by the key being registered.
    pub(crate) async fn verify_registration(
        &self,
        signer: &Signer<'_>,
        request: &VerifyRequest,
    ) -> Result<RegisterResponse, RelayError> {
        self.call(
            signer,
            Method::POST,
            "/v1/accounts/verify",
            Some(request),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/accounts/{email}/bundle`: consumes one of the peer's one-time prekeys.
    pub(crate) async fn bundle(
        &self,
        signer: &Signer<'_>,
        email: &str,
    ) -> Result<PreKeyBundle, RelayError> {
        let path = format!("/v1/accounts/{}/bundle", percent_encode(email));
        self.call::<(), _>(signer, Method::GET, &path, None, REQUEST_TIMEOUT)
            .await
    }

    /// `PUT /v1/prekeys`.
    pub(crate) async fn upload_prekeys(
        &self,
        signer: &Signer<'_>,
        request: &UploadPreKeysRequest,
    ) -> Result<PreKeyCount, RelayError> {
        self.call(
            signer,
            Method::PUT,
            "/v1/prekeys",
            Some(request),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/prekeys/count`.
    pub(crate) async fn prekey_count(
        &self,
        signer: &Signer<'_>,
    ) -> Result<PreKeyCount, RelayError> {
        self.call::<(), _>(
            signer,
            Method::GET,
            "/v1/prekeys/count",
            None,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `POST /v1/messages`.
    pub(crate) async fn send(
        &self,
        signer: &Signer<'_>,
        request: &SendRequest,
    ) -> Result<SendResponse, RelayError> {
        self.call(
            signer,
            Method::POST,
            "/v1/messages",
            Some(request),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// `GET /v1/messages?timeout_ms=&limit=`: the long poll.
    pub(crate) async fn poll(
        &self,
        signer: &Signer<'_>,
        timeout: Duration,
        limit: usize,
    ) -> Result<PollResponse, RelayError> {
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let path = format!("/v1/messages?timeout_ms={timeout_ms}&limit={limit}");
        self.call::<(), _>(signer, Method::GET, &path, None, timeout + POLL_SLACK)
            .await
    }

    /// `POST /v1/messages/poll`: acks `ids`, then the long poll, in one request.
    pub(crate) async fn ack_and_poll(
        &self,
        signer: &Signer<'_>,
        ids: &[u64],
        timeout: Duration,
        limit: usize,
    ) -> Result<PollAckResponse, RelayError> {
        let request = PollAckRequest {
            ack: ids.to_vec(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            limit,
        };
        self.call(
            signer,
            Method::POST,
            "/v1/messages/poll",
            Some(&request),
            timeout + POLL_SLACK,
        )
        .await
    }

    /// `POST /v1/messages/ack`.
    pub(crate) async fn ack(&self, signer: &Signer<'_>, ids: &[u64]) -> Result<u64, RelayError> {
        let response: AckResponse = self
            .call(
                signer,
                Method::POST,
                "/v1/messages/ack",
                Some(&AckRequest { ids: ids.to_vec() }),
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(response.acked)
    }
}

/// Percent-encodes everything but unreserved characters and `@`, so an address is
/// one path segment exactly as signed.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'@' | b'+') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
