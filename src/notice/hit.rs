//! Hit reports: when screening on one node matches another origin's notice,
//! the screening node signs a report addressed to the origin (docs/format.md),
//! so the originator's 24/7 desk learns where its subject was seen.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{NoticeError, NoticeId};

/// Domain separation for hit report signatures.
pub const HIT_DOMAIN: &[u8] = b"vigil/hit/v1\0";

/// What the screening node states about a hit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitBody {
    pub reporter: String,
    /// The notice's origin, to whom the report is addressed.
    pub origin: String,
    pub notice: NoticeId,
    pub at: i64,
    pub place: String,
    /// The reporter's 24/7 desk.
    pub contact: String,
    /// What matched: `identifier` or `name+dob` (not the query itself).
    pub matched: String,
    /// Random, so two screenings in the same second are two reports while a
    /// report delivered twice is still one.
    pub nonce: [u8; 16],
}

/// A hit report: exact body bytes and the reporter's signature over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HitReport {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl HitReport {
    /// Signs a hit body with the reporter's key.
    pub fn sign(key: &SigningKey, body: &HitBody) -> Result<HitReport, NoticeError> {
        let (body, signature) = super::sign_statement(key, HIT_DOMAIN, body, "hit report")?;
        Ok(HitReport { body, signature })
    }

    /// The report's id: SHA-256 of its signed body (`vigil hits ack`).
    pub fn id(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.body).into()
    }

    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.body.len() + self.signature.len()
    }

    /// Decodes the body without checking the signature (to find the key).
    pub fn peek(&self) -> Result<HitBody, NoticeError> {
        super::decode_exact(&self.body)
            .map_err(|e| NoticeError::Malformed(format!("hit report: {e}")))
    }

    /// Verifies the signature with the reporter's pinned key and decodes.
    pub fn verify(
        &self,
        key_of: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<HitBody, NoticeError> {
        let body = self.peek()?;
        let key = key_of(&body.reporter)
            .ok_or_else(|| NoticeError::UnknownOrigin(body.reporter.clone()))?;
        super::verify_statement(&key, HIT_DOMAIN, &self.body, &self.signature)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_reports_verify_only_with_the_reporters_key() {
        let k = SigningKey::from_bytes(&[5u8; 32]);
        let body = HitBody {
            reporter: "charlie".into(),
            origin: "alpha".into(),
            notice: NoticeId([1; 32]),
            at: 7,
            place: "Port of Antwerp".into(),
            contact: "+32 desk".into(),
            matched: "identifier".into(),
            nonce: [0; 16],
        };
        let r = HitReport::sign(&k, &body).unwrap();
        assert_eq!(
            r.verify(|o| (o == "charlie").then(|| k.verifying_key()))
                .unwrap(),
            body
        );
        let other = SigningKey::from_bytes(&[6u8; 32]).verifying_key();
        assert!(r.verify(|_| Some(other)).is_err());
        let mut t = r.clone();
        t.body[3] ^= 1;
        assert!(t.verify(|_| Some(k.verifying_key())).is_err());
    }
}
