//! The signed envelope (docs/format.md): a deterministic body holding salted
//! commitments to the subject fields, the disclosures beside it, and an
//! ed25519 signature over the exact body bytes.
//!
//! Receivers verify the bytes they received and never re-encode before
//! verifying; redaction drops disclosures without touching the signature.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

use super::model::*;
use super::NoticeError;

/// The body format version, the first byte of every encoded body.
pub const BODY_VERSION: u8 = 1;
/// Largest body vigil will issue or accept (docs/format.md).
pub const MAX_BODY: usize = 256 * 1024;
/// Domain separation for notice signatures.
pub const NOTICE_DOMAIN: &[u8] = b"vigil/notice/v1\0";
/// Domain separation for field commitments.
pub const FIELD_DOMAIN: &[u8] = b"vigil/field/v1\0";

/// A notice id: SHA-256 of the encoded body.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NoticeId(pub [u8; 32]);

impl NoticeId {
    /// The id of an encoded body.
    pub fn of_body(body: &[u8]) -> NoticeId {
        NoticeId(Sha256::digest(body).into())
    }

    /// Parses the lowercase (or uppercase) hex form.
    pub fn parse(s: &str) -> Option<NoticeId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(NoticeId(out))
    }
}

impl fmt::Display for NoticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NoticeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoticeId({self})")
    }
}

/// What a message does to the originator's set of notices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Issue,
    /// Supersedes an earlier notice of the same origin.
    Update {
        supersedes: NoticeId,
    },
    /// Withdraws an earlier notice; receivers erase its personal data.
    Cancel {
        target: NoticeId,
        reason: String,
    },
}

impl Action {
    /// The operator-facing name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Issue => "issue",
            Action::Update { .. } => "update",
            Action::Cancel { .. } => "cancel",
        }
    }
}

/// A salted commitment to one subject field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub field: SubjectField,
    pub hash: [u8; 32],
}

/// Everything the originator signs: every field of a notice except the subject values,
/// which are represented by commitments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    pub origin: String,
    pub seq: u64,
    pub prev: Option<NoticeId>,
    pub action: Action,
    pub kind: Kind,
    pub purpose: Purpose,
    pub legal_basis: String,
    pub handling: Handling,
    pub handling_note: Option<String>,
    pub grading: Grading,
    pub subject_category: SubjectCategory,
    pub nature: Nature,
    pub audience: Audience,
    pub issued_at: i64,
    pub expires_at: i64,
    pub review_at: Option<i64>,
    pub summary: String,
    pub case_ref: String,
    pub contact: String,
    pub commitments: Vec<Commitment>,
}

impl Body {
    /// Encodes the body: version byte, then postcard (no maps, no floats).
    pub fn encode(&self) -> Result<Vec<u8>, NoticeError> {
        let mut out = vec![BODY_VERSION];
        let rest = postcard::to_allocvec(self)
            .map_err(|e| NoticeError::Malformed(format!("body encoding: {e}")))?;
        out.extend_from_slice(&rest);
        if out.len() > MAX_BODY {
            return Err(NoticeError::TooLarge {
                size: out.len(),
                max: MAX_BODY,
            });
        }
        Ok(out)
    }

    /// Decodes exactly the bytes given: right version, no trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Body, NoticeError> {
        if bytes.len() > MAX_BODY {
            return Err(NoticeError::TooLarge {
                size: bytes.len(),
                max: MAX_BODY,
            });
        }
        match bytes.split_first() {
            Some((&BODY_VERSION, rest)) => super::decode_exact::<Body>(rest)
                .map_err(|e| NoticeError::Malformed(format!("body: {e}"))),
            Some((v, _)) => Err(NoticeError::Malformed(format!(
                "unsupported body version {v}"
            ))),
            None => Err(NoticeError::Malformed("empty body".into())),
        }
    }
}

/// One subject field revealed beside the body: salt, name and value bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    pub salt: [u8; 16],
    pub field: SubjectField,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Disclosure {
    /// `SHA-256("vigil/field/v1\0" || salt16 || name || value-bytes)`.
    pub fn commitment(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(FIELD_DOMAIN);
        h.update(self.salt);
        h.update(self.field.as_str().as_bytes());
        h.update(&self.value);
        h.finalize().into()
    }
}

/// The unit that travels and is stored: exact body bytes, signature and the
/// disclosures this holder may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    pub disclosures: Vec<Disclosure>,
}

impl Envelope {
    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.body.len()
            + self.signature.len()
            + self
                .disclosures
                .iter()
                .map(|d| d.value.len() + 24)
                .sum::<usize>()
    }
}

