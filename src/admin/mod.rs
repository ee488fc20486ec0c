//! The local admin API (HTTP/JSON on loopback, bearer token) through which
//! operators' CLI commands and national case systems talk to a running node,
//! plus the small client the CLI uses. No business rules: handlers call
//! [`Core`].

use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::exchange::{
    Exchange, FeedError, ImportError, IssueError, ReadError, ScreenError, SweepError,
};
use crate::identity::format_public_key;
use crate::net::Links;
use crate::notice::InputError;
use crate::officers::{Principal, Registry};

mod auth;
mod client;
mod console;
use auth::{OfficerRefusals, TokenDigest};
mod events;
use crate::notice::screening::{Query as ScreenQuery, QueryError};
use crate::notice::{Kind, NoticeId, NoticeInput};
pub use client::{Client, ClientError, SseMessage};

/// Largest request body accepted (a notice is at most 256 KiB; base64 and
/// JSON overhead stay well under this).
pub const MAX_REQUEST: usize = 1024 * 1024;

#[derive(Clone)]
struct AppState {
    core: Arc<Exchange>,
    links: Arc<Links>,
    /// SHA-256 of the administrator's token.
    token_hash: [u8; 32],
    /// The officers and their roles, read on every request so a removal
    /// takes effect at once.
    officers: Registry,
    /// Officers' refusals recorded one by one (bounded per officer).
    refusals: Arc<std::sync::Mutex<OfficerRefusals>>,
    /// When an unreadable registry was last logged (once a minute at most).
    registry_warned: Arc<std::sync::Mutex<Option<i64>>>,
    /// Event streams open at once ([`events::MAX_STREAMS`]).
    streams: Arc<tokio::sync::Semaphore>,
    /// Event streams per caller ([`events::STREAMS_PER_CALLER`]).
    stream_owners: Arc<events::StreamOwners>,
    /// The node's tasks: store work runs here, so shutdown waits for it.
    tasks: TaskTracker,
    /// Turns true at shutdown: ends event streams.
    shutdown: watch::Receiver<bool>,
    /// What `/metrics` reads besides the exchange and the links.
    sources: MetricsSources,
    /// One backup at a time: each spools a copy of the store.
    backups: Arc<tokio::sync::Semaphore>,
    /// The desk console's signed-in officers.
    console: Arc<console::Sessions>,
}

/// What `GET /metrics` reads that the admin API does not otherwise hold.
#[derive(Clone)]
pub struct MetricsSources {
    /// What the alert hook did.
    pub alerts: Arc<crate::alerts::AlertStats>,
    /// (certificate, not after in unix seconds), read at each scrape so a
    /// certificate reloaded by SIGHUP shows at once.
    pub certificates: Arc<dyn Fn() -> Vec<(String, i64)> + Send + Sync>,
}

/// An error answer: status plus a JSON body naming the field when there is one.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

struct ApiError(StatusCode, ErrorBody);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl ApiError {
    fn input(i: InputError) -> ApiError {
        ApiError(
            StatusCode::BAD_REQUEST,
            ErrorBody {
                error: i.to_string(),
                field: Some(i.field),
            },
        )
    }

    fn not_found(id: &str) -> ApiError {
        ApiError(
            StatusCode::NOT_FOUND,
            ErrorBody {
                error: format!("no notice with id {id}"),
                field: None,
            },
        )
    }

    /// New notices refused for lack of disk space: answered 507, the
    /// message says what to do. Logged by the store when the state changes.
    fn disk_low(e: &dyn std::fmt::Display) -> ApiError {
        ApiError(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorBody {
                error: e.to_string(),
                field: None,
            },
        )
    }

    /// A failure of the node, not of the request: logged, answered 500.
    fn forbidden(message: String) -> ApiError {
        ApiError(
            StatusCode::FORBIDDEN,
            ErrorBody {
                error: message,
                field: None,
            },
        )
    }

