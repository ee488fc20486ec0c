//! Entry points of the fuzz targets (`fuzz/`, FUZZING.md) and of the
//! corpus replay test (`tests/fuzz_corpus.rs`): one function per parser of
//! untrusted bytes.
//!
//! Why it is part of the library: the nightly fuzz targets and the stable
//! replay test must run exactly the same code, and one parser (the store's
//! log packs) is private to the crate. Each function feeds the bytes to the
//! real parser and, when it accepts them, does what the node does next with
//! the value: verify, re-encode, validate, compute screening keys. The
//! property under test is that no input makes any of them panic: bad input
//! is an error. The functions assert only invariants that hold for every
//! accepted input, so a failed assertion is a bug as real as a panic in
//! the parser.

use std::path::Path;
use std::sync::OnceLock;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::SeedableRng;

use crate::config::Config;
use crate::notice::screening::{self, Candidate, KeyFields, Query};
use crate::notice::{self, Action, Body, Envelope, IssueContext, Item, Kind, NoticeInput, Subject};
use crate::proto::{self, FeedReceiver, Message, ProtoError, SignedReceipt, RECEIPT_DOMAIN};
use crate::store::pack;

/// The member whose pinned key is [`key`]: envelopes, hit reports and
/// receipts from it reach signature verification, others stop at the
/// unknown origin.
pub const ORIGIN: &str = "alpha";
/// The time the targets run at (Unix seconds), so every run is the same.
pub const NOW: i64 = 1_800_000_000;
/// The exported keying material a `Hello` proof is checked against.
pub const BINDING: [u8; 32] = [0x42; 32];
/// Entries of a batch whose signatures are checked (all are decoded): a
/// batch of 256 checked notices would make a single input take milliseconds.
const CHECKED_ENTRIES: usize = 8;

/// The fixed signing key of [`ORIGIN`]; the seed corpora are signed with
/// it, so their inputs reach the code after a valid signature.
pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[0x5a; 32])
}

fn pinned() -> VerifyingKey {
    static KEY: OnceLock<VerifyingKey> = OnceLock::new();
    *KEY.get_or_init(|| key().verifying_key())
}

fn key_of(origin: &str) -> Option<VerifyingKey> {
    (origin == ORIGIN).then(pinned)
}

/// A stream of frames as a link reads it: length prefix checked before the
/// payload is taken, then each payload decoded, and every decoded message
/// encoded again to a frame that decodes to the same message.
pub fn frame(data: &[u8]) {
    let mut rest = data;
    while let Some((prefix, tail)) = rest.split_first_chunk::<4>() {
        let Ok(n) = proto::frame_len(*prefix) else {
            return;
        };
        let Some(payload) = tail.get(..n) else {
            return;
        };
        rest = &tail[n..];
        if let Ok(m) = proto::decode_payload(payload) {
            round_trip(&m);
        }
    }
}