/// A notice whose signature and disclosures have been checked.
#[derive(Debug, Clone)]
pub struct VerifiedNotice {
    pub id: NoticeId,
    pub body: Body,
    pub subject: Subject,
    pub envelope: Envelope,
}

impl VerifiedNotice {
    /// Subject fields committed in the body but not disclosed here.
    pub fn withheld_fields(&self) -> Vec<SubjectField> {
        let held: Vec<SubjectField> = self.envelope.disclosures.iter().map(|d| d.field).collect();
        self.body
            .commitments
            .iter()
            .map(|c| c.field)
            .filter(|f| !held.contains(f))
            .collect()
    }
}

/// Builds the body commitments and disclosures for a subject with fresh
/// salts from `salts` (a cryptographic generator: a salt that can be
/// guessed lets anyone test a guess of a withheld field's value).
pub fn commit_subject(
    subject: &Subject,
    salts: &mut dyn Rng,
) -> Result<(Vec<Commitment>, Vec<Disclosure>), postcard::Error> {
    let mut commitments = Vec::new();
    let mut disclosures = Vec::new();
    for (field, value) in subject.field_values()? {
        let mut salt = [0u8; 16];
        salts.fill_bytes(&mut salt);
        let d = Disclosure { salt, field, value };
        commitments.push(Commitment {
            field,
            hash: d.commitment(),
        });
        disclosures.push(d);
    }
    Ok((commitments, disclosures))
}

/// Signs an encoded body and pairs it with its disclosures.
pub fn seal(key: &SigningKey, body: Vec<u8>, disclosures: Vec<Disclosure>) -> Envelope {
    let mut msg = Vec::with_capacity(NOTICE_DOMAIN.len() + body.len());
    msg.extend_from_slice(NOTICE_DOMAIN);
    msg.extend_from_slice(&body);
    let signature = key.sign(&msg).to_bytes().to_vec();
    Envelope {
        body,
        signature,
        disclosures,
    }
}

/// A decoded envelope whose origin key and signature are ready to check.
struct Prepared {
    body: Body,
    key: VerifyingKey,
    signature: Signature,
    message: Vec<u8>,
}

fn prepare(
    envelope: &Envelope,
    key_for: &impl Fn(&str, u64) -> Option<VerifyingKey>,
) -> Result<Prepared, NoticeError> {
    let body = Body::decode(&envelope.body)?;
    let key = key_for(&body.origin, body.seq)
        .ok_or_else(|| NoticeError::UnknownOrigin(body.origin.clone()))?;
    let sig_bytes: [u8; 64] = envelope
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| NoticeError::BadSignature)?;
    let mut message = Vec::with_capacity(NOTICE_DOMAIN.len() + envelope.body.len());
    message.extend_from_slice(NOTICE_DOMAIN);
    message.extend_from_slice(&envelope.body);
    Ok(Prepared {
        body,
        key,
        signature: Signature::from_bytes(&sig_bytes),
        message,
    })
}

fn finish(p: Prepared, envelope: &Envelope) -> Result<VerifiedNotice, NoticeError> {
    let subject = check_disclosures(&p.body, &envelope.disclosures)?;
    Ok(VerifiedNotice {
        id: NoticeId::of_body(&envelope.body),
        body: p.body,
        subject,
        envelope: envelope.clone(),
    })
}

