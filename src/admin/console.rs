//! The desk console: server-rendered pages for the duty officers at a
//! contact point, served on the admin listener at `/` (docs/console.md).
//!
//! An officer signs in with their own token; the console then keeps a
//! session (a random id in an `HttpOnly`, `SameSite=Strict` cookie, `Secure`
//! behind TLS, ended after [`IDLE`] without a request) and checks the
//! officer's role on every page, as the API does. Every form that changes
//! anything carries the session's CSRF token, checked before the handler
//! runs. Every answer carries a strict Content-Security-Policy; the style
//! sheet and script are compiled into the binary, and no page refers to any
//! other host. Reads of personal data are logged as `consult` entries with
//! the officer's name, like the API's.

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{blocking, AppState};
use crate::exchange::{NoticeView, ReadError};
use crate::notice::NoticeId;
use crate::officers::{token_digest, Action, Role};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// Sessions held at once; the oldest idle one gives way beyond.
const MAX_SESSIONS: usize = 256;
/// The session cookie.
const COOKIE: &str = "vigil_console";
/// Versions of a notice shown each way along its chain.
const MAX_CHAIN: usize = 32;
/// What every page may load: only itself.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("console/console.css");
const JS: &str = include_str!("console/console.js");

/// One signed-in officer.
#[derive(Debug, Clone)]
struct ConsoleSession {
    officer: String,
    role: Role,
    /// The officer's token digest at sign-in: a removed officer (or a new
    /// token) ends the session at the next request.
    token_sha256: String,
    /// Sent in every form that changes something, checked on submit.
    csrf: String,
    last_used: Instant,
}

/// Where a cookie value's session is kept: its SHA-256.
fn session_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The console's sessions, by SHA-256 of the cookie value (so memory
/// holds nothing a client could present).
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<[u8; 32], ConsoleSession>>,
    /// Per officer: when they last opened the inbox (RFC 3339, as notices'
    /// `stored_at`), so the next visit marks what came since. Held for
    /// the life of the process, at most one entry per officer.
    last_inbox: Mutex<HashMap<String, String>>,
}

impl Sessions {
    /// Records this inbox visit; returns the one before.
    fn visit_inbox(&self, officer: &str, now: String) -> Option<String> {
        self.last_inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(officer.to_string(), now)
    }
}

