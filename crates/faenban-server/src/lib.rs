//! faenban-server: the sync server. Devices push runs of their outbox and
//! pull the changes in their account's scope; the merge is the core's, the
//! storage is a [`Backend`]. `docs/sync-protocol.md` describes the protocol.
//!
//! [`app`] builds the router and [`run`] serves it until a shutdown signal,
//! letting requests in flight finish (a push either commits or rolls back).

pub mod backend;
mod group_commit;
pub mod memory;
mod office;
pub mod postgres;
pub mod token;
mod war_room;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use faenban_core::sync::{
    ErrorBody, HelloRequest, HelloResponse, PullPage, PushRequest, PushResponse, RelayRequest,
    RelayResponse, Reply, ReplyPage, ReplyPull, PROTOCOL_VERSION,
};
use faenban_core::RefusalCode;
use faenban_keys::{PublicKey, Signature};
use faenban_store::server::{Account, PushInput};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::net::TcpListener;
use tower_http::compression::predicate::{DefaultPredicate, Predicate as _, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

pub use backend::{Backend, BackendError, SqliteBackend};

/// The largest request body accepted, after decompression: a push batch is
/// at most 1 MiB of changes, and the rest is room for its envelope.
pub const MAX_BODY_BYTES: usize = 2 << 20;

/// The most changes one pull page returns.
pub const MAX_PAGE: usize = 5_000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    backend: Arc<dyn Backend>,
    /// Bounds the store calls running at once: hundreds of devices syncing
    /// together queue here instead of each holding a thread.
    store_calls: Arc<tokio::sync::Semaphore>,
    /// Bounds the request bodies read at once (each up to
    /// [`MAX_BODY_BYTES`]), so that a flood of pushes holds bounded memory.
    bodies: Arc<tokio::sync::Semaphore>,
    /// Reports already computed, for as long as no push changes them.
    reports: Arc<office::ReportCache>,
    /// Browsers signed in to the War Room.
    sessions: Arc<war_room::Sessions>,
}

/// How many request bodies may be read at once.
const BODIES: usize = 16;

/// How many store calls may run at once (one writer and a few readers
/// serve them; more would only wait on their locks).
const STORE_CALLS: usize = 8;

/// The smallest answer sent compressed, in bytes, to a client that accepts
/// it; smaller ones go as they are.
pub const COMPRESSED_FROM: u16 = 1024;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// The server's router over a backend.
pub fn app(backend: Arc<dyn Backend>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/hello", post(hello))
        .route("/v1/push", post(push))
        .route("/v1/relay", post(relay))
        .route("/v1/changes", get(pull))
        .route("/v1/report", get(office::report))
        .route("/v1/report.xlsx", get(office::report_workbook))
        .route("/war-room", get(war_room::page))
        .route("/war-room/style.css", get(war_room::style))
        .route("/war-room/sign-in", post(war_room::sign_in))
        .route("/war-room/sign-out", post(war_room::sign_out))
        .fallback(not_found)
        .layer(middleware::from_fn(log_request))
        // Pages of changes compress about sixfold at the fastest level; the
        // default level costs the server more time than it saves on the wire.
        // An answer under a kilobyte (a hello's, a push's, a refusal) is sent
        // as it is: starting a compressor costs more than the bytes it saves.
        .layer(
            CompressionLayer::new()
                .quality(tower_http::CompressionLevel::Fastest)
                .compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESSED_FROM))),
        )
        .layer(RequestDecompressionLayer::new())
        .with_state(AppState {
            backend,
            store_calls: Arc::new(tokio::sync::Semaphore::new(STORE_CALLS)),
            bodies: Arc::new(tokio::sync::Semaphore::new(BODIES)),
            reports: Arc::default(),
            sessions: Arc::default(),
        })
}