/// Verifies the signature over the exact body bytes (`verify_strict`), then
/// every disclosure against its commitment. `key_of` returns the pinned key
/// of an origin.
pub fn verify(
    envelope: &Envelope,
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<VerifiedNotice, NoticeError> {
    verify_with(envelope, |o, _| key_of(o))
}

/// Like [`verify`], with the origin's key looked up by the notice's
/// sequence number too: after a key rotation
/// ([`super::rotation`]) each number has its own key.
pub fn verify_with(
    envelope: &Envelope,
    key_for: impl Fn(&str, u64) -> Option<VerifyingKey>,
) -> Result<VerifiedNotice, NoticeError> {
    let p = prepare(envelope, &key_for)?;
    p.key
        .verify_strict(&p.message, &p.signature)
        .map_err(|_| NoticeError::BadSignature)?;
    finish(p, envelope)
}

/// Verifies many envelopes with one ed25519 batch verification (pinned keys
/// are checked for weakness when the config is loaded); if the batch fails,
/// each is verified on its own with `verify_strict` to find the culprits.
/// Results are in input order.
pub fn verify_batch(
    envelopes: &[&Envelope],
    key_of: impl Fn(&str) -> Option<VerifyingKey>,
) -> Vec<Result<VerifiedNotice, NoticeError>> {
    verify_batch_with(envelopes, |o, _| key_of(o))
}

/// Like [`verify_batch`], with keys looked up by origin and sequence
/// number ([`verify_with`]).
pub fn verify_batch_with(
    envelopes: &[&Envelope],
    key_for: impl Fn(&str, u64) -> Option<VerifyingKey>,
) -> Vec<Result<VerifiedNotice, NoticeError>> {
    let prepared: Vec<Result<Prepared, NoticeError>> =
        envelopes.iter().map(|e| prepare(e, &key_for)).collect();
    let ok: Vec<&Prepared> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
    let batch_ok = ok.is_empty() || {
        let messages: Vec<&[u8]> = ok.iter().map(|p| p.message.as_slice()).collect();
        let signatures: Vec<Signature> = ok.iter().map(|p| p.signature).collect();
        let keys: Vec<VerifyingKey> = ok.iter().map(|p| p.key).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    };
    prepared
        .into_iter()
        .zip(envelopes)
        .map(|(p, e)| {
            let p = p?;
            if !batch_ok {
                p.key
                    .verify_strict(&p.message, &p.signature)
                    .map_err(|_| NoticeError::BadSignature)?;
            }
            finish(p, e)
        })
        .collect()
}

/// Checks each disclosure against the body's commitment for its field and
/// assembles the subject they reveal.
fn check_disclosures(body: &Body, disclosures: &[Disclosure]) -> Result<Subject, NoticeError> {
    let mut subject = Subject::default();
    let mut seen: Vec<SubjectField> = Vec::with_capacity(disclosures.len());
    for d in disclosures {
        if seen.contains(&d.field) {
            return Err(NoticeError::Disclosure {
                field: d.field.as_str(),
                reason: "disclosed twice",
            });
        }
        seen.push(d.field);
        let committed = body.commitments.iter().find(|c| c.field == d.field).ok_or(
            NoticeError::Disclosure {
                field: d.field.as_str(),
                reason: "no commitment in the signed body",
            },
        )?;
        if committed.hash != d.commitment() {
            return Err(NoticeError::Disclosure {
                field: d.field.as_str(),
                reason: "does not match its commitment",
            });
        }
        subject
            .set_from_bytes(d.field, &d.value)
            .map_err(|_| NoticeError::Disclosure {
                field: d.field.as_str(),
                reason: "value does not decode",
            })?;
    }
    Ok(subject)
}

/// Drops the named disclosures; the signature stays valid because the body
/// is untouched.
pub fn strip(envelope: &Envelope, fields: &[SubjectField]) -> Envelope {
    Envelope {
        body: envelope.body.clone(),
        signature: envelope.signature.clone(),
        disclosures: envelope
            .disclosures
            .iter()
            .filter(|d| !fields.contains(&d.field))
            .cloned()
            .collect(),
    }
}

/// First bytes of a notice file (`vigil notice export`), so a wrong file is
/// recognised before anything is decoded.
pub const FILE_MAGIC: &[u8] = b"vigil-notice/1\n";

impl Envelope {
    /// The bytes of a notice file for offline transfer: magic + envelope.
    pub fn to_file(&self) -> Result<Vec<u8>, NoticeError> {
        let mut out = FILE_MAGIC.to_vec();
        out.extend_from_slice(&self.to_bytes()?);
        Ok(out)
    }

    /// Reads a notice file; the envelope still has to be verified.
    pub fn from_file(bytes: &[u8]) -> Result<Envelope, NoticeError> {
        let rest = bytes
            .strip_prefix(FILE_MAGIC)
            .ok_or_else(|| NoticeError::Malformed("not a vigil notice file (bad header)".into()))?;
        if rest.len() > 2 * MAX_BODY {
            return Err(NoticeError::TooLarge {
                size: rest.len(),
                max: 2 * MAX_BODY,
            });
        }
        Envelope::from_bytes(rest)
    }

    /// Encodes the envelope for a file or a frame.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NoticeError> {
        postcard::to_allocvec(self)
            .map_err(|e| NoticeError::Malformed(format!("encoding an envelope: {e}")))
    }

    /// Decodes an envelope, refusing trailing bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, NoticeError> {
        super::decode_exact(bytes).map_err(|e| NoticeError::Malformed(format!("envelope: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9u8; 32])
    }

    fn subject() -> Subject {
        Subject {
            family_name: Some("Doe".into()),
            given_names: Some("John".into()),
            identifiers: Some(vec![Identifier {
                scheme: "passport".into(),
                country: "NLD".into(),
                value: "X1".into(),
            }]),
            fingerprints: Some(Binary(vec![1, 2, 3, 4])),
            dna_profile: Some("D8S1179:13".into()),
            ..Subject::default()
        }
    }

    fn envelope() -> Envelope {
        let (commitments, disclosures) =
            commit_subject(&subject(), &mut crate::identity::os_rng()).unwrap();
        let body = Body {
            origin: "alpha".into(),
            seq: 1,
            prev: None,
            action: Action::Issue,
            kind: Kind::Wanted,
            purpose: Purpose::LocateArrest,
            legal_basis: "Warrant".into(),
            handling: Handling::H1,
            handling_note: None,
            grading: Grading {
                source: Reliability::B,
                information: Accuracy::Two,
            },
            subject_category: SubjectCategory::Suspect,
            nature: Nature::Fact,
            audience: Audience::All,
            issued_at: 1,
            expires_at: 2,
            review_at: None,
            summary: "s".into(),
            case_ref: "c".into(),
            contact: "d".into(),
            commitments,
        };
        seal(&key(), body.encode().unwrap(), disclosures)
    }

    fn check(env: &Envelope) -> Result<VerifiedNotice, NoticeError> {
        let k = key().verifying_key();
        verify(env, |o| (o == "alpha").then_some(k))
    }

    #[test]
    fn unknown_origin_is_refused() {
        assert_eq!(
            verify(&envelope(), |_| None).unwrap_err(),
            NoticeError::UnknownOrigin("alpha".into())
        );
    }

    #[test]
    fn body_and_envelope_round_trip() {
        let env = envelope();
        let back = Envelope::from_bytes(&env.to_bytes().unwrap()).unwrap();
        assert_eq!(back, env);
        let body = Body::decode(&env.body).unwrap();
        assert_eq!(body.encode().unwrap(), env.body);
    }

    proptest! {
        #[test]
        fn flipping_any_body_or_signature_byte_is_rejected(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let env = envelope();
            let total = env.body.len() + env.signature.len();
            let i = pos.index(total);
            let mut bad = env.clone();
            if i < env.body.len() {
                bad.body[i] ^= 1 << bit;
            } else {
                bad.signature[i - env.body.len()] ^= 1 << bit;
            }
            prop_assert!(check(&bad).is_err());
        }

        #[test]
        fn any_subset_of_disclosures_verifies(mask in any::<u16>()) {
            let env = envelope();
            let drop: Vec<SubjectField> = env
                .disclosures
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, d)| d.field)
                .collect();
            let stripped = strip(&env, &drop);
            let v = check(&stripped).unwrap();
            prop_assert_eq!(v.envelope.disclosures.len(), env.disclosures.len() - drop.len());
            for f in &drop {
                prop_assert!(v.withheld_fields().contains(f));
            }
        }

        #[test]
        fn a_changed_disclosure_value_or_salt_is_rejected(which in 0usize..5, byte in any::<prop::sample::Index>(), salt in any::<bool>()) {
            let mut env = envelope();
            let d = &mut env.disclosures[which];
            if salt {
                d.salt[byte.index(16)] ^= 1;
            } else {
                let i = byte.index(d.value.len());
                d.value[i] ^= 1;
            }
            let err = check(&env).unwrap_err();
            let is_disclosure_error = matches!(err, NoticeError::Disclosure { .. });
            prop_assert!(is_disclosure_error);
        }
    }

    #[test]
    fn a_disclosure_without_commitment_or_twice_is_rejected() {
        let mut env = envelope();
        let mut extra = env.disclosures[0].clone();
        extra.field = SubjectField::Aliases;
        env.disclosures.push(extra);
        assert!(matches!(
            check(&env),
            Err(NoticeError::Disclosure {
                field: "aliases",
                ..
            })
        ));
        let mut env = envelope();
        env.disclosures.push(env.disclosures[0].clone());
        assert!(matches!(
            check(&env),
            Err(NoticeError::Disclosure {
                reason: "disclosed twice",
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_and_wrong_version_are_malformed() {
        let mut env = envelope();
        env.body.push(0);
        assert!(matches!(
            Body::decode(&env.body),
            Err(NoticeError::Malformed(_))
        ));
        let mut env = envelope();
        env.body[0] = 2;
        assert!(matches!(
            Body::decode(&env.body),
            Err(NoticeError::Malformed(_))
        ));
    }
}
