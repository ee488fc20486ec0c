//! Process tests of screening and the inbox with the real binary: a
//! cancelled or updated notice is one row of the receiver's inbox in its
//! current state, names typed in any order and countries in any code
//! still hit, a manifest is screened row by row, and identity data that
//! could never be found is refused at issue.
#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

mod common;
use common::*;

const DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

fn notice(family: &str, given: &str, dob: &str, passport: &str) -> Value {
    let mut v = wanted_notice(family, given, dob);
    v["case_ref"] = json!("RTM-2026-0042");
    v["subject"]["nationalities"] = json!(["NL"]);
    v["subject"]["identifiers"] =
        json!([{"scheme": "Passport No", "country": "NL", "value": passport}]);
    v["subject"]["fingerprints"] = json!("RklSAAAwMjAAAAABAAAAAAAAAAAAAAAAAAAAAAAA");
    v
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

fn json_of(out: &Out, what: &str) -> Value {
    out.assert_ok(what);
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {out:#?}"))
}

/// Two linked nodes; charlie's policy toward bravo strips biometrics.
struct Pair {
    _fed: Federation,
    alpha: NodeDir,
    bravo: NodeDir,
    a: RunningNode,
    b: RunningNode,
}

fn pair() -> Pair {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let bravo = fed.init("bravo");
    alpha.add_member(&bravo);
    fs::write(
        &alpha.config,
        fs::read_to_string(&alpha.config).unwrap()
            + "[members.outbound]\nspecial_categories = \"strip\"\n",
    )
    .unwrap();
    bravo.add_member(&alpha);
    let (a, b) = (alpha.start(), bravo.start());
    Pair {
        _fed: fed,
        alpha,
        bravo,
        a,
        b,
    }
}

impl Pair {
    fn issue(&self, name: &str, v: &Value) -> String {
        let file = write(&self.alpha.dir, name, &v.to_string());
        let out = vigil(&["notice", "issue", "--config", self.a.cfg(), s(&file)]);
        out.assert_ok("notice issue");
        out.stdout.trim().to_string()
    }

    fn on_bravo(&self, args: &[&str]) -> Out {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["--config", self.b.cfg()]);
        vigil(&a)
    }

    fn bravo_list(&self, all: bool) -> Vec<Value> {
        let mut args = vec!["notice", "list", "--json"];
        if all {
            args.push("--all");
        }
        match json_of(&self.on_bravo(&args), "notice list") {
            Value::Array(a) => a,
            other => panic!("not an array: {other}"),
        }
    }

    fn wait_on_bravo(&self, what: &str, ok: impl Fn(&[Value]) -> bool) {
        wait_within(what, DEADLINE, POLL, || {
            ok(&self.bravo_list(true)).then_some(())
        });
    }
}

#[test]
fn the_inbox_shows_one_row_per_chain_in_its_current_state() {
    let p = pair();
    let id1 = p.issue("n1.json", &notice("Doe", "John", "1980-04-01", "X1234567"));
    let other = p.issue("n2.json", &notice("Roe", "Jane", "1975", "Y7654321"));
    p.wait_on_bravo("both notices on bravo", |l| l.len() == 2);

    // An update: the chain is one row, the update, active.
    let mut v2 = notice("Doe", "John", "1980-04-01", "X1234567");
    v2["summary"] = json!("Armed robbery; seen in Antwerp");
    let f2 = write(&p.alpha.dir, "n1b.json", &v2.to_string());
    let out = vigil(&["notice", "update", "--config", p.a.cfg(), &id1, s(&f2)]);
    out.assert_ok("notice update");
    let id2 = out.stdout.trim().to_string();
    p.wait_on_bravo("the update on bravo", |l| {
        l.iter().any(|n| n["id"] == json!(id2))
    });
    let rows = p.bravo_list(false);
    let ids: Vec<&Value> = rows.iter().map(|n| &n["id"]).collect();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(ids.contains(&&json!(id2)) && ids.contains(&&json!(other)));
    let old = json_of(&p.on_bravo(&["notice", "show", &id1, "--json"]), "show old");
    assert_eq!(old["state"], json!("superseded"));
    assert_eq!(old["replaced_by"], json!(id2));

    // A cancel: the chain leaves the inbox, is listed with --all as
    // cancelled, and the cancel record is never a row of its own.
    let out = vigil(&[
        "notice",
        "cancel",
        "--config",
        p.a.cfg(),
        &id2,
        "--reason",
        "Arrested",
    ]);
    out.assert_ok("notice cancel");
    let cancel = out.stdout.trim().to_string();
    p.wait_on_bravo("the cancel on bravo", |l| {
        l.iter()
            .any(|n| n["id"] == json!(id2) && n["state"] == json!("cancelled"))
    });
    let rows = p.bravo_list(false);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["id"], json!(other));
    assert_eq!(rows[0]["state"], json!("active"));
    let all = p.bravo_list(true);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(all.iter().all(|n| n["action"] != json!("cancel")));
    let gone = all.iter().find(|n| n["id"] == json!(id2)).unwrap();
    assert_eq!(gone["state"], json!("cancelled"));
    assert_eq!(gone["replaced_by"], json!(cancel));
    let text = p.on_bravo(&["notice", "list"]);
    text.assert_ok("notice list");
    assert!(!text.stdout.contains(&id2) && !text.stdout.contains(&cancel));

    // Every version still answers show.
    for id in [&id1, &id2] {
        let v = json_of(&p.on_bravo(&["notice", "show", id, "--json"]), "show");
        assert_eq!(v["state"], json!("cancelled"), "{id}: {v:#}");
    }
    let c = json_of(&p.on_bravo(&["notice", "show", &cancel, "--json"]), "show");
    assert_eq!(c["action"], json!("cancel"));
    assert_eq!(c["target"], json!(id2));

    // The text form: labelled lines, erased data said as such.
    let out = p.on_bravo(&["notice", "show", &id2]);
    out.assert_ok("show text");
    for label in [
        "kind:",
        "handling:",
        "grading:",
        "purpose:",
        "legal basis:",
        "subject category:",
        "nature:",
        "audience:",
        "issued at:",
        "expires at:",
        "review at:",
        "contact:",
        "replaced by:",
    ] {
        assert!(out.stdout.contains(label), "no `{label}`:\n{}", out.stdout);
    }
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("family name:") && l.ends_with("erased")),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains('{'),
        "a raw JSON blob:\n{}",
        out.stdout
    );

    // A live notice: each subject field labelled, stripped ones said.
    let out = p.on_bravo(&["notice", "show", &other]);
    out.assert_ok("show text");
    for (label, value) in [
        ("family name:", "Roe"),
        ("given names:", "Jane"),
        ("date of birth:", "1975"),
        ("nationalities:", "NLD"),
        ("identifiers:", "passport NLD Y7654321"),
        ("fingerprints:", "withheld by policy"),
    ] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(label) && l.ends_with(value)),
            "no `{label} … {value}`:\n{}",
            out.stdout
        );
    }
}

