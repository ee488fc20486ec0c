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

/// Every metric docs/operations.md documents, as the exposition names them.
const DOCUMENTED_METRICS: [&str; 14] = [
    "vigil_notices_held",
    "vigil_notices_received_total",
    "vigil_notices_refused_total",
    "vigil_notices_sent_total",
    "vigil_notices_withheld_total",
    "vigil_member_connected",
    "vigil_member_backlog",
    "vigil_member_since_receipt_seconds",
    "vigil_delivery_latency_seconds",
    "vigil_store_size_bytes",
    "vigil_audit_entries",
    "vigil_events_total",
    "vigil_alerts_total",
    "vigil_certificate_expiry_seconds",
];

/// `GET /metrics`, parsed with a Prometheus text parser.
fn scrape(addr: &str) -> (String, prometheus_parse::Scrape) {
    let (code, body) = get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{body}"));
    (body, parsed)
}

/// The value of `name` with `labels` (all of them must match).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_need_no_token_name_every_documented_series_and_no_subject() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    // Alpha sends bravo no stolen objects (one withheld below); bravo
    // takes wanted notices only (one refused below).
    let mut text = fs::read_to_string(&a.config).unwrap();
    text.push_str("\n[members.outbound]\nkinds = [\"wanted\", \"missing\"]\n");
    fs::write(&a.config, text).unwrap();
    let text = fs::read_to_string(&b.config).unwrap();
    let text = text.replace(
        "[policy.inbound]\n",
        "[policy.inbound]\nkinds = [\"wanted\"]\n",
    );
    fs::write(&b.config, text).unwrap();
    let (alpha, bravo) = (a.start(), b.start());
    let (alpha_admin, bravo_admin) = (admin_addr(alpha.cfg()), admin_addr(bravo.cfg()));
    let file = fed.dir.path().join("notice.json");
    let mut notice = wanted_notice("Qwertzuiop", "Xanthippe", "1971-02-03");
    notice["subject"]["identifiers"] =
        serde_json::json!([{"scheme": "passport", "country": "NLD", "value": "ZZ9876543"}]);
    fs::write(&file, notice.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", alpha.cfg(), s(&file)]);
    out.assert_ok("issue");
    let id = out.stdout.trim().to_string();

    // A missing-person notice bravo refuses, a stolen object alpha withholds.
    let mut missing = wanted_notice("Qwertzuiop", "Xanthippe", "1971-02-03");
    missing["kind"] = "missing".into();
    missing["purpose"] = "locate-person".into();
    missing["subject_category"] = "victim".into();
    fs::write(&file, missing.to_string()).unwrap();
    vigil(&["notice", "issue", "--config", alpha.cfg(), s(&file)]).assert_ok("issue missing");
    let stolen = serde_json::json!({
        "kind": "stolen-object", "purpose": "investigate", "legal_basis": "Theft report 2026/5",
        "handling": "H1", "grading": {"source": "B", "information": "2"},
        "subject_category": "unknown", "nature": "fact", "audience": "all",
        "expires_at": rfc3339_in_days(30), "summary": "Stolen car", "case_ref": "C-9", "contact": "desk",
        "subject": {"identifiers": [{"scheme": "vin", "country": "BEL", "value": "WVWZZZ1JZXW000001"}]}
    });
    fs::write(&file, stolen.to_string()).unwrap();
    vigil(&["notice", "issue", "--config", alpha.cfg(), s(&file)]).assert_ok("issue stolen");

    // Alpha sees bravo's receipts for all three; bravo refused one.
    let (alpha_text, alpha_m) = wait_within("bravo's receipts at alpha", DEADLINE, POLL, || {
        let (t, m) = scrape(&alpha_admin);
        let to_bravo = [("member", "bravo")];
        let done = sample(&m, "vigil_member_backlog", &to_bravo) == Some(0.0)
            && sample(&m, "vigil_member_since_receipt_seconds", &to_bravo).is_some();
        done.then_some((t, m))
    });
    let (bravo_text, bravo_m) = scrape(&bravo_admin);
    for name in DOCUMENTED_METRICS {
        let present = |m: &prometheus_parse::Scrape| {
            m.docs.contains_key(name.trim_end_matches("_total"))
                || m.samples.iter().any(|s| s.metric.starts_with(name))
        };
        assert!(
            present(&alpha_m) || present(&bravo_m),
            "{name} missing:\n{alpha_text}"
        );
    }
    assert_eq!(
        sample(&alpha_m, "vigil_notices_sent_total", &[("member", "bravo")]),
        Some(2.0)
    );
    assert_eq!(
        sample(&alpha_m, "vigil_member_connected", &[("member", "bravo")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&alpha_m, "vigil_member_backlog", &[("member", "bravo")]),
        Some(0.0)
    );
    let to_bravo = [("member", "bravo")];
    let by_kind = [("member", "bravo"), ("reason", "kind")];
    assert_eq!(
        sample(&alpha_m, "vigil_notices_withheld_total", &by_kind),
        Some(1.0)
    );
    // Only the wanted notice was delivered; the missing one was refused.
    let latency = "vigil_delivery_latency_seconds_count";
    assert_eq!(sample(&alpha_m, latency, &to_bravo), Some(1.0));
    assert_eq!(
        sample(&alpha_m, "vigil_notices_held", &[("state", "active")]),
        Some(3.0)
    );
    let by_kind = [("member", "alpha"), ("reason", "kind")];
    assert_eq!(
        sample(&bravo_m, "vigil_notices_refused_total", &by_kind),
        Some(1.0)
    );
    assert!(sample(&alpha_m, "vigil_audit_entries", &[]).unwrap() >= 2.0);
    assert!(sample(&alpha_m, "vigil_store_size_bytes", &[]).unwrap() > 0.0);
    let node_cert = sample(
        &alpha_m,
        "vigil_certificate_expiry_seconds",
        &[("certificate", "node")],
    );
    assert!(
        node_cert.is_some_and(|s| s > 86400.0 * 30.0),
        "{alpha_text}"
    );
    assert_eq!(
        sample(
            &bravo_m,
            "vigil_notices_received_total",
            &[("member", "alpha")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &bravo_m,
            "vigil_events_total",
            &[("event", "notice_received")]
        ),
        Some(1.0)
    );

    // Nothing about the subject or the notice is in either exposition.
    for text in [&alpha_text, &bravo_text] {
        for secret in [
            "Qwertzuiop",
            "Xanthippe",
            "ZZ9876543",
            "1971",
            &id[..16],
            "WVWZZZ",
        ] {
            assert!(!text.contains(secret), "{secret} in /metrics:\n{text}");
        }
    }
    alpha.stop();
    bravo.stop();
}
