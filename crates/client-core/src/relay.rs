//! An authenticated HTTP client of the relay API (docs/API.md).
//!
//! Requests are authenticated by a session (docs/API.md, "Sessions"): the first
//! request that may use one opens it with a request signed by the identity key, and
//! later requests carry an HMAC under the session key instead of a signature, which
//! costs the relay microseconds rather than an Ed25519 verification. A relay that
//! has no sessions (an older one) gets signed requests, as before. Registration, its
//! verification and account deletion are always signed.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2ee_proto::{
    AccountResponse, AckRequest, AckResponse, BundleResponse, ClientHandshake, ErrorBody,
    ErrorCode, HEADER_ACCOUNT, HEADER_MAC, HEADER_SESSION, HEADER_SIGNATURE, HEADER_TIMESTAMP,
    OpenSessionResponse, PollAckRequest, PollAckResponse, PollResponse, PreKeyCount,
    RegisterRequest, RegisterResponse, SendRequest, SendResponse, SessionId, SessionKey,
    UnregisterResponse, UploadPreKeysRequest, VerifyRequest, encode_b64, request_signing_bytes,
};
use e2ee_ratchet::IdentityKeyPair;
use rand::RngExt as _;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::RelayError;

/// How long to wait for a TCP/TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long any request but a long poll may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Characters of a redirect's `Location` quoted in the error.
const MAX_LOCATION_CHARS: usize = 200;
/// Slack on top of a long poll's own timeout before we give up on the relay.
const POLL_SLACK: Duration = Duration::from_secs(15);
/// JSON around one envelope in a poll answer besides its body and sender: the keys,
/// quotes, the id and the timestamp.
const ENVELOPE_JSON_OVERHEAD: usize = 128;
/// The largest answer an honest relay gives: a full poll, every envelope body at the
/// limit in base64 (4 characters per 3 bytes) and the longest sender address.
const LARGEST_RELAY_ANSWER: usize = e2ee_proto::MAX_POLL_LIMIT
    * (e2ee_proto::MAX_ENVELOPE_BODY_BYTES.div_ceil(3) * 4
        + e2ee_proto::MAX_EMAIL_BYTES
        + ENVELOPE_JSON_OVERHEAD);
/// Most bytes read of any answer: twice [`LARGEST_RELAY_ANSWER`] (about 17.6 MB), so
/// a hostile or broken relay cannot make the client buffer without bound.
pub const MAX_RESPONSE_BYTES: usize = 2 * LARGEST_RELAY_ANSWER;

/// A session this close to its expiry (by our clock) is replaced before use rather
/// than risk a request refused as expired; a relay whose clock differs by more is
/// handled by the one retry on `session_expired`.
const SESSION_REFRESH_MARGIN_MS: u64 = 60 * 1000;

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
    session: Arc<Mutex<SessionSlot>>,
}

/// An open session, for the account and key that opened it.
#[derive(Clone)]
struct OpenSession {
    email: String,
    identity: [u8; 32],
    id: SessionId,
    key: SessionKey,
    expires_at: u64,
}

/// What this client knows of sessions at its relay.
#[derive(Default)]
enum SessionSlot {
    /// None opened yet (or the last one was refused).
    #[default]
    None,
    /// One is open.
    Open(OpenSession),
    /// The relay has no `/v1/sessions` (an older relay): sign every request.
    Unsupported,
}

impl std::fmt::Debug for SessionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Open(session) => f
                .debug_struct("Open")
                .field("id", &session.id)
                .field("expires_at", &session.expires_at)
                .finish_non_exhaustive(),
            Self::Unsupported => f.write_str("Unsupported"),
        }
    }
}

/// Whether a route takes a session MAC or only a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Uses {
    /// Any request of an existing account: a session when the relay has them.
    Session,
    /// Registration, its verification, account deletion, opening a session.
    Identity,
}

/// How one attempt of a request is authenticated.
enum Credential<'a> {
    Signature,
    Session(&'a OpenSession),
}

/// Who signs a request.
pub(crate) struct Signer<'a> {
    pub(crate) email: &'a str,
    pub(crate) identity: &'a IdentityKeyPair,
}

