//! The desk console over HTTP with the real `vigil` binary on 127.0.0.1
//! (docs/console.md): sign-in with an officer's token, the session cookie's
//! flags, the Content-Security-Policy on every page, the inbox and a
//! notice's page with every field labelled, CSRF refusals, sign-out, and a
//! removed officer's session ending at once. Reads are logged with the
//! officer's name.
//!
//! Every wait is bounded, and every node process is killed when its guard
//! drops, even when an assertion fails.
#![cfg(unix)]

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// One HTTP answer: status, headers (lower-case names; repeated ones
/// joined by "\n"), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on its own connection.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let mut headers: HashMap<String, String> = HashMap::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            headers
                .entry(k.trim().to_ascii_lowercase())
                .and_modify(|e| {
                    e.push('\n');
                    e.push_str(v.trim())
                })
                .or_insert_with(|| v.trim().to_string());
        }
    }
    // Chunked bodies are read whole; the pages are small enough that the
    // chunk markers do not matter to what the tests look for.
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Signs in; returns the cookie header to send.
fn sign_in(addr: &str, token: &str) -> String {
    let a = request(
        addr,
        "POST",
        "/console/sign-in",
        &[],
        &format!("token={token}"),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    let set = a.headers.get("set-cookie").expect("a session cookie");
    set.split(';').next().unwrap().to_string()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + 64].to_string()
}

