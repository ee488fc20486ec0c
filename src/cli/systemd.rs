//! The service manager's side of `vigil run` (docs/systemd.md): readiness,
//! reloading, stopping and the watchdog, as sd_notify(3) messages on
//! `NOTIFY_SOCKET`. Without that variable (not run by systemd) every call
//! does nothing.

use sd_notify::NotifyState;
use std::time::Duration;

/// Sends `states`; a failure is logged, never fatal (the node serves
/// whether or not the manager listens).
fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// READY=1: the store is open, the QUIC endpoint bound, the admin API
/// serving.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// RELOADING=1 (with the monotonic time systemd wants with it), before a
/// SIGHUP reload; [`ready`] follows when it is done.
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// STOPPING=1, when a stop signal arrived.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// When the manager asks for a watchdog (`WATCHDOG_USEC`), a task that
/// sends WATCHDOG=1 at half the interval for as long as the runtime runs
/// it: a node whose event loop is stuck stops sending and is restarted.
pub fn watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tracing::info!(
        every_ms = every.as_millis() as u64,
        "systemd watchdog enabled"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    }))
}