/// Text of a TLS failure that means the server spoke plain HTTP to our handshake
/// (rustls: "received corrupt message of type InvalidContentType").
const PLAIN_HTTP_TLS_SIGNS: [&str; 2] = ["InvalidContentType", "corrupt message"];

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

/// Whether `host` (as in a URL, IPv6 in brackets) names this machine, where plain
/// http never leaves it.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

impl RelayClient {
    /// A client of the relay at `base_url`: `https://…`, or `http://` on a loopback
    /// host (`127.0.0.0/8`, `[::1]`, `localhost`).
    pub fn new(base_url: &str) -> Result<Self, RelayError> {
        Self::with_insecure_http(base_url, false)
    }

    /// [`Self::new`], also allowing plain `http://` to any host when
    /// `allow_insecure_http` is set.
    ///
    /// Redirects are never followed: a redirect would carry the signed request
    /// (method, body and a signature the relay has not consumed yet) to another
    /// origin, which could replay it to the relay.
    pub fn with_insecure_http(
        base_url: &str,
        allow_insecure_http: bool,
    ) -> Result<Self, RelayError> {
        let base = base_url.trim_end_matches('/').to_owned();
        // `host:port` parses as a URL of scheme `host`, or not at all: both mean the
        // scheme was left out.
        let scheme_hint = if base.contains("://") {
            String::new()
        } else {
            format!("; did you mean http://{base}?")
        };
        let parsed = reqwest::Url::parse(&base).map_err(|e| RelayError::BadUrl {
            url: base_url.to_owned(),
            reason: format!("{e}{scheme_hint}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RelayError::BadUrl {
                url: base_url.to_owned(),
                reason: format!("the scheme must be http or https{scheme_hint}"),
            });
        }
        if parsed.scheme() == "http"
            && !allow_insecure_http
            && !parsed.host_str().is_some_and(is_loopback_host)
        {
            return Err(RelayError::InsecureHttp {
                url: base_url.to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RelayError::BadUrl {
                url: base_url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            base,
            session: Arc::new(Mutex::new(SessionSlot::None)),
        })
    }

    fn not_a_relay(&self, status: StatusCode) -> RelayError {
        RelayError::NotARelay {
            url: self.base.clone(),
            status: status.as_u16(),
        }
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, error: &reqwest::Error) -> RelayError {
        let mut cause = root_cause(error);
        if let Some(plain) = self.base.strip_prefix("https://")
            && PLAIN_HTTP_TLS_SIGNS.iter().any(|sign| cause.contains(sign))
        {
            cause = format!(
                "the TLS handshake failed because the server speaks plain HTTP ({cause}); \
                 if the relay has no TLS, its URL is http://{plain}"
            );
        }
        RelayError::Unreachable {
            url: self.base.clone(),
            cause,
        }
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        signer: &Signer<'_>,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        timeout: Duration,
        uses: Uses,
    ) -> Result<T, RelayError> {
        let body = match body {
            Some(body) => serde_json::to_vec(body)
                .map_err(|e| RelayError::Protocol(format!("encoding the request: {e}")))?,
            None => Vec::new(),
        };
        let attempt = |credential| {
            self.attempt(
                signer,
                credential,
                method.clone(),
                path_and_query,
                body.clone(),
                timeout,
            )
        };
        if uses == Uses::Identity {
            return attempt(Credential::Signature).await;
        }
        let Some(session) = self.session_for(signer).await? else {
            return attempt(Credential::Signature).await;
        };
        match attempt(Credential::Session(&session)).await {
            // Refused before anything was done (the relay checks the session first):
            // open a new session once and send the request again.
            Err(RelayError::Status {
                code: ErrorCode::UnknownSession | ErrorCode::SessionExpired,
                ..
            }) => {
                self.forget_session(&session);
                match self.open_session(signer).await? {
                    Some(fresh) => attempt(Credential::Session(&fresh)).await,
                    None => attempt(Credential::Signature).await,
                }
            }
            other => other,
        }
    }

    /// The open session of `signer`, opening one if there is none or it is about to
    /// expire; `None` when the relay has no sessions.
    async fn session_for(&self, signer: &Signer<'_>) -> Result<Option<OpenSession>, RelayError> {
        let identity = signer.identity.public_key().to_bytes();
        {
            let slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
            match &*slot {
                SessionSlot::Unsupported => return Ok(None),
                SessionSlot::Open(session)
                    if session.email == signer.email
                        && session.identity == identity
                        && session.expires_at
                            > now_ms().saturating_add(SESSION_REFRESH_MARGIN_MS) =>
                {
                    return Ok(Some(session.clone()));
                }
                _ => {}
            }
        }
        self.open_session(signer).await
    }

    fn forget_session(&self, stale: &OpenSession) {
        let mut slot = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(&*slot, SessionSlot::Open(current) if current.id == stale.id) {
            *slot = SessionSlot::None;
        }
    }

    /// `POST /v1/sessions`, signed: a fresh X25519 exchange. `None` (and signatures
    /// from then on) when the relay does not know the route.
    async fn open_session(&self, signer: &Signer<'_>) -> Result<Option<OpenSession>, RelayError> {
        let handshake = ClientHandshake::new(rand::rng().random());
        let body = serde_json::to_vec(&handshake.request())
            .map_err(|e| RelayError::Protocol(format!("encoding the request: {e}")))?;
        let answer: Result<OpenSessionResponse, RelayError> = self
            .attempt(
                signer,
                Credential::Signature,
                Method::POST,
                "/v1/sessions",
                body,
                REQUEST_TIMEOUT,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(
                RelayError::Status {
                    code: ErrorCode::NotFound | ErrorCode::MethodNotAllowed,
                    ..
                }
                | RelayError::NotARelay {
                    status: 404 | 405, ..
                },
            ) => {
                *self.session.lock().unwrap_or_else(PoisonError::into_inner) =
                    SessionSlot::Unsupported;
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        let key = handshake.finish(&answer).map_err(|e| {
            RelayError::Protocol(format!("POST /v1/sessions: the relay's key: {e}"))
        })?;
        let session = OpenSession {
            email: signer.email.to_owned(),
            identity: signer.identity.public_key().to_bytes(),
            id: answer.session_id,
            key,
            expires_at: answer.expires_at,
        };
        *self.session.lock().unwrap_or_else(PoisonError::into_inner) =
            SessionSlot::Open(session.clone());
        Ok(Some(session))
    }

    /// One request, authenticated by `credential`, and its answer.
    async fn attempt<T: DeserializeOwned>(
        &self,
        signer: &Signer<'_>,
        credential: Credential<'_>,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<T, RelayError> {
        let timestamp = now_ms();
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.base))
            .timeout(timeout)
            .header(HEADER_ACCOUNT, signer.email)
            .header(HEADER_TIMESTAMP, timestamp.to_string());
        request = match credential {
            Credential::Signature => {
                let signature = signer.identity.sign(&request_signing_bytes(
                    method.as_str(),
                    path_and_query,
                    timestamp,
                    &body,
                ));
                request.header(HEADER_SIGNATURE, encode_b64(&signature))
            }
            Credential::Session(session) => {
                let mac =
                    session
                        .key
                        .mac_request(method.as_str(), path_and_query, timestamp, &body);
                request
                    .header(HEADER_SESSION, session.id.to_b64())
                    .header(HEADER_MAC, encode_b64(&mac))
            }
        };
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
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere")
                .chars()
                .take(MAX_LOCATION_CHARS)
                .collect::<String>();
            return Err(RelayError::Redirect {
                url: self.base.clone(),
                status: status.as_u16(),
                location,
            });
        }
        let bytes = self.read_capped(response).await?;
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(RelayError::RateLimited {
                retry_after_secs: retry_after,
            });
        }
        if !status.is_success() {
            // Anything but the API's error body comes from something else at this URL
            // (a web server, a proxy): its body, often a page of HTML, is not shown.
            let Ok(body) = serde_json::from_slice::<ErrorBody>(&bytes) else {
                return Err(self.not_a_relay(status));
            };
            return Err(RelayError::Status {
                status: status.as_u16(),
                code: body.error,
                message: body.message,
                refused: body.refused.unwrap_or_default(),
            });
        }
        // A success that is not even JSON is not a relay's answer either; JSON of the
        // wrong shape is a relay breaking the API, reported as such.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| self.not_a_relay(status))?;
        serde_json::from_value(value)
            .map_err(|e| RelayError::Protocol(format!("{path_and_query}: {e}")))
    }