#[test]
fn officers_sign_in_and_read_the_inbox_and_forged_forms_are_refused() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    let (na, nb) = (a.start(), b.start());
    let addr = admin_listen_of(na.cfg());

    // bravo issues a notice to alpha.
    let mut n = wanted_notice("Okonkwo-Console", "Ilse", "1980-04-01");
    n["audience"] = json!(["alpha"]);
    let file = b.dir.join("n.json");
    fs::write(&file, n.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", nb.cfg(), s(&file)]);
    out.assert_ok("issue");
    let id = out.stdout.trim().to_string();
    wait_within("alpha holding bravo's notice", DEADLINE, POLL, || {
        na.list().iter().any(|v| v["id"] == json!(id)).then_some(())
    });
    let dana = officer_token(&na, "dana", "desk");

    // Without a session: the sign-in page, with the strict policy.
    let a0 = request(&addr, "GET", "/", &[], "");
    assert_eq!(a0.status, 303);
    assert_eq!(a0.headers["location"], "/console/sign-in");
    let page = request(&addr, "GET", "/console/sign-in", &[], "");
    assert_eq!(page.status, 200);
    let csp = &page.headers["content-security-policy"];
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(page.body.contains("<label for=\"token\">"), "{}", page.body);
    assert_eq!(
        request(&addr, "GET", "/console/inbox", &[], "").status,
        303,
        "the inbox without a session"
    );

    // A wrong token is refused; dana's signs in.
    let bad = request(&addr, "POST", "/console/sign-in", &[], "token=nope");
    assert_eq!(bad.status, 401);
    assert!(!bad.headers.contains_key("set-cookie"));
    let signed = request(
        &addr,
        "POST",
        "/console/sign-in",
        &[],
        &format!("token={dana}"),
    );
    let set = signed.headers["set-cookie"].clone();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP on loopback: {set}");
    let behind_proxy = request(
        &addr,
        "POST",
        "/console/sign-in",
        &[("X-Forwarded-Proto", "https")],
        &format!("token={dana}"),
    );
    assert!(behind_proxy.headers["set-cookie"].contains("Secure"));
    let cookie = set.split(';').next().unwrap().to_string();

    // The inbox lists bravo's notice; its page labels every field.
    let inbox = request(&addr, "GET", "/console/inbox", &[("Cookie", &cookie)], "");
    assert_eq!(inbox.status, 200);
    assert!(inbox.body.contains("Okonkwo-Console"), "{}", inbox.body);
    assert!(inbox.body.contains(&format!("/console/notices/{id}")));
    let shown = request(
        &addr,
        "GET",
        &format!("/console/notices/{id}"),
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(shown.status, 200);
    for label in [
        "Family name",
        "Date of birth",
        "Legal basis",
        "Originator's 24/7 contact",
        "Signature",
    ] {
        assert!(
            shown.body.contains(&format!("<dt>{label}</dt>")),
            "no {label}: {}",
            shown.body
        );
    }
    assert!(shown.body.contains("verified with the origin's key"));
    // Text from a notice is escaped, never markup.
    assert!(!shown.body.contains("<script>alert"));

    // A notice stored after this visit is marked new at the next; the
    // filters narrow the list.
    std::thread::sleep(Duration::from_millis(1100));
    let mut n2 = wanted_notice("Second-Console", "Jan", "1975-01-01");
    n2["audience"] = json!(["alpha"]);
    n2["kind"] = json!("missing");
    n2["purpose"] = json!("locate-person");
    n2["subject_category"] = json!("missing-person");
    fs::write(&file, n2.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", nb.cfg(), s(&file)]);
    out.assert_ok("issue a second");
    let id2 = out.stdout.trim().to_string();
    wait_within("alpha holding the second notice", DEADLINE, POLL, || {
        na.list()
            .iter()
            .any(|v| v["id"] == json!(id2))
            .then_some(())
    });
    let again = request(&addr, "GET", "/console/inbox", &[("Cookie", &cookie)], "");
    assert!(
        again.body.contains("1 new since your last visit"),
        "{}",
        again.body
    );
    let missing = request(
        &addr,
        "GET",
        "/console/inbox?kind=missing",
        &[("Cookie", &cookie)],
        "",
    );
    assert!(missing.body.contains("Second-Console") && !missing.body.contains("Okonkwo-Console"));
    let from_charlie = request(
        &addr,
        "GET",
        "/console/inbox?origin=charlie",
        &[("Cookie", &cookie)],
        "",
    );
    assert!(from_charlie.body.contains("No notices held."));

    // Sign-out without the form's token is refused and changes nothing;
    // with it, the session ends.
    let refused = request(
        &addr,
        "POST",
        "/console/sign-out",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(refused.status, 403);
    let refused = request(
        &addr,
        "POST",
        "/console/sign-out",
        &[("Cookie", &cookie)],
        &format!("csrf={}", "0".repeat(64)),
    );
    assert_eq!(refused.status, 403);
    assert_eq!(
        request(&addr, "GET", "/console/inbox", &[("Cookie", &cookie)], "").status,
        200,
        "a refused sign-out ended the session"
    );
    let csrf = csrf_of(&inbox.body);
    let out = request(
        &addr,
        "POST",
        "/console/sign-out",
        &[("Cookie", &cookie)],
        &format!("csrf={csrf}"),
    );
    assert_eq!(out.status, 303);
    assert_eq!(
        request(&addr, "GET", "/console/inbox", &[("Cookie", &cookie)], "").status,
        303,
        "the session outlived its sign-out"
    );

    // A removed officer's session ends at the next request.
    let cookie = sign_in(&addr, &dana);
    assert_eq!(
        request(&addr, "GET", "/console/peers", &[("Cookie", &cookie)], "").status,
        200
    );
    vigil(&["officer", "remove", "--config", na.cfg(), "--name", "dana"])
        .assert_ok("officer remove");
    assert_eq!(
        request(&addr, "GET", "/console/peers", &[("Cookie", &cookie)], "").status,
        303
    );

    // Each read is in the processing log under dana's name.
    let export = fed.dir.path().join("audit.jsonl");
    vigil(&["audit", "export", "--config", na.cfg(), "--out", s(&export)]).assert_ok("export");
    let text = fs::read_to_string(&export).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"officer:dana\"")
            && l.contains("\"consult\"")
            && l.contains(&id)),
        "{text}"
    );
}

