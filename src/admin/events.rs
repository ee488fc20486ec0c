//! `GET /v1/events`: the node's desk events as server-sent events
//! (docs/admin-api.md#events), resuming after `Last-Event-ID`.
//!
//! Why a stream: a hit must reach the desk within seconds, and polling
//! `vigil hits` every few seconds would log a consultation each time. An
//! officer's stream is checked against the registry every
//! [`RECHECK`]: an officer removed (or moved to a role without `watch`)
//! is cut off at once.

use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tracing::info;

use super::{ApiError, AppState, ErrorBody, TokenDigest};
use crate::events::{Event, EventKind, Resume};
use crate::officers::{Action, Principal};

/// Event streams open at once; more are answered 503.
pub const MAX_STREAMS: usize = 16;
/// Event streams one officer (or the administrator) may hold at once, so
/// one caller cannot take every slot.
pub const STREAMS_PER_CALLER: usize = 4;
/// How long a send may wait on a client that does not read before its
/// stream is ended (it resumes after the last id it has).
const SEND_LIMIT: Duration = Duration::from_secs(10);

/// Open streams per caller (`admin`, `officer:NAME`).
#[derive(Default)]
pub(super) struct StreamOwners(std::sync::Mutex<std::collections::HashMap<String, usize>>);

/// One caller's stream slot, given back when dropped.
pub(super) struct OwnerSlot(Arc<StreamOwners>, String);

impl StreamOwners {
    pub(super) fn take(self: &Arc<Self>, who: &str) -> Option<OwnerSlot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(who.to_string()).or_insert(0);
        if *n >= STREAMS_PER_CALLER {
            return None;
        }
        *n += 1;
        Some(OwnerSlot(self.clone(), who.to_string()))
    }
}

impl Drop for OwnerSlot {
    fn drop(&mut self) {
        let mut m = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}
/// How often a stream checks that its officer still may watch.
const RECHECK: Duration = Duration::from_secs(1);
/// Events buffered per stream toward a slow client.
const BUFFER: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// Resume after this event id (as `Last-Event-ID`, for clients that
    /// cannot set the header).
    after: Option<String>,
}

/// Streams events until the client goes, the node stops, or the officer
/// is removed.
pub(super) async fn stream(
    State(s): State<AppState>,
    Extension(p): Extension<Principal>,
    digest: Option<Extension<TokenDigest>>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let busy = |error: String| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorBody { error, field: None },
        )
    };
    let actor = p.actor();
    let Some(slot) = s.stream_owners.take(&actor) else {
        return Err(busy(format!(
            "{actor} already has {STREAMS_PER_CALLER} event streams open"
        )));
    };
    let Ok(permit) = s.streams.clone().try_acquire_owned() else {
        return Err(busy(format!("{MAX_STREAMS} event streams already open")));
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.after)
        // No id this node gives out is that long: resumed as unknown.
        .map(|l| if l.len() > 64 { String::new() } else { l });
    let (rx, resume) = s.core.events().subscribe(last.as_deref());
    let (tx, out) = mpsc::channel::<Result<SseEvent, Infallible>>(BUFFER);
    let digest = digest.map(|Extension(TokenDigest(d))| d);
    info!(actor = %actor, resume = ?last, "event stream opened");
    let tasks = s.tasks.clone();
    tasks.spawn(async move {
        feed(&s, rx, resume, last, digest, &tx).await;
        drop(slot);
        drop(permit);
        info!(actor = %actor, "event stream closed");
    });
    Ok(Sse::new(tokio_stream::wrappers::ReceiverStream::new(out))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends what the client missed, then live events, until one side ends.
async fn feed(
    s: &AppState,
    mut rx: broadcast::Receiver<(u64, Event)>,
    resume: Resume,
    last: Option<String>,
    digest: Option<String>,
    tx: &mpsc::Sender<Result<SseEvent, Infallible>>,
) {
    let mut sent = 0u64;
    let missed = |after: &str| Event {
        id: after.to_string(),
        at: crate::time::rfc3339(crate::time::now()),
        kind: EventKind::EventsMissed {
            after: after.to_string(),
        },
    };
    let held = match resume {
        Resume::From(h) => h,
        Resume::Missed(h) => {
            if send(tx, &missed(last.as_deref().unwrap_or("")))
                .await
                .is_err()
            {
                return;
            }
            h
        }
    };
    for (seq, ev) in held {
        if send(tx, &ev).await.is_err() {
            return;
        }
        sent = seq;
    }
    let mut shutdown = s.shutdown.clone();
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok((seq, ev)) if seq > sent => {
                    if send(tx, &ev).await.is_err() {
                        return;
                    }
                    sent = seq;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // The client was too slow: say so; it resumes from
                    // the last id it has.
                    let _ = send(tx, &missed("")).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = recheck.tick() => {
                if let Some(d) = &digest {
                    if !may_still_watch(s, d) {
                        info!("officer removed or no longer allowed to watch; event stream cut off");
                        return;
                    }
                }
            }
            _ = tx.closed() => return,
            _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
        }
    }
}

/// Whether the officer holding the token with this digest still exists
/// with a role that may watch.
fn may_still_watch(s: &AppState, digest: &str) -> bool {
    match s.officers.load() {
        Ok(officers) => officers
            .iter()
            .any(|o| o.token_sha256 == digest && o.role.may(Action::Watch)),
        Err(_) => false,
    }
}

/// The client is gone or not reading.
struct Gone;

async fn send(tx: &mpsc::Sender<Result<SseEvent, Infallible>>, ev: &Event) -> Result<(), Gone> {
    let data = serde_json::to_string(ev).unwrap_or_else(|_| "{}".into());
    let mut e = SseEvent::default().event(ev.kind.name()).data(data);
    if !matches!(ev.kind, EventKind::EventsMissed { .. }) {
        e = e.id(ev.id.clone());
    }
    // A client that stopped reading loses its stream (and its slot); it
    // resumes after the last id it has.
    match tokio::time::timeout(SEND_LIMIT, tx.send(Ok(e))).await {
        Ok(r) => r.map_err(|_| Gone),
        Err(_) => Err(Gone),
    }
}
