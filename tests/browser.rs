//! The desk console in a real browser: Debian's headless Chromium driven
//! through ChromeDriver (WebDriver), against real `vigil run` nodes on
//! 127.0.0.1 (docs/console.md). A desk officer at bravo signs in, finds
//! alpha's notice in the inbox, opens it, screens its subject with a
//! justification and sees the hit, while alpha's hits page shows the hit
//! report live; a supervisor at alpha issues a notice through the form (a
//! bad field shown beside it and nothing stored, then a good one that
//! reaches bravo); a desk officer gets no issue form. Every page is saved
//! as a screenshot under `target/console-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Every wait
//! is bounded; the browser and the nodes are stopped when their guards
//! drop.
#![cfg(unix)]

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// ChromeDriver on a free loopback port, killed when dropped.
struct Driver {
    child: ChildGuard,
    url: String,
    /// Each browser's own empty profile.
    profiles: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(p).exists(),
                "{p} is missing: install Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver), as .ci/run does"
            );
        }
        let port = free_tcp_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let child = ChildGuard(child);
        wait_within("chromedriver listening", DEADLINE, POLL, || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profiles: tempfile::tempdir().unwrap(),
        }
    }

    /// A new headless browser with its own profile (own cookies), 1280×800.
    async fn browser(&self, name: &str) -> Client {
        let profile = self.profiles.path().join(name);
        fs::create_dir_all(&profile).unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session");
        let _ = &self.child;
        c
    }
}

/// Script run in the page: POSTs a notice to `arguments[0]` from the
/// page itself, once with the page's form token and once without, and
/// answers both statuses.
const FORGE: &str = r#"
const done = arguments[arguments.length - 1];
const token = document.querySelector("input[name=csrf]").value;
const body = "kind=wanted&purpose=locate-arrest&legal_basis=x&summary=x&case_ref=x&contact=x&confirm=yes";
const post = (b) => fetch(arguments[0], {
  method: "POST",
  credentials: "same-origin",
  headers: { "Content-Type": "application/x-www-form-urlencoded" },
  body: b,
}).then((r) => r.status);
Promise.all([post("csrf=" + token + "&" + body), post(body)]).then(done, (e) => done(String(e)));
"#;

/// Saves what the browser shows as `target/console-screenshots/NAME.png`.
async fn shot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Polls the page until `f` is true of its source, within DEADLINE.
async fn wait_source(c: &Client, what: &str, f: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + DEADLINE;
    loop {
        let src = c.source().await.unwrap_or_default();
        if f(&src) {
            return src;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}: {src}");
        tokio::time::sleep(POLL).await;
    }
}

