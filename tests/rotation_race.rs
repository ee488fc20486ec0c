//! Key rotation asked twice at once: two `POST /v1/key/rotate` at
//! once (an operator's retry, two operators). Each request stages its new
//! key as `F.next` (stage_signing_key removes whatever is there first),
//! and the first to be recorded renames whatever `F.next` then holds over
//! `F`. When the second request stages between the first's staging and
//! its rename, the key file ends up holding a key the store never
//! recorded, and the key the store records (and members follow) is in no
//! file at all: the node refuses every later start.
#![cfg(unix)]

use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::Duration;

mod common;
use common::*;

/// One raw `POST /v1/key/rotate`, so that several leave together.
fn rotate(addr: std::net::SocketAddr, token: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "POST /v1/key/rotate HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn key_rotations_asked_at_once_leave_a_node_that_starts_again() {
    let fed = Federation::new();
    let a = fed.init("alpha");
    let cfg = vigil::config::Config::load(&a.config).unwrap();
    let token = std::fs::read_to_string(&cfg.token_file)
        .unwrap()
        .trim()
        .to_string();
    let addr = cfg.admin_listen;
    let mut na = a.start();
    for round in 0..3 {
        let n = 4;
        let barrier = Arc::new(Barrier::new(n));
        let answers: Vec<String> = (0..n)
            .map(|_| {
                let (b, t) = (barrier.clone(), token.clone());
                std::thread::spawn(move || {
                    b.wait();
                    rotate(addr, &t)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let in_force = vigil(&["id", "--config", na.cfg(), "--json"]);
        in_force.assert_ok("vigil id");
        na.stop();
        // The key the node ran with after the rotations is the key its
        // store records: the next start must find it in the key file.
        let log = a.dir.join("run.log");
        let before = std::fs::read_to_string(&log).unwrap_or_default().len();
        let child = vigil_cmd(&["run", "--config", a.cfg()])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::OpenOptions::new().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut guard = ChildGuard(child);
        if let Some(st) = guard.wait_for_exit(Duration::from_secs(5)) {
            let text = std::fs::read_to_string(&log).unwrap();
            panic!(
                "round {round}: alpha no longer starts after {n} rotations asked at once ({st}):\n{}\nanswers: {answers:#?}\nid before the stop: {}",
                &text[before..],
                in_force.stdout
            );
        }
        na = RunningNode {
            id: a.id.clone(),
            child: guard,
            config: a.config.clone(),
            log: log.clone(),
        };
        wait_within(
            "alpha's admin API",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || (vigil(&["peers", "--config", na.cfg(), "--json"]).code == Some(0)).then_some(()),
        );
    }
}