/// How many connections the server keeps open at once. Past it, new
/// connections wait in the listen queue: a flood of connections cannot
/// exhaust the process's files and lock out everyone else.
pub const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request's headers (on a new
/// connection, and between requests on a kept-alive one).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the listener allows; [`Limits::default`] is what `serve` uses.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the
/// requests in flight.
pub async fn run(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(listener, backend, shutdown, Limits::default()).await
}

/// [`run`] with other limits (tests use small ones).
pub async fn run_with(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let app = app(backend);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    // Raised when the server is crowded (or stopping): every connection then
    // serves the request it is on, if any, and closes. Without it, laptops
    // that have finished keep their connections open, idle, until the
    // header timeout, while the next laptops wait in the listen queue.
    let (close_connections, _) = tokio::sync::watch::channel(0u64);
    let crowded = limits.max_connections / 4;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        if connections.available_permits() < crowded {
            close_connections.send_modify(|generation| *generation += 1);
        }
        // At the cap, the next connection waits in the listen queue until
        // one closes, so a burst of laptops is served in turn instead of
        // refused.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of files, say: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Set once the connection's first request has come: only then may
        // it be closed when idle (hyper would close a new connection whose
        // first request is still on its way).
        let served = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let service = hyper_util::service::TowerToHyperService::new(
            tower::ServiceExt::map_request(app.clone(), {
                let served = served.clone();
                move |request: axum::extract::Request<hyper::body::Incoming>| {
                    served.store(true, std::sync::atomic::Ordering::Relaxed);
                    request
                }
            }),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // Near the cap, a connection serves one request and closes.
            .keep_alive(connections.available_permits() >= crowded);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let mut told_to_close = close_connections.subscribe();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // A client that hangs up or times out ends its connection;
            // nothing to report.
            loop {
                tokio::select! {
                    _ = connection.as_mut() => break,
                    changed = told_to_close.changed() => {
                        if changed.is_err() || served.load(std::sync::atomic::Ordering::Relaxed) {
                            connection.as_mut().graceful_shutdown();
                            let _ = connection.await;
                            break;
                        }
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    // Stopping: every connection finishes the request it is on and closes;
    // the server returns once all have (every permit is back).
    close_connections.send_modify(|generation| *generation += 1);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = connections.acquire_many(all).await;
    Ok(())
}

/// How many connections may wait to be accepted: beyond
/// [`MAX_CONNECTIONS`] open, a burst of laptops waits here rather than being
/// dropped by the kernel (tokio's default queue holds 1,024).
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `address` with a queue of [`LISTEN_BACKLOG`] (the kernel
/// may cap it lower: `net.core.somaxconn`).
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The server's wall clock, ms since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A refusal: a status and the JSON body every client can read.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: RefusalCode,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }

    /// The status and the message of a refusal, for a page that shows it.
    pub(crate) fn status_and_message(&self) -> (StatusCode, String) {
        (self.status, self.body.message.clone())
    }
}

/// How long a client is asked to wait before it tries a request the
/// server could not take now (503) again, in seconds.
const RETRY_AFTER_SECONDS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            return (
                self.status,
                [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS)],
                Json(self.body),
            )
                .into_response();
        }
        (self.status, Json(self.body)).into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> ApiError {
        match error {
            BackendError::Refused { code, message } => {
                ApiError::new(status_of(code), code, message)
            }
            BackendError::NotFound { kind, name } => ApiError::new(
                StatusCode::NOT_FOUND,
                RefusalCode::NotFound,
                format!("no {kind} named {name}"),
            ),
            BackendError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCode::Busy,
                "the server is busy; try again shortly",
            ),
            BackendError::Unavailable(what) => {
                tracing::warn!(what, "the store cannot be reached");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    RefusalCode::Busy,
                    "the server cannot reach its database at the moment; nothing of this request was stored; try again shortly",
                )
            }
            BackendError::ReadOnly => {
                tracing::error!("the server's store cannot be written (read-only)");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    RefusalCode::ReadOnly,
                    "the server's store cannot be written at the moment; nothing of this request was stored; try again later",
                )
            }
            BackendError::DiskFull => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                RefusalCode::DiskFull,
                "the server's disk is full; nothing of this request was stored",
            ),
            BackendError::Internal(what) => {
                tracing::error!(what, "internal failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    RefusalCode::Internal,
                    "the request failed inside the server; nothing of it was stored",
                )
            }
            BackendError::Storage(what) => {
                tracing::error!(what, "storage failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    RefusalCode::Storage,
                    "the server could not use its store; nothing of this request was stored",
                )
            }
        }
    }
}