#[test]
fn screening_finds_the_person_however_typed_and_manifests_row_by_row() {
    let p = pair();
    let id = p.issue(
        "n1.json",
        &notice("Müller", "Jürgen", "1970-01-15", "X1234567"),
    );
    p.wait_on_bravo("the notice on bravo", |l| l.len() == 1);
    let screen = |args: &[&str]| -> Vec<Value> {
        let mut a = vec![
            "screen",
            "--reason",
            "Border check",
            "--place",
            "Schiphol",
            "--json",
        ];
        a.extend_from_slice(args);
        match json_of(&p.on_bravo(&a), "screen") {
            Value::Array(h) => h,
            other => panic!("{other}"),
        }
    };
    for args in [
        ["--name", "Mueller Juergen", "--dob", "1970-01-15"],
        ["--name", "Jurgen Muller", "--dob", "1970-01-15"],
        ["--name", "MÜLLER, JÜRGEN", "--dob", "1970"],
        ["--identifier", "passport:NL:X1234567", "", ""],
        ["--identifier", "P:528:x 123 4567", "", ""],
    ] {
        let args: Vec<&str> = args.iter().copied().filter(|a| !a.is_empty()).collect();
        let hits = screen(&args);
        assert_eq!(hits.len(), 1, "{args:?}: {hits:#?}");
        assert_eq!(hits[0]["notice_id"], json!(id));
        assert!(hits[0]["match"]["score"].as_f64().unwrap() > 0.0);
        assert!(!hits[0]["match"]["fields"].as_array().unwrap().is_empty());
    }
    let typo = screen(&["--name", "Maller, Jurgem", "--dob", "1970-01-15"]);
    assert!(typo.is_empty(), "two errors: {typo:#?}");
    let typo = screen(&["--name", "Muller, Jurgem", "--dob", "1970-01-15"]);
    assert_eq!(typo[0]["match"]["strength"], json!("possible"));
    assert!(screen(&["--name", "Muller, Jurgen", "--dob", "1970-01-16"]).is_empty());
    // The text form says it is a hit and how strong.
    let out = p.on_bravo(&[
        "screen",
        "--reason",
        "check",
        "--name",
        "Jurgen Muller",
        "--dob",
        "1970-01-15",
    ]);
    out.assert_ok("screen");
    assert!(
        out.stdout.contains("HIT") && out.stdout.contains("exact"),
        "{}",
        out.stdout
    );

    // A manifest: rows by number after the header, a bad cell reported by
    // row and column without stopping the others.
    let csv = "family_name,given_names,date_of_birth,nationality,document_scheme,document_country,document_number\n\
               Smith,Anna,1990-02-02,GBR,passport,GBR,123456789\n\
               JURGEN,MUELLER,1970-01-15,DEU,,,\n\
               Roe,Jane,1975-13-01,NLD,,,\n\
               ,,,,P,NL,X-1234567\n";
    let file = write(&p.bravo.dir, "manifest.csv", csv);
    let report = json_of(
        &p.on_bravo(&[
            "screen",
            "--reason",
            "Flight KL1234",
            "--place",
            "AMS",
            "--csv",
            s(&file),
            "--json",
        ]),
        "screen --csv",
    );
    assert_eq!(report["rows"], json!(4));
    let rows: Vec<u64> = report["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["row"].as_u64().unwrap())
        .collect();
    assert_eq!(rows, vec![2, 4], "{report:#}");
    for r in report["hits"].as_array().unwrap() {
        assert_eq!(r["hits"][0]["notice_id"], json!(id));
        assert!(r["hits"][0]["match"]["strength"].is_string());
    }
    assert_eq!(
        report["errors"],
        json!([{"row": 3, "column": "date_of_birth",
                "message": "`1975-13-01` is not a date of birth YYYY-MM-DD, YYYY-MM or YYYY"}])
    );
    let out = p.on_bravo(&["screen", "--reason", "Flight KL1234", "--csv", s(&file)]);
    out.assert_ok("screen --csv text");
    assert!(out.stdout.contains("row 2:") && out.stdout.contains("row 4:"));
    assert!(out
        .stdout
        .lines()
        .last()
        .unwrap()
        .starts_with("4 rows screened"));

    // One consult entry for the manifest, with its counts and hash.
    let export = p.bravo.dir.join("audit.jsonl");
    vigil(&[
        "audit",
        "export",
        "--config",
        p.b.cfg(),
        "--out",
        s(&export),
    ])
    .assert_ok("audit export");
    let text = fs::read_to_string(&export).unwrap();
    let manifests: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("manifest sha256"))
        .collect();
    assert_eq!(manifests.len(), 2, "one consult entry per manifest");
    assert!(manifests[0].contains("4 rows, 2 with hits") && manifests[0].contains("Flight KL1234"));

    // A file that is not a manifest: exit 2, nothing screened.
    let bad = write(&p.bravo.dir, "bad.csv", "seat,meal\n12A,veg\n");
    p.on_bravo(&["screen", "--reason", "x", "--csv", s(&bad)])
        .assert_refused("a CSV without known columns", &["bad.csv", "column"]);
    p.on_bravo(&["screen", "--reason", "x", "--csv", "/nonexistent.csv"])
        .assert_refused("a missing file", &["nonexistent.csv"]);
}

