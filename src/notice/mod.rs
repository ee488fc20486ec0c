//! Notices: the data model, the operator JSON format, the signed
//! envelope with selective disclosure and its verification (docs/format.md).
//!
//! Pure logic: no storage, no networking, no clock (callers pass `now`).

pub mod envelope;
pub mod hit;
pub mod input;
pub mod model;
pub mod rotation;
pub mod screening;
pub mod seal;
pub mod text;
pub mod transit;

pub use envelope::{
    commit_subject, seal, strip, verify, verify_batch, verify_batch_with, verify_with, Action,
    Body, Commitment, Disclosure, Envelope, NoticeId, VerifiedNotice, MAX_BODY,
};
pub use input::{InputError, IssueContext, NoticeInput};
pub use model::*;

/// One entry of a node's log and of a feed batch: a notice, a hit report
/// travelling back toward the notice's origin, or what relays carry for
/// others (a notice in transit, a sealed hit report, a delivery report).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    Notice(Envelope),
    Hit(hit::HitReport),
    Transit(transit::Transit),
    SealedHit(transit::SealedHit),
    Delivery(transit::DeliveryReport),
    /// A node's signing-key rotation, passed to every member (through
    /// relays too) like a notice.
    Rotation(rotation::Rotation),
}

impl Item {
    /// The item's id: the notice id, or SHA-256 of a report's body.
    pub fn id(&self) -> NoticeId {
        match self {
            Item::Notice(e) => NoticeId::of_body(&e.body),
            Item::Hit(h) => NoticeId::of_body(&h.body),
            Item::Transit(t) => t.id(),
            Item::SealedHit(h) => NoticeId(h.hit),
            Item::Delivery(d) => NoticeId::of_body(&d.body),
            Item::Rotation(r) => r.id(),
        }
    }

    /// About how many bytes the item takes encoded (within a few per
    /// field): what batches and stored packs are sized by.
    pub fn approx_len(&self) -> usize {
        match self {
            Item::Notice(e) => e.approx_len(),
            Item::Hit(h) => h.approx_len(),
            Item::Transit(t) => t.approx_len(),
            Item::SealedHit(h) => h.approx_len(),
            Item::Delivery(d) => d.approx_len(),
            Item::Rotation(r) => r.approx_len(),
        }
    }
}

/// Signs a statement (a hit report, a delivery report): its postcard bytes
/// and the ed25519 signature over `domain || bytes`. `what` names it in
/// errors.
pub(crate) fn sign_statement<T: serde::Serialize>(
    key: &ed25519_dalek::SigningKey,
    domain: &[u8],
    body: &T,
    what: &str,
) -> Result<(Vec<u8>, Vec<u8>), NoticeError> {
    use ed25519_dalek::Signer;
    let bytes = postcard::to_allocvec(body)
        .map_err(|e| NoticeError::Malformed(format!("encoding a {what}: {e}")))?;
    let mut msg = domain.to_vec();
    msg.extend_from_slice(&bytes);
    Ok((bytes, key.sign(&msg).to_bytes().to_vec()))
}

/// Checks a statement's signature over `domain || body` (`verify_strict`).
pub(crate) fn verify_statement(
    key: &ed25519_dalek::VerifyingKey,
    domain: &[u8],
    body: &[u8],
    signature: &[u8],
) -> Result<(), NoticeError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| NoticeError::BadSignature)?;
    let mut msg = domain.to_vec();
    msg.extend_from_slice(body);
    key.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| NoticeError::BadSignature)
}

/// Why bytes did not decode as exactly one value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("trailing bytes")]
    Trailing,
}

/// Decodes postcard bytes that must hold exactly one `T`: trailing bytes
/// are an error, so two encodings can never verify as the same message.
pub fn decode_exact<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(DecodeError::Trailing),
        Err(e) => Err(e.into()),
    }
}

/// The first text field of a verified notice that holds a forbidden
/// character ([`text`]), named as in operator JSON: a partner's notice
/// that would print escape sequences or reversed text is refused.
pub fn text_fault(body: &Body, subject: &Subject) -> Option<(String, text::TextError)> {
    let mut fields: Vec<(String, &str)> = vec![
        ("origin".into(), &body.origin),
        ("legal_basis".into(), &body.legal_basis),
        ("summary".into(), &body.summary),
        ("case_ref".into(), &body.case_ref),
        ("contact".into(), &body.contact),
    ];
    if let Some(n) = &body.handling_note {
        fields.push(("handling_note".into(), n));
    }
    if let Action::Cancel { reason, .. } = &body.action {
        fields.push(("reason".into(), reason));
    }
    if let Audience::Members(list) = &body.audience {
        fields.extend(list.iter().map(|m| ("audience".to_string(), m.as_str())));
    }
    for (name, v) in [
        ("subject.family_name", &subject.family_name),
        ("subject.given_names", &subject.given_names),
        ("subject.date_of_birth", &subject.date_of_birth),
        ("subject.place_of_birth", &subject.place_of_birth),
        ("subject.description", &subject.description),
        ("subject.last_known_location", &subject.last_known_location),
        ("subject.dna_profile", &subject.dna_profile),
    ] {
        if let Some(v) = v {
            fields.push((name.into(), v));
        }
    }
    for (name, list) in [
        ("subject.aliases", &subject.aliases),
        ("subject.nationalities", &subject.nationalities),
    ] {
        fields.extend(
            list.iter()
                .flatten()
                .map(|v| (name.to_string(), v.as_str())),
        );
    }
    for i in subject.identifiers.iter().flatten() {
        for v in [&i.scheme, &i.country, &i.value] {
            fields.push(("subject.identifiers".into(), v));
        }
    }
    fields
        .into_iter()
        .find_map(|(name, v)| text::check(v).err().map(|e| (name, e)))
}

/// Why an envelope was refused. Every variant names what is wrong so the
/// processing log and the sender's receipt can carry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("malformed notice: {0}")]
    Malformed(String),
    #[error("notice body is {size} bytes, over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("unknown origin `{0}`: no pinned signing key")]
    UnknownOrigin(String),
    #[error("signature does not verify against the origin's pinned key")]
    BadSignature,
    #[error("disclosure `{field}` {reason}")]
    Disclosure {
        field: &'static str,
        reason: &'static str,
    },
}
