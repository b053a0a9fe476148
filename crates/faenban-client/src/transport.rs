//! What a device needs from the way it reaches the server: the protocol's
//! four requests, and why one failed. The HTTP transport
//! ([`crate::http::HttpTransport`]) is what laptops use; tests and other
//! clients may bring their own.

use faenban_core::sync::{
    HelloRequest, HelloResponse, PullPage, PushRequest, PushResponse, RelayRequest, RelayResponse,
};
use faenban_core::RefusalCode;

/// The protocol's requests (`docs/sync-protocol.md`), each answered or
/// failed for good (a transport retries what it can before it gives up).
/// A transport is shared with the thread that pulls the next pages while
/// the store applies the last ones, hence `Sync`.
pub trait Transport: Sync {
    /// Introduces the device: `POST /v1/hello`.
    fn hello(&self, request: &HelloRequest) -> Result<HelloResponse, TransportError>;
    /// Pushes a run of an outbox: `POST /v1/push`.
    fn push(&self, request: &PushRequest) -> Result<PushResponse, TransportError>;
    /// Hands the server a letter another device sealed to it; the reply
    /// comes back sealed to that device: `POST /v1/relay`.
    fn relay(&self, request: &RelayRequest) -> Result<RelayResponse, TransportError>;
    /// One page of the changes in the account's scope after `since`:
    /// `GET /v1/changes`.
    fn pull(
        &self,
        since: u64,
        check: Option<&str>,
        limit: usize,
    ) -> Result<PullPage, TransportError>;
}

/// Why a request failed for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// The server could not be reached or kept failing, after every retry.
    Network(String),
    /// The server refused the request and said why.
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's error code, as it sent it (a newer server may send
        /// one this version does not know: see [`TransportError::refusal`]).
        code: String,
        /// The server's reason.
        message: String,
    },
    /// The server's answer was not what the protocol says.
    BadAnswer(String),
    /// The server's certificate is not trusted, or HTTPS cannot be set up.
    Setup(String),
    /// The server address or the CA file given is wrong (bad input).
    BadAddress {
        /// What is wrong, in English.
        en: String,
        /// The same, in Thai.
        th: String,
    },
}

impl TransportError {
    /// The refusal's code, if the server refused with one this version
    /// knows.
    pub fn refusal(&self) -> Option<RefusalCode> {
        match self {
            TransportError::Refused { code, .. } => RefusalCode::from_name(code),
            _ => None,
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Network(reason) => {
                write!(f, "the server could not be reached: {reason}")
            }
            TransportError::Refused {
                status,
                code,
                message,
            } => write!(f, "the server refused (HTTP {status}, {code}): {message}"),
            TransportError::BadAnswer(reason) => {
                write!(f, "the server's answer could not be read: {reason}")
            }
            TransportError::Setup(reason) => f.write_str(reason),
            TransportError::BadAddress { en, .. } => f.write_str(en),
        }
    }
}

impl std::error::Error for TransportError {}