/// One frame payload, and what a node does with each message: the `Hello`
/// proof, the receipt signature, the batch's cursor rules and every entry
/// (notices as in [`envelope`], hit reports verified).
pub fn message(data: &[u8]) {
    let Ok(m) = proto::decode_payload(data) else {
        return;
    };
    round_trip(&m);
    match &m {
        Message::Hello { node_id, proof, .. } => {
            if let (Some(k), Ok(sig)) = (key_of(node_id), <[u8; 64]>::try_from(&proof[..])) {
                let msg = proto::bind_message(&BINDING, node_id);
                let _ = k.verify_strict(&msg, &Signature::from_bytes(&sig));
            }
        }
        Message::Subscribe { receipts, .. } => {
            // As the serving session checks them: each verified, none trusted.
            for r in receipts {
                let _ = r.verify(&pinned());
            }
        }
        Message::Batch { through, entries } => {
            let _ = FeedReceiver::new(1, 0, 1).batch(*through, entries);
            for (i, (_, item)) in entries.iter().enumerate() {
                let _ = item.id();
                let deep = i < CHECKED_ENTRIES;
                match item {
                    Item::Notice(env) => check_envelope(env, deep),
                    Item::Hit(h) => {
                        let _ = h.peek();
                        if deep {
                            let _ = h.verify(key_of);
                        }
                    }
                    Item::Transit(t) => {
                        let _ = t.check_parts();
                        check_envelope(&t.bare(), deep);
                    }
                    Item::SealedHit(_) => {}
                    Item::Delivery(d) => {
                        let _ = d.peek();
                        if deep {
                            let _ = d.verify(key_of);
                        }
                    }
                    Item::Rotation(r) => {
                        if deep {
                            if let Some(k) = key_of("alpha") {
                                let mut ring = crate::notice::rotation::KeyRing::new("alpha", k);
                                let _ = ring.extend(r);
                            }
                        }
                    }
                }
            }
        }
        Message::Receipt(r) => {
            let _ = r.verify(&pinned());
            // The body decodes only behind a valid signature: sign the
            // received body bytes to reach the decoder.
            let mut msg = RECEIPT_DOMAIN.to_vec();
            msg.extend_from_slice(&r.body);
            let signed = SignedReceipt {
                body: r.body.clone(),
                signature: key().sign(&msg).to_bytes().to_vec(),
            };
            if let Ok(body) = signed.verify(&pinned()) {
                let again = SignedReceipt::sign(&key(), &body).map(|s| s.verify(&pinned()));
                assert!(
                    matches!(&again, Ok(Ok(b)) if *b == body),
                    "a receipt body does not round-trip: {again:?}"
                );
            }
        }
        Message::YourLast { envelope } => check_envelope(envelope, true),
        Message::WitnessHead(h) => {
            if let Ok(body) = h.verify(&pinned()) {
                let _ = crate::witness::judge(None, &body);
            }
        }
        Message::Cosigned(c) => {
            let _ = c.verify(&pinned());
        }
        Message::WitnessAsk { .. }
        | Message::WitnessSegment { .. }
        | Message::WitnessRefused { .. } => {}
    }
}

/// An envelope as received in a frame (postcard) or read from a notice file
/// (magic line first): decoded, verified against the pinned key, its body
/// and disclosures decoded, and its screening keys computed as the store
/// computes them for every envelope it writes.
pub fn envelope(data: &[u8]) {
    for env in [Envelope::from_bytes(data), Envelope::from_file(data)]
        .into_iter()
        .flatten()
    {
        check_envelope(&env, true);
    }
}

/// Operator JSON (one notice, or an array of them): parsed strictly,
/// validated against a fixed node, and when valid sealed and verified as a
/// partner would, which must accept what validation let through.
pub fn notice_json(data: &[u8]) {
    if let Ok(input) = NoticeInput::from_json(data) {
        check_input(&input);
    }
    if let Ok(inputs) = NoticeInput::from_json_array(data) {
        for input in inputs.iter().take(4) {
            check_input(input);
        }
    }
}