/// The HTTP status a refusal is answered with.
fn status_of(code: RefusalCode) -> StatusCode {
    use RefusalCode as C;
    match code {
        C::OutOfScope
        | C::WrongDevice
        | C::WrongAuthor
        | C::WrongKey
        | C::BadSignature
        | C::Revoked
        | C::NoReport => StatusCode::FORBIDDEN,
        C::SequenceGap | C::SequenceReused | C::StampReused | C::UnknownDevice | C::CursorAhead => {
            StatusCode::CONFLICT
        }
        C::BadValue | C::LimitExceeded | C::WrongTypes | C::BadIndex | C::BadLetter => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        C::MissingToken | C::BadToken => StatusCode::UNAUTHORIZED,
        C::NotFound => StatusCode::NOT_FOUND,
        C::TooLarge | C::TooManyChanges => StatusCode::PAYLOAD_TOO_LARGE,
        C::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        C::Busy | C::ShuttingDown | C::ReadOnly | C::NoRandomness => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        C::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        C::Storage | C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        C::Malformed
        | C::UnreadableBody
        | C::ProtocolVersion
        | C::SchemaVersion
        | C::BadSequence
        | C::BadQuery
        | C::BadAccount => StatusCode::BAD_REQUEST,
    }
}

/// Logs every request: method, path, status and time. Never bodies or
/// query values other than the cursor, which hold no personal data.
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        RefusalCode::NotFound,
        "no such endpoint; see docs/sync-protocol.md",
    )
}

async fn health(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "protocol": PROTOCOL_VERSION,
        "schema": state.backend.schema_version(),
        "server_time_ms": now_ms(),
    }))
}

/// Runs blocking store work off the async runtime, a few at a time.
pub(crate) async fn blocking<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    // The permit moves into the blocking work: a client that hangs up does
    // not free it while the work still runs.
    let permit = state
        .store_calls
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                RefusalCode::ShuttingDown,
                "the server is shutting down; try again shortly",
            )
        })?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            RefusalCode::Internal,
            "the request failed inside the server; nothing of it was stored",
        )
    })?
}

/// The account of the request's bearer token.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Account, ApiError> {
    Ok(authenticate_with_digest(state, headers).await?.0)
}

/// The account of the request's bearer token, and the token's SHA-256 (what
/// a hello's proof is tied to).
async fn authenticate_with_digest(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Account, Vec<u8>), ApiError> {
    let unauthorized =
        |code: RefusalCode, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            RefusalCode::MissingToken,
            "no token: send `Authorization: Bearer <token>` (run `faenban login`)",
        ));
    };
    // The scheme name is case-insensitive (RFC 9110).
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .unwrap_or_default();
    account_of_token(state, token).await
}

/// The account of a token (from a bearer header or the War Room's sign-in
/// form), and the token's SHA-256.
pub(crate) async fn account_of_token(
    state: &AppState,
    token: &str,
) -> Result<(Account, Vec<u8>), ApiError> {
    account_of_token_hash(state, token::looks_valid(token).then(|| token::hash(token))).await
}

