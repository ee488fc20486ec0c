//! The node in operation, with the real `vigil` binary on 127.0.0.1
//! (docs/systemd.md, docs/admin-api.md#health): `/health` and `/ready`
//! answer without a token, `/ready` is 503 with the reason while the data
//! directory is held by another process and 200 once the store is open;
//! sd_notify messages (READY, WATCHDOG, RELOADING, STOPPING) reach a test
//! `NOTIFY_SOCKET`; `--log-format json` writes one JSON object per line.
//!
//! Every wait is bounded, and every process is killed when its guard drops.
#![cfg(unix)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A plain GET without a token: (status, body).
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The `[admin] listen` of a config file.
fn admin_addr(config: &str) -> String {
    let text = fs::read_to_string(config).unwrap();
    let admin = text.split("[admin]").nth(1).unwrap();
    admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("listen = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn ready_says_why_until_the_store_is_open_and_health_needs_no_token() {
    let fed = Federation::new();
    let a = fed.init("alpha");
    let first = a.start();
    let addr = admin_addr(first.cfg());
    assert_eq!(get(&addr, "/health").unwrap().0, 200);
    assert_eq!(get(&addr, "/ready").unwrap().0, 200);

    // A second node on the same data directory (other ports) waits for it.
    let text = fs::read_to_string(&a.config).unwrap();
    let second_admin = format!("127.0.0.1:{}", free_tcp_port());
    let text = text
        .replacen(&a.listen, &format!("127.0.0.1:{}", free_udp_port()), 1)
        .replacen(&addr, &second_admin, 1);
    let second_cfg = a.dir.join("second.toml");
    fs::write(&second_cfg, text).unwrap();
    let log = a.dir.join("second.log");
    let mut second = ChildGuard(
        vigil_cmd(&["run", "--config", s(&second_cfg)])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let (code, body) = wait_within("the second node's /ready", DEADLINE, POLL, || {
        get(&second_admin, "/ready").filter(|(_, b)| b.contains("in use"))
    });
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], Value::Bool(false), "{v}");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("in use by another vigil process"),
        "{v}"
    );
    assert_eq!(get(&second_admin, "/health").unwrap().0, 200);
    // The API proper is not served yet, whatever the token.
    let out = vigil(&["peers", "--config", s(&second_cfg)]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("not ready"), "{out:#?}");

    // Once the first stops, the second opens the store and is ready.
    first.stop();
    wait_within("the second node ready", DEADLINE, POLL, || {
        get(&second_admin, "/ready").filter(|(c, _)| *c == 200)
    });
    vigil(&["peers", "--config", s(&second_cfg)]).assert_ok("peers on the second node");
    assert!(second.0.try_wait().unwrap().is_none());
}

/// Datagrams received on `sock` until `until` says stop or the deadline.
fn messages_until(sock: &UnixDatagram, got: &mut Vec<String>, until: impl Fn(&[String]) -> bool) {
    let end = Instant::now() + DEADLINE;
    let mut buf = [0u8; 4096];
    while !until(got) {
        assert!(Instant::now() < end, "sd_notify messages so far: {got:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn systemd_hears_ready_watchdog_reloading_and_stopping_and_json_logs_parse() {
    let fed = Federation::new();
    let a = fed.init("alpha");
    let sock_path = fed.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let log = a.dir.join("run.log");
    // systemd names the watched process in WATCHDOG_PID: the shell's pid
    // is the node's once it execs.
    let mut node = ChildGuard(
        std::process::Command::new("sh")
            .args([
                "-c",
                "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\" --log-format json",
                env!("CARGO_BIN_EXE_vigil"),
                a.cfg(),
            ])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let mut got = Vec::new();
    let count = |got: &[String], what: &str| got.iter().filter(|m| m.contains(what)).count();
    messages_until(&sock, &mut got, |g| count(g, "READY=1") == 1);
    // READY only once the admin API serves.
    let addr = admin_addr(a.cfg());
    assert_eq!(get(&addr, "/ready").unwrap().0, 200);
    messages_until(&sock, &mut got, |g| count(g, "WATCHDOG=1") >= 3);
    signal(node.pid(), "-HUP");
    messages_until(&sock, &mut got, |g| count(g, "READY=1") == 2);
    assert_eq!(count(&got, "RELOADING=1"), 1, "{got:?}");
    let reloading = got.iter().position(|m| m.contains("RELOADING=1")).unwrap();
    let ready_again = got.iter().rposition(|m| m.contains("READY=1")).unwrap();
    assert!(reloading < ready_again, "{got:?}");
    signal(node.pid(), "-TERM");
    messages_until(&sock, &mut got, |g| count(g, "STOPPING=1") == 1);
    let st = node.wait_for_exit(DEADLINE).expect("the node stopped");
    assert_eq!(st.code(), Some(0));

    // Every log line is one JSON object with a level and a message.
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{text}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{l}");
        assert!(!l.contains('\u{1b}'), "colour codes in a log line: {l}");
    }
    assert!(
        lines.iter().any(|l| l.contains("\"node started\"")),
        "{text}"
    );
}

#[test]
fn check_config_lists_every_problem_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let fed = Federation::new();
    let a = fed.init("alpha");
    vigil(&["check-config", "--config", a.cfg()]).assert_ok("check-config on a fresh node");

    // Three problems: a signing key others can read, a CA certificate
    // that is not there, and the admin port taken.
    let key = a.dir.join("alpha.signing.pem");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let text = fs::read_to_string(&a.config).unwrap();
    let ca_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("ca_cert"))
        .unwrap()
        .to_string();
    fs::write(
        &a.config,
        text.replace(&ca_line, "ca_cert = \"no-such-ca.crt\""),
    )
    .unwrap();
    let _taken = std::net::TcpListener::bind(admin_addr(a.cfg())).unwrap();

    let out = vigil(&["check-config", "--config", a.cfg()]);
    assert_eq!(out.code, Some(2), "{out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "three problems and a summary: {out:#?}");
    for needle in ["identity.signing_key", "identity.ca_cert", "admin.listen"] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "{needle} not reported: {out:#?}"
        );
    }
    assert!(lines[3].contains("3 problem(s) found"), "{out:#?}");
}
