//! The local admin API (HTTP/JSON on loopback, bearer token) through which
//! operators' CLI commands and national case systems talk to a running node,
//! plus the small client the CLI uses. No business rules: handlers call
//! [`Core`].

use axum::extract::{Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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
use crate::officers::{Action, Principal, Registry};

mod client;
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
}

/// The digest of the token an officer's request carried, kept with the
/// request so a long stream can check that the officer still exists.
#[derive(Clone)]
struct TokenDigest(String);

/// Refusals recorded in the processing log per officer and window; the
/// rest are counted and summed up in the next entry.
const REFUSALS_PER_WINDOW: u32 = 10;
/// The refusal counting window, in seconds.
const REFUSAL_WINDOW_SECS: i64 = 60;

/// Per officer: (window start, recorded, suppressed).
#[derive(Default)]
struct OfficerRefusals(std::collections::HashMap<String, (i64, u32, u64)>);

impl OfficerRefusals {
    /// Whether this refusal gets its own entry, and how many earlier ones
    /// of a finished window were not recorded (to say so in it).
    fn count(&mut self, who: &str, now: i64) -> (bool, u64) {
        let e = self.0.entry(who.to_string()).or_insert((now, 0, 0));
        let mut earlier = 0;
        if now >= e.0.saturating_add(REFUSAL_WINDOW_SECS) {
            earlier = e.2;
            *e = (now, 0, 0);
        }
        if e.1 < REFUSALS_PER_WINDOW {
            e.1 += 1;
            (true, earlier)
        } else {
            e.2 += 1;
            (false, earlier)
        }
    }

    /// Ends the windows that are over: each officer's refusals not
    /// recorded one by one, to be summed up in one entry each. Forgets
    /// officers with nothing left to say.
    fn roll(&mut self, now: i64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.0.retain(|who, e| {
            if now < e.0.saturating_add(REFUSAL_WINDOW_SECS) {
                return true;
            }
            if e.2 > 0 {
                out.push((who.clone(), e.2));
            }
            false
        });
        out.sort();
        out
    }
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
    };
    tasks.spawn(summarize_each_window(state.clone(), shutdown));
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
        .route("/v1/screen", post(screen))
        .route(
            "/v1/screen/manifest",
            post(screen_manifest).layer(axum::extract::DefaultBodyLimit::max(MAX_MANIFEST)),
        )
        .route("/v1/hits", get(hits))
        .route("/v1/hits/{id}/ack", post(ack_hit))
        .route("/v1/events", get(events::stream))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    public_routes(readiness)
        .merge(authed)
        .layer(middleware::map_response(json_errors))
}