/// The account of a token's SHA-256 (`None`: not a token at all).
pub(crate) async fn account_of_token_hash(
    state: &AppState,
    hash: Option<Vec<u8>>,
) -> Result<(Account, Vec<u8>), ApiError> {
    let unauthorized =
        |code: RefusalCode, message: &str| ApiError::new(StatusCode::UNAUTHORIZED, code, message);
    let Some(hash) = hash else {
        return Err(unauthorized(
            RefusalCode::BadToken,
            "the token is not one this server issued (mistyped or forged)",
        ));
    };
    let backend = state.backend.clone();
    let lookup = hash.clone();
    let account = blocking(state, move || Ok(backend.account_by_token(&lookup)?)).await?;
    match account {
        None => Err(unauthorized(
            RefusalCode::BadToken,
            "the token is not one this server issued (mistyped or forged)",
        )),
        Some(account) if account.revoked_ms.is_some() => Err(unauthorized(
            RefusalCode::Revoked,
            "this account's token was revoked; ask the administrator for a new one",
        )),
        Some(account) => Ok((account, hash)),
    }
}

/// How long a client may take to send a request body.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a JSON body, telling apart a body that is cut off or not JSON (400)
/// from JSON of the wrong shape (422), too big (413) and too slow (408).
/// The protocol version is read first, so that a client of another version
/// is told so plainly instead of that its request has the wrong shape.
async fn read_json<T: DeserializeOwned>(state: &AppState, body: Body) -> Result<T, ApiError> {
    // Bodies being read at once are bounded, and so is the memory they hold.
    let _permit = state.bodies.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            RefusalCode::ShuttingDown,
            "the server is shutting down; try again shortly",
        )
    })?;
    let read = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, MAX_BODY_BYTES),
    )
    .await
    .map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            RefusalCode::BodyTimeout,
            format!(
                "the request body did not arrive within {} s; nothing of it was stored",
                BODY_READ_TIMEOUT.as_secs()
            ),
        )
    })?;
    let bytes: Bytes = read
        .map_err(|error| {
            let too_big = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
                || error.to_string().contains("length limit");
            if too_big {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    RefusalCode::TooLarge,
                    format!(
                        "the request is larger than {} MiB once decompressed; send at most {} changes or 1 MiB per batch",
                        MAX_BODY_BYTES >> 20,
                        faenban_core::sync::MAX_BATCH_CHANGES
                    ),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    RefusalCode::UnreadableBody,
                    "the request body could not be read (cut off, or badly compressed)",
                )
            }
        })?;
    #[derive(Deserialize)]
    struct Versioned {
        protocol: u32,
    }
    if let Ok(Versioned { protocol }) = serde_json::from_slice::<Versioned>(&bytes) {
        check_protocol(protocol)?;
    }
    serde_json::from_slice(&bytes).map_err(|error| {
        use serde_json::error::Category;
        // serde_json's own text can quote the offending value (a name, an
        // ID), so the answer names only where the problem is.
        let at = format!("line {} column {}", error.line(), error.column());
        match error.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                RefusalCode::WrongTypes,
                format!("the request is JSON of the wrong shape (a missing, unknown or mistyped key) at {at}"),
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                RefusalCode::Malformed,
                format!("the request is not complete JSON ({at})"),
            ),
        }
    })
}

fn check_protocol(protocol: u32) -> Result<(), ApiError> {
    if protocol == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            RefusalCode::ProtocolVersion,
            format!(
                "this server speaks sync protocol {PROTOCOL_VERSION}, the request protocol {protocol}; update faenban on the {}",
                if protocol > PROTOCOL_VERSION { "server" } else { "laptop" }
            ),
        ))
    }
}