async fn sign_in(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/")).await.unwrap();
    let field = c
        .wait()
        .at_most(DEADLINE)
        .for_element(Locator::Id("token"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    c.find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_source(c, "signed in", |s| s.contains("Sign out")).await;
}

async fn fill(c: &Client, id: &str, text: &str) {
    let e = c.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn choose(c: &Client, id: &str, value: &str) {
    c.find(Locator::Css(&format!(
        "select#{} option[value='{value}']",
        id.replace('.', "\\.")
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_works_the_console_in_a_real_browser() {
    let fed = Federation::new();
    let (a, b) = (fed.init("alpha"), fed.init("bravo"));
    a.add_member(&b);
    b.add_member(&a);
    let (na, nb) = (a.start(), b.start());
    let (alpha, bravo) = (
        format!("http://{}", admin_listen_of(na.cfg())),
        format!("http://{}", admin_listen_of(nb.cfg())),
    );
    let mut n = wanted_notice("Browser-Subject", "Ilse", "1980-04-01");
    n["subject"]["identifiers"] =
        json!([{"scheme": "passport", "country": "NLD", "value": "X5556667"}]);
    n["audience"] = json!(["bravo"]);
    let file = a.dir.join("n.json");
    fs::write(&file, n.to_string()).unwrap();
    let out = vigil(&["notice", "issue", "--config", na.cfg(), s(&file)]);
    out.assert_ok("issue");
    let id = out.stdout.trim().to_string();
    wait_within("bravo holding alpha's notice", DEADLINE, POLL, || {
        nb.list().iter().any(|v| v["id"] == json!(id)).then_some(())
    });
    let (dana, oscar, sam) = (
        officer_token(&nb, "dana", "desk"),
        officer_token(&na, "oscar", "desk"),
        officer_token(&na, "sam", "supervisor"),
    );

    let driver = Driver::start();
    let desk = driver.browser("dana").await;
    let origin = driver.browser("oscar").await;

    // The sign-in page first.
    desk.goto(&format!("{bravo}/")).await.unwrap();
    desk.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Id("token"))
        .await
        .unwrap();
    shot(&desk, "sign-in").await;
    sign_in(&desk, &bravo, &dana).await;

    // alpha's desk watches its hits page, live.
    sign_in(&origin, &alpha, &oscar).await;
    origin.goto(&format!("{alpha}/console/hits")).await.unwrap();
    wait_source(&origin, "the live stream open", |s| {
        s.contains("data-live-open=\"1\"")
    })
    .await;

    // bravo's inbox lists alpha's notice; its page shows every field.
    desk.goto(&format!("{bravo}/console/inbox")).await.unwrap();
    wait_source(&desk, "the inbox", |s| s.contains("Browser-Subject")).await;
    shot(&desk, "inbox").await;
    desk.find(Locator::Css(&format!("a[href='/console/notices/{id}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let src = wait_source(&desk, "the notice page", |s| s.contains("Legal basis")).await;
    assert!(src.contains("X5556667") && src.contains("verified with the origin's key"));
    shot(&desk, "notice").await;

    // Screening with a justification finds it.
    desk.goto(&format!("{bravo}/console/screen")).await.unwrap();
    fill(&desk, "reason", "border check, flight KL1234").await;
    fill(&desk, "place", "Schiphol post 3").await;
    fill(&desk, "identifier", "passport:NLD:X5556667").await;
    shot(&desk, "screen").await;
    let sent = Instant::now();
    desk.find(Locator::Css(
        "form button[type=submit]:not(.signout button)",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let src = wait_source(&desk, "the hit", |s| s.contains("1 hit(s)")).await;
    assert!(src.contains("+31 70 000 0000 (24/7 desk)"), "{src}");
    shot(&desk, "screen-hit").await;

    // The origin's page shows it without reloading, within 2 s.
    let end = sent + Duration::from_secs(2);
    loop {
        let src = origin.source().await.unwrap();
        if src.contains("Schiphol post 3") {
            assert!(src.contains("1 new"), "{src}");
            break;
        }
        assert!(
            Instant::now() < end,
            "the hit report did not appear within 2 s: {src}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shot(&origin, "hits-live").await;
    origin
        .goto(&format!("{alpha}/console/peers"))
        .await
        .unwrap();
    wait_source(&origin, "peers", |s| s.contains("bravo")).await;
    shot(&origin, "peers").await;

    // A desk officer gets no issue form.
    origin
        .goto(&format!("{alpha}/console/issue"))
        .await
        .unwrap();
    let src = wait_source(&origin, "the refusal", |s| {
        s.contains("may not issue notices")
    })
    .await;
    assert!(!src.contains("name=\"legal_basis\""));
    shot(&origin, "not-allowed").await;
    // A POST forged from the desk's own page (its session, its form
    // token) is refused by role, and one without the token is refused too.
    let statuses = origin
        .execute_async(FORGE, vec![json!("/console/issue")])
        .await
        .unwrap();
    assert_eq!(statuses, json!([403, 403]), "forged issue POSTs");
    origin.close().await.unwrap();

    // A supervisor issues through the form: a bad field first. A POST of
    // the page without its form token is refused first.
    let sup = driver.browser("sam").await;
    sign_in(&sup, &alpha, &sam).await;
    let statuses = sup
        .execute_async(FORGE, vec![json!("/console/issue")])
        .await
        .unwrap();
    assert_eq!(
        statuses[1],
        json!(403),
        "a supervisor's POST without the form token"
    );
    sup.goto(&format!("{alpha}/console/issue")).await.unwrap();
    sup.wait()
        .at_most(DEADLINE)
        .for_element(Locator::Id("legal_basis"))
        .await
        .unwrap();
    choose(&sup, "kind", "wanted").await;
    choose(&sup, "purpose", "locate-arrest").await;
    fill(
        &sup,
        "legal_basis",
        "Warrant 2026/119, District Court Rotterdam",
    )
    .await;
    fill(&sup, "summary", "Armed robbery").await;
    fill(&sup, "case_ref", "RTM-119").await;
    choose(&sup, "subject_category", "suspect").await;
    choose(&sup, "nature", "fact").await;
    choose(&sup, "grading.source", "B").await;
    choose(&sup, "grading.information", "2").await;
    fill(&sup, "audience", "bravo").await;
    choose(&sup, "handling", "H1").await;
    fill(&sup, "expires_at", &rfc3339_in_days(200)[..10]).await;
    fill(&sup, "subject.family_name", "Browser-Issued").await;
    fill(&sup, "subject.given_names", "Ilse").await;
    fill(&sup, "subject.date_of_birth", "1980-02-31").await;
    // A fingerprint record, uploaded with the form.
    let record = fed.dir.path().join("prints.fir");
    fs::write(&record, b"FIR\x00020\x00browser-test-record").unwrap();
    sup.find(Locator::Id("fingerprints_file"))
        .await
        .unwrap()
        .send_keys(record.to_str().unwrap())
        .await
        .unwrap();
    shot(&sup, "issue-form").await;
    sup.find(Locator::Css(
        "form[action='/console/issue'] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_source(&sup, "the field's error", |s| {
        s.contains("id=\"subject.date_of_birth-error\"")
    })
    .await;
    shot(&sup, "issue-error").await;
    let held = |node: &RunningNode| {
        node.list()
            .iter()
            .filter(|v| v["subject"]["family_name"] == json!("Browser-Issued"))
            .count()
    };
    assert_eq!(held(&na), 0, "a refused form stored a notice");
    fill(&sup, "subject.date_of_birth", "1980-02-28").await;
    sup.find(Locator::Css(
        "form[action='/console/issue'] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let src = wait_source(&sup, "the confirmation", |s| s.contains("confirm-audience")).await;
    assert!(
        src.contains("<dd id=\"confirm-audience\">bravo</dd>"),
        "{src}"
    );
    shot(&sup, "issue-confirm").await;
    assert_eq!(held(&na), 0, "signed before the confirmation");
    sup.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_source(&sup, "the new notice's page", |s| {
        s.contains("Delivery to members")
    })
    .await;
    shot(&sup, "issued").await;
    wait_within("the notice reaching bravo", DEADLINE, POLL, || {
        (held(&nb) == 1).then_some(())
    });
    let at_bravo = nb
        .list()
        .into_iter()
        .find(|v| v["subject"]["family_name"] == json!("Browser-Issued"))
        .unwrap();
    {
        use base64::Engine;
        let prints = base64::engine::general_purpose::STANDARD.encode(fs::read(&record).unwrap());
        assert_eq!(
            at_bravo["subject"]["fingerprints"],
            json!(prints),
            "{at_bravo}"
        );
    }

    // Its update form holds it; its cancel is confirmed first.
    sup.find(Locator::LinkText("Update this notice"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_source(&sup, "the update form", |s| {
        s.contains("value=\"Browser-Issued\"") && s.contains("A fingerprint record is held")
    })
    .await;
    shot(&sup, "update-form").await;
    sup.back().await.unwrap();
    wait_source(&sup, "the notice page again", |s| {
        s.contains("cancel-reason")
    })
    .await;
    fill(&sup, "cancel-reason", "arrested").await;
    sup.find(Locator::Css("form[action$='/cancel'] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_source(&sup, "the cancel confirmation", |s| {
        s.contains("Sign the cancellation")
    })
    .await;
    shot(&sup, "cancel-confirm").await;
    sup.find(Locator::Id("confirm"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_source(&sup, "the cancellation's page", |s| s.contains("Versions")).await;
    shot(&sup, "cancelled").await;
    sup.close().await.unwrap();
    desk.close().await.unwrap();
}
