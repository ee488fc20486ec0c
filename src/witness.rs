//! Witnessed processing logs: a node signs the head of its hash-chained
//! processing log (sequence and hash) and sends it to its direct members;
//! each checks that the head extends the last one it holds from that node
//! and cosigns it (after the C2SP tlog-witness and cosignature designs).
//!
//! A node that rewrites its own log from some entry on can sign a new head,
//! but it cannot make its members' cosigned heads agree with the rewritten
//! chain: `vigil audit verify --witness` finds the first cosigned head the
//! export no longer reproduces, and a member refuses (and raises an alert
//! for) a head whose chain no longer holds the head it cosigned.
//!
//! What a witness checks without any entry's contents: the node answers
//! its consistency request with the hashes of its entries from the head the
//! witness holds to the new one. The first must be the held hash and the
//! last the new; so the chain the node now reports still holds the cosigned
//! head at its sequence number. Pure logic: no I/O, no clock.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::notice::{decode_exact, NoticeError};

/// Domain separation for a node's signed processing-log head.
pub const HEAD_DOMAIN: &[u8] = b"vigil/witness-head/v1\0";
/// Domain separation for a witness's cosignature.
pub const COSIGN_DOMAIN: &[u8] = b"vigil/cosign/v1\0";
/// Most entry hashes one consistency answer carries (about 0.5 MiB): a
/// node further ahead of its witness sends an intermediate head first.
pub const MAX_SEGMENT: u64 = 16_384;

/// What a node states about its processing log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadBody {
    pub node: String,
    /// The entry's sequence number (1 is the first entry).
    pub seq: u64,
    /// Its hash ([`crate::store::AuditEntry::hash`]).
    pub hash: [u8; 32],
    /// When the node signed it (Unix seconds).
    pub at: i64,
}

/// A head signed by its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// What a witness states: it saw this node's head and checked it extends
/// the last one it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CosignBody {
    pub witness: String,
    pub node: String,
    pub seq: u64,
    pub hash: [u8; 32],
    /// When the witness cosigned (Unix seconds).
    pub at: i64,
}

/// A cosignature by its witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cosignature {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedHead {
    /// Signs `body` with the node's key.
    pub fn sign(key: &SigningKey, body: &HeadBody) -> Result<SignedHead, NoticeError> {
        let (body, signature) =
            crate::notice::sign_statement(key, HEAD_DOMAIN, body, "processing-log head")?;
        Ok(SignedHead { body, signature })
    }

    /// Decodes the body without checking the signature (to find the key).
    pub fn peek(&self) -> Result<HeadBody, NoticeError> {
        decode_exact(&self.body)
            .map_err(|e| NoticeError::Malformed(format!("processing-log head: {e}")))
    }

    /// Checks the signature with the node's key and decodes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<HeadBody, NoticeError> {
        let body = self.peek()?;
        crate::notice::verify_statement(key, HEAD_DOMAIN, &self.body, &self.signature)?;
        Ok(body)
    }
}

impl Cosignature {
    /// Signs `body` with the witness's key.
    pub fn sign(key: &SigningKey, body: &CosignBody) -> Result<Cosignature, NoticeError> {
        let (body, signature) =
            crate::notice::sign_statement(key, COSIGN_DOMAIN, body, "cosignature")?;
        Ok(Cosignature { body, signature })
    }

    /// Decodes the body without checking the signature.
    pub fn peek(&self) -> Result<CosignBody, NoticeError> {
        decode_exact(&self.body).map_err(|e| NoticeError::Malformed(format!("cosignature: {e}")))
    }

    /// Checks the signature with the witness's key and decodes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<CosignBody, NoticeError> {
        let body = self.peek()?;
        crate::notice::verify_statement(key, COSIGN_DOMAIN, &self.body, &self.signature)?;
        Ok(body)
    }
}

/// What a witness does with a node's new head, given the one it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Nothing held, or the same head again: cosign it.
    Cosign,
    /// Ask the node for its entry hashes from the held head's sequence
    /// number to the new one's.
    NeedSegment { from: u64 },
    /// The new head cannot extend the held one.
    Inconsistent(String),
}

/// Judges `new` against the head `held` from the same node.
pub fn judge(held: Option<&HeadBody>, new: &HeadBody) -> Judgement {
    let Some(held) = held else {
        return Judgement::Cosign;
    };
    if new.seq < held.seq {
        return Judgement::Inconsistent(format!(
            "head at entry {} is behind the head at entry {} cosigned before: the processing log went back",
            new.seq, held.seq
        ));
    }
    if new.seq == held.seq {
        return if new.hash == held.hash {
            Judgement::Cosign
        } else {
            Judgement::Inconsistent(format!(
                "entry {} has hash {}, not the {} cosigned before: the processing log was rewritten",
                new.seq,
                hex::encode(new.hash),
                hex::encode(held.hash)
            ))
        };
    }
    Judgement::NeedSegment { from: held.seq }
}