impl Sessions {
    fn open(&self, s: ConsoleSession) -> String {
        let id = hex::encode(rand::random::<[u8; 32]>());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, v| v.last_used.elapsed() < IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, v)| v.last_used).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(session_key(&id), s);
        id
    }

    /// The live session for a cookie value, its use recorded.
    fn touch(&self, id: &str) -> Option<ConsoleSession> {
        let key = session_key(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&key) {
            Some(s) if s.last_used.elapsed() < IDLE => {
                s.last_used = Instant::now();
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether the session for a cookie value is still open (without
    /// counting as a use: a live page does not keep a session alive).
    fn alive(&self, id: &str) -> bool {
        let key = session_key(id);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|s| s.last_used.elapsed() < IDLE)
    }

    fn close(&self, id: &str) {
        let key = session_key(id);
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

/// The console's routes, on the admin listener beside the API.
pub(super) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/inbox", get(inbox))
        .route("/console/notices/{id}", get(notice_page))
        .route("/console/peers", get(peers_page))
        .route("/console/hits", get(hits_page))
        .route("/console/hits/live", get(hits_live))
        .route("/console/hits/{id}/ack", post(ack))
        .route("/console/screen", get(screen_page).post(screen))
        .route(
            "/console/screen/manifest",
            post(screen_manifest).layer(axum::extract::DefaultBodyLimit::max(super::MAX_MANIFEST)),
        )
        .route("/console/issue", get(issue_page).post(issue))
        .route(
            "/console/notices/{id}/update",
            get(update_page).post(update),
        )
        .route("/console/notices/{id}/cancel", post(cancel))
        .route("/console/console.css", get(css))
        .route("/console/console.js", get(js))
        .with_state(state)
        .layer(axum::middleware::map_response(headers))
}

/// The headers every console answer carries.
async fn headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

/// Whether the request reached the node over TLS (through the agency's
/// reverse proxy on loopback, which says so in `X-Forwarded-Proto`).
fn behind_tls(h: &HeaderMap) -> bool {
    h.get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn cookie_of(h: &HeaderMap) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The signed-in officer, checked against the registry (a removed officer
/// is signed out at once).
fn signed_in(s: &AppState, h: &HeaderMap) -> Option<(String, ConsoleSession)> {
    let id = cookie_of(h)?;
    let session = s.console.touch(&id)?;
    let still = s
        .officers
        .load()
        .ok()?
        .into_iter()
        .any(|o| o.name == session.officer && o.token_sha256 == session.token_sha256);
    if !still {
        s.console.close(&id);
        return None;
    }
    Some((id, session))
}

/// A page for `session`, or the sign-in page when there is none; a role
/// that may not do `action` gets 403 with the reason.
fn guard(s: &AppState, h: &HeaderMap, action: Action) -> Result<ConsoleSession, Box<Response>> {
    let Some((_, session)) = signed_in(s, h) else {
        return Err(Box::new(Redirect::to("/console/sign-in").into_response()));
    };
    if !session.role.may(action) {
        let why = format!(
            "officer {} (role {}) may not {}",
            session.officer,
            session.role.as_str(),
            action.describe()
        );
        return Err(Box::new(page_status(
            StatusCode::FORBIDDEN,
            Some(&session),
            "Not allowed",
            html! { p.error role="alert" { (why) } },
        )));
    }
    Ok(session)
}

/// Checks a submitted form's CSRF token against the session's.
fn csrf_ok(session: &ConsoleSession, sent: &str) -> bool {
    use subtle_eq::eq;
    eq(session.csrf.as_bytes(), sent.as_bytes())
}

/// Constant-time comparison (no early exit on the first difference).
mod subtle_eq {
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn refused_csrf(session: &ConsoleSession) -> Response {
    page_status(
        StatusCode::FORBIDDEN,
        Some(session),
        "Refused",
        html! { p.error role="alert" { "The form's security token is missing or wrong: nothing was changed. Reload the page and try again." } },
    )
}

fn page(session: Option<&ConsoleSession>, title: &str, body: Markup) -> Response {
    page_status(StatusCode::OK, session, title, body)
}

fn page_status(
    status: StatusCode,
    session: Option<&ConsoleSession>,
    title: &str,
    body: Markup,
) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · vigil" }
                link rel="stylesheet" href="/console/console.css";
                script src="/console/console.js" defer {}
            }
            body {
                header.top {
                    span.brand { "vigil" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            @if s.role.may(Action::List) { a href="/console/inbox" { "Inbox" } }
                            @if s.role.may(Action::Hits) { a href="/console/hits" { "Hits" } }
                            @if s.role.may(Action::Screen) { a href="/console/screen" { "Screen" } }
                            @if s.role.may(Action::Issue) { a href="/console/issue" { "Issue" } }
                            @if s.role.may(Action::Peers) { a href="/console/peers" { "Peers" } }
                        }
                        form.signout method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            span.who { (s.officer) " (" (s.role.as_str()) ")" }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

async fn root(State(s): State<AppState>, h: HeaderMap) -> Response {
    match signed_in(&s, &h) {
        Some((_, session)) if session.role.may(Action::List) => {
            Redirect::to("/console/inbox").into_response()
        }
        Some(_) => Redirect::to("/console/peers").into_response(),
        None => Redirect::to("/console/sign-in").into_response(),
    }
}

fn sign_in_form(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.error role="alert" id="sign-in-error" { (e) } }
        form method="post" action="/console/sign-in" {
            label for="token" { "Your officer token" }
            input id="token" name="token" type="password" autocomplete="off" required autofocus;
            button type="submit" { "Sign in" }
        }
        p.hint { "The token is in the file `vigil officer add` wrote for you. Sessions end after 15 minutes without use." }
    }
}

async fn sign_in_page() -> Response {
    page(None, "Sign in", sign_in_form(None))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn sign_in(State(s): State<AppState>, h: HeaderMap, Form(f): Form<SignIn>) -> Response {
    let digest = token_digest(f.token.trim());
    let officer = s
        .officers
        .load()
        .ok()
        .and_then(|all| all.into_iter().find(|o| o.token_sha256 == digest));
    let Some(o) = officer else {
        tracing::warn!("console sign-in refused: unknown token");
        return page_status(
            StatusCode::UNAUTHORIZED,
            None,
            "Sign in",
            sign_in_form(Some(
                "That token is not an officer's (a removed officer's token no longer works).",
            )),
        );
    };
    tracing::info!(officer = %o.name, role = o.role.as_str(), "console sign-in");
    let id = s.console.open(ConsoleSession {
        officer: o.name,
        role: o.role,
        token_sha256: o.token_sha256,
        csrf: hex::encode(rand::random::<[u8; 32]>()),
        last_used: Instant::now(),
    });
    let secure = if behind_tls(&h) { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        IDLE.as_secs()
    );
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(State(s): State<AppState>, h: HeaderMap, Form(f): Form<CsrfOnly>) -> Response {
    if let Some((id, session)) = signed_in(&s, &h) {
        if !csrf_ok(&session, &f.csrf) {
            return refused_csrf(&session);
        }
        s.console.close(&id);
    }
    let mut resp = Redirect::to("/console/sign-in").into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("vigil_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

/// A step that failed, as a page with the API's status and reason.
fn failed(session: &ConsoleSession, e: super::ApiError) -> Response {
    page_status(
        e.0,
        Some(session),
        "Error",
        html! { p.error role="alert" { (e.1.error) } },
    )
}

fn state_badge(state: &str) -> Markup {
    html! { span class=(format!("badge state-{}", state.replace(' ', "-"))) { (state) } }
}

/// The inbox's filters (all optional).
#[derive(Deserialize, Default)]
struct InboxQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    handling: String,
    #[serde(default)]
    due: Option<String>,
}

async fn inbox(
    State(s): State<AppState>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<InboxQuery>,
) -> Response {
    let session = match guard(&s, &h, Action::List) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let kind = match q.kind.as_str() {
        "" => None,
        k => match crate::notice::Kind::parse(k) {
            Some(k) => Some(k),
            None => {
                return page_status(
                    StatusCode::BAD_REQUEST,
                    Some(&session),
                    "Inbox",
                    html! { p.error role="alert" { "Unknown kind `" (k) "`." } },
                )
            }
        },
    };
    let origin = (!q.origin.trim().is_empty()).then(|| q.origin.trim().to_string());
    let due = q.due.is_some();
    let mut filter = vec!["console inbox".to_string()];
    if let Some(k) = kind {
        filter.push(format!("kind {}", k.as_str()));
    }
    if let Some(o) = &origin {
        filter.push(format!("origin {}", crate::notice::text::escape(o)));
    }
    if due {
        filter.push("due for review".into());
    }
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let views = blocking(&s.tasks, move || {
        let now = crate::time::now();
        let views = if due {
            core.due_for_review(now, kind, origin.as_deref())?
        } else {
            core.list(kind, origin.as_deref(), false)?
        };
        core.consult_list(&views, &filter.join(", "), &actor, None, now)?;
        Ok::<_, ReadError>(views)
    })
    .await;
    let mut views = match views {
        Ok(v) => v,
        Err(e) => return failed(&session, e),
    };
    if !q.handling.is_empty() {
        views.retain(|v| format!("{:?}", v.handling) == q.handling);
    }
    // Newest first.
    views.sort_by(|a, b| b.stored_at.cmp(&a.stored_at));
    let last = s
        .console
        .visit_inbox(&session.officer, crate::time::rfc3339(crate::time::now()));
    let is_new = |v: &NoticeView| last.as_ref().is_some_and(|l| v.stored_at > *l);
    let new_count = views.iter().filter(|v| is_new(v)).count();
    let me = s.core.me().to_string();
    page(
        Some(&session),
        "Inbox",
        html! {
            form.filters method="get" action="/console/inbox" {
                div.field {
                    label for="f-kind" { "Kind" }
                    select id="f-kind" name="kind" {
                        option value="" { "any" }
                        @for k in KINDS { option value=(k) selected[*k == q.kind] { (k) } }
                    }
                }
                div.field {
                    label for="f-origin" { "Origin" }
                    input type="text" id="f-origin" name="origin" value=(q.origin);
                }
                div.field {
                    label for="f-handling" { "Handling" }
                    select id="f-handling" name="handling" {
                        option value="" { "any" }
                        @for h in HANDLINGS { option value=(h) selected[*h == q.handling] { (h) } }
                    }
                }
                div.field {
                    input type="checkbox" id="f-due" name="due" value="1" checked[due];
                    label for="f-due" { "Due for review" }
                }
                button type="submit" { "Filter" }
            }
            @if views.is_empty() {
                p { "No notices held." }
            } @else {
                table.inbox {
                    caption {
                        (views.len()) " notice chain(s), newest first"
                        @if last.is_some() { "; " (new_count) " new since your last visit" }
                    }
                    thead { tr {
                        th scope="col" { "Received" } th scope="col" { "Kind" } th scope="col" { "Subject" }
                        th scope="col" { "Origin" } th scope="col" { "Handling" } th scope="col" { "State" }
                    } }
                    tbody {
                        @for v in &views {
                            tr class=(if is_new(v) { "new" } else { "" }) {
                                td { @if is_new(v) { span.badge.state-new { "new" } " " } (v.stored_at) }
                                td { (v.kind.as_str()) }
                                td { a href=(format!("/console/notices/{}", v.id)) { (subject_line(v)) } }
                                td { (v.origin) @if v.origin == me { " (this node)" } }
                                td { (format!("{:?}", v.handling)) }
                                td { (state_badge(&v.state)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The subject's name and date of birth, as one line.
fn subject_line(v: &NoticeView) -> String {
    let s = serde_json::to_value(&v.subject).unwrap_or_default();
    let field = |k: &str| s.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let name = [field("family_name"), field("given_names")]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    let dob = field("date_of_birth");
    match (name.is_empty(), dob.is_empty()) {
        (true, _) => format!("{} {}", v.kind.as_str(), v.case_ref),
        (false, true) => name,
        (false, false) => format!("{name} ({dob})"),
    }
}

/// A JSON value as text for a table cell.
fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        serde_json::Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join("; "),
        serde_json::Value::Object(o) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}", cell(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A field name as a label: `date_of_birth` → `Date of birth`.
fn label(k: &str) -> String {
    let t = k.replace('_', " ");
    let mut c = t.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => t,
    }
}

async fn notice_page(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match guard(&s, &h, Action::Show) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(nid) = super::parse_id(&id) else {
        return page_status(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such notice",
            html! { p.error role="alert" { "`" (id) "` is not a notice id." } },
        );
    };
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let found = blocking(&s.tasks, move || {
        let now = crate::time::now();
        let v = core.consult_show(&nid, &actor, None, now)?;
        let status = match &v {
            Some(v) if v.origin == core.me() => core.status(&nid)?,
            _ => None,
        };
        // The chain of versions, oldest first (bounded): only ids,
        // actions, states and times are shown of the others.
        let mut chain = Vec::new();
        if let Some(v) = &v {
            let mut back = v.target.clone();
            let mut before = Vec::new();
            while let Some(t) = back.take().filter(|_| before.len() < MAX_CHAIN) {
                let Some(tid) = crate::notice::NoticeId::parse(&t) else {
                    break;
                };
                match core.show(&tid)? {
                    Some(o) => {
                        back = o.target.clone();
                        before.push(o);
                    }
                    None => break,
                }
            }
            before.reverse();
            chain.extend(
                before
                    .into_iter()
                    .map(|o| (o.id, o.action, o.state, o.issued_at)),
            );
            chain.push((
                v.id.clone(),
                v.action.clone(),
                v.state.clone(),
                v.issued_at.clone(),
            ));
            let mut next = v.replaced_by.clone();
            while let Some(n) = next.take().filter(|_| chain.len() < 2 * MAX_CHAIN) {
                let Some(nid) = crate::notice::NoticeId::parse(&n) else {
                    break;
                };
                match core.show(&nid)? {
                    Some(o) => {
                        next = o.replaced_by.clone();
                        chain.push((o.id, o.action, o.state, o.issued_at));
                    }
                    None => break,
                }
            }
        }
        Ok::<_, ReadError>((v, status, chain))
    })
    .await;
    let (view, status, chain) = match found {
        Ok(x) => x,
        Err(e) => return failed(&session, e),
    };
    let Some(v) = view else {
        return page_status(
            StatusCode::NOT_FOUND,
            Some(&session),
            "No such notice",
            html! { p.error role="alert" { "No notice with id " (id) " is held here." } },
        );
    };
    let me = s.core.me().to_string();
    let subject = serde_json::to_value(&v.subject).unwrap_or_default();
    let withheld: Vec<&str> = v.withheld_fields.iter().map(|f| f.as_str()).collect();
    let erased: Vec<&str> = v.erased_fields.iter().map(|f| f.as_str()).collect();
    let mut rows: Vec<(&str, String)> = vec![
        ("Id", v.id.clone()),
        ("Origin", v.origin.clone()),
        ("Sequence", v.seq.to_string()),
        ("Action", v.action.clone()),
        ("Kind", v.kind.as_str().to_string()),
        (
            "Purpose",
            cell(&serde_json::to_value(v.purpose).unwrap_or_default()),
        ),
        ("Legal basis", v.legal_basis.clone()),
        (
            "Handling",
            cell(&serde_json::to_value(v.handling).unwrap_or_default()),
        ),
        ("Handling note", v.handling_note.clone().unwrap_or_default()),
        (
            "Grading",
            cell(&serde_json::to_value(v.grading).unwrap_or_default()),
        ),
        (
            "Subject category",
            cell(&serde_json::to_value(v.subject_category).unwrap_or_default()),
        ),
        (
            "Nature",
            cell(&serde_json::to_value(v.nature).unwrap_or_default()),
        ),
        ("Audience", cell(&v.audience)),
        ("Issued", v.issued_at.clone()),
        ("Expires", v.expires_at.clone()),
        ("Review", v.review_at.clone().unwrap_or_default()),
        ("Summary", v.summary.clone()),
        ("Case reference", v.case_ref.clone()),
        ("Originator's 24/7 contact", v.contact.clone()),
        (
            "Received from",
            v.received_from
                .clone()
                .unwrap_or_else(|| "issued here".into()),
        ),
        ("Stored", v.stored_at.clone()),
        (
            "Signature",
            if v.signature_verified {
                "verified with the origin's key".into()
            } else {
                "DOES NOT VERIFY".into()
            },
        ),
    ];
    if let Some(r) = &v.cancel_reason {
        rows.insert(4, ("Reason for cancelling", r.clone()));
    }
    page(
        Some(&session),
        &format!("{} notice", label(v.kind.as_str())),
        html! {
            p { "State: " (state_badge(&v.state)) @if let Some(r) = &v.replaced_by { " — replaced by " a href=(format!("/console/notices/{r}")) { (r) } } }
            @if !v.transit_to.is_empty() {
                p.warn { "In transit to " (v.transit_to.join(", ")) ", sealed: this node cannot read it." }
            }
            section aria-labelledby="subject-h" {
                h2 id="subject-h" { "Subject" }
                dl.fields {
                    @if let serde_json::Value::Object(o) = &subject {
                        @for (k, val) in o {
                            @if !val.is_null() {
                                dt { (label(k)) } dd { (cell(val)) }
                            }
                        }
                    }
                    @for f in &withheld { dt { (label(f)) } dd.withheld { "withheld by policy" } }
                    @for f in &erased { dt { (label(f)) } dd.erased { "erased" } }
                }
            }
            section aria-labelledby="notice-h" {
                h2 id="notice-h" { "Notice" }
                dl.fields {
                    @for (k, val) in &rows { @if !val.is_empty() { dt { (k) } dd { (val) } } }
                }
            }
            @if chain.len() > 1 {
                section aria-labelledby="chain-h" {
                    h2 id="chain-h" { "Versions" }
                    ol.chain {
                        @for (cid, action, state, at) in &chain {
                            li {
                                @if *cid == v.id { strong { (action) " " (at) " " (state_badge(state)) " (this one)" } }
                                @else { a href=(format!("/console/notices/{cid}")) { (action) " " (at) } " " (state_badge(state)) }
                            }
                        }
                    }
                }
            }
            @if v.origin == me && v.state == "active" && session.role.may(Action::Update) {
                section aria-labelledby="change-h" {
                    h2 id="change-h" { "Change" }
                    p { a href=(format!("/console/notices/{}/update", v.id)) { "Update this notice" } }
                    form method="post" action=(format!("/console/notices/{}/cancel", v.id)) {
                        input type="hidden" name="csrf" value=(session.csrf);
                        label for="cancel-reason" { "Reason to cancel" }
                        input type="text" id="cancel-reason" name="reason" required maxlength="500";
                        button type="submit" { "Cancel this notice…" }
                    }
                }
            }
            @if let Some(st) = &status {
                section aria-labelledby="delivery-h" {
                    h2 id="delivery-h" { "Delivery to members" }
                    table {
                        thead { tr { th scope="col" { "Member" } th scope="col" { "State" } th scope="col" { "When" } th scope="col" { "Reason" } } }
                        tbody {
                            @for m in st {
                                tr { td { (m.member) } td { (state_badge(&m.state)) } td { (m.at.clone().unwrap_or_default()) } td { (m.reason.clone().unwrap_or_default()) } }
                            }
                        }
                    }
                }
            }
        },
    )
}

async fn peers_page(State(s): State<AppState>, h: HeaderMap) -> Response {
    let session = match guard(&s, &h, Action::Peers) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let cfg = s.core.config();
    let head = s.core.store().head();
    let mut rows = Vec::new();
    for m in &cfg.members {
        let st = s.links.status(&m.id);
        let acked = s.core.store().acked(&m.id).ok().flatten();
        let acked_out = acked
            .as_ref()
            .filter(|a| a.epoch == s.core.store().epoch())
            .map_or(0, |a| a.through);
        rows.push((
            m.id.clone(),
            st.connected,
            st.since.map(crate::time::rfc3339).unwrap_or_default(),
            head.saturating_sub(acked_out),
            acked
                .map(|a| crate::time::rfc3339(a.at))
                .unwrap_or_default(),
        ));
    }
    page(
        Some(&session),
        "Peers",
        html! {
            table.peers {
                thead { tr {
                    th scope="col" { "Member" } th scope="col" { "Link" } th scope="col" { "Since" }
                    th scope="col" { "Backlog" } th scope="col" { "Last receipt" }
                } }
                tbody {
                    @for (id, up, since, backlog, last) in &rows {
                        tr {
                            td { (id) }
                            td { @if *up { span.badge.state-up { "up" } } @else { span.badge.state-down { "down" } } }
                            td { (since) } td { (backlog) } td { (last) }
                        }
                    }
                }
            }
        },
    )
}

/// The hits table: unacknowledged reports first and marked new, each with
/// its acknowledgement form.
fn hits_table(hits: &[crate::exchange::HitView], session: &ConsoleSession) -> Markup {
    let mut sorted: Vec<&crate::exchange::HitView> = hits.iter().collect();
    sorted.sort_by(|a, b| {
        (a.acknowledged.is_some(), std::cmp::Reverse(&a.at))
            .cmp(&(b.acknowledged.is_some(), std::cmp::Reverse(&b.at)))
    });
    html! {
        div id="hits" {
            @if sorted.is_empty() {
                p { "No hit reports on this node's notices." }
            } @else {
                table.hits {
                    caption { (sorted.iter().filter(|h| h.acknowledged.is_none()).count()) " new, " (sorted.len()) " in all" }
                    thead { tr {
                        th scope="col" { "Checked" } th scope="col" { "Where" } th scope="col" { "By" }
                        th scope="col" { "Matched" } th scope="col" { "Notice" } th scope="col" { "Acknowledged" }
                    } }
                    tbody {
                        @for h in sorted {
                            tr class=(if h.acknowledged.is_none() { "new" } else { "" }) id=(format!("hit-{}", h.id)) {
                                td { @if h.acknowledged.is_none() { span.badge.state-new { "new" } " " } (h.at) }
                                td { (h.place) }
                                td { (h.reporter) " · " (h.contact) }
                                td { (h.matched) @if !h.signature_verified { " " span.error { "(signature does not verify)" } } }
                                td { a href=(format!("/console/notices/{}", h.notice_id)) { "notice" } }
                                td {
                                    @if let Some(a) = &h.acknowledged {
                                        (a.by) " at " (a.at) ": " (a.note)
                                    } @else if session.role.may(Action::AckHit) {
                                        form.ack method="post" action=(format!("/console/hits/{}/ack", h.id)) {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            label for=(format!("note-{}", h.id)) { "Note" }
                                            input type="text" id=(format!("note-{}", h.id)) name="note" required maxlength="500";
                                            button type="submit" { "Acknowledge" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct HitsQuery {
    #[serde(default)]
    fragment: Option<u8>,
}

async fn hits_page(
    State(s): State<AppState>,
    h: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<HitsQuery>,
) -> Response {
    let session = match guard(&s, &h, Action::Hits) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let hits = blocking(&s.tasks, move || {
        core.consult_hits(
            crate::exchange::HitFilter {
                unacknowledged: false,
                since: None,
            },
            &actor,
            None,
            crate::time::now(),
        )
    })
    .await;
    let hits = match hits {
        Ok(x) => x,
        Err(e) => return failed(&session, e),
    };
    let table = hits_table(&hits, &session);
    if q.fragment.is_some() {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            table.into_string(),
        )
            .into_response();
    }
    page(
        Some(&session),
        "Hits",
        html! {
            p.hint { "Hit reports on this node's notices appear here as they arrive, and stay marked new until acknowledged with a note." }
            div data-live="/console/hits/live" data-refresh="/console/hits?fragment=1" {
                (table)
            }
        },
    )
}

/// Server-sent events for the hits page: one `hit` event per hit report
/// received, until the page goes, the session ends or the node stops.
/// Counted against the admin API's event-stream limits.
async fn hits_live(State(s): State<AppState>, h: HeaderMap) -> Response {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    use std::convert::Infallible;
    let session = match guard(&s, &h, Action::Watch) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(cookie) = cookie_of(&h) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let actor = format!("officer:{}", session.officer);
    let Some(slot) = s.stream_owners.take(&actor) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let (mut rx, _) = s.core.events().subscribe(None);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(16);
    let mut shutdown = s.shutdown.clone();
    let console = s.console.clone();
    s.tasks.spawn(async move {
        let _held = (slot, permit);
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok((_, ev)) => {
                        if let crate::events::EventKind::HitReceived { hit, .. } = &ev.kind {
                            if tx.send(Ok(SseEvent::default().event("hit").data(hit.clone()))).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Fell behind: the page reloads its table anyway.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if tx.send(Ok(SseEvent::default().event("hit").data("?"))).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                _ = check.tick() => {
                    if tx.is_closed() || !console.alive(&cookie) {
                        return;
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(out))
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize)]
struct AckForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

async fn ack(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<AckForm>,
) -> Response {
    let session = match guard(&s, &h, Action::AckHit) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &f.csrf) {
        return refused_csrf(&session);
    }
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let done = blocking(&s.tasks, move || {
        Ok::<_, super::ApiError>(core.ack_hit(&id, &actor, &f.note, crate::time::now()))
    })
    .await;
    match done {
        Ok(Ok(_)) => Redirect::to("/console/hits").into_response(),
        Ok(Err(e)) => page_status(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Not acknowledged",
            html! { p.error role="alert" { (e.to_string()) } p { a href="/console/hits" { "Back to the hits" } } },
        ),
        Err(e) => failed(&session, e),
    }
}

/// What the screening form holds.
#[derive(Deserialize, Default)]
struct ScreenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    place: String,
    #[serde(default)]
    identifier: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    dob: String,
}

/// One field of a form with its label, its value and its error.
fn field(
    id: &str,
    text: &str,
    value: &str,
    error: Option<&str>,
    hint: &str,
    required: bool,
) -> Markup {
    let err_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (text) @if required { " (required)" } }
            @if let Some(e) = error {
                input type="text" id=(id) name=(id) value=(value) required[required] aria-invalid="true" aria-describedby=(err_id);
                p.error id=(err_id) role="alert" { (e) }
            } @else {
                input type="text" id=(id) name=(id) value=(value) required[required];
            }
            @if !hint.is_empty() { p.hint { (hint) } }
        }
    }
}

fn screen_form(session: &ConsoleSession, f: &ScreenForm, error: Option<(&str, String)>) -> Markup {
    let err = |name: &str| {
        error
            .as_ref()
            .filter(|(f, _)| *f == name)
            .map(|(_, e)| e.as_str())
    };
    html! {
        form method="post" action="/console/screen" {
            input type="hidden" name="csrf" value=(session.csrf);
            (field("reason", "Justification", &f.reason, err("reason"), "Why this check: it is logged with your name.", true))
            (field("place", "Place", &f.place, err("place"), "Where the check happens, e.g. Schiphol border post 3.", false))
            (field("identifier", "Document", &f.identifier, err("identifier"), "SCHEME:COUNTRY:NUMBER, e.g. passport:NLD:X1234567.", false))
            (field("name", "Name", &f.name, err("name"), "In any order, e.g. John Doe or DOE John.", false))
            (field("dob", "Date of birth", &f.dob, err("dob"), "YYYY-MM-DD, or YYYY-MM or YYYY when partial.", false))
            @if let Some((f, e)) = &error { @if !["reason", "place", "identifier", "name", "dob"].contains(f) { p.error role="alert" { (e) } } }
            button type="submit" { "Screen" }
        }
    }
}

/// The manifest upload: a CSV file, the justification and the place.
fn manifest_form(session: &ConsoleSession, error: Option<&str>) -> Markup {
    html! {
        form method="post" action="/console/screen/manifest" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(session.csrf);
            div.field {
                label for="m-reason" { "Justification (required)" }
                input type="text" id="m-reason" name="reason" required;
            }
            div.field {
                label for="m-place" { "Place" }
                input type="text" id="m-place" name="place";
            }
            div.field {
                label for="m-file" { "Manifest (CSV, header first)" }
                input type="file" id="m-file" name="manifest" accept=".csv,text/csv" required;
                p.hint { "Columns as for `vigil screen --csv` (docs/screening.md): family_name, given_names, date_of_birth, nationality, document_scheme, document_country, document_number." }
            }
            @if let Some(e) = error { p.error role="alert" id="manifest-error" { (e) } }
            button type="submit" { "Screen the manifest" }
        }
    }
}

async fn screen_page(State(s): State<AppState>, h: HeaderMap) -> Response {
    let session = match guard(&s, &h, Action::Screen) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    page(
        Some(&session),
        "Screen",
        html! {
            (screen_form(&session, &ScreenForm::default(), None))
            h2 { "A passenger or crew list" }
            (manifest_form(&session, None))
        },
    )
}

/// Screens an uploaded manifest (multipart: csrf, reason, place,
/// manifest), one consult entry for the whole list.
async fn screen_manifest(
    State(s): State<AppState>,
    h: HeaderMap,
    mut parts: axum::extract::Multipart,
) -> Response {
    let session = match guard(&s, &h, Action::Screen) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let (mut csrf, mut reason, mut place, mut csv) =
        (String::new(), String::new(), String::new(), Vec::new());
    loop {
        match parts.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_string();
                let Ok(bytes) = field.bytes().await else {
                    return StatusCode::BAD_REQUEST.into_response();
                };
                match name.as_str() {
                    "csrf" => csrf = String::from_utf8_lossy(&bytes).into_owned(),
                    "reason" => reason = String::from_utf8_lossy(&bytes).into_owned(),
                    "place" => place = String::from_utf8_lossy(&bytes).into_owned(),
                    "manifest" => csv = bytes.to_vec(),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    }
    if !csrf_ok(&session, &csrf) {
        return refused_csrf(&session);
    }
    let again = |e: String| {
        page_status(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Screen",
            manifest_form(&session, Some(&e)),
        )
    };
    if reason.trim().is_empty() {
        return again("A justification is required.".into());
    }
    if csv.is_empty() {
        return again("Choose a manifest file.".into());
    }
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let result = blocking(&s.tasks, move || {
        Ok::<_, super::ApiError>(core.screen_manifest(
            &csv,
            &reason,
            &place,
            &actor,
            crate::time::now(),
        ))
    })
    .await;
    let report = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return again(e.to_string()),
        Err(e) => return failed(&session, e),
    };
    page(
        Some(&session),
        "Manifest screened",
        html! {
            p id="manifest-summary" { (report.rows) " row(s) screened, " (report.hits.len()) " with hits, " (report.errors.len()) " cell(s) refused." }
            @if !report.hits.is_empty() {
                table.screen-hits {
                    thead { tr {
                        th scope="col" { "Row" } th scope="col" { "Traveller" } th scope="col" { "Notice" }
                        th scope="col" { "Matched" } th scope="col" { "Originator's 24/7 contact" }
                    } }
                    tbody {
                        @for row in &report.hits { @for hit in &row.hits {
                            tr.hit {
                                td { (row.row) } td { (row.query) }
                                td { a href=(format!("/console/notices/{}", hit.notice_id)) { (hit.summary) " (" (hit.case_ref) ")" } }
                                td { (hit.matched) }
                                td.contact { (hit.origin) ": " (hit.contact) }
                            }
                        } }
                    }
                }
            }
            @if !report.errors.is_empty() {
                h2 { "Refused cells" }
                ul { @for e in &report.errors { li { "row " (e.row) ", " (e.column) ": " (e.message) } } }
            }
            p { a href="/console/screen" { "Screen again" } }
        },
    )
}

async fn screen(State(s): State<AppState>, h: HeaderMap, Form(f): Form<ScreenForm>) -> Response {
    use crate::notice::screening::{Query as ScreenQuery, QueryError};
    let session = match guard(&s, &h, Action::Screen) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &f.csrf) {
        return refused_csrf(&session);
    }
    let again = |field: &str, e: String| {
        page_status(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Screen",
            screen_form(&session, &f, Some((field, e))),
        )
    };
    if f.reason.trim().is_empty() {
        return again("reason", "A justification is required.".into());
    }
    let mut queries = Vec::new();
    let identifier = f.identifier.trim();
    if !identifier.is_empty() {
        match ScreenQuery::identifier(identifier) {
            Ok(q) => queries.push(q),
            Err(e) => return again("identifier", format!("`{identifier}`: {e}")),
        }
    }
    let (name, dob) = (f.name.trim(), f.dob.trim());
    if !name.is_empty() || !dob.is_empty() {
        match ScreenQuery::name(name, dob, crate::time::now()) {
            Ok(q) => queries.push(q),
            Err(e @ QueryError::Dob(_)) => return again("dob", e.to_string()),
            Err(e) => return again("name", e.to_string()),
        }
    }
    if queries.is_empty() {
        return again(
            "identifier",
            "Give a document, or a name and a date of birth.".into(),
        );
    }
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let (reason, place) = (f.reason.clone(), f.place.clone());
    let result = blocking(&s.tasks, move || {
        Ok::<_, super::ApiError>(core.screen(&queries, &reason, &place, &actor, crate::time::now()))
    })
    .await;
    let hits = match result {
        Ok(Ok(h)) => h,
        Ok(Err(crate::exchange::ScreenError::Input(e))) => {
            return again(&e.field.clone(), e.to_string());
        }
        Ok(Err(e)) => return again("", e.to_string()),
        Err(e) => return failed(&session, e),
    };
    page(
        Some(&session),
        "Screen",
        html! {
            section aria-labelledby="result-h" {
                h2 id="result-h" {
                    @if hits.is_empty() { "No hit" } @else { (hits.len()) " hit(s)" }
                }
                @if !hits.is_empty() {
                    table.screen-hits {
                        thead { tr {
                            th scope="col" { "Notice" } th scope="col" { "Kind" } th scope="col" { "Matched" }
                            th scope="col" { "Originator" } th scope="col" { "Originator's 24/7 contact" }
                        } }
                        tbody {
                            @for hit in &hits {
                                tr.hit {
                                    td { a href=(format!("/console/notices/{}", hit.notice_id)) { (hit.summary) " (" (hit.case_ref) ")" } }
                                    td { (hit.kind.as_str()) }
                                    td { (hit.matched) }
                                    td { (hit.origin) }
                                    td.contact { (hit.contact) }
                                }
                            }
                        }
                    }
                    p.hint { "The originator was sent a hit report where one was due." }
                }
            }
            h2 { "Screen again" }
            (screen_form(&session, &ScreenForm { csrf: String::new(), ..f }, None))
        },
    )
}

/// The issue form's fields, named by their place in the notice's operator
/// JSON, so the node's error (`subject.date_of_birth`) lands beside them.
#[derive(Deserialize, Default, Clone)]
struct IssueForm {
    #[serde(default)]
    csrf: String,
    /// `yes` on the confirmation page's submit.
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    legal_basis: String,
    #[serde(default)]
    handling: String,
    #[serde(default)]
    handling_note: String,
    #[serde(default, rename = "grading.source")]
    grading_source: String,
    #[serde(default, rename = "grading.information")]
    grading_information: String,
    #[serde(default)]
    subject_category: String,
    #[serde(default)]
    nature: String,
    #[serde(default)]
    audience: String,
    #[serde(default)]
    expires_at: String,
    #[serde(default)]
    review_at: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    case_ref: String,
    #[serde(default)]
    contact: String,
    #[serde(default, rename = "subject.family_name")]
    family_name: String,
    #[serde(default, rename = "subject.given_names")]
    given_names: String,
    #[serde(default, rename = "subject.date_of_birth")]
    date_of_birth: String,
    #[serde(default, rename = "subject.nationalities")]
    nationalities: String,
    #[serde(default, rename = "subject.identifiers")]
    identifiers: String,
    #[serde(default, rename = "subject.aliases")]
    aliases: String,
    #[serde(default, rename = "subject.sex")]
    sex: String,
    #[serde(default, rename = "subject.place_of_birth")]
    place_of_birth: String,
    #[serde(default, rename = "subject.description")]
    description: String,
    #[serde(default, rename = "subject.last_known_location")]
    last_known_location: String,
    #[serde(default, rename = "subject.dna_profile")]
    dna_profile: String,
    /// Base64 of the image file chosen (or held, for an update).
    #[serde(default, rename = "subject.facial_image")]
    facial_image: String,
    /// Base64 of the fingerprint record chosen (or held).
    #[serde(default, rename = "subject.fingerprints")]
    fingerprints: String,
}

const KINDS: &[&str] = &[
    "wanted",
    "missing",
    "inquiry",
    "unidentified-body",
    "warning",
    "threat",
    "modus-operandi",
    "sanction",
    "stolen-object",
];
const PURPOSES: &[&str] = &[
    "locate-arrest",
    "locate-person",
    "identify",
    "investigate",
    "warn",
    "threat-alert",
    "crime-analysis",
    "border-check",
    "security-check",
];
const HANDLINGS: &[&str] = &["H0", "H1", "H2", "H3"];
const SOURCES: &[&str] = &["A", "B", "C", "X"];
const INFORMATION: &[&str] = &["1", "2", "3", "4"];
const CATEGORIES: &[&str] = &[
    "suspect",
    "convicted",
    "victim",
    "witness",
    "contact",
    "missing-person",
    "unknown",
];
const NATURES: &[&str] = &["fact", "assessment"];

/// A date from a date field as the operator JSON's time; text that is
/// not a bare date goes on as written (and is refused by the node if bad).
fn as_time(v: &str) -> String {
    let v = v.trim();
    if v.len() == 10 && v.as_bytes().get(4) == Some(&b'-') {
        format!("{v}T00:00:00Z")
    } else {
        v.to_string()
    }
}

/// Comma-separated text as a list of its non-empty parts.
fn list(v: &str) -> Vec<String> {
    v.split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

impl IssueForm {
    /// The operator JSON the form stands for.
    fn to_json(&self) -> serde_json::Value {
        let mut subject = serde_json::Map::new();
        for (k, v) in [
            ("family_name", &self.family_name),
            ("given_names", &self.given_names),
            ("date_of_birth", &self.date_of_birth),
            ("sex", &self.sex),
            ("place_of_birth", &self.place_of_birth),
            ("description", &self.description),
            ("last_known_location", &self.last_known_location),
            ("dna_profile", &self.dna_profile),
            ("facial_image", &self.facial_image),
            ("fingerprints", &self.fingerprints),
        ] {
            if !v.trim().is_empty() {
                subject.insert(k.into(), serde_json::json!(v.trim()));
            }
        }
        let aliases = list(&self.aliases);
        if !aliases.is_empty() {
            subject.insert("aliases".into(), serde_json::json!(aliases));
        }
        let nationalities = list(&self.nationalities);
        if !nationalities.is_empty() {
            subject.insert("nationalities".into(), serde_json::json!(nationalities));
        }
        let ids: Vec<serde_json::Value> = self
            .identifiers
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut p = l.splitn(3, ':');
                serde_json::json!({
                    "scheme": p.next().unwrap_or("").trim(),
                    "country": p.next().unwrap_or("").trim(),
                    "value": p.next().unwrap_or("").trim(),
                })
            })
            .collect();
        if !ids.is_empty() {
            subject.insert("identifiers".into(), serde_json::json!(ids));
        }
        let audience = if self.audience.trim().eq_ignore_ascii_case("all") {
            serde_json::json!("all")
        } else {
            serde_json::json!(list(&self.audience))
        };
        let mut v = serde_json::json!({
            "kind": self.kind, "purpose": self.purpose,
            "legal_basis": self.legal_basis, "handling": self.handling,
            "grading": {"source": self.grading_source, "information": self.grading_information},
            "subject_category": self.subject_category, "nature": self.nature,
            "audience": audience, "expires_at": as_time(&self.expires_at),
            "summary": self.summary, "case_ref": self.case_ref, "contact": self.contact,
            "subject": subject,
        });
        if !self.handling_note.trim().is_empty() {
            v["handling_note"] = serde_json::json!(self.handling_note.trim());
        }
        if !self.review_at.trim().is_empty() {
            v["review_at"] = serde_json::json!(as_time(&self.review_at));
        }
        v
    }

    /// Every field as (name, value), for the confirmation page's hidden
    /// inputs.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("kind", &self.kind),
            ("purpose", &self.purpose),
            ("legal_basis", &self.legal_basis),
            ("handling", &self.handling),
            ("handling_note", &self.handling_note),
            ("grading.source", &self.grading_source),
            ("grading.information", &self.grading_information),
            ("subject_category", &self.subject_category),
            ("nature", &self.nature),
            ("audience", &self.audience),
            ("expires_at", &self.expires_at),
            ("review_at", &self.review_at),
            ("summary", &self.summary),
            ("case_ref", &self.case_ref),
            ("contact", &self.contact),
            ("subject.family_name", &self.family_name),
            ("subject.given_names", &self.given_names),
            ("subject.date_of_birth", &self.date_of_birth),
            ("subject.nationalities", &self.nationalities),
            ("subject.identifiers", &self.identifiers),
            ("subject.aliases", &self.aliases),
            ("subject.sex", &self.sex),
            ("subject.place_of_birth", &self.place_of_birth),
            ("subject.description", &self.description),
            ("subject.last_known_location", &self.last_known_location),
            ("subject.dna_profile", &self.dna_profile),
            ("subject.facial_image", &self.facial_image),
            ("subject.fingerprints", &self.fingerprints),
        ]
    }

    /// The form holding an existing notice, for its update (its image and
    /// fingerprints as base64 in hidden fields, so an update keeps them
    /// unless a new file is chosen). `None` if the view does not encode.
    fn from_view(v: &NoticeView) -> Option<IssueForm> {
        let j = serde_json::to_value(v).ok()?;
        let sj = &j["subject"];
        let text = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
        let date = |x: &serde_json::Value| text(x).get(..10).unwrap_or("").to_string();
        let join = |x: &serde_json::Value| {
            x.as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        let ids = sj["identifiers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|i| {
                        format!(
                            "{}:{}:{}",
                            text(&i["scheme"]),
                            text(&i["country"]),
                            text(&i["value"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        Some(IssueForm {
            kind: text(&j["kind"]),
            purpose: text(&j["purpose"]),
            legal_basis: text(&j["legal_basis"]),
            handling: text(&j["handling"]),
            handling_note: text(&j["handling_note"]),
            grading_source: text(&j["grading"]["source"]),
            grading_information: text(&j["grading"]["information"]),
            subject_category: text(&j["subject_category"]),
            nature: text(&j["nature"]),
            audience: match &j["audience"] {
                serde_json::Value::Array(_) => join(&j["audience"]),
                other => text(other),
            },
            expires_at: date(&j["expires_at"]),
            review_at: date(&j["review_at"]),
            summary: text(&j["summary"]),
            case_ref: text(&j["case_ref"]),
            contact: text(&j["contact"]),
            family_name: text(&sj["family_name"]),
            given_names: text(&sj["given_names"]),
            date_of_birth: text(&sj["date_of_birth"]),
            nationalities: join(&sj["nationalities"]),
            identifiers: ids,
            aliases: join(&sj["aliases"]),
            sex: text(&sj["sex"]),
            place_of_birth: text(&sj["place_of_birth"]),
            description: text(&sj["description"]),
            last_known_location: text(&sj["last_known_location"]),
            dna_profile: text(&sj["dna_profile"]),
            facial_image: text(&sj["facial_image"]),
            fingerprints: text(&sj["fingerprints"]),
            ..IssueForm::default()
        })
    }
}

/// A select field with its label and error.
fn select(id: &str, text: &str, options: &[&str], value: &str, error: Option<&str>) -> Markup {
    let err_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (text) " (required)" }
            select id=(id) name=(id) required aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.clone())] {
                option value="" selected[value.is_empty()] { "—" }
                @for o in options { option value=(o) selected[*o == value] { (o) } }
            }
            @if let Some(e) = error { p.error id=(err_id) role="alert" { (e) } }
        }
    }
}

fn textarea(id: &str, text: &str, value: &str, error: Option<&str>, hint: &str) -> Markup {
    let err_id = format!("{id}-error");
    html! {
        div.field {
            label for=(id) { (text) }
            textarea id=(id) name=(id) rows="3" aria-invalid=[error.map(|_| "true")] aria-describedby=[error.map(|_| err_id.clone())] { (value) }
            @if let Some(e) = error { p.error id=(err_id) role="alert" { (e) } }
            @if !hint.is_empty() { p.hint { (hint) } }
        }
    }
}

fn issue_form(
    session: &ConsoleSession,
    f: &IssueForm,
    error: Option<(&str, String)>,
    action: &str,
) -> Markup {
    let known = [
        "kind",
        "purpose",
        "legal_basis",
        "handling",
        "handling_note",
        "grading.source",
        "grading.information",
        "subject_category",
        "nature",
        "audience",
        "expires_at",
        "review_at",
        "summary",
        "case_ref",
        "contact",
        "subject.family_name",
        "subject.given_names",
        "subject.date_of_birth",
        "subject.nationalities",
        "subject.identifiers",
        "subject.aliases",
        "subject.sex",
        "subject.place_of_birth",
        "subject.description",
        "subject.last_known_location",
        "subject.dna_profile",
        "subject.facial_image",
        "subject.fingerprints",
    ];
    // An error on a part of a field (`subject.identifiers[0].country`)
    // shows beside the field.
    let mut error = error.clone();
    if let Some((f, e)) = &error {
        if let Some(k) = known.iter().find(|k| f.starts_with(*k) && *f != **k) {
            error = Some((k, e.clone()));
        }
    }
    let err2 = |name: &str| {
        error
            .as_ref()
            .filter(|(f, _)| *f == name)
            .map(|(_, e)| e.as_str())
    };
    html! {
        // Said first, where a screen reader and the eye start, with a link
        // to the field (which also shows it beside itself).
        @if let Some((f, e)) = &error {
            div.error-summary role="alert" {
                @if known.contains(f) {
                    "Nothing was signed: " a href=(format!("#{f}")) { (f) } " — " (e)
                } @else {
                    "Nothing was signed: " (f) " — " (e)
                }
            }
        }
        form method="post" action=(action) enctype="multipart/form-data" novalidate {
            input type="hidden" name="csrf" value=(session.csrf);
            fieldset {
                legend { "The notice" }
                (select("kind", "Kind", KINDS, &f.kind, err2("kind")))
                (select("purpose", "Purpose", PURPOSES, &f.purpose, err2("purpose")))
                (field("legal_basis", "Legal basis", &f.legal_basis, err2("legal_basis"), "The warrant or decision, e.g. Warrant 2026/117, District Court Rotterdam.", true))
                (field("summary", "Summary", &f.summary, err2("summary"), "", true))
                (field("case_ref", "Case reference", &f.case_ref, err2("case_ref"), "", true))
                (field("contact", "Your 24/7 contact", &f.contact, err2("contact"), "Who partners call about a hit.", true))
                (select("subject_category", "Subject category", CATEGORIES, &f.subject_category, err2("subject_category")))
                (select("nature", "Nature", NATURES, &f.nature, err2("nature")))
                (select("grading.source", "Source reliability", SOURCES, &f.grading_source, err2("grading.source")))
                (select("grading.information", "Information accuracy", INFORMATION, &f.grading_information, err2("grading.information")))
            }
            fieldset {
                legend { "Who receives it" }
                (field("audience", "Audience", &f.audience, err2("audience"), "all, or member ids separated by commas.", true))
                (select("handling", "Handling", HANDLINGS, &f.handling, err2("handling")))
                (field("handling_note", "Handling note", &f.handling_note, err2("handling_note"), "Required for H3.", false))
                (field("expires_at", "Expires", &f.expires_at, err2("expires_at"), "YYYY-MM-DD.", true))
                (field("review_at", "Review by", &f.review_at, err2("review_at"), "YYYY-MM-DD, optional.", false))
            }
            fieldset {
                legend { "Subject" }
                (field("subject.family_name", "Family name", &f.family_name, err2("subject.family_name"), "", false))
                (field("subject.given_names", "Given names", &f.given_names, err2("subject.given_names"), "", false))
                (field("subject.date_of_birth", "Date of birth", &f.date_of_birth, err2("subject.date_of_birth"), "YYYY-MM-DD, or YYYY-MM or YYYY when partial.", false))
                (field("subject.nationalities", "Nationalities", &f.nationalities, err2("subject.nationalities"), "Country codes separated by commas, e.g. NLD, DEU.", false))
                (textarea("subject.identifiers", "Documents", &f.identifiers, err2("subject.identifiers"), "One per line: SCHEME:COUNTRY:NUMBER, e.g. passport:NLD:X1234567."))
                (field("subject.aliases", "Aliases", &f.aliases, err2("subject.aliases"), "Separated by commas.", false))
                div.field {
                    label for="subject.sex" { "Sex" }
                    select id="subject.sex" name="subject.sex" {
                        option value="" selected[f.sex.is_empty()] { "—" }
                        @for o in ["male", "female", "unknown"] { option value=(o) selected[o == f.sex] { (o) } }
                    }
                    @if let Some(e) = err2("subject.sex") { p.error role="alert" { (e) } }
                }
                (field("subject.place_of_birth", "Place of birth", &f.place_of_birth, err2("subject.place_of_birth"), "", false))
                (textarea("subject.description", "Description", &f.description, err2("subject.description"), ""))
                (field("subject.last_known_location", "Last known location", &f.last_known_location, err2("subject.last_known_location"), "", false))
                (field("subject.dna_profile", "DNA profile", &f.dna_profile, err2("subject.dna_profile"), "", false))
                div.field {
                    label for="facial_image_file" { "Facial image" }
                    @if !f.facial_image.is_empty() { p.hint { "An image is held (" (f.facial_image.len() * 3 / 4) " bytes); choose a file to replace it." } }
                    input type="file" id="facial_image_file" name="facial_image_file" accept="image/*";
                    input type="hidden" name="subject.facial_image" value=(f.facial_image);
                    @if let Some(e) = err2("subject.facial_image") { p.error role="alert" { (e) } }
                }
                div.field {
                    label for="fingerprints_file" { "Fingerprints" }
                    @if !f.fingerprints.is_empty() { p.hint { "A fingerprint record is held (" (f.fingerprints.len() * 3 / 4) " bytes); choose a file to replace it." } }
                    input type="file" id="fingerprints_file" name="fingerprints_file";
                    input type="hidden" name="subject.fingerprints" value=(f.fingerprints);
                    @if let Some(e) = err2("subject.fingerprints") { p.error role="alert" { (e) } }
                }
            }
            button type="submit" { "Check and confirm" }
        }
    }
}

async fn issue_page(State(s): State<AppState>, h: HeaderMap) -> Response {
    let session = match guard(&s, &h, Action::Issue) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let f = IssueForm {
        contact: s.core.config().contact.clone(),
        audience: "all".into(),
        ..IssueForm::default()
    };
    page(
        Some(&session),
        "Issue a notice",
        issue_form(&session, &f, None, "/console/issue"),
    )
}

/// The update form of one of this node's active notices, holding it.
async fn update_page(State(s): State<AppState>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match guard(&s, &h, Action::Update) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Ok(nid) = super::parse_id(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let found = blocking(&s.tasks, move || {
        core.consult_show(&nid, &actor, Some("update form"), crate::time::now())
    })
    .await;
    let v = match found {
        Ok(Some(v)) if v.origin == s.core.me() && v.state == "active" => v,
        Ok(_) => {
            return page_status(
                StatusCode::NOT_FOUND,
                Some(&session),
                "Update",
                html! { p.error role="alert" { "Only this node's active notices can be updated." } },
            )
        }
        Err(e) => return failed(&session, e),
    };
    let Some(f) = IssueForm::from_view(&v) else {
        return page_status(
            StatusCode::CONFLICT,
            Some(&session),
            "Update",
            html! { p.error role="alert" { "This notice cannot be read into the form: update it with `vigil notice update` and a JSON file." } },
        );
    };
    page(
        Some(&session),
        "Update the notice",
        issue_form(&session, &f, None, &format!("/console/notices/{id}/update")),
    )
}

async fn update(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let Ok(nid) = super::parse_id(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match read_issue_form(req).await {
        Ok(f) => submit(s, h, f, Some(nid)).await,
        Err(status) => status.into_response(),
    }
}

/// The issue form from either encoding: the form page sends multipart
/// (it may carry files), the confirmation page sends its hidden fields
/// either way. A chosen file goes in as base64, replacing what was held.
async fn read_issue_form(req: axum::extract::Request) -> Result<IssueForm, StatusCode> {
    use axum::extract::FromRequest;
    use base64::Engine;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let Form(f) = Form::<IssueForm>::from_request(req, &())
            .await
            .map_err(|_| StatusCode::BAD_REQUEST)?;
        return Ok(f);
    }
    let mut parts = axum::extract::Multipart::from_request(req, &())
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(|_| StatusCode::BAD_REQUEST)?;
        match name.as_str() {
            "facial_image_file" | "fingerprints_file" => {
                if !bytes.is_empty() {
                    files.push((name, bytes));
                }
            }
            _ => {
                fields.insert(name, serde_json::json!(String::from_utf8_lossy(&bytes)));
            }
        }
    }
    for (name, bytes) in files {
        let key = if name == "facial_image_file" {
            "subject.facial_image"
        } else {
            "subject.fingerprints"
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        fields.insert(key.into(), serde_json::json!(b64));
    }
    serde_json::from_value(serde_json::Value::Object(fields)).map_err(|_| StatusCode::BAD_REQUEST)
}

async fn issue(State(s): State<AppState>, h: HeaderMap, req: axum::extract::Request) -> Response {
    match read_issue_form(req).await {
        Ok(f) => submit(s, h, f, None).await,
        Err(status) => status.into_response(),
    }
}

/// Checks the form (a new notice, or an update of `target`); the first
/// submit answers with a confirmation naming the audience and handling,
/// the confirmed one signs and stores.
async fn submit(s: AppState, h: HeaderMap, f: IssueForm, target: Option<NoticeId>) -> Response {
    let (action, title, path) = match &target {
        None => (
            Action::Issue,
            "Issue a notice",
            "/console/issue".to_string(),
        ),
        Some(t) => (
            Action::Update,
            "Update the notice",
            format!("/console/notices/{t}/update"),
        ),
    };
    let session = match guard(&s, &h, action) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &f.csrf) {
        return refused_csrf(&session);
    }
    if f.confirm == "edit" {
        return page(Some(&session), title, issue_form(&session, &f, None, &path));
    }
    let again = |field: &str, e: String| {
        page_status(
            StatusCode::BAD_REQUEST,
            Some(&session),
            title,
            issue_form(&session, &f, Some((field, e)), &path),
        )
    };
    let json = f.to_json();
    let input = match crate::notice::NoticeInput::from_json(json.to_string().as_bytes()) {
        Ok(i) => i,
        Err(e) => return again(&e.field.clone(), e.to_string()),
    };
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    let confirmed = f.confirm == "yes";
    let checked = {
        let input = input.clone();
        let core = core.clone();
        blocking(&s.tasks, move || {
            Ok::<_, super::ApiError>(core.check_input(&input, crate::time::now()))
        })
        .await
    };
    let validated = match checked {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return again(&e.field.clone(), e.to_string()),
        Err(e) => return failed(&session, e),
    };
    if !confirmed {
        let audience = match &validated.audience {
            crate::notice::Audience::All => "every member".to_string(),
            crate::notice::Audience::Members(m) => m.join(", "),
        };
        return page(
            Some(&session),
            "Confirm the notice",
            html! {
                p { "Nothing is signed yet. Check who receives it:" }
                dl.fields {
                    dt { "Audience" } dd id="confirm-audience" { (audience) }
                    dt { "Handling" } dd id="confirm-handling" { (f.handling) @if !f.handling_note.is_empty() { " — " (f.handling_note) } }
                    dt { "Kind" } dd { (f.kind) }
                    dt { "Subject" } dd { (f.family_name) ", " (f.given_names) " " (f.date_of_birth) }
                    dt { "Expires" } dd { (f.expires_at) }
                }
                @if let Some(t) = &target { p { "It replaces " a href=(format!("/console/notices/{t}")) { (t.to_string()) } " on every holder." } }
                form method="post" action=(path) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="confirm" value="yes";
                    @for (k, v) in f.pairs() { input type="hidden" name=(k) value=(v); }
                    button type="submit" id="confirm" { "Sign and send to " (audience) }
                }
                form method="post" action=(path) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="confirm" value="edit";
                    @for (k, v) in f.pairs() { input type="hidden" name=(k) value=(v); }
                    button type="submit" { "Back to the form" }
                }
            },
        );
    }
    let issued = blocking(&s.tasks, move || {
        let now = crate::time::now();
        Ok::<_, super::ApiError>(match target {
            None => core.issue(&input, &actor, now),
            Some(t) => core.update(&t, &input, &actor, now),
        })
    })
    .await;
    match issued {
        Ok(Ok(id)) => Redirect::to(&format!("/console/notices/{id}")).into_response(),
        Ok(Err(crate::exchange::IssueError::Input(e))) => again(&e.field.clone(), e.to_string()),
        Ok(Err(e)) => again("", e.to_string()),
        Err(e) => failed(&session, e),
    }
}

#[derive(Deserialize)]
struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// Cancels one of this node's notices: the first submit names who holds
/// it and what the cancel does, the confirmed one signs it.
async fn cancel(
    State(s): State<AppState>,
    h: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<CancelForm>,
) -> Response {
    let session = match guard(&s, &h, Action::Cancel) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    if !csrf_ok(&session, &f.csrf) {
        return refused_csrf(&session);
    }
    let Ok(nid) = super::parse_id(&id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let core = s.core.clone();
    let actor = format!("officer:{}", session.officer);
    if f.confirm != "yes" {
        if f.reason.trim().is_empty() {
            return page_status(
                StatusCode::BAD_REQUEST,
                Some(&session),
                "Cancel the notice",
                html! { p.error role="alert" id="reason-error" { "A reason is required: it travels with the cancellation." } p { a href=(format!("/console/notices/{id}")) { "Back to the notice" } } },
            );
        }
        let v = blocking(&s.tasks, move || core.show(&nid)).await;
        let v = match v {
            Ok(Some(v)) => v,
            Ok(None) => return StatusCode::NOT_FOUND.into_response(),
            Err(e) => return failed(&session, e),
        };
        return page(
            Some(&session),
            "Confirm the cancellation",
            html! {
                p { "Nothing is signed yet. The cancellation goes to the notice's audience, and every holder erases the subject's personal data." }
                dl.fields {
                    dt { "Audience" } dd id="confirm-audience" { (cell(&v.audience)) }
                    dt { "Handling" } dd id="confirm-handling" { (format!("{:?}", v.handling)) }
                    dt { "Notice" } dd { (subject_line(&v)) }
                    dt { "Reason" } dd { (f.reason) }
                }
                form method="post" action=(format!("/console/notices/{id}/cancel")) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    input type="hidden" name="reason" value=(f.reason);
                    input type="hidden" name="confirm" value="yes";
                    button type="submit" id="confirm" { "Sign the cancellation" }
                }
            },
        );
    }
    let done = blocking(&s.tasks, move || {
        Ok::<_, super::ApiError>(core.cancel(&nid, &f.reason, &actor, crate::time::now()))
    })
    .await;
    match done {
        Ok(Ok(c)) => Redirect::to(&format!("/console/notices/{c}")).into_response(),
        Ok(Err(e)) => page_status(
            StatusCode::BAD_REQUEST,
            Some(&session),
            "Not cancelled",
            html! { p.error role="alert" { (e.to_string()) } },
        ),
        Err(e) => failed(&session, e),
    }
}