async fn hello(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<HelloResponse>, ApiError> {
    let (account, token_digest) = authenticate_with_digest(&state, &headers).await?;
    let request: HelloRequest = read_json(&state, body).await?;
    let key = PublicKey::from_hex(&request.public_key).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            RefusalCode::BadValue,
            "`public_key` is not an Ed25519 public key in 64 lowercase hex digits",
        )
    })?;
    let proven = Signature::from_hex(&request.proof)
        .is_some_and(|proof| key.verifies_hello(request.device, &token_digest, &proof));
    if !proven {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            RefusalCode::BadSignature,
            "the hello's proof is not this key's signature for this device and token",
        ));
    }
    if !faenban_core::limits::is_device_name(&request.name) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            RefusalCode::BadValue,
            format!(
                "a device name is 1 to {} characters with no control characters",
                faenban_core::limits::MAX_DEVICE_NAME_CHARS
            ),
        ));
    }
    let backend = state.backend.clone();
    let schema = backend.schema_version();
    let response = blocking(&state, move || {
        let held = backend.hello(&account, request.device, &request.name, &key, now_ms())?;
        Ok(HelloResponse {
            protocol: PROTOCOL_VERSION,
            schema,
            account: account.name,
            role: account.scope.role,
            areas: account.scope.areas,
            dimension: account.scope.dimension,
            held_through: held,
            server_time_ms: now_ms(),
            server_key: backend.server_key().public().to_string(),
            run_signing: faenban_core::sync::RunSigning::NEWEST.number(),
        })
    })
    .await?;
    Ok(Json(response))
}

async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PushResponse>, ApiError> {
    let account = authenticate(&state, &headers).await?;
    let request: PushRequest = read_json(&state, body).await?;
    if request.schema < 1 || request.schema > state.backend.schema_version() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            RefusalCode::SchemaVersion,
            if request.schema < 1 {
                format!(
                    "a store schema starts at 1; this push says {}",
                    request.schema
                )
            } else {
                format!(
                    "the laptop's store is schema {}, newer than this server's {}; update the server",
                    request.schema,
                    state.backend.schema_version()
                )
            },
        ));
    }
    let (changes, signature) = decoded_run(&request.changes, &request.signature)?;
    let public_key = match request.public_key.as_deref() {
        None => None,
        Some(text) => Some(PublicKey::from_hex(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                RefusalCode::BadValue,
                "`public_key` is not an Ed25519 public key in 64 lowercase hex digits",
            )
        })?),
    };
    let device = request.device;
    let account_id = account.id;
    let backend = state.backend.clone();
    let first_sequence = request.first_sequence;
    let stamps: Vec<faenban_core::Stamp> = changes.iter().map(|change| change.stamp).collect();
    let input = PushInput {
        device,
        relay: request.relay,
        first_sequence: request.first_sequence,
        changes,
        signature,
        public_key,
    };
    let outcome = blocking(&state, move || {
        Ok(backend.push(&account, input, now_ms())?)
    })
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            tracing::warn!(account = account_id, %device, code = error.body.error, "push refused");
            return Err(error);
        }
    };
    tracing::info!(
        account = account_id,
        %device,
        applied = outcome.applied,
        duplicates = outcome.duplicates,
        restamped = outcome.restamped,
        held_back = outcome.held_back.len(),
        held_through = outcome.held_through,
        "push"
    );
    Ok(Json(PushResponse {
        protocol: PROTOCOL_VERSION,
        device,
        held_through: outcome.held_through,
        applied: outcome.applied,
        duplicates: outcome.duplicates,
        restamped: outcome.restamped,
        server_time_ms: now_ms(),
        ack: signed_ack(
            state.backend.server_key(),
            device,
            first_sequence,
            &stamps,
            outcome.held_through,
        ),
        held_back: outcome.held_back,
    }))
}

/// A run's changes and signature, checked as every path that takes a run
/// must: its length, its encoding and its signature's form.
fn decoded_run(
    changes: &faenban_core::sync::ChangeSet,
    signature: &str,
) -> Result<(Vec<faenban_core::Change>, Signature), ApiError> {
    if changes.len() > faenban_core::sync::MAX_BATCH_CHANGES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            RefusalCode::TooManyChanges,
            format!(
                "a batch holds at most {} changes; this one holds {}",
                faenban_core::sync::MAX_BATCH_CHANGES,
                changes.len()
            ),
        ));
    }
    let changes = changes.decode().map_err(|error| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            RefusalCode::BadIndex,
            error.to_string(),
        )
    })?;
    let signature = Signature::from_hex(signature).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            RefusalCode::BadValue,
            "`signature` is not an Ed25519 signature in 128 lowercase hex digits",
        )
    })?;
    Ok((changes, signature))
}