#[test]
fn identity_data_that_could_never_be_found_is_refused_at_issue() {
    let fed = Federation::new();
    let alpha = fed.init("alpha");
    let a = alpha.start();
    for (field, value, needle) in [
        (
            "country",
            json!("Holland"),
            "subject.identifiers[0].country",
        ),
        (
            "scheme",
            json!("Shoe size"),
            "subject.identifiers[0].scheme",
        ),
    ] {
        let mut v = notice("Doe", "John", "1980-04-01", "X1");
        v["subject"]["identifiers"][0][field] = value;
        let f = write(&alpha.dir, "bad.json", &v.to_string());
        vigil(&["notice", "issue", "--config", a.cfg(), s(&f)])
            .assert_refused("issue", &["bad.json", needle]);
    }
    for dob in ["2999-01-01", "-1980-04-01", "1980-02-30"] {
        let f = write(
            &alpha.dir,
            "dob.json",
            &notice("Doe", "John", dob, "X1").to_string(),
        );
        vigil(&["notice", "issue", "--config", a.cfg(), s(&f)])
            .assert_refused("issue", &["subject.date_of_birth"]);
    }
    assert!(a.list().is_empty(), "a refused notice was stored");
    // What was accepted is stored normalised.
    let f = write(
        &alpha.dir,
        "ok.json",
        &notice("Doe", "John", "1980-04", "X1").to_string(),
    );
    let out = vigil(&["notice", "issue", "--config", a.cfg(), s(&f)]);
    out.assert_ok("issue");
    let v = json_of(
        &vigil(&[
            "notice",
            "show",
            "--config",
            a.cfg(),
            out.stdout.trim(),
            "--json",
        ]),
        "show",
    );
    assert_eq!(v["subject"]["nationalities"], json!(["NLD"]));
    assert_eq!(
        v["subject"]["identifiers"],
        json!([{"scheme": "passport", "country": "NLD", "value": "X1"}])
    );
    assert_eq!(v["subject"]["date_of_birth"], json!("1980-04"));
}