    fn internal(e: &dyn std::fmt::Display) -> ApiError {
        warn!(error = %e, "admin request failed");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorBody {
                error: e.to_string(),
                field: None,
            },
        )
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Input(i) => ApiError::input(i),
            IssueError::Store(e @ crate::store::StoreError::DiskLow(_)) => ApiError::disk_low(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<ScreenError> for ApiError {
    fn from(e: ScreenError) -> Self {
        match e {
            ScreenError::Input(i) => ApiError::input(i),
            other => ApiError::internal(&other),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Rejected(r) => ApiError(
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error: r,
                    field: None,
                },
            ),
            ImportError::Store(e @ crate::store::StoreError::DiskLow(_)) => ApiError::disk_low(&e),
            other => ApiError::internal(&other),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<SweepError> for ApiError {
    fn from(e: SweepError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        ApiError::internal(&e)
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::internal(&e)
    }
}

fn bad(field: &str, error: String) -> ApiError {
    ApiError(
        StatusCode::BAD_REQUEST,
        ErrorBody {
            error,
            field: Some(field.to_string()),
        },
    )
}

/// How long shutdown lets requests in progress finish before their
/// connections are dropped.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Admin connections open at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request's headers, and how long an idle
/// kept-alive connection stays open (hyper's header timer runs while it
/// waits for the next request).
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The longest one connection may stay open: bounds a client that sends
/// its body a byte at a time.
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether the node is ready to serve, and why not: what `GET /ready`
/// answers. The node sets it as it starts and stops.
#[derive(Debug)]
pub struct Readiness(std::sync::Mutex<Option<String>>);

impl Readiness {
    /// Not ready yet, for `why`.
    pub fn new(why: &str) -> Readiness {
        Readiness(std::sync::Mutex::new(Some(why.to_string())))
    }

    /// Ready.
    pub fn ready(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Not ready, for `why`.
    pub fn not_ready(&self, why: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Why the node is not ready, or `None` when it is.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// `GET /health`: the process serves HTTP. No token, no personal data.
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /ready`: 200 once the store is open, the QUIC endpoint bound and
/// the admin API serving; 503 with the reason otherwise (starting, waiting
/// for the data directory, stopping). No token, no personal data.
async fn ready(State(r): State<Arc<Readiness>>) -> Response {
    match r.reason() {
        None => Json(serde_json::json!({ "ready": true })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// The routes served without a token.
fn public_routes(readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(readiness)
}

/// What the admin listener serves while the node starts: `/health` and
/// `/ready`; everything else is 503 with the reason.
pub fn starting_router(readiness: Arc<Readiness>) -> Router {
    let why = readiness.clone();
    public_routes(readiness)
        .fallback(move || {
            let reason = why.reason().unwrap_or_default();
            async move {
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorBody {
                        error: format!("node not ready: {reason}"),
                        field: None,
                    },
                )
                .into_response()
            }
        })
        .layer(middleware::map_response(json_errors))
}

/// The full admin API: the public routes and, behind a token, the rest.
/// Starts the task that sums up officers' refusals each minute.
pub fn router(
    core: Arc<Exchange>,
    links: Arc<Links>,
    token: String,
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
    readiness: Arc<Readiness>,
    sources: MetricsSources,
) -> Router {
    let officers = Registry::beside(&core.config().path);
    let state = AppState {
        core,
        links,
        token_hash: Sha256::digest(token.as_bytes()).into(),
        officers,
        refusals: Arc::default(),
        registry_warned: Arc::default(),
        streams: Arc::new(tokio::sync::Semaphore::new(events::MAX_STREAMS)),
        stream_owners: Arc::default(),
        tasks: tasks.clone(),
        shutdown: shutdown.clone(),
        sources,
        backups: Arc::new(tokio::sync::Semaphore::new(1)),
        console: Arc::default(),
    };
    tasks.spawn(auth::summarize_each_window(state.clone(), shutdown));
    let authed = Router::new()
        .route("/v1/id", get(id))
        .route("/v1/notices", get(list).post(issue))
        .route("/v1/transit", get(transit))
        .route("/v1/notices/{id}", get(show))
        .route("/v1/notices/{id}/update", post(update))
        .route("/v1/notices/{id}/cancel", post(cancel))
        .route("/v1/notices/{id}/export", get(export))
        .route("/v1/notices/{id}/status", get(status))
        .route("/v1/import", post(import))
        .route("/v1/peers", get(peers))
        .route("/v1/audit", get(audit_export))
        .route("/v1/audit/witnesses", get(audit_witnesses))
        .route("/v1/screen", post(screen))
        .route(
            "/v1/screen/manifest",
            post(screen_manifest).layer(axum::extract::DefaultBodyLimit::max(MAX_MANIFEST)),
        )
        .route("/v1/hits", get(hits))
        .route("/v1/hits/{id}/ack", post(ack_hit))
        .route("/v1/events", get(events::stream))
        .route("/v1/backup", get(backup))
        .route("/v1/key/rotate", post(rotate_key))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST))
        .layer(middleware::from_fn_with_state(state.clone(), auth::auth))
        .with_state(state.clone());
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state.clone());
    public_routes(readiness)
        .merge(metrics)
        .merge(authed)
        .layer(middleware::map_response(json_errors))
        .merge(console::routes(state))
        // Set on the merged router, so no part's default (an empty 404)
        // answers a path that is no route.
        .fallback(no_route)
}

/// A path that is no route: 404 in the API's JSON error shape.
async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        ErrorBody {
            error: format!(
                "no route {}",
                crate::notice::text::escape(&uri.path().chars().take(200).collect::<String>())
            ),
            field: None,
        },
    )
}

/// Serves `app` (whichever router it holds when a connection arrives:
/// the node swaps the starting router for the full one) until `shutdown`
/// turns true, then lets requests in progress finish (up to
/// [`SHUTDOWN_GRACE`]) and returns only when every connection has ended.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: watch::Receiver<Router>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    let mut over_cap = false;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        // Dropping the stream closes it; the log line is
                        // bounded by the cap's own rate of change.
                        if !over_cap {
                            warn!(%remote, limit = MAX_CONNECTIONS, "admin API connection limit reached; closing new connections");
                            over_cap = true;
                        }
                        drop(stream);
                        continue;
                    }
                    over_cap = false;
                    let app = app.borrow().clone();
                    conns.spawn(serve_connection(stream, app, shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors, say: wait instead of spinning.
                    warn!(error = %e, "admin API accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            connections = conns.len(),
            "admin API connections still busy at shutdown; dropping them"
        );
        conns.shutdown().await;
    }
}

/// Serves one HTTP/1.1 connection; at shutdown it finishes the request in
/// progress and closes.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    tokio::pin!(conn);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::select! {
        _ = lifetime => {
            tracing::debug!("admin API connection open too long; closing");
        }
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "admin API connection ended");
            }
        }
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Gives every error answer the documented JSON shape, including those
/// axum's extractors and router write as plain text (a query parameter of
/// the wrong type, an unknown route, a body over the limit). A body that
/// does not deserialize (422) is bad input like any other: 400.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        text
    };
    ApiError(status, ErrorBody { error, field: None }).into_response()
}

/// The optional justification of a read (`?reason=`), checked like a note.
#[derive(Deserialize, Default)]
struct ReasonQuery {
    reason: Option<String>,
}

/// Checks a read's justification, if one was given.
fn justification(reason: Option<String>) -> Result<Option<String>, ApiError> {
    match reason {
        None => Ok(None),
        Some(r) => crate::exchange::consult::check_note(&r)
            .map(|()| Some(r))
            .map_err(|e| bad("reason", format!("--reason: {e}"))),
    }
}

async fn audit_export(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let text = blocking(&s.tasks, move || {
        let now = crate::time::now();
        // Who read the log is part of it (the export ends with this entry).
        core.record_consult(
            &p.actor(),
            None,
            None,
            "processing log exported".into(),
            now,
        )?;
        core.audit_export()
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}

/// The response header carrying the backup's summary (JSON).
pub const BACKUP_HEADER: &str = "x-vigil-backup";

/// `GET /v1/backup`: a consistent copy of the store, streamed
/// (docs/operations.md#backup-and-restore). The copy is first spooled to
/// an unnamed file in the data directory, so the store's writer is held
/// only while the copy is made, never while a slow client reads; the
/// file is gone once the answer is sent or dropped.
async fn backup(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    use std::io::{Seek, SeekFrom};
    let Ok(_one) = s.backups.clone().try_acquire_owned() else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            ErrorBody {
                error: "a backup is already running; try again when it ends".into(),
                field: None,
            },
        ));
    };
    let core = s.core.clone();
    let actor = p.actor();
    let (file, summary) = blocking(&s.tasks, move || {
        let store = core.store();
        // The spool is about the store's size, on the same file system.
        store.check_space_for_copy().map_err(ApiError::from)?;
        // Who copied the store is in the copy's processing log.
        core.record_consult(
            &p.actor(),
            None,
            None,
            "store backed up".into(),
            crate::time::now(),
        )
        .map_err(ApiError::from)?;
        let dir = &core.config().data_dir;
        let mut spool = tempfile::tempfile_in(dir)
            .map_err(|e| ApiError::internal(&format!("{}: {e}", dir.display())))?;
        let summary = store.backup(&spool).map_err(|e| ApiError::internal(&e))?;
        // No sync: the spool is read back at once and never after a crash.
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| ApiError::internal(&e))?;
        Ok::<_, ApiError>((spool, summary))
    })
    .await?;
    tracing::info!(
        actor = %actor,
        head = summary.head,
        audit_seq = summary.audit_seq,
        records = summary.records,
        "store backed up"
    );
    // The permit goes with the body: the next backup waits until this
    // one's spool is sent (or dropped) and gone.
    let stream = {
        use tokio_stream::StreamExt;
        tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file)).map(move |chunk| {
            let _held = &_one;
            chunk
        })
    };
    let meta = serde_json::to_string(&summary).map_err(|e| ApiError::internal(&e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::HeaderName::from_static(BACKUP_HEADER), meta),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// A screening request (`vigil screen`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreenRequest {
    pub reason: String,
    #[serde(default)]
    pub place: Option<String>,
    /// `SCHEME:COUNTRY:VALUE`
    #[serde(default)]
    pub identifiers: Vec<String>,
    /// `(FAMILY, GIVEN, DATE)` pairs of name and date of birth.
    #[serde(default)]
    pub names: Vec<(String, String)>,
}

/// Most queries one screening request may carry.
const MAX_QUERIES: usize = 1000;

async fn screen(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(req): Json<ScreenRequest>,
) -> Result<Response, ApiError> {
    if req.identifiers.len() + req.names.len() > MAX_QUERIES {
        return Err(bad(
            "identifier",
            format!("more than {MAX_QUERIES} queries in one screening"),
        ));
    }
    let mut queries = Vec::new();
    for i in &req.identifiers {
        queries.push(
            ScreenQuery::identifier(i).map_err(|e| bad("identifier", format!("`{i}`: {e}")))?,
        );
    }
    let today = crate::time::now();
    for (name, dob) in &req.names {
        queries.push(ScreenQuery::name(name, dob, today).map_err(|e| {
            let field = if matches!(e, QueryError::Dob(_)) {
                "dob"
            } else {
                "name"
            };
            bad(field, e.to_string())
        })?);
    }
    let core = s.core.clone();
    let place = req.place.unwrap_or_default();
    let hits = blocking(&s.tasks, move || {
        core.screen(
            &queries,
            &req.reason,
            &place,
            &p.actor(),
            crate::time::now(),
        )
    })
    .await?;
    Ok(Json(hits).into_response())
}

/// A manifest to screen (`vigil screen --csv`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRequest {
    pub reason: String,
    #[serde(default)]
    pub place: Option<String>,
    /// The CSV text, header first.
    pub csv: String,
}

/// Largest manifest request: [`crate::notice::screening::manifest::MAX_ROWS`] rows of a
/// full passenger record, JSON-escaped.
pub const MAX_MANIFEST: usize = 32 * 1024 * 1024;

async fn screen_manifest(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Json(req): Json<ManifestRequest>,
) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let place = req.place.unwrap_or_default();
    let report = blocking(&s.tasks, move || {
        core.screen_manifest(
            req.csv.as_bytes(),
            &req.reason,
            &place,
            &p.actor(),
            crate::time::now(),
        )
    })
    .await?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HitsQuery {
    reason: Option<String>,
    unacknowledged: Option<bool>,
    /// RFC 3339.
    since: Option<String>,
}

async fn hits(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<HitsQuery>,
) -> Result<Response, ApiError> {
    let since = match &q.since {
        None => None,
        Some(t) => Some(crate::time::parse_rfc3339(t).ok_or_else(|| {
            bad(
                "since",
                format!("--since: `{t}` is not a time like 2026-11-29T08:00:00Z"),
            )
        })?),
    };
    let filter = crate::exchange::HitFilter {
        unacknowledged: q.unacknowledged.unwrap_or(false),
        since,
    };
    let why = justification(q.reason)?;
    let core = s.core.clone();
    let hits = blocking(&s.tasks, move || {
        core.consult_hits(filter, &p.actor(), why.as_deref(), crate::time::now())
    })
    .await?;
    Ok(Json(hits).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    note: String,
}

async fn ack_hit(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<AckRequest>,
) -> Result<Response, ApiError> {
    use crate::exchange::AckError;
    let core = s.core.clone();
    let acked = blocking(&s.tasks, move || {
        Ok::<_, crate::store::StoreError>(core.ack_hit(
            &id,
            &p.actor(),
            &req.note,
            crate::time::now(),
        ))
    })
    .await?;
    match acked {
        Ok(view) => Ok(Json(view).into_response()),
        Err(e @ AckError::BadId(_)) => Err(bad("id", e.to_string())),
        Err(e @ AckError::Note(_)) => Err(bad("note", e.to_string())),
        Err(e @ AckError::Unknown(_)) => Err(ApiError(
            StatusCode::NOT_FOUND,
            ErrorBody {
                error: e.to_string(),
                field: Some("id".into()),
            },
        )),
        Err(e @ AckError::Already { .. }) => Err(ApiError(
            StatusCode::CONFLICT,
            ErrorBody {
                error: e.to_string(),
                field: Some("id".into()),
            },
        )),
        Err(AckError::Store(e)) => Err(e.into()),
    }
}

/// `POST /v1/key/rotate`: a new signing key for this node
/// (docs/protocol.md, "Key rotation"). It is staged beside the key file,
/// the rotation statement is recorded and flushed, the new key signs from
/// the next message on, then it replaces the key file (the old one kept
/// as `F.retired-N`). Answers `{"signing_key", "previous_key", "after_seq",
/// "retired_key_file"}`.
/// Held by the one key rotation under way ([`rotate_key`]).
static ROTATING: std::sync::Mutex<()> = std::sync::Mutex::new(());

async fn rotate_key(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let actor = p.actor();
    let answer = blocking(&s.tasks, move || {
        // One rotation at a time: each stages its key as the same `F.next`
        // and renames whatever is there over `F`.
        let _one = ROTATING.lock().unwrap_or_else(|p| p.into_inner());
        let file = core.config().signing_key.clone();
        let previous = core.signing_key().verifying_key();
        // A rotation before this one whose key file was not replaced is
        // finished first: its staged key is the key in force, which
        // staging this one would remove.
        let on_file = crate::identity::load_signing_key(&file, "identity.signing_key")
            .map_err(|e| ApiError::internal(&e))?;
        crate::identity::settle_signing_key(&file, Some(previous), on_file)
            .map_err(|e| ApiError::internal(&e))?;
        let new = crate::identity::generate_signing_key();
        let body = core
            .rotate_key(new, &actor, crate::time::now(), |k| {
                crate::identity::stage_signing_key(&file, k)
                    .map_err(|e| crate::exchange::rotate::RotateError::Key(e.to_string()))
            })
            .map_err(|e| ApiError::internal(&e))?;
        // Recorded and in force: a failure from here on is finished at the
        // next start (the staged key file is named by the record).
        let retired = crate::identity::commit_signing_key(&file)
            .map_err(|e| ApiError::internal(&format!("the rotation is recorded and in force, but the key file was not replaced (the next start does it): {e}")))?;
        Ok::<_, ApiError>(serde_json::json!({
            "signing_key": format_public_key(&core.signing_key().verifying_key()),
            "previous_key": format_public_key(&previous),
            "after_seq": body.after_seq,
            "retired_key_file": retired,
        }))
    })
    .await;
    // Links proved the old key: they start again with the new one (and
    // the statement in their `Hello`), also when the key file could not
    // be replaced (the new key is in force either way, unless nothing was
    // recorded, when restarting them costs only a reconnection).
    s.links.restart_all("signing key rotated");
    Ok(Json(answer?).into_response())
}

/// One cosigned head of this node's processing log, as `vigil audit
/// witnesses` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WitnessView {
    /// The member that cosigned.
    pub witness: String,
    /// The node whose head it is (this node).
    pub node: String,
    /// The processing-log entry the head names, and its hash (hex).
    pub seq: u64,
    pub hash: String,
    /// When the witness cosigned (RFC 3339).
    pub at: String,
    /// The cosignature itself (base64 of its postcard encoding,
    /// docs/format.md#witnessing): what `audit verify --witness` checks.
    pub cosignature: String,
    /// The witness's signing key as this node pins it now, to check the
    /// cosignature with (an auditor compares it with the witness's own).
    pub witness_key: String,
}

/// `GET /v1/audit/witnesses`: every cosigned head of this node's
/// processing log held here, by witness then entry.
async fn audit_witnesses(State(s): State<AppState>) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let all = blocking(&s.tasks, move || {
        core.witnesses().map_err(|e| ApiError::internal(&e))
    })
    .await?;
    let out: Vec<WitnessView> = all
        .into_iter()
        .map(|(c, signed)| {
            use base64::Engine;
            WitnessView {
                witness_key: s
                    .core
                    .key_of(&c.witness)
                    .map(|k| format_public_key(&k))
                    .unwrap_or_default(),
                witness: c.witness,
                node: c.node,
                seq: c.seq,
                hash: hex::encode(c.hash),
                at: crate::time::rfc3339(c.at),
                cosignature: postcard::to_allocvec(&signed)
                    .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(out).into_response())
}

async fn id(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": s.core.me(),
        "signing_key": format_public_key(&s.core.signing_key().verifying_key()),
    }))
}

async fn issue(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let actor = p.actor();
    // An array issues several notices at once: all or none, one flush.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let inputs = NoticeInput::from_json_array(&body)
            .map_err(|e| bad(&e.field.clone(), e.to_string()))?;
        let core = s.core.clone();
        let ids = blocking(&s.tasks, move || {
            core.issue_many(&inputs, &actor, crate::time::now())
        })
        .await?;
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        return Ok((StatusCode::CREATED, Json(serde_json::json!({ "ids": ids }))).into_response());
    }
    let input = NoticeInput::from_json(&body).map_err(|e| bad(&e.field.clone(), e.to_string()))?;
    let core = s.core.clone();
    let id = blocking(&s.tasks, move || {
        core.issue(&input, &actor, crate::time::now())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": id.to_string() })),
    )
        .into_response())
}

fn parse_id(id: &str) -> Result<NoticeId, ApiError> {
    NoticeId::parse(id)
        .ok_or_else(|| bad("id", format!("`{id}` is not a notice id (64 hex digits)")))
}

/// Runs blocking store work off the async runtime, as a task of the node.
async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    tasks: &TaskTracker,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tasks
        .spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(Into::into)
}

async fn update(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let target = parse_id(&id)?;
    let input = NoticeInput::from_json(&body).map_err(|e| bad(&e.field.clone(), e.to_string()))?;
    let core = s.core.clone();
    let new = blocking(&s.tasks, move || {
        core.update(&target, &input, &p.actor(), crate::time::now())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": new.to_string() })),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    reason: String,
}

async fn cancel(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Json(req): Json<CancelRequest>,
) -> Result<Response, ApiError> {
    let target = parse_id(&id)?;
    let core = s.core.clone();
    let new = blocking(&s.tasks, move || {
        core.cancel(&target, &req.reason, &p.actor(), crate::time::now())
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": new.to_string() })),
    )
        .into_response())
}

async fn export(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Result<Response, ApiError> {
    let nid = parse_id(&id)?;
    let why = justification(q.reason)?;
    let core = s.core.clone();
    let held = blocking(&s.tasks, move || {
        let held = core.store().get(&nid)?;
        // What a relay carries for others is never exported.
        if held.is_none() || core.store().carried(&nid)?.is_some() {
            return Ok::<_, ReadError>(None);
        }
        core.consult_export(&nid, &p.actor(), why.as_deref(), crate::time::now())?;
        Ok(held)
    })
    .await?;
    let (_, entry) = held.ok_or_else(|| ApiError::not_found(&id))?;
    let file = entry.to_file().map_err(|e| ApiError::internal(&e))?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], file).into_response())
}

async fn status(State(s): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let nid = parse_id(&id)?;
    let core = s.core.clone();
    match blocking(&s.tasks, move || core.status(&nid)).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::not_found(&id)),
    }
}

#[derive(Deserialize)]
struct ImportQuery {
    source: Option<String>,
}

async fn import(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ImportQuery>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let envelope = crate::notice::Envelope::from_file(&body)
        .map_err(|e| ApiError::from(ImportError::Rejected(e.to_string())))?;
    let core = s.core.clone();
    // Named in the processing log: kept to a plain file name.
    let source: String = q
        .source
        .unwrap_or_else(|| "file".into())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(200)
        .collect();
    let (id, stored) = blocking(&s.tasks, move || {
        core.import(envelope, &source, &p.actor(), crate::time::now())
    })
    .await?;
    Ok(Json(serde_json::json!({ "id": id.to_string(), "stored": stored })).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    kind: Option<String>,
    origin: Option<String>,
    due_for_review: Option<bool>,
    /// Cancelled chains too.
    all: Option<bool>,
    reason: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let kind = match &q.kind {
        None => None,
        Some(k) => Some(Kind::parse(k).ok_or_else(|| bad("kind", format!("unknown kind `{k}`")))?),
    };
    let why = justification(q.reason.clone())?;
    let mut filter = Vec::new();
    if let Some(k) = kind {
        filter.push(format!("kind {}", k.as_str()));
    }
    if let Some(o) = &q.origin {
        filter.push(format!("origin {}", crate::notice::text::escape(o)));
    }
    // Due for review means active: `all` does not apply then.
    if q.all.unwrap_or(false) && !q.due_for_review.unwrap_or(false) {
        filter.push("cancelled too".into());
    }
    if q.due_for_review.unwrap_or(false) {
        filter.push("due for review".into());
    }
    let core = s.core.clone();
    let views = blocking(&s.tasks, move || {
        let now = crate::time::now();
        let views = if q.due_for_review.unwrap_or(false) {
            core.due_for_review(now, kind, q.origin.as_deref())?
        } else {
            core.list(kind, q.origin.as_deref(), q.all.unwrap_or(false))?
        };
        core.consult_list(&views, &filter.join(", "), &p.actor(), why.as_deref(), now)?;
        Ok::<_, ReadError>(views)
    })
    .await?;
    Ok(Json(views).into_response())
}

/// How many notices this relay carries in transit for others (they are
/// never listed).
async fn transit(State(s): State<AppState>) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let n = blocking(&s.tasks, move || core.transit_count()).await?;
    Ok(Json(serde_json::json!({ "transit": n })).into_response())
}

async fn show(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Result<Response, ApiError> {
    let nid = parse_id(&id)?;
    let why = justification(q.reason)?;
    let core = s.core.clone();
    let view = blocking(&s.tasks, move || {
        core.consult_show(&nid, &p.actor(), why.as_deref(), crate::time::now())
    })
    .await?;
    match view {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(ApiError::not_found(&id)),
    }
}

/// `GET /metrics`: the Prometheus text format, no token, no personal
/// data ([`crate::metrics`]).
async fn metrics(State(s): State<AppState>) -> Result<Response, ApiError> {
    let core = s.core.clone();
    let links = s.links.clone();
    let sources = s.sources.clone();
    let text = blocking(&s.tasks, move || {
        let store = core.store();
        let now = crate::time::now();
        let head = store.head();
        let mut members = Vec::new();
        for m in &core.config().members {
            let acked = store.acked(&m.id)?;
            let acked_out = acked
                .as_ref()
                .filter(|a| a.epoch == store.epoch())
                .map_or(0, |a| a.through);
            members.push(crate::metrics::MemberSnapshot {
                id: m.id.clone(),
                connected: links.status(&m.id).connected,
                backlog: head.saturating_sub(acked_out),
                last_receipt: core.metrics().last_receipt(&m.id).or(acked.map(|a| a.at)),
            });
        }
        let snapshot = crate::metrics::Snapshot {
            now,
            by_state: store.count_by_state().to_vec(),
            members,
            store_bytes: store.size_on_disk()?,
            audit_entries: store.audit_len(),
            events: core.events().counts(),
            hook_delivered: sources.alerts.delivered.load(Ordering::Relaxed),
            hook_failed: sources.alerts.failed.load(Ordering::Relaxed),
            hook_dropped: sources.alerts.dropped.load(Ordering::Relaxed),
            certificates: (sources.certificates)(),
        };
        Ok::<_, crate::store::StoreError>(core.metrics().render(&snapshot))
    })
    .await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// One member's link as `vigil peers` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerView {
    pub id: String,
    pub connected: bool,
    pub since: Option<String>,
    pub last_seen: Option<String>,
    pub address: Option<String>,
    /// How far this node has stored the member's log (their local seq).
    pub cursor_in: u64,
    /// How far the member has acknowledged this node's log.
    pub acked_out: u64,
    /// This node's log entries after the member's last receipt.
    pub backlog_out: u64,
    /// The member's signing key in force: its pin, or where the key
    /// rotations it made (and this node recorded) lead from the pin.
    #[serde(default)]
    pub signing_key: String,
    /// The key rotation that put `signing_key` in force, when the config
    /// still pins an older key: the operator updates `signing_key` in
    /// `[[members]]` at leisure (the node runs on the rotated key).
    #[serde(default)]
    pub pin_out_of_date: Option<KeyRotationView>,
}

/// A member's last key rotation, as `vigil peers` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeyRotationView {
    /// The key the config pins.
    pub pinned: String,
    /// How many rotations lead from it to the key in force.
    pub rotations: usize,
    /// The last one's hand-over: the member's messages after this seq
    /// are signed with the key in force.
    pub after_seq: u64,
    pub at: String,
}

async fn peers(State(s): State<AppState>) -> Result<Response, ApiError> {
    let cfg = s.core.config();
    let head = s.core.store().head();
    let mut out = Vec::new();
    for m in &cfg.members {
        let st = s.links.status(&m.id);
        let (_, cursor_in) = s.core.store().cursor(&m.id)?;
        let acked_out = s
            .core
            .store()
            .acked(&m.id)?
            .filter(|a| a.epoch == s.core.store().epoch())
            .map(|a| a.through)
            .unwrap_or(0);
        out.push(PeerView {
            id: m.id.clone(),
            connected: st.connected,
            since: st.since.map(crate::time::rfc3339),
            last_seen: st.last_seen.map(crate::time::rfc3339),
            address: m.address.map(|a| a.to_string()),
            cursor_in,
            acked_out,
            backlog_out: head.saturating_sub(acked_out),
            signing_key: s
                .core
                .key_of(&m.id)
                .map(|k| format_public_key(&k))
                .unwrap_or_default(),
            pin_out_of_date: s.core.ring_of(&m.id).and_then(|r| {
                let at = r.keys().position(|k| k == m.signing_key.to_bytes())?;
                let behind = &r.rotations()[at..];
                behind.last().map(|last| KeyRotationView {
                    pinned: format_public_key(&m.signing_key),
                    rotations: behind.len(),
                    after_seq: last.after_seq,
                    at: crate::time::rfc3339(last.at),
                })
            }),
        });
    }
    Ok(Json(out).into_response())
}
