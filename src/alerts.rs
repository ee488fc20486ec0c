//! The alert hook: each event handed to `[alerts] exec` (the pager, mail or
//! case-system program) as JSON on stdin (docs/officers.md#alerts).
//!
//! Why bounded: the hook is someone else's program and may hang or fail.
//! It must never slow the exchange, so it runs on its own task fed by the
//! event bus: at most `exec_max_running` runs at once, each killed after
//! `exec_timeout_secs`; events the hook cannot keep up with are dropped
//! from its queue (the bus's channel) and counted, and every failure is
//! counted and logged (five lines a minute at most; the next line says how
//! many were not). Publishing an event never waits for the hook.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::events::Event;
use crate::exchange::Exchange;

/// The window for the hook's warnings: at most one about dropped events
/// and [`FAILURES_LOGGED`] about failures per window.
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Bytes of a failing run's stderr quoted in the log.
const STDERR_QUOTED: usize = 300;

/// What the hook did since the node started (for logs and metrics).
#[derive(Debug, Default)]
pub struct AlertStats {
    /// Runs that exited 0.
    pub delivered: AtomicU64,
    /// Runs that failed: could not start, exited non-zero, or timed out.
    pub failed: AtomicU64,
    /// Events never handed to the hook because it was behind.
    pub dropped: AtomicU64,
}

/// Runs the hook for every event until `shutdown`; runs in progress are
/// killed at shutdown (a stop never waits on the hook).
pub async fn run(
    core: Arc<Exchange>,
    stats: Arc<AlertStats>,
    tasks: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut rx, _) = core.events().subscribe(None);
    let mut stop = shutdown.clone();
    // Rebuilt when a reload changes `exec_max_running`, so the new limit
    // applies to the runs that follow.
    let mut limit: (usize, Arc<Semaphore>) = (0, Arc::new(Semaphore::new(0)));
    // Drops not yet logged, and when the last warning was: at most one
    // line per LOG_WINDOW however fast events come.
    let mut unreported = 0u64;
    let failures = Arc::new(FailureLog::default());
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let ev = tokio::select! {
            r = rx.recv() => match r {
                Ok((_, ev)) => ev,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Without a hook nothing was lost: events are only
                    // streamed and logged.
                    if core.config().alerts.exec.is_some() {
                        stats.dropped.fetch_add(n, Ordering::Relaxed);
                        unreported += n;
                        if warned.is_none_or(|w| w.elapsed() >= LOG_WINDOW) {
                            warn!(dropped = unreported, "alert hook behind; events dropped from its queue");
                            unreported = 0;
                            warned = Some(tokio::time::Instant::now());
                        }
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        };
        // The config in force: a reload changes the hook for what follows.
        let cfg = core.config();
        let Some(exec) = cfg.alerts.exec.clone() else {
            continue;
        };
        if limit.0 != cfg.alerts.exec_max_running {
            limit = (
                cfg.alerts.exec_max_running,
                Arc::new(Semaphore::new(cfg.alerts.exec_max_running)),
            );
        }
        let permit = tokio::select! {
            p = limit.1.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let timeout = Duration::from_secs(cfg.alerts.exec_timeout_secs);
        let stats = stats.clone();
        let failures = failures.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let outcome = run_once(&exec, &ev, timeout, stop).await;
            drop(permit);
            match outcome {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    debug!(event = ev.kind.name(), id = %ev.id, "alert hook ran");
                }
                Err(error) => {
                    let failed = stats.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    if let Some(not_logged) = failures.note(tokio::time::Instant::now()) {
                        warn!(event = ev.kind.name(), id = %ev.id, program = %exec[0], error = %error, failed, not_logged, "alert hook failed");
                    }
                }
            }
        });
    }
}

/// Failures logged one by one per [`LOG_WINDOW`]; a hook that always
/// fails must not turn every event into a log line.
const FAILURES_LOGGED: u64 = 5;

/// Which hook failures get a log line of their own.
#[derive(Default)]
struct FailureLog(std::sync::Mutex<Option<(tokio::time::Instant, u64, u64)>>);

impl FailureLog {
    /// `Some(failures not logged before this one)` when this failure is
    /// logged, `None` when it is only counted.
    fn note(&self, now: tokio::time::Instant) -> Option<u64> {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (start, logged, skipped) = w.get_or_insert((now, 0, 0));
        if now.duration_since(*start) >= LOG_WINDOW {
            *start = now;
            *logged = 0;
        }
        if *logged < FAILURES_LOGGED {
            *logged += 1;
            Some(std::mem::take(skipped))
        } else {
            *skipped += 1;
            None
        }
    }
}

