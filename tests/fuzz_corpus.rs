//! Replays every file of the fuzz corpora (`fuzz/corpus/<target>/`) and of
//! the kept crash inputs (`fuzz/regressions/<target>/`) through the same
//! `vigil::fuzz_api` function the fuzz target calls.
//!
//! Why: fuzzing needs a nightly toolchain and hours; this test needs
//! neither, so CI on stable guards every input the fuzzer found
//! interesting and every crash that was fixed (FUZZING.md). A target whose
//! corpus is missing or empty fails, so the guard cannot silently vanish.
//!
//! `write_seeds` (ignored) writes the seed corpora from real inputs made
//! with the library: frames of every message, sealed envelopes and notice
//! files, operator JSON, the example configs, an audit export, and the
//! log packs of a real store.

use std::fs;
use std::path::{Path, PathBuf};

use vigil::fuzz_api;

/// A fuzz target's entry point.
type Run = fn(&[u8]);

/// Every fuzz target and the function it runs.
const TARGETS: [(&str, Run); 7] = [
    ("frame", fuzz_api::frame),
    ("message", fuzz_api::message),
    ("envelope", fuzz_api::envelope),
    ("notice_json", fuzz_api::notice_json),
    ("config", fuzz_api::config),
    ("audit_export", fuzz_api::audit_export),
    ("pack", fuzz_api::pack),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files directly in `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = read
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs every corpus and regression input of `target`; the corpus must
/// hold at least one file.
fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a known target");
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is missing or empty: nothing guards this target"
    );
    let regressions = files(&fuzz_dir().join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = fs::read(path).unwrap();
        // A panic here names the input: replay it with
        // `cargo +nightly fuzz run <target> <file>`.
        eprintln!("{target}: {}", path.display());
        run(&data);
    }
    eprintln!(
        "{target}: replayed {} corpus and {} regression inputs",
        corpus.len(),
        regressions.len()
    );
}

#[test]
fn frame_corpus() {
    replay("frame");
}

#[test]
fn message_corpus() {
    replay("message");
}

#[test]
fn envelope_corpus() {
    replay("envelope");
}

#[test]
fn notice_json_corpus() {
    replay("notice_json");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn audit_export_corpus() {
    replay("audit_export");
}

#[test]
fn pack_corpus() {
    replay("pack");
}

/// Every target has a replay test above and no regression directory
/// belongs to an unknown target.
#[test]
fn every_target_is_replayed() {
    let source = include_str!("fuzz_corpus.rs");
    for (name, _) in TARGETS {
        assert!(
            source.contains(&format!("replay(\"{name}\")")),
            "no replay test for {name}"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "no fuzz target for {name}"
        );
    }
    for dir in ["corpus", "regressions"] {
        let Ok(read) = fs::read_dir(fuzz_dir().join(dir)) else {
            continue;
        };
        for e in read {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{dir}/{name} belongs to no target"
            );
        }
    }
}

mod seeds {
    //! The seed corpora, from real inputs built with the library.

    use super::*;
    use ed25519_dalek::Signer;
    use serde_json::json;
    use vigil::audit;
    use vigil::fuzz_api::{key, BINDING, NOW, ORIGIN};
    use vigil::notice::hit::{HitBody, HitReport};
    use vigil::notice::{self, Action, Envelope, IssueContext, Item, NoticeId, NoticeInput};
    use vigil::proto::{self, Message, ReceiptBody, SignedReceipt};
    use vigil::store::{AuditDraft, AuditEntry, Issued, Operation, Store};
    use vigil::time::{rfc3339, DAY};

    /// Operator JSON of a few notices valid at `NOW` for `ORIGIN`.
    fn inputs() -> Vec<serde_json::Value> {
        let expires = rfc3339(NOW + 200 * DAY);
        let doc = include_str!("../docs/overview.md");
        let start = doc.find("```json\n").unwrap() + 8;
        let end = start + doc[start..].find("```").unwrap();
        let documented: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();
        vec![
            documented,
            json!({
                "kind": "missing", "purpose": "locate-person", "legal_basis": "Art. 32 Police Act",
                "handling": "H3", "handling_note": "Only for the border police",
                "grading": {"source": "A", "information": "1"},
                "subject_category": "victim", "nature": "assessment",
                "audience": ["bravo", "charlie"], "expires_at": expires,
                "review_at": rfc3339(NOW + 100 * DAY),
                "summary": "Missing minor, possibly abroad", "case_ref": "AMS-2026-7",
                "contact": "+31 20 000 0000",
                "subject": {"family_name": "Müller-Łukasiewicz", "given_names": "Zoë Ana",
                    "aliases": ["Zoe Mueller", "Зоя Мюллер"], "sex": "female",
                    "date_of_birth": "2011-07", "place_of_birth": "Kraków",
                    "nationalities": ["pl", "276"],
                    "identifiers": [{"scheme": "id card", "country": "D", "value": " T22000129 "}],
                    "description": "1.45 m, brown hair", "last_known_location": "Amsterdam Centraal",
                    "facial_image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
                    "dna_profile": "D8S1179:13,14"}
            }),
            json!({
                "kind": "stolen-object", "purpose": "investigate", "legal_basis": "Seizure order 9",
                "handling": "H2", "grading": {"source": "X", "information": "4"},
                "subject_category": "unknown", "nature": "fact", "audience": ["charlie"],
                "expires_at": expires, "summary": "Stolen truck", "case_ref": "C-9",
                "contact": "desk",
                "subject": {"identifiers": [{"scheme": "vin", "country": "BEL", "value": "WDB9634031L123456"}]}
            }),
        ]
    }

    fn seal(input: &serde_json::Value, seq: u64, action: Action) -> (NoticeId, Envelope) {
        let input = NoticeInput::from_json(input.to_string().as_bytes()).unwrap();
        let retention = |_| 365;
        let is_member = |m: &str| m == "bravo" || m == "charlie";
        let ctx = IssueContext {
            origin: ORIGIN,
            now: NOW,
            max_retention_days: &retention,
            is_member: &is_member,
        };
        input
            .seal(
                &ctx,
                &key(),
                seq,
                None,
                action,
                &mut vigil::identity::os_rng(),
            )
            .unwrap()
    }

    fn envelopes() -> Vec<Envelope> {
        let mut out: Vec<Envelope> = inputs()
            .iter()
            .enumerate()
            .map(|(i, v)| seal(v, i as u64 + 1, Action::Issue).1)
            .collect();
        let (first, _) = seal(&inputs()[0], 4, Action::Issue);
        let cancel = Action::Cancel {
            target: first,
            reason: "Arrested".into(),
        };
        out.push(seal(&inputs()[2], 5, cancel).1);
        out.push(seal(&inputs()[0], 6, Action::Update { supersedes: first }).1);
        let stripped = notice::strip(&out[1], &[notice::SubjectField::FacialImage]);
        out.push(stripped);
        out
    }

    fn hit() -> HitReport {
        let body = HitBody {
            reporter: ORIGIN.into(),
            origin: "bravo".into(),
            notice: NoticeId([3; 32]),
            at: NOW,
            place: "Port of Antwerp".into(),
            contact: "+32 desk".into(),
            matched: "identifier".into(),
            nonce: [9; 16],
        };
        HitReport::sign(&key(), &body).unwrap()
    }

    fn messages() -> Vec<Message> {
        let envs = envelopes();
        let proof = key()
            .sign(&proto::bind_message(&BINDING, ORIGIN))
            .to_bytes()
            .to_vec();
        let receipt = SignedReceipt::sign(
            &key(),
            &ReceiptBody {
                receiver: ORIGIN.into(),
                sender: "bravo".into(),
                epoch: 1,
                through: 12,
                rejected: vec![(3, "signature does not verify".into())],
                at: NOW,
            },
        )
        .unwrap();
        vec![
            Message::Hello {
                node_id: ORIGIN.into(),
                version: proto::PROTOCOL_VERSION,
                epoch: 1,
                proof,
                rotations: Vec::new(),
            },
            Message::Subscribe {
                epoch: 1,
                after: 0,
                receipts_from: 0,
                receipts: Vec::new(),
            },
            Message::Batch {
                through: 4,
                entries: vec![
                    (1, Item::Notice(envs[0].clone())),
                    (2, Item::Hit(hit())),
                    (4, Item::Notice(envs[3].clone())),
                ],
            },
            Message::Batch {
                through: 9,
                entries: vec![],
            },
            Message::Receipt(receipt),
            Message::YourLast {
                envelope: envs[1].clone(),
            },
        ]
    }

    fn audit_export() -> String {
        let mut prev = [0u8; 32];
        let mut entries = Vec::new();
        let ops = [
            Operation::Collect,
            Operation::Disclose,
            Operation::Reject,
            Operation::Erase,
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let seq = i as u64 + 1;
            let e = AuditEntry {
                seq,
                time: NOW + seq as i64,
                actor: if i == 0 { "operator" } else { "node" }.into(),
                operation: op,
                notice: Some(NoticeId([seq as u8; 32])),
                peer: (i > 0).then(|| "bravo".into()),
                justification: (i == 0).then(|| "case RTM-2026-0042".into()),
                decision: format!("decision {seq}"),
                prev,
            };
            prev = e.hash().unwrap();
            entries.push(e);
        }
        audit::export(ORIGIN, &key(), entries).unwrap()
    }

    /// Log packs and the audit export of a store that issued notices.
    fn store_outputs() -> (Vec<Vec<u8>>, String) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let all = inputs();
        for (i, v) in all.iter().cycle().take(7).enumerate() {
            store
                .issue::<vigil::store::StoreError>(ORIGIN, NOW + i as i64, |seq, prev| {
                    let input = NoticeInput::from_json(v.to_string().as_bytes()).unwrap();
                    let retention = |_| 365;
                    let is_member = |_: &str| true;
                    let ctx = IssueContext {
                        origin: ORIGIN,
                        now: NOW,
                        max_retention_days: &retention,
                        is_member: &is_member,
                    };
                    let (id, envelope) = input
                        .seal(
                            &ctx,
                            &key(),
                            seq,
                            prev,
                            Action::Issue,
                            &mut vigil::identity::os_rng(),
                        )
                        .unwrap();
                    Ok(Issued {
                        id,
                        envelope,
                        kind: input.kind,
                        expires_at: NOW + 200 * DAY,
                        audits: vec![AuditDraft {
                            actor: "operator".into(),
                            operation: Operation::Collect,
                            notice: Some(id),
                            peer: None,
                            justification: Some("issued".into()),
                            decision: "issued".into(),
                        }],
                        effect: None,
                    })
                })
                .unwrap();
        }
        let reported = AuditDraft {
            actor: "node".into(),
            operation: Operation::Disclose,
            notice: Some(NoticeId([3; 32])),
            peer: Some("bravo".into()),
            justification: None,
            decision: "hit reported".into(),
        };
        store
            .record_hits(&[(hit(), true)], None, &[reported], NOW + 10)
            .unwrap();
        let packs = store
            .log_packs()
            .unwrap()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        let entries: Vec<AuditEntry> = store.audit_entries().map(Result::unwrap).collect();
        (packs, audit::export(ORIGIN, &key(), entries).unwrap())
    }

    fn write(target: &str, name: &str, data: &[u8]) {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }

    /// Writes the seed corpora into `fuzz/corpus/` (run before fuzzing,
    /// then minimise with `cargo fuzz cmin`; FUZZING.md).
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand"]
    fn write_seeds() {
        let mut stream = Vec::new();
        for (i, m) in messages().iter().enumerate() {
            let f = proto::encode_frame(m).unwrap();
            write("frame", &format!("message-{i}"), &f);
            write("message", &format!("message-{i}"), &f[4..]);
            stream.extend_from_slice(&f);
        }
        write("frame", "stream", &stream);
        for (i, e) in envelopes().iter().enumerate() {
            write("envelope", &format!("envelope-{i}"), &e.to_bytes().unwrap());
            write("envelope", &format!("file-{i}"), &e.to_file().unwrap());
        }
        let all = inputs();
        for (i, v) in all.iter().enumerate() {
            write(
                "notice_json",
                &format!("notice-{i}"),
                v.to_string().as_bytes(),
            );
            let pretty = serde_json::to_string_pretty(v).unwrap();
            write("notice_json", &format!("pretty-{i}"), pretty.as_bytes());
        }
        write(
            "notice_json",
            "array",
            serde_json::Value::Array(all).to_string().as_bytes(),
        );
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        for path in files(&configs) {
            if path.extension().is_some_and(|e| e == "toml") {
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                write("config", &name, &fs::read(&path).unwrap());
            }
        }
        write("audit_export", "export", audit_export().as_bytes());
        let (packs, store_export) = store_outputs();
        write("audit_export", "store", store_export.as_bytes());
        assert!(!packs.is_empty());
        for (i, p) in packs.iter().enumerate() {
            write("pack", &format!("pack-{i}"), p);
        }
    }
}