/// The TOML configuration (UTF-8, as the file is read), parsed and
/// validated; a valid config is queried as the node queries it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/etc/vigil/node.toml"), text) {
        Ok(cfg) => {
            for m in &cfg.members {
                assert!(cfg.member(&m.id).is_some(), "member {} not found", m.id);
            }
            for k in Kind::ALL {
                let _ = cfg.inbound.retention_days(k);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// An audit export (JSON lines closed by the signed head), verified with
/// and without the node's pinned key.
pub fn audit_export(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let unpinned = crate::audit::verify(text, None);
    let pinned_result = crate::audit::verify(text, Some(&pinned()));
    if let Err(e) = &unpinned {
        let _ = e.to_string();
    }
    if pinned_result.is_ok() {
        assert_eq!(
            pinned_result, unpinned,
            "an export that verifies with the pinned key must verify without it"
        );
    }
}

/// A stored log pack: its entries, which must survive being packed again,
/// and the split of their sizes into packs.
pub fn pack(data: &[u8]) {
    let Ok(entries) = pack::entries(data) else {
        return;
    };
    match pack::encode(entries.iter().copied()) {
        Ok(again) => {
            let back = pack::entries(&again);
            assert!(
                matches!(&back, Ok(b) if *b == entries),
                "a pack's entries do not round-trip"
            );
        }
        Err(e) => panic!("decoded pack entries do not encode: {e}"),
    }
    let split = pack::split(entries.iter().map(|e| e.len()));
    assert_eq!(split.iter().sum::<usize>(), entries.len());
}

/// A decoded message encodes to a frame within the size limit (its
/// encoding is never longer than what was decoded) that decodes to it.
fn round_trip(m: &Message) {
    let back = proto::encode_frame(m).and_then(|f| match f.split_first_chunk::<4>() {
        Some((prefix, payload)) if proto::frame_len(*prefix)? == payload.len() => {
            proto::decode_payload(payload)
        }
        _ => Err(ProtoError::Garbage("the length prefix is wrong".into())),
    });
    assert!(
        matches!(&back, Ok(b) if b == m),
        "a decoded message does not round-trip: {back:?}"
    );
}

/// Screening queries a stored notice is matched against.
fn queries() -> &'static [Query] {
    static QUERIES: OnceLock<Vec<Query>> = OnceLock::new();
    QUERIES.get_or_init(|| {
        [
            Query::name("John Doe", "1980-04-01", NOW),
            Query::name("Müller", "1975", NOW),
            Query::identifier("passport:NLD:X1234567"),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// What a node does with a received envelope; `verify` also checks the
/// signature (the costly part).
fn check_envelope(env: &Envelope, verify: bool) {
    if let Ok(bytes) = env.to_bytes() {
        let back = Envelope::from_bytes(&bytes);
        assert!(
            matches!(&back, Ok(b) if b == env),
            "an envelope does not round-trip"
        );
    }
    if verify {
        if let Ok(v) = notice::verify(env, key_of) {
            let _ = notice::text_fault(&v.body, &v.subject);
            let _ = v.withheld_fields();
        }
    }
    // The checks behind the signature, which the bytes here rarely pass.
    if let Ok(body) = Body::decode(&env.body) {
        let again = body.encode().map(|b| Body::decode(&b));
        assert!(
            matches!(&again, Ok(Ok(b)) if *b == body),
            "a decoded body does not round-trip: {again:?}"
        );
        let mut subject = Subject::default();
        for d in &env.disclosures {
            let _ = d.commitment();
            let _ = subject.set_from_bytes(d.field, &d.value);
        }
        let _ = notice::text_fault(&body, &subject);
    }
    // The store's screening entry, computed from the disclosures.
    let mut fields = KeyFields::default();
    for d in &env.disclosures {
        let _ = fields.set_from_bytes(d.field, &d.value);
    }
    let _ = screening::index_entry(&fields);
    let candidate = Candidate::of(&fields);
    for q in queries() {
        let _ = q.matches(&candidate);
    }
}

/// Validates operator input for node [`ORIGIN`] (members bravo and
/// charlie, one year of retention); valid input must seal into a notice
/// that verifies, discloses the validated subject and passes a partner's
/// text checks.
fn check_input(input: &NoticeInput) {
    let retention = |_| 365;
    let is_member = |m: &str| m == "bravo" || m == "charlie";
    let ctx = IssueContext {
        origin: ORIGIN,
        now: NOW,
        max_retention_days: &retention,
        is_member: &is_member,
    };
    let Ok(validated) = input.validate(&ctx) else {
        return;
    };
    let mut salts = rand::rngs::StdRng::seed_from_u64(7);
    let Ok((id, env)) = input.seal(&ctx, &key(), 1, None, Action::Issue, &mut salts) else {
        return;
    };
    match notice::verify(&env, key_of) {
        Ok(v) => {
            assert_eq!(v.id, id);
            assert_eq!(v.subject, validated.subject, "the subject changed");
            let fault = notice::text_fault(&v.body, &v.subject);
            assert!(
                fault.is_none(),
                "a validated notice is refused by partners: {fault:?}"
            );
        }
        Err(e) => panic!("a validated notice does not verify: {e}"),
    }
}