    /// The answer's body, refused once it is over [`MAX_RESPONSE_BYTES`]; read chunk
    /// by chunk so that a body without (or with a lying) `Content-Length` is cut off
    /// as soon as it passes the limit.
    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Vec<u8>, RelayError> {
        let too_big = || {
            RelayError::Protocol(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes, more than any \
                 relay answer can be"
            ))
        };
        let announced = response.content_length().unwrap_or(0);
        if usize::try_from(announced).map_or(true, |n| n > MAX_RESPONSE_BYTES) {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(|e| self.unreachable(&e))? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
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
            Uses::Identity,
        )
        .await
    }

    /// `DELETE /v1/account`: deletes the signer's account, prekeys and queue.
    pub(crate) async fn unregister(
        &self,
        signer: &Signer<'_>,
    ) -> Result<UnregisterResponse, RelayError> {
        self.call::<(), _>(
            signer,
            Method::DELETE,
            "/v1/account",
            None,
            REQUEST_TIMEOUT,
            Uses::Identity,
        )
        .await
    }

    /// `GET /v1/accounts?email=E`: the account's identity key, consuming nothing.
    pub(crate) async fn lookup(
        &self,
        signer: &Signer<'_>,
        email: &str,
    ) -> Result<AccountResponse, RelayError> {
        // In a query string `+` means a space, so it is escaped too.
        let path = format!(
            "/v1/accounts?email={}",
            percent_encode(email).replace('+', "%2B")
        );
        self.call::<(), _>(
            signer,
            Method::GET,
            &path,
            None,
            REQUEST_TIMEOUT,
            Uses::Session,
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
            Uses::Identity,
        )
        .await
    }

    /// `GET /v1/accounts/{email}/bundle`: consumes one of the peer's one-time prekeys.
    pub(crate) async fn bundle(
        &self,
        signer: &Signer<'_>,
        email: &str,
    ) -> Result<BundleResponse, RelayError> {
        let path = format!("/v1/accounts/{}/bundle", percent_encode(email));
        self.call::<(), _>(
            signer,
            Method::GET,
            &path,
            None,
            REQUEST_TIMEOUT,
            Uses::Session,
        )
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
            Uses::Session,
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
            Uses::Session,
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
            Uses::Session,
        )
        .await
    }

    /// `POST /v1/messages/multi`: one body to many recipients (a group message).
    pub(crate) async fn send_multi(
        &self,
        signer: &Signer<'_>,
        request: &e2ee_proto::MultiSendRequest,
    ) -> Result<e2ee_proto::MultiSendResponse, RelayError> {
        self.call(
            signer,
            Method::POST,
            "/v1/messages/multi",
            Some(request),
            REQUEST_TIMEOUT,
            Uses::Session,
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
        self.call::<(), _>(
            signer,
            Method::GET,
            &path,
            None,
            timeout + POLL_SLACK,
            Uses::Session,
        )
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
            Uses::Session,
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
                Uses::Session,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A one-purpose HTTP server on loopback: reads each request's head and answers it
    /// with `answer`, counting the requests that carried a request signature.
    fn serve(
        answer: impl Fn(&mut std::net::TcpStream) + Send + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let signed = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&signed);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line.to_ascii_lowercase().starts_with(HEADER_SIGNATURE) {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if line == "\r\n" {
                        answer(&mut stream);
                        break;
                    }
                    line.clear();
                }
            }
        });
        (url, signed)
    }

    fn signer_identity() -> IdentityKeyPair {
        IdentityKeyPair::generate(&mut rand::rng())
    }

    /// L10: a 307 to another origin used to be followed with the method, the body and
    /// the still unconsumed signature; now the redirect is an error and the other
    /// origin receives nothing.
    #[tokio::test]
    async fn l10_redirects_are_not_followed() {
        let (elsewhere, signed_elsewhere) = serve(|stream| {
            let body = br#"{"one_time_prekeys":5}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        });
        let target = format!("{elsewhere}/v1/prekeys/count");
        let (relay, _) = serve(move |stream| {
            let _ = write!(
                stream,
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        });
        let identity = signer_identity();
        let signer = Signer {
            email: "alice@x",
            identity: &identity,
        };
        let client = RelayClient::new(&relay).unwrap();
        let result = client.prekey_count(&signer).await;
        assert!(
            matches!(&result, Err(RelayError::Redirect { status: 307, .. })),
            "{result:?}"
        );
        assert_eq!(signed_elsewhere.load(Ordering::SeqCst), 0);
    }

    /// L10: plain http is refused to anything but loopback unless allowed explicitly.
    #[test]
    fn l10_plain_http_only_to_loopback_unless_allowed() {
        for url in [
            "http://relay.example.org",
            "http://10.0.0.1:8080",
            "http://[2001:db8::1]:8080",
            "http://localhost.example.org",
        ] {
            assert!(
                matches!(RelayClient::new(url), Err(RelayError::InsecureHttp { .. })),
                "{url} was accepted"
            );
            assert!(RelayClient::with_insecure_http(url, true).is_ok(), "{url}");
        }
        for url in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
            "https://relay.example.org",
        ] {
            assert!(RelayClient::new(url).is_ok(), "{url} was refused");
        }
    }

    /// L10: an answer over [`MAX_RESPONSE_BYTES`] is refused, whether it announces its
    /// length or streams without one.
    #[tokio::test]
    async fn l10_oversized_answers_are_refused() {
        let identity = signer_identity();
        let signer = Signer {
            email: "alice@x",
            identity: &identity,
        };
        let (announced, _) = serve(|stream| {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                MAX_RESPONSE_BYTES + 1
            );
        });
        let result = RelayClient::new(&announced)
            .unwrap()
            .prekey_count(&signer)
            .await;
        assert!(
            matches!(&result, Err(RelayError::Protocol(m)) if m.contains("larger")),
            "{result:?}"
        );
        let (streamed, _) = serve(|stream| {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
            let chunk = vec![b' '; 64 * 1024];
            for _ in 0..=MAX_RESPONSE_BYTES / chunk.len() {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let result = RelayClient::new(&streamed)
            .unwrap()
            .prekey_count(&signer)
            .await;
        assert!(
            matches!(&result, Err(RelayError::Protocol(m)) if m.contains("larger")),
            "{result:?}"
        );
    }

    /// A relay of one purpose on loopback: answers each request with `answer(method,
    /// path, headers (lower-cased names), body)` → (status, JSON body).
    fn fake_relay(
        answer: impl Fn(&str, &str, &std::collections::HashMap<String, String>, &[u8]) -> (u16, String)
        + Send
        + 'static,
    ) -> String {
        use std::io::Read as _;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let path = parts.next().unwrap_or_default().to_owned();
                    let mut headers = std::collections::HashMap::new();
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        if header == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            headers
                                .insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
                        }
                    }
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let (status, json) = answer(&method, &path, &headers, &body);
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                        json.len()
                    );
                }
            }
        });
        url
    }

    /// A session the relay no longer knows is replaced once and the request sent
    /// again under the new one; the MACs verify under the agreed keys.
    #[tokio::test]
    async fn an_unknown_session_is_reopened_once_and_the_request_retried() {
        use e2ee_proto::{OpenSessionRequest, accept_session};
        let keys: Arc<Mutex<Vec<(SessionId, SessionKey)>>> = Arc::default();
        let opened = Arc::new(AtomicUsize::new(0));
        let (keys_in, opened_in) = (Arc::clone(&keys), Arc::clone(&opened));
        let url = fake_relay(move |method, path, headers, body| {
            if path == "/v1/sessions" {
                assert!(headers.contains_key(HEADER_SIGNATURE), "{headers:?}");
                let request: OpenSessionRequest = serde_json::from_slice(body).unwrap();
                let n = opened_in.fetch_add(1, Ordering::SeqCst);
                let id = SessionId([u8::try_from(n).unwrap(); 16]);
                let (relay_key, key) = accept_session(&request, id, [7; 32]).unwrap();
                keys_in.lock().unwrap().push((id, key));
                let answer = OpenSessionResponse {
                    session_id: id,
                    relay_key: e2ee_proto::Base64Key::new(relay_key),
                    expires_at: now_ms() + 3_600_000,
                };
                return (201, serde_json::to_string(&answer).unwrap());
            }
            assert!(!headers.contains_key(HEADER_SIGNATURE), "{headers:?}");
            let id = SessionId::from_b64(&headers[HEADER_SESSION]).unwrap();
            let keys = keys_in.lock().unwrap();
            // The first session is "revoked" as soon as it is used.
            if keys.len() == 1 {
                return (
                    401,
                    r#"{"error":"unknown_session","message":"gone"}"#.to_owned(),
                );
            }
            let (_, key) = keys.iter().find(|(known, _)| *known == id).unwrap();
            let mac = e2ee_proto::decode_b64(&headers[HEADER_MAC]).unwrap();
            let timestamp: u64 = headers[HEADER_TIMESTAMP].parse().unwrap();
            assert!(key.verify_request(method, path, timestamp, body, &mac));
            (200, r#"{"one_time_prekeys":5}"#.to_owned())
        });
        let identity = signer_identity();
        let signer = Signer {
            email: "alice@x",
            identity: &identity,
        };
        let client = RelayClient::new(&url).unwrap();
        assert_eq!(
            client.prekey_count(&signer).await.unwrap().one_time_prekeys,
            5
        );
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        // The next request reuses the open session.
        assert_eq!(
            client.prekey_count(&signer).await.unwrap().one_time_prekeys,
            5
        );
        assert_eq!(opened.load(Ordering::SeqCst), 2);
        assert!(!format!("{client:?}").contains("key: ["), "{client:?}");
    }

    /// The real relay, in-process on embedded SQLite, and its URL.
    async fn real_relay() -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = e2ee_relay_server::RelayConfig::new(dir.path().to_path_buf());
        let relay = e2ee_relay_server::Relay::open(&config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(relay.serve(listener, std::future::pending()));
        (url, dir)
    }

    /// Registers `email` with a fresh identity (signed, as registration always is).
    async fn register_real(client: &RelayClient, email: &str) -> IdentityKeyPair {
        use e2ee_ratchet::{OneTimePreKeyPair, SignedPreKeyPair};
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let request = RegisterRequest {
            email: email.to_owned(),
            identity_key: e2ee_proto::Base64Key::new(identity.public_key().to_bytes()),
            signed_prekey: crate::wire::wire_signed_prekey(&SignedPreKeyPair::generate(
                &mut rng, &identity, 1,
            )),
            one_time_prekeys: crate::wire::wire_one_time_prekeys(
                &OneTimePreKeyPair::generate_batch(&mut rng, 1, 2),
            ),
        };
        let signer = Signer {
            email,
            identity: &identity,
        };
        client.register(&signer, &request).await.unwrap();
        identity
    }

    /// `DELETE /v1/sessions` signed by the identity key, as another device of the
    /// account (or its owner logging out everywhere) would send it: how many sessions
    /// the relay closed.
    async fn close_sessions_elsewhere(url: &str, signer: &Signer<'_>) -> u64 {
        let other_device = RelayClient::new(url).unwrap();
        let closed: e2ee_proto::CloseSessionsResponse = other_device
            .call::<(), _>(
                signer,
                Method::DELETE,
                "/v1/sessions",
                None,
                REQUEST_TIMEOUT,
                Uses::Identity,
            )
            .await
            .unwrap();
        closed.closed
    }

    /// Against the real relay: sessions closed at the relay (a logout elsewhere, a
    /// revocation) are replaced by the next request, which then takes effect exactly
    /// once: a send queued once, an ack-and-poll that acks once, and exactly one new
    /// session per request that found its session closed.
    #[tokio::test]
    async fn a_session_revoked_at_the_real_relay_is_replaced_without_losing_or_repeating() {
        use e2ee_proto::{Base64Bytes, OutgoingMessage};
        let (url, _dir) = real_relay().await;
        let client = RelayClient::new(&url).unwrap();
        let alice_key = register_real(&client, "alice@example.org").await;
        let bob_key = register_real(&client, "bob@example.org").await;
        let alice = Signer {
            email: "alice@example.org",
            identity: &alice_key,
        };
        let bob = Signer {
            email: "bob@example.org",
            identity: &bob_key,
        };
        let (alice_client, bob_client) = (
            RelayClient::new(&url).unwrap(),
            RelayClient::new(&url).unwrap(),
        );
        // The first request of each opens its session; the second reuses it.
        for _ in 0..2 {
            assert_eq!(
                alice_client
                    .prekey_count(&alice)
                    .await
                    .unwrap()
                    .one_time_prekeys,
                2
            );
            assert!(
                bob_client
                    .poll(&bob, Duration::ZERO, 10)
                    .await
                    .unwrap()
                    .envelopes
                    .is_empty()
            );
        }
        assert_eq!(close_sessions_elsewhere(&url, &alice).await, 1);

        // Alice's send finds her session closed, opens one and is sent again: queued once.
        let message = SendRequest {
            messages: vec![OutgoingMessage {
                to: bob.email.to_owned(),
                body: Base64Bytes(b"once".to_vec()),
                ephemeral: false,
            }],
        };
        let sent = alice_client.send(&alice, &message).await.unwrap();
        assert_eq!(sent.ids.len(), 1);
        let polled = bob_client.poll(&bob, Duration::ZERO, 10).await.unwrap();
        assert_eq!(polled.envelopes.len(), 1, "{polled:?}");
        assert_eq!(polled.envelopes[0].id, sent.ids[0]);
        assert_eq!(polled.envelopes[0].body.0, b"once");
        // Exactly one new session was opened for it.
        assert_eq!(close_sessions_elsewhere(&url, &alice).await, 1);

        // Bob's sessions are closed before he acks: the ack is not lost (the queue is
        // empty afterwards) and not applied twice (it counts one).
        assert_eq!(close_sessions_elsewhere(&url, &bob).await, 1);
        let acked = bob_client
            .ack_and_poll(&bob, &[sent.ids[0]], Duration::ZERO, 10)
            .await
            .unwrap();
        assert_eq!(acked.acked, 1);
        assert!(acked.envelopes.is_empty(), "{acked:?}");
        assert!(
            bob_client
                .poll(&bob, Duration::ZERO, 10)
                .await
                .unwrap()
                .envelopes
                .is_empty()
        );
        assert_eq!(close_sessions_elsewhere(&url, &bob).await, 1);
    }

    /// A relay without sessions (404 on `POST /v1/sessions`) gets signed requests.
    #[tokio::test]
    async fn a_relay_without_sessions_gets_signatures() {
        let opens = Arc::new(AtomicUsize::new(0));
        let opens_in = Arc::clone(&opens);
        let url = fake_relay(move |_, path, headers, _| {
            if path == "/v1/sessions" {
                opens_in.fetch_add(1, Ordering::SeqCst);
                return (
                    404,
                    r#"{"error":"not_found","message":"no such route"}"#.to_owned(),
                );
            }
            assert!(headers.contains_key(HEADER_SIGNATURE), "{headers:?}");
            (200, r#"{"one_time_prekeys":3}"#.to_owned())
        });
        let identity = signer_identity();
        let signer = Signer {
            email: "alice@x",
            identity: &identity,
        };
        let client = RelayClient::new(&url).unwrap();
        for _ in 0..2 {
            assert_eq!(
                client.prekey_count(&signer).await.unwrap().one_time_prekeys,
                3
            );
        }
        // Asked once, then remembered.
        assert_eq!(opens.load(Ordering::SeqCst), 1);
    }
}
