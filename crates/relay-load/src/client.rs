//! A minimal signed HTTP/1.1 client of the relay API, for the load generator and the
//! tests that drive a real listener. (The messenger's own client is
//! `e2ee-client-core`; this one shares only `e2ee-proto` with it.)

use std::time::{SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use e2ee_proto::{
    Base64Key, Base64Signature, ClientHandshake, HEADER_ACCOUNT, HEADER_MAC, HEADER_SESSION,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, OneTimePreKey, OpenSessionResponse, RegisterRequest,
    SessionId, SessionKey, SignedPreKey, encode_b64, sign_request, signed_prekey_signing_bytes,
};
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::RngExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of [`TestClient`] and of a load run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The request could not be built (bad URL or header).
    #[error("invalid request: {0}")]
    Build(#[from] hyper::http::Error),
    /// Connecting or exchanging the request failed.
    #[error("http: {0}")]
    Http(#[from] hyper_util::client::legacy::Error),
    /// Reading the answer failed.
    #[error("reading the answer: {0}")]
    Body(#[from] hyper::Error),
    /// The relay answered with an unexpected status.
    #[error("relay answered {status}: {body}")]
    Status {
        /// Status code.
        status: StatusCode,
        /// Body text.
        body: String,
    },
    /// The answer was not the expected JSON.
    #[error("bad JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The relay's half of a session exchange was unusable.
    #[error("opening a session: {0}")]
    Session(#[from] e2ee_proto::SessionError),
    /// A task of the load run panicked or was cancelled.
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A [`Connection`](crate::Connection) failed to connect, to write the request or
    /// to read the answer (the relay closing before its answer was complete included).
    #[error("connection: {0}")]
    Connection(#[from] std::io::Error),
    /// A [`Connection`](crate::Connection)'s answer was not HTTP/1.1 it can read.
    #[error("bad response: {0}")]
    Response(String),
    /// The relay URL is not `http://HOST:PORT`.
    #[error("not an http://HOST:PORT relay URL: {0}")]
    Url(String),
}

/// How the generator authenticates its requests (docs/API.md, "Request signing" and
/// "Sessions"), so the two can be measured side by side against one relay build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Auth {
    /// One signed `POST /v1/sessions` per account, then a session MAC on every
    /// request, as the messenger client does (falls back to signatures on a relay
    /// without sessions).
    #[default]
    Session,
    /// An Ed25519 signature on every request, as clients older than sessions do.
    Signature,
}

/// An account's email and identity key, and the session its requests are MACed
/// under once [`TestClient::open_session`] opened one.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Normalized email.
    pub email: String,
    /// Ed25519 identity key.
    pub key: SigningKey,
    /// The open session, if any: requests then carry a session MAC, as the messenger
    /// client's do, instead of a signature.
    pub session: Option<Arc<Session>>,
}

/// A session opened by `POST /v1/sessions` (docs/API.md, "Sessions").
#[derive(Debug)]
pub struct Session {
    /// The relay's name for it.
    pub id: SessionId,
    /// The MAC key (zeroized on drop, never printed).
    pub key: SessionKey,
    /// When the relay stops accepting it, unix milliseconds.
    pub expires_at: u64,
}

/// Current unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Identity {
    /// A fresh random identity for `email` (already normalized).
    pub fn generate(email: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill(&mut seed);
        Self {
            email: email.to_owned(),
            key: SigningKey::from_bytes(&seed),
            session: None,
        }
    }

    /// The three signature headers for a request sent at `timestamp_ms`.
    pub fn sign_headers(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
    ) -> [(&'static str, String); 3] {
        let signature = sign_request(&self.key, method, path_and_query, timestamp_ms, body);
        [
            (HEADER_ACCOUNT, self.email.clone()),
            (HEADER_TIMESTAMP, timestamp_ms.to_string()),
            (HEADER_SIGNATURE, encode_b64(&signature)),
        ]
    }

    /// The authentication headers for a request sent at `timestamp_ms`: a session MAC
    /// when a session is open, else the signature of [`Self::sign_headers`].
    pub fn auth_headers(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp_ms: u64,
        body: &[u8],
    ) -> Vec<(&'static str, String)> {
        match &self.session {
            Some(session) => {
                let mac = session
                    .key
                    .mac_request(method, path_and_query, timestamp_ms, body);
                vec![
                    (HEADER_ACCOUNT, self.email.clone()),
                    (HEADER_TIMESTAMP, timestamp_ms.to_string()),
                    (HEADER_SESSION, session.id.to_b64()),
                    (HEADER_MAC, encode_b64(&mac)),
                ]
            }
            None => self
                .sign_headers(method, path_and_query, timestamp_ms, body)
                .to_vec(),
        }
    }

    /// A signed prekey with a random public key, correctly signed.
    pub fn signed_prekey(&self, id: u32) -> SignedPreKey {
        let mut public_key = [0u8; 32];
        rand::rng().fill(&mut public_key);
        let signature = self
            .key
            .sign(&signed_prekey_signing_bytes(id, &public_key))
            .to_bytes();
        SignedPreKey {
            id,
            public_key: Base64Key::new(public_key),
            signature: Base64Signature::new(signature),
        }
    }

    /// `count` one-time prekeys with random public keys and ids `first..`.
    pub fn one_time_prekeys(first: u32, count: u32) -> Vec<OneTimePreKey> {
        (first..first.saturating_add(count))
            .map(|id| {
                let mut public_key = [0u8; 32];
                rand::rng().fill(&mut public_key);
                OneTimePreKey {
                    id,
                    public_key: Base64Key::new(public_key),
                }
            })
            .collect()
    }

    /// A valid registration with `opks` one-time prekeys (the relay never checks that
    /// prekeys are real X25519 keys: it cannot use them).
    pub fn registration(&self, opks: u32) -> RegisterRequest {
        RegisterRequest {
            email: self.email.clone(),
            identity_key: Base64Key::new(self.key.verifying_key().to_bytes()),
            signed_prekey: self.signed_prekey(1),
            one_time_prekeys: Self::one_time_prekeys(1, opks),
        }
    }
}

/// The JSON body of an answer with status `expect`; any other status is
/// [`LoadError::Status`] with the body as text.
pub(crate) fn json_answer<T: DeserializeOwned>(
    status: StatusCode,
    expect: StatusCode,
    body: &[u8],
) -> Result<T, LoadError> {
    if status != expect {
        return Err(LoadError::Status {
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        });
    }
    Ok(serde_json::from_slice(body)?)
}

/// Idle connections a shared [`TestClient`] keeps for its concurrent callers (the
/// senders of a load run, the requests of a test).
const SHARED_POOL_IDLE: usize = 1024;

/// A pooled HTTP/1.1 client of one relay.
#[derive(Debug, Clone)]
pub struct TestClient {
    base: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl TestClient {
    /// A client of the relay at `base_url` (`http://host:port`, no trailing slash)
    /// whose pool keeps up to [`SHARED_POOL_IDLE`] idle connections.
    pub fn new(base_url: &str) -> Self {
        Self::with_idle_connections(base_url, SHARED_POOL_IDLE)
    }

    /// A client keeping at most one idle connection: what one messenger client is, one
    /// keep-alive connection its requests take turns on. A receiver of the load
    /// generator uses one, so N receivers hold N connections, not a shared pool's.
    pub fn single_connection(base_url: &str) -> Self {
        Self::with_idle_connections(base_url, 1)
    }

    fn with_idle_connections(base_url: &str, idle: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(idle)
                .build(connector),
        }
    }

    /// The relay's base URL, as given to [`Self::new`] without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request authenticated as `identity` when given (its session MAC, or a
    /// signature without a session); returns status and body.
    pub async fn send_raw(
        &self,
        identity: Option<&Identity>,
        method: Method,
        path_and_query: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), LoadError> {
        let mut builder = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path_and_query}", self.base))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(identity) = identity {
            for (name, value) in
                identity.auth_headers(method.as_str(), path_and_query, now_ms(), &body)
            {
                builder = builder.header(name, value);
            }
        }
        let response = self
            .http
            .request(builder.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Sends `body` as JSON and decodes a JSON answer, failing on any status but `expect`.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        identity: &Identity,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
        expect: StatusCode,
    ) -> Result<T, LoadError> {
        let bytes = match body {
            Some(body) => serde_json::to_vec(body)?,
            None => Vec::new(),
        };
        let (status, answer) = self
            .send_raw(Some(identity), method, path_and_query, bytes)
            .await?;
        json_answer(status, expect, &answer)
    }

    /// Registers `identity` with `opks` one-time prekeys.
    pub async fn register(&self, identity: &Identity, opks: u32) -> Result<(), LoadError> {
        let _: e2ee_proto::RegisterResponse = self
            .call(
                identity,
                Method::POST,
                "/v1/accounts",
                Some(&identity.registration(opks)),
                StatusCode::CREATED,
            )
            .await?;
        Ok(())
    }

    /// Opens a session for `identity` (`POST /v1/sessions`, signed: an ephemeral X25519
    /// exchange) and returns the identity with it, whose later requests are MACed as
    /// the messenger client's are; from a relay without `/v1/sessions` (404 or 405),
    /// the identity as it was, signing. Routes that take only a signature (registration,
    /// `DELETE /v1/account`, opening a session) need the identity without it.
    pub async fn open_session(&self, identity: &Identity) -> Result<Identity, LoadError> {
        let mut random = [0u8; 32];
        rand::rng().fill(&mut random);
        let handshake = ClientHandshake::new(random);
        let signed = Identity {
            session: None,
            ..identity.clone()
        };
        let answer: OpenSessionResponse = match self
            .call(
                &signed,
                Method::POST,
                "/v1/sessions",
                Some(&handshake.request()),
                StatusCode::CREATED,
            )
            .await
        {
            Ok(answer) => answer,
            // A relay older than sessions: its requests stay signed, as the messenger
            // client's do there (and before/after figures can use one generator).
            Err(LoadError::Status {
                status: StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED,
                ..
            }) => return Ok(signed),
            Err(other) => return Err(other),
        };
        let key = handshake.finish(&answer)?;
        Ok(Identity {
            session: Some(Arc::new(Session {
                id: answer.session_id,
                key,
                expires_at: answer.expires_at,
            })),
            ..signed
        })
    }
}
