//! The process harness shared by the tests that drive the real `vigil`
//! binary: bounded runs of short commands with their output captured,
//! guards that kill node processes even when an assertion fails, and free
//! loopback ports. Each test binary uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The longest one short-lived `vigil` command may run.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// What one finished `vigil` invocation produced.
#[derive(Debug)]
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert_eq!(self.code, Some(0), "{what} failed: {self:#?}");
        self
    }

    /// Asserts exit code 2 and a one-line stderr containing every needle.
    pub fn assert_refused(&self, what: &str, needles: &[&str]) {
        assert_eq!(self.code, Some(2), "{what}: expected exit 2: {self:#?}");
        let err = self.stderr.trim_end();
        assert!(!err.is_empty(), "{what}: stderr is empty: {self:#?}");
        assert!(
            !err.contains('\n'),
            "{what}: stderr is not one line: {self:#?}"
        );
        for n in needles {
            assert!(
                err.contains(n),
                "{what}: stderr does not mention `{n}`: {self:#?}"
            );
        }
    }
}

pub fn vigil_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.args(args).env("RUST_LOG", "info").stdin(Stdio::null());
    c
}

/// Kills and reaps a child when dropped, so no process outlives its test.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Polls for the child's exit until `limit`; `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a short-lived `vigil` command to completion (bounded by
/// [`COMMAND_DEADLINE`]), capturing its output through files so full pipes
/// cannot stall it.
pub fn vigil(args: &[&str]) -> Out {
    let cap = tempfile::tempdir().expect("tempdir");
    let (o, e) = (cap.path().join("stdout"), cap.path().join("stderr"));
    let mut child = ChildGuard(
        vigil_cmd(args)
            .stdout(fs::File::create(&o).expect("stdout file"))
            .stderr(fs::File::create(&e).expect("stderr file"))
            .spawn()
            .expect("spawn vigil"),
    );
    let status = child.wait_for_exit(COMMAND_DEADLINE).unwrap_or_else(|| {
        panic!(
            "`vigil {}` did not finish within {COMMAND_DEADLINE:?}",
            args.join(" ")
        )
    });
    Out {
        code: status.code(),
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    }
}

/// Sends `signal` (e.g. "-KILL", "-TERM") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill {signal} {pid} failed");
}

/// A free UDP port (for QUIC) on 127.0.0.1; the socket is closed on return.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port (for the admin API) on 127.0.0.1; closed on return.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An RFC 3339 time `days` from now, whole seconds.
pub fn rfc3339_in_days(days: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// True for a lowercase 64-hex notice id.
pub fn is_notice_id(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Polls `f` every `poll` until it yields a value, failing the test after
/// `limit`.
pub fn wait_within<T>(
    what: &str,
    limit: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        sleep(poll);
    }
}
