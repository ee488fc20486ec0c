//! Notices: the data model, the operator JSON format, the signed
//! envelope with selective disclosure and its verification (docs/format.md).
//!
//! Pure logic: no storage, no networking, no clock (callers pass `now`).

pub mod envelope;
pub mod hit;
pub mod input;
pub mod model;
pub mod screening;

pub use envelope::{
    commit_subject, seal, strip, verify, verify_batch, Action, Body, Commitment, Disclosure,
    Envelope, NoticeId, VerifiedNotice, MAX_BODY,
};
pub use input::{InputError, IssueContext, NoticeInput};
pub use model::*;

/// One entry of a node's log and of a feed batch: a notice, or a hit report
/// travelling back toward the notice's origin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Item {
    Notice(Envelope),
    Hit(hit::HitReport),
}

impl Item {
    /// The item's id: the notice id, or SHA-256 of the hit report's body.
    pub fn id(&self) -> NoticeId {
        match self {
            Item::Notice(e) => NoticeId::of_body(&e.body),
            Item::Hit(h) => NoticeId::of_body(&h.body),
        }
    }
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