/// Runs the program once with the event on stdin; an error says why it
/// failed (its exit status and the start of its stderr, escaped, or the
/// timeout). The run gets a process group of its own: at the timeout or at
/// shutdown the whole group is killed, children included.
async fn run_once(
    exec: &[String],
    ev: &Event,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut json = serde_json::to_vec(ev).map_err(|e| e.to_string())?;
    json.push(b'\n');
    let mut cmd = tokio::process::Command::new(&exec[0]);
    cmd.args(&exec[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let group = child.id();
    let stdin = child.stdin.take();
    // Stderr is read to its end (so a talkative program never blocks on
    // a full pipe) but only its start is kept.
    let quoted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = child.stderr.take().map(|mut e| {
        let quoted = quoted.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = e.read(&mut buf).await {
                let mut q = quoted.lock().unwrap_or_else(|p| p.into_inner());
                let room = STDERR_QUOTED.saturating_sub(q.len());
                q.extend_from_slice(&buf[..n.min(room)]);
            }
        })
    });
    let work = async {
        if let Some(mut s) = stdin {
            // A program that does not read its stdin still gets to run.
            let _ = s.write_all(&json).await;
        }
        child.wait().await.map_err(|e| e.to_string())
    };
    let status = tokio::select! {
        r = tokio::time::timeout(timeout, work) => match r {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {} s; killed", timeout.as_secs())),
        },
        _ = async { let _ = shutdown.wait_for(|s| *s).await; } => Err("node stopping; killed".into()),
    };
    if status.is_err() {
        kill_group(group);
    }
    if let Some(mut r) = reader {
        // A child the program left behind may hold stderr open: what came
        // within a moment is enough to quote.
        if tokio::time::timeout(Duration::from_millis(200), &mut r)
            .await
            .is_err()
        {
            r.abort();
            debug!("alert hook's stderr still open after it exited");
        }
    }
    let status = status?;
    if status.success() {
        return Ok(());
    }
    let said = quoted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let said = String::from_utf8_lossy(&said);
    let said = crate::notice::text::escape(said.trim());
    Err(if said.is_empty() {
        format!("exited with {status}")
    } else {
        format!("exited with {status}: {said}")
    })
}

/// Kills a run's process group (the program and whatever it started).
fn kill_group(group: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = group
        .and_then(|g| i32::try_from(g).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    #[cfg(not(unix))]
    let _ = group;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    fn event() -> Event {
        Event {
            id: "r-1".into(),
            at: "2026-11-29T00:00:00Z".into(),
            kind: EventKind::PeerUp {
                peer: "bravo".into(),
                down_secs: 1,
            },
        }
    }

    /// Runs `script` under sh as a hook with `timeout`.
    async fn hook(script: &str, timeout: Duration) -> (Result<(), String>, Duration) {
        let (_tx, rx) = watch::channel(false);
        let exec = ["sh".to_string(), "-c".to_string(), script.to_string()];
        let t = std::time::Instant::now();
        let r = run_once(&exec, &event(), timeout, rx).await;
        (r, t.elapsed())
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_talkative_hook_is_drained_and_succeeds() {
        let (r, took) = hook(
            "cat > /dev/null; head -c 1000000 /dev/zero | tr '\\0' x >&2; exit 0",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(r, Ok(()), "after {took:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_hook_that_leaves_a_child_behind_is_done_when_it_exits() {
        let (r, took) = hook(
            "cat > /dev/null; sleep 30 & exit 0",
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(r, Ok(()));
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_failure_quotes_stderr_escaped() {
        let (r, _) = hook(
            "printf 'bad\\033[31m\\nforged line' >&2; exit 3",
            Duration::from_secs(20),
        )
        .await;
        let e = r.unwrap_err();
        assert!(e.starts_with("exited with exit status: 3: bad"), "{e}");
        assert!(!e.contains('\u{1b}') && !e.contains('\n'), "{e:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_hang_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child");
        let (r, took) = hook(
            &format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display()),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r, Err("timed out after 1 s; killed".to_string()));
        assert!(took < Duration::from_secs(5), "{took:?}");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        // The child left behind is killed too (gone, or a zombie).
        let stat = format!("/proc/{}/stat", pid.trim());
        let mut gone = false;
        for _ in 0..100 {
            match std::fs::read_to_string(&stat) {
                Err(_) => gone = true,
                Ok(s) => {
                    gone = s
                        .rsplit(')')
                        .next()
                        .is_some_and(|r| r.trim_start().starts_with('Z'))
                }
            }
            if gone {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the hook's child outlived the timeout");
    }

    #[test]
    fn failures_are_logged_five_a_minute_then_counted() {
        let log = FailureLog::default();
        let t0 = tokio::time::Instant::now();
        let logged = (0..12).filter(|_| log.note(t0).is_some()).count();
        assert_eq!(logged, FAILURES_LOGGED as usize);
        // A minute on, the next one is logged and says how many were not.
        assert_eq!(log.note(t0 + LOG_WINDOW), Some(7));
        assert_eq!(log.note(t0 + LOG_WINDOW), Some(0));
    }
}