/// The server's signed acknowledgement that `device`'s outbox is held
/// through `held_through`, when the run that started at `first_sequence`
/// (stamped `stamps`) holds that sequence: the device checks it against
/// its own outbox.
fn signed_ack(
    server: &faenban_keys::DeviceKey,
    device: faenban_core::DeviceId,
    first_sequence: u64,
    stamps: &[faenban_core::Stamp],
    held_through: u64,
) -> Option<String> {
    let stamp = stamps.get(usize::try_from(held_through.checked_sub(first_sequence)?).ok()?)?;
    Some(server.sign_ack(device, held_through, stamp).to_string())
}

/// How many pull pages one reply to a letter carries at most (each at most
/// `MAX_PAGE_BYTES`); the rest comes with the device's next letter.
pub const REPLY_PAGES: usize = 4;

/// `POST /v1/relay`: a letter sealed to this server by a device, carried
/// by whoever holds the token. The letter is opened and its signature
/// checked against the device's bound key; its run goes through the same
/// checks as the device's own push would, against the device's own
/// account; the reply (acknowledgement, refusal, and what is new in the
/// device's scope) is sealed to the device's key. The carrier learns
/// nothing of either.
async fn relay(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RelayResponse>, ApiError> {
    let carrier = authenticate(&state, &headers).await?;
    let request: RelayRequest = read_json(&state, body).await?;
    let bad_letter = |why: &str| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            RefusalCode::BadLetter,
            format!("the letter cannot be taken: {why}; it will never be, so drop it (its device still has its outbox)"),
        )
    };
    let sealed = faenban_keys::unhex_vec(&request.letter)
        .ok_or_else(|| bad_letter("it is not sealed bytes in hex"))?;
    let device = request.device;
    let backend = state.backend.clone();
    let carrier_id = carrier.id;
    let reply = blocking(&state, move || {
        let Some((owner, Some(key))) = backend.device_binding(device)? else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                RefusalCode::UnknownDevice,
                format!("device {device} has not said hello to this server with its key; its letters can be opened once it has"),
            ));
        };
        let letter =
            faenban_store::bundle::open_letter(backend.server_key(), device, &sealed, |_| Some(key))
                .map_err(|error| bad_letter(&error.to_string()))?;
        let mut reply = Reply {
            device,
            server_time_ms: now_ms(),
            held_through: backend.held_through(device)?,
            ack: None,
            refused: None,
            held_back: Vec::new(),
            pulled: None,
        };
        if owner.revoked_ms.is_some() {
            reply.refused = Some(ErrorBody {
                error: RefusalCode::Revoked.as_str().into(),
                message: "this laptop's account was revoked; its changes are not accepted".into(),
            });
            return Ok((reply, key));
        }
        if let Some(run) = letter.run {
            let pushed = decoded_run(&run.changes, &run.signature).and_then(|(changes, signature)| {
                let stamps: Vec<faenban_core::Stamp> =
                    changes.iter().map(|change| change.stamp).collect();
                let input = PushInput {
                    device,
                    relay: true,
                    first_sequence: run.first_sequence,
                    changes,
                    signature,
                    public_key: None,
                };
                let outcome = backend.push(&carrier, input, now_ms())?;
                Ok((outcome, stamps))
            });
            match pushed {
                Ok((outcome, stamps)) => {
                    reply.held_through = outcome.held_through;
                    reply.ack = signed_ack(
                        backend.server_key(),
                        device,
                        run.first_sequence,
                        &stamps,
                        outcome.held_through,
                    );

                }
                // The server could not do it now: the carrier keeps the
                // letter and tries again.
                Err(error) if error.status.is_server_error() => return Err(error),
                Err(error) => reply.refused = Some(error.body),
            }
        }
        // Every sequence held back from the outbox's start, not only this
        // letter's: the device may never see the reply to another letter.
        reply.held_back = backend.refusals_between(device, letter.outbox_from, reply.held_through)?;
        if let Some(from) = letter.pull {
            reply.pulled = Some(pull_for_reply(&*backend, &owner.scope, from)?);
        }
        Ok((reply, key))
    })
    .await;
    let (reply, key) = match reply {
        Ok(done) => done,
        Err(error) => {
            tracing::warn!(account = carrier_id, %device, code = error.body.error, "relay refused");
            return Err(error);
        }
    };
    tracing::info!(
        account = carrier_id,
        %device,
        held_through = reply.held_through,
        refused = reply.refused.as_ref().map(|body| body.error.as_str()),
        "relay"
    );
    let sealed = faenban_store::bundle::seal_reply(state.backend.server_key(), &key, &reply)
        .map_err(|error| bad_letter(&error.to_string()))?;
    Ok(Json(RelayResponse {
        protocol: PROTOCOL_VERSION,
        device,
        reply: faenban_keys::hex(&sealed),
    }))
}