/// Sums up officers' refusals once a minute until shutdown.
async fn summarize_each_window(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(
        REFUSAL_WINDOW_SECS.unsigned_abs(),
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => summarize_refusals(&state).await,
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
    }
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

/// What each route does, for the role check. `None`: no such route.
fn action_for(method: &axum::http::Method, path: &str) -> Option<Action> {
    use axum::http::Method;
    Some(match path {
        "/v1/id" => Action::Id,
        // Only POST writes; any other method is a read (or 405).
        "/v1/notices" if method == Method::POST => Action::Issue,
        "/v1/notices" => Action::List,
        "/v1/transit" => Action::Transit,
        "/v1/notices/{id}" => Action::Show,
        "/v1/notices/{id}/update" => Action::Update,
        "/v1/notices/{id}/cancel" => Action::Cancel,
        "/v1/notices/{id}/export" => Action::Export,
        "/v1/notices/{id}/status" => Action::Status,
        "/v1/import" => Action::Import,
        "/v1/peers" => Action::Peers,
        "/v1/audit" => Action::Audit,
        "/v1/screen" | "/v1/screen/manifest" => Action::Screen,
        "/v1/hits" => Action::Hits,
        "/v1/hits/{id}/ack" => Action::AckHit,
        "/v1/events" => Action::Watch,
        _ => return None,
    })
}

/// Who is calling: the administrator's token or an officer's; then
/// whether the caller's role allows the route. A refusal is answered 403
/// before the handler runs (so nothing is stored) and logged.
async fn auth(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Comparing digests keeps the comparison time independent of where the
    // presented token first differs.
    let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let principal = if h == s.token_hash {
        Principal::Admin
    } else {
        match s.officers.find_token(presented) {
            Ok(Some(o)) => {
                req.extensions_mut().insert(TokenDigest(o.token_sha256.clone()));
                Principal::Officer {
                    name: o.name,
                    role: o.role,
                }
            }
            Ok(None) => {
                return ApiError(
                    StatusCode::UNAUTHORIZED,
                    ErrorBody {
                        error: "missing or wrong token (an officer's token stops working when the officer is removed)".into(),
                        field: None,
                    },
                )
                .into_response()
            }
            Err(e) => {
                let now = crate::time::now();
                let mut last = s.registry_warned.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| now >= t.saturating_add(REFUSAL_WINDOW_SECS)) {
                    *last = Some(now);
                    tracing::error!(error = %e, "officer registry unreadable; officers' requests refused");
                }
                return ApiError::internal(&format!("officer registry unreadable: {e}"))
                    .into_response();
            }
        }
    };
    let action = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| action_for(req.method(), p.as_str()));
    if let Some(action) = action {
        if !principal.may(action) {
            let message = principal.refusal(action);
            refused(&s, &principal, &message).await;
            return ApiError::forbidden(message).into_response();
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Logs a refused request: a warning, and a `reject` entry in the
/// processing log (at most [`REFUSALS_PER_WINDOW`] per officer and
/// window; the next recorded one says how many were not).
async fn refused(s: &AppState, p: &Principal, message: &str) {
    let now = crate::time::now();
    let actor = p.actor();
    let (record, earlier) = s
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .count(&actor, now);
    if !record {
        // Counted; summed up when the window ends.
        return;
    }
    warn!(actor = %actor, refusal = %message, "request outside the officer's role refused");
    let mut decision = format!("request refused: {message}");
    if earlier > 0 {
        decision.push_str(&format!(
            " ({earlier} earlier refusal(s) not recorded one by one)"
        ));
    }
    log_refusals(s, vec![(actor, decision)], now).await;
}

/// Writes refusal entries (actor, decision) to the processing log.
async fn log_refusals(s: &AppState, entries: Vec<(String, String)>, now: i64) {
    let drafts: Vec<crate::store::AuditDraft> = entries
        .into_iter()
        .map(|(actor, decision)| crate::store::AuditDraft {
            actor,
            operation: crate::store::Operation::Reject,
            notice: None,
            peer: None,
            justification: None,
            decision,
        })
        .collect();
    let core = s.core.clone();
    let logged = blocking(&s.tasks, move || {
        core.store().audit(&drafts, now)?;
        core.store().flush()
    })
    .await;
    if logged.is_err() {
        warn!("refusal not written to the processing log");
    }
}

/// Sums up, once a window is over, the refusals of each officer that were
/// counted and not recorded one by one.
async fn summarize_refusals(s: &AppState) {
    let now = crate::time::now();
    let over = s
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .roll(now);
    if over.is_empty() {
        return;
    }
    let entries = over
        .into_iter()
        .map(|(actor, n)| {
            warn!(actor = %actor, not_recorded = n, "refusals counted, not recorded one by one");
            (
                actor,
                format!("{n} further refused request(s) not recorded one by one"),
            )
        })
        .collect();
    log_refusals(s, entries, now).await;
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
    if q.all.unwrap_or(false) {
        filter.push("cancelled too".into());
    }
    if q.due_for_review.unwrap_or(false) {
        filter.push("due for review".into());
    }
    let core = s.core.clone();
    let views = blocking(&s.tasks, move || {
        let now = crate::time::now();
        let views = if q.due_for_review.unwrap_or(false) {
            core.due_for_review(now)?
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
        });
    }
    Ok(Json(out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn every_route_has_an_action_and_only_post_issues() {
        let routes = [
            "/v1/id",
            "/v1/notices",
            "/v1/transit",
            "/v1/notices/{id}",
            "/v1/notices/{id}/update",
            "/v1/notices/{id}/cancel",
            "/v1/notices/{id}/export",
            "/v1/notices/{id}/status",
            "/v1/import",
            "/v1/peers",
            "/v1/audit",
            "/v1/screen",
            "/v1/screen/manifest",
            "/v1/hits",
            "/v1/hits/{id}/ack",
            "/v1/events",
        ];
        for r in routes {
            assert!(action_for(&Method::GET, r).is_some(), "{r}");
        }
        assert_eq!(
            action_for(&Method::POST, "/v1/notices"),
            Some(Action::Issue)
        );
        for m in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert_eq!(action_for(&m, "/v1/notices"), Some(Action::List), "{m}");
        }
        assert_eq!(action_for(&Method::GET, "/v1/nothing"), None);
    }

    #[test]
    fn refusals_are_recorded_ten_per_officer_and_window_then_counted() {
        let mut r = OfficerRefusals::default();
        let recorded = (0..15).filter(|_| r.count("officer:a", 100).0).count();
        assert_eq!(recorded, REFUSALS_PER_WINDOW as usize);
        // Another officer has its own budget.
        assert!(r.count("officer:b", 100).0);
        // The next window records again and says how many were not.
        assert_eq!(r.count("officer:a", 100 + REFUSAL_WINDOW_SECS), (true, 5));
        // Or, when no refusal follows, the end of the window sums them up.
        for _ in 0..12 {
            r.count("officer:c", 200);
        }
        assert_eq!(r.roll(200 + REFUSAL_WINDOW_SECS - 1), Vec::new());
        assert_eq!(
            r.roll(200 + REFUSAL_WINDOW_SECS),
            vec![("officer:c".to_string(), 2)]
        );
        assert_eq!(r.roll(200 + 2 * REFUSAL_WINDOW_SECS), Vec::new());
    }
}
