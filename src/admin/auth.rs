//! Who is calling the admin API and whether the caller's role allows the
//! route (docs/officers.md): the administrator's token or an officer's,
//! resolved on every request from the registry beside the config, checked
//! before any handler runs. Refusals are answered 403 and logged, within a
//! per-officer budget so that no caller can flood the processing log.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::warn;

use super::{blocking, ApiError, AppState, ErrorBody};
use crate::officers::{Action, Principal};

/// The digest of the token an officer's request carried, kept with the
/// request so a long stream can check that the officer still exists.
#[derive(Clone)]
pub(super) struct TokenDigest(pub(super) String);

/// Refusals recorded in the processing log per officer and window; the
/// rest are counted and summed up in the next entry.
pub(super) const REFUSALS_PER_WINDOW: u32 = 10;
/// The refusal counting window, in seconds.
pub(super) const REFUSAL_WINDOW_SECS: i64 = 60;

/// Per officer: (window start, recorded, suppressed).
#[derive(Default)]
pub(super) struct OfficerRefusals(std::collections::HashMap<String, (i64, u32, u64)>);

impl OfficerRefusals {
    /// Whether this refusal gets its own entry, and how many earlier ones
    /// of a finished window were not recorded (to say so in it).
    pub(super) fn count(&mut self, who: &str, now: i64) -> (bool, u64) {
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
    pub(super) fn roll(&mut self, now: i64) -> Vec<(String, u64)> {
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

/// Sums up officers' refusals once a minute until shutdown.
pub(super) async fn summarize_each_window(state: AppState, mut shutdown: watch::Receiver<bool>) {
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

/// What each route does, for the role check. `None`: no such route.
pub(super) fn action_for(method: &axum::http::Method, path: &str) -> Option<Action> {
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
        "/v1/audit" | "/v1/audit/witnesses" => Action::Audit,
        "/v1/screen" | "/v1/screen/manifest" => Action::Screen,
        "/v1/hits" => Action::Hits,
        "/v1/hits/{id}/ack" => Action::AckHit,
        "/v1/events" => Action::Watch,
        "/v1/backup" => Action::Backup,
        "/v1/key/rotate" => Action::RotateKey,
        _ => return None,
    })
}

/// Who is calling: the administrator's token or an officer's; then
/// whether the caller's role allows the route. A refusal is answered 403
/// before the handler runs (so nothing is stored) and logged.
pub(super) async fn auth(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
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