/// The pull a letter asked for, up to [`REPLY_PAGES`] pages. A cursor the
/// server no longer knows (it was restored from a backup) starts again
/// from 0, as the laptop's own sync would.
fn pull_for_reply(
    backend: &dyn Backend,
    scope: &faenban_core::sync::Scope,
    from: faenban_core::sync::PullFrom,
) -> Result<ReplyPull, ApiError> {
    let mut pulled = ReplyPull {
        since: from.since,
        pages: Vec::new(),
        more: true,
    };
    let (mut since, mut check) = (from.since, from.check);
    while pulled.more && pulled.pages.len() < REPLY_PAGES {
        let page = match backend.pull(scope, since, check.as_deref(), MAX_PAGE) {
            Ok(page) => page,
            Err(BackendError::Refused {
                code: RefusalCode::CursorAhead,
                ..
            }) if since > 0 => {
                since = 0;
                check = None;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        since = page.next;
        check = page.check.clone();
        pulled.more = page.more;
        pulled.pages.push(ReplyPage {
            changes: page.changes,
            next: page.next,
            check: page.check,
            devices: page.devices,
        });
    }
    Ok(pulled)
}

/// `GET /v1/changes` parameters.
#[derive(Debug, Deserialize)]
struct PullQuery {
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    protocol: Option<u32>,
    #[serde(default)]
    check: Option<String>,
}

async fn pull(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PullQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let account = authenticate(&state, &headers).await?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            RefusalCode::BadQuery,
            format!("{rejection}; expected ?since=<cursor>&limit=<1..{MAX_PAGE}>"),
        )
    })?;
    check_protocol(query.protocol.unwrap_or(PROTOCOL_VERSION))?;
    let limit = query.limit.unwrap_or(1000).clamp(1, MAX_PAGE);
    let backend = state.backend.clone();
    let since = query.since;
    let check = query.check;
    // The page is read and written out as JSON off the async threads: a
    // large page must not stall every other request.
    let json = blocking(&state, move || {
        let page = backend.pull(&account.scope, since, check.as_deref(), limit)?;
        let page = PullPage {
            protocol: PROTOCOL_VERSION,
            changes: page.changes,
            next: page.next,
            more: page.more,
            check: page.check,
            server_time_ms: now_ms(),
            devices: page.devices,
        };
        serde_json::to_vec(&page).map_err(|error| {
            tracing::error!(%error, "a pull page could not be written out");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                RefusalCode::Internal,
                "the request failed inside the server",
            )
        })
    })
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(json),
    )
        .into_response())
}