/// Why a witness refuses a head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Inconsistent(pub String);

/// Checks a node's answer to a consistency request: the hashes of its
/// entries `held.seq..=new.seq`, which must start with the held hash and
/// end with the new one.
pub fn check_segment(
    held: &HeadBody,
    new: &HeadBody,
    hashes: &[[u8; 32]],
) -> Result<(), Inconsistent> {
    let want = new.seq.saturating_sub(held.seq) + 1;
    // Beyond one segment only the two ends are sent (the hashes between
    // prove nothing without the entries anyway).
    let ends_only = want > MAX_SEGMENT + 1 && hashes.len() == 2;
    if hashes.len() as u64 != want && !ends_only {
        return Err(Inconsistent(format!(
            "consistency answer has {} hashes for entries {}..={} ({want} expected)",
            hashes.len(),
            held.seq,
            new.seq
        )));
    }
    if hashes.first() != Some(&held.hash) {
        return Err(Inconsistent(format!(
            "entry {} now has hash {}, not the {} cosigned before: the processing log was rewritten",
            held.seq,
            hashes.first().map(hex::encode).unwrap_or_default(),
            hex::encode(held.hash)
        )));
    }
    if hashes.last() != Some(&new.hash) {
        return Err(Inconsistent(format!(
            "the consistency answer does not end at the head's hash for entry {}",
            new.seq
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, h: u8) -> HeadBody {
        HeadBody {
            node: "alpha".into(),
            seq,
            hash: [h; 32],
            at: 1,
        }
    }

    #[test]
    fn a_head_is_cosigned_only_if_it_extends_the_one_held() {
        assert_eq!(judge(None, &head(5, 1)), Judgement::Cosign);
        assert_eq!(judge(Some(&head(5, 1)), &head(5, 1)), Judgement::Cosign);
        assert!(matches!(
            judge(Some(&head(5, 1)), &head(5, 2)),
            Judgement::Inconsistent(w) if w.contains("rewritten")
        ));
        assert!(matches!(
            judge(Some(&head(5, 1)), &head(4, 1)),
            Judgement::Inconsistent(w) if w.contains("went back")
        ));
        assert_eq!(
            judge(Some(&head(5, 1)), &head(8, 9)),
            Judgement::NeedSegment { from: 5 }
        );
        assert_eq!(
            judge(Some(&head(5, 1)), &head(6 + MAX_SEGMENT, 9)),
            Judgement::NeedSegment { from: 5 }
        );
        let far = head(6 + MAX_SEGMENT, 9);
        assert!(check_segment(&head(5, 1), &far, &[[1; 32], [9; 32]]).is_ok());
        assert!(check_segment(&head(5, 1), &far, &[[2; 32], [9; 32]]).is_err());
        let (held, new) = (head(5, 1), head(7, 9));
        assert!(check_segment(&held, &new, &[[1; 32], [3; 32], [9; 32]]).is_ok());
        // The chain now holds something else at the cosigned entry.
        let e = check_segment(&held, &new, &[[2; 32], [3; 32], [9; 32]]).unwrap_err();
        assert!(e.0.contains("entry 5 now has hash"), "{e}");
        assert!(check_segment(&held, &new, &[[1; 32], [9; 32]]).is_err());
        assert!(check_segment(&held, &new, &[[1; 32], [3; 32], [8; 32]]).is_err());
    }

    #[test]
    fn heads_and_cosignatures_verify_only_with_their_signers_key() {
        let (node, witness) = (
            SigningKey::from_bytes(&[1; 32]),
            SigningKey::from_bytes(&[2; 32]),
        );
        let h = SignedHead::sign(&node, &head(5, 1)).unwrap();
        assert_eq!(h.verify(&node.verifying_key()).unwrap(), head(5, 1));
        assert!(h.verify(&witness.verifying_key()).is_err());
        let body = CosignBody {
            witness: "bravo".into(),
            node: "alpha".into(),
            seq: 5,
            hash: [1; 32],
            at: 2,
        };
        let c = Cosignature::sign(&witness, &body).unwrap();
        assert_eq!(c.verify(&witness.verifying_key()).unwrap(), body);
        let mut t = c.clone();
        t.body[3] ^= 1;
        assert!(t.verify(&witness.verifying_key()).is_err());
    }
}