/// Reads an event stream's lines into a channel until it ends.
fn stream_lines(addr: &str, path: &str, cookie: &str) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::io::BufReader::new(s);
        for line in r.lines() {
            let Ok(l) = line else { return };
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_desk_screens_with_a_justification_and_the_origin_sees_the_hit_live() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    let (na, nb) = (a.start(), b.start());
    let (alpha_addr, bravo_addr) = (admin_listen_of(na.cfg()), admin_listen_of(nb.cfg()));

    // alpha's notice about a subject with a passport, held by bravo.
    let mut n = wanted_notice("Vasquez-Live", "Ilse", "1980-04-01");
    n["subject"]["identifiers"] =
        json!([{"scheme": "passport", "country": "NLD", "value": "X7654321"}]);
    let file = a.dir.join("n.json");
    fs::write(&file, n.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", na.cfg(), s(&file)]);
    out.assert_ok("issue");
    let id = out.stdout.trim().to_string();
    wait_within("bravo holding alpha's notice", DEADLINE, POLL, || {
        nb.list().iter().any(|v| v["id"] == json!(id)).then_some(())
    });

    // The origin's desk watches its hits page, live.
    let oscar = sign_in(&alpha_addr, &officer_token(&na, "oscar", "desk"));
    let before = request(
        &alpha_addr,
        "GET",
        "/console/hits",
        &[("Cookie", &oscar)],
        "",
    );
    assert_eq!(before.status, 200);
    assert!(before.body.contains("No hit reports"), "{}", before.body);
    assert!(before.body.contains("data-live=\"/console/hits/live\""));
    let live = stream_lines(&alpha_addr, "/console/hits/live", &oscar);
    wait_within("the live stream answering", DEADLINE, POLL, || {
        live.try_recv()
            .ok()
            .filter(|l| l.starts_with("HTTP/1.1 200"))
            .map(|_| ())
    });

    // bravo's desk screens: the form's token and a justification are
    // required, and a bad field is named next to it.
    let dana = sign_in(&bravo_addr, &officer_token(&nb, "dana", "desk"));
    let form = request(
        &bravo_addr,
        "GET",
        "/console/screen",
        &[("Cookie", &dana)],
        "",
    );
    assert_eq!(form.status, 200);
    for label in [
        "Justification",
        "Place",
        "Document",
        "Name",
        "Date of birth",
    ] {
        assert!(form.body.contains(&format!(">{label}")), "no label {label}");
    }
    let csrf = csrf_of(&form.body);
    let bravo_csrf = csrf.clone();
    let no_token = request(
        &bravo_addr,
        "POST",
        "/console/screen",
        &[("Cookie", &dana)],
        "reason=border+check&identifier=passport%3ANLD%3AX7654321",
    );
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    let no_reason = request(
        &bravo_addr,
        "POST",
        "/console/screen",
        &[("Cookie", &dana)],
        &format!("csrf={csrf}&reason=&identifier=passport%3ANLD%3AX7654321"),
    );
    assert_eq!(no_reason.status, 400);
    assert!(
        no_reason.body.contains("id=\"reason-error\""),
        "{}",
        no_reason.body
    );
    let bad_dob = request(
        &bravo_addr,
        "POST",
        "/console/screen",
        &[("Cookie", &dana)],
        &format!("csrf={csrf}&reason=border+check&name=Ilse+Vasquez-Live&dob=1980-13-45"),
    );
    assert_eq!(bad_dob.status, 400);
    assert!(
        bad_dob.body.contains("id=\"dob-error\""),
        "{}",
        bad_dob.body
    );
    let hit = request(
        &bravo_addr,
        "POST",
        "/console/screen",
        &[("Cookie", &dana)],
        &format!("csrf={csrf}&reason=border+check&place=Schiphol+post+3&identifier=passport%3ANLD%3AX7654321"),
    );
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert!(hit.body.contains("1 hit(s)"), "{}", hit.body);
    assert!(
        hit.body.contains("+31 70 000 0000 (24/7 desk)"),
        "{}",
        hit.body
    );

    // The origin's live stream says so within 2 s, and its page shows the
    // report as new until acknowledged with a note.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut got = false;
    while std::time::Instant::now() < deadline && !got {
        if let Ok(l) = live.recv_timeout(Duration::from_millis(100)) {
            got = l == "event: hit";
        }
    }
    assert!(got, "no live hit event within 2 s");
    let page = request(
        &alpha_addr,
        "GET",
        "/console/hits",
        &[("Cookie", &oscar)],
        "",
    );
    assert!(page.body.contains("Schiphol post 3"), "{}", page.body);
    assert!(page.body.contains("1 new, 1 in all"), "{}", page.body);
    let hit_id = {
        let at = page.body.find("action=\"/console/hits/").unwrap() + 22;
        page.body[at..at + 64].to_string()
    };
    let csrf = csrf_of(&page.body);
    let acked = request(
        &alpha_addr,
        "POST",
        &format!("/console/hits/{hit_id}/ack"),
        &[("Cookie", &oscar)],
        &format!("csrf={csrf}&note=called+the+border+post"),
    );
    assert_eq!(acked.status, 303, "{}", acked.body);
    let page = request(
        &alpha_addr,
        "GET",
        "/console/hits",
        &[("Cookie", &oscar)],
        "",
    );
    assert!(page.body.contains("0 new, 1 in all"), "{}", page.body);
    assert!(page.body.contains("called the border post"));
    // A manifest upload screens a passenger list in one go.
    let boundary = "XvigilBoundaryX";
    let csv = "family_name,given_names,date_of_birth,nationality,document_scheme,document_country,document_number\n\
               Doe,John,1970-01-01,DEU,,,\n\
               VASQUEZ-LIVE,ILSE,1980-04-01,NLD,passport,NL,X7654321\n";
    let part = |name: &str, value: &str, file: bool| {
        let disp = if file {
            format!("form-data; name=\"{name}\"; filename=\"list.csv\"\r\nContent-Type: text/csv")
        } else {
            format!("form-data; name=\"{name}\"")
        };
        format!("--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n{value}\r\n")
    };
    let body = format!(
        "{}{}{}{}--{boundary}--\r\n",
        part("csrf", &bravo_csrf, false),
        part("reason", "flight KL1234 passenger list", false),
        part("place", "Schiphol", false),
        part("manifest", csv, true)
    );
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let m = request(
        &bravo_addr,
        "POST",
        "/console/screen/manifest",
        &[("Cookie", &dana), ("Content-Type", &ctype)],
        &body,
    );
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(
        m.body.contains("2 row(s) screened, 1 with hits"),
        "{}",
        m.body
    );
    let forged = body.replace(&bravo_csrf, &"0".repeat(64));
    let m = request(
        &bravo_addr,
        "POST",
        "/console/screen/manifest",
        &[("Cookie", &dana), ("Content-Type", &ctype)],
        &forged,
    );
    assert_eq!(m.status, 403);
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn a_supervisor_issues_through_the_form_and_a_desk_cannot() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    let (na, nb) = (a.start(), b.start());
    let addr = admin_listen_of(na.cfg());
    let sam = sign_in(&addr, &officer_token(&na, "sam", "supervisor"));
    let dana = sign_in(&addr, &officer_token(&na, "dana", "desk"));

    let page = request(&addr, "GET", "/console/issue", &[("Cookie", &sam)], "");
    assert_eq!(page.status, 200);
    for label in [
        "Kind",
        "Legal basis",
        "Audience",
        "Handling",
        "Family name",
        "Date of birth",
        "Documents",
    ] {
        assert!(page.body.contains(&format!(">{label}")), "no label {label}");
    }
    let csrf = csrf_of(&page.body);
    let expires = rfc3339_in_days(200)[..10].to_string();
    let good: Vec<(&str, &str)> = vec![
        ("csrf", &csrf),
        ("kind", "wanted"),
        ("purpose", "locate-arrest"),
        ("legal_basis", "Warrant 2026/118, District Court Rotterdam"),
        ("handling", "H1"),
        ("grading.source", "B"),
        ("grading.information", "2"),
        ("subject_category", "suspect"),
        ("nature", "fact"),
        ("audience", "bravo"),
        ("expires_at", &expires),
        ("summary", "Armed robbery"),
        ("case_ref", "RTM-118"),
        ("contact", "+31 70 000 0000 (24/7 desk)"),
        ("subject.family_name", "Form-Issued"),
        ("subject.given_names", "Ilse"),
        ("subject.date_of_birth", "1980-04-01"),
        ("subject.identifiers", "passport:NLD:X1112223"),
    ];
    let held = |node: &RunningNode| {
        node.list()
            .iter()
            .filter(|v| v["subject"]["family_name"] == json!("Form-Issued"))
            .count()
    };

    // A bad date of birth is named beside its field; nothing is stored.
    let mut bad = good.clone();
    bad.retain(|(k, _)| *k != "subject.date_of_birth");
    bad.push(("subject.date_of_birth", "1980-02-31"));
    let refused = request(
        &addr,
        "POST",
        "/console/issue",
        &[("Cookie", &sam)],
        &form(&bad),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("id=\"subject.date_of_birth-error\""),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("value=\"Form-Issued\""),
        "the form keeps what was typed"
    );
    assert_eq!(held(&na), 0);

    // The first good submit only asks to confirm, naming audience and
    // handling; nothing is signed yet.
    let confirm = request(
        &addr,
        "POST",
        "/console/issue",
        &[("Cookie", &sam)],
        &form(&good),
    );
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(
        confirm
            .body
            .contains("<dd id=\"confirm-audience\">bravo</dd>"),
        "{}",
        confirm.body
    );
    assert!(
        confirm.body.contains("<dd id=\"confirm-handling\">H1"),
        "{}",
        confirm.body
    );
    assert_eq!(held(&na), 0, "stored before the confirmation");
    let mut confirmed = good.clone();
    confirmed.push(("confirm", "yes"));
    let done = request(
        &addr,
        "POST",
        "/console/issue",
        &[("Cookie", &sam)],
        &form(&confirmed),
    );
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.headers["location"].starts_with("/console/notices/"));
    assert_eq!(held(&na), 1);
    wait_within("the notice reaching bravo", DEADLINE, POLL, || {
        (held(&nb) == 1).then_some(())
    });

    // A desk officer gets no form and no link to it, and a forged POST (a
    // supervisor's form replayed with the desk's session) stores nothing.
    let desk_page = request(&addr, "GET", "/console/issue", &[("Cookie", &dana)], "");
    assert_eq!(desk_page.status, 403);
    assert!(
        desk_page.body.contains("may not issue notices"),
        "{}",
        desk_page.body
    );
    let inbox = request(&addr, "GET", "/console/inbox", &[("Cookie", &dana)], "");
    assert!(!inbox.body.contains("/console/issue"));
    let desk_csrf = csrf_of(&inbox.body);
    let mut forged = confirmed.clone();
    forged.retain(|(k, _)| *k != "csrf");
    forged.push(("csrf", &desk_csrf));
    let r = request(
        &addr,
        "POST",
        "/console/issue",
        &[("Cookie", &dana)],
        &form(&forged),
    );
    assert_eq!(r.status, 403);
    // And the supervisor's own form without its token is refused too.
    let mut no_token = confirmed.clone();
    no_token.retain(|(k, _)| *k != "csrf");
    let r = request(
        &addr,
        "POST",
        "/console/issue",
        &[("Cookie", &sam)],
        &form(&no_token),
    );
    assert_eq!(r.status, 403);
    assert_eq!(held(&na), 1, "a refused form stored a notice");

    // The supervisor updates it from its page (the form holds it), then
    // cancels it; each is confirmed first, and each reaches bravo.
    let first = done.headers["location"]
        .trim_start_matches("/console/notices/")
        .to_string();
    let shown = request(
        &addr,
        "GET",
        &format!("/console/notices/{first}"),
        &[("Cookie", &sam)],
        "",
    );
    assert!(
        shown
            .body
            .contains(&format!("/console/notices/{first}/update")),
        "{}",
        shown.body
    );
    let form_page = request(
        &addr,
        "GET",
        &format!("/console/notices/{first}/update"),
        &[("Cookie", &sam)],
        "",
    );
    assert_eq!(form_page.status, 200, "{}", form_page.body);
    assert!(form_page.body.contains("value=\"Form-Issued\""));
    assert!(form_page.body.contains("passport:NLD:X1112223"));
    let mut changed: Vec<(&str, &str)> = good
        .iter()
        .filter(|(k, _)| *k != "summary")
        .cloned()
        .collect();
    changed.push(("summary", "Armed robbery, second suspect"));
    let path = format!("/console/notices/{first}/update");
    let confirm = request(&addr, "POST", &path, &[("Cookie", &sam)], &form(&changed));
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.body.contains("It replaces"), "{}", confirm.body);
    changed.push(("confirm", "yes"));
    let updated = request(&addr, "POST", &path, &[("Cookie", &sam)], &form(&changed));
    assert_eq!(updated.status, 303, "{}", updated.body);
    let second = updated.headers["location"]
        .trim_start_matches("/console/notices/")
        .to_string();
    assert_ne!(second, first);
    wait_within("the update reaching bravo", DEADLINE, POLL, || {
        nb.list()
            .iter()
            .any(|v| {
                v["id"] == json!(second) && v["summary"] == json!("Armed robbery, second suspect")
            })
            .then_some(())
    });
    let path = format!("/console/notices/{second}/cancel");
    let ask = request(
        &addr,
        "POST",
        &path,
        &[("Cookie", &sam)],
        &form(&[("csrf", &csrf), ("reason", "arrested in Rotterdam")]),
    );
    assert_eq!(ask.status, 200, "{}", ask.body);
    assert!(ask.body.contains("confirm-audience"), "{}", ask.body);
    let cancelled = request(
        &addr,
        "POST",
        &path,
        &[("Cookie", &sam)],
        &form(&[
            ("csrf", &csrf),
            ("reason", "arrested in Rotterdam"),
            ("confirm", "yes"),
        ]),
    );
    assert_eq!(cancelled.status, 303, "{}", cancelled.body);
    wait_within("the cancellation reaching bravo", DEADLINE, POLL, || {
        let out = vigil(&["notice", "show", &second, "--config", nb.cfg(), "--json"]);
        (out.code == Some(0) && out.stdout.contains("\"state\":\"cancelled\"")).then_some(())
    });
}
