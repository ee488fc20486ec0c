//! Transit (docs/format.md#transit): a notice carried by relays it is not
//! addressed to, with each named recipient's disclosures sealed to that
//! recipient ([`super::seal`]); the hit reports that answer it, sealed to
//! its origin; and the recipient's signed word on what it did with it.
//!
//! Why: agencies link to a hub rather than to every partner. The signed
//! body stays readable, so every hop verifies the origin's signature and
//! applies expiry, kind and handling rules, while what identifies a person
//! crosses the hub unreadable to it.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::envelope::{Disclosure, Envelope, NoticeId};
use super::hit::HitReport;
use super::seal::{ReceiverContext, SealError, SealedPart, Sealing, SenderContext};
use super::NoticeError;

/// Most sealed parts one transit item carries (one per named recipient).
pub const MAX_PARTS: usize = 256;
/// Domain separation for delivery report signatures.
pub const DELIVERY_DOMAIN: &[u8] = b"vigil/delivery/v1\0";

/// A notice in transit: the origin's exact body and signature, and for
/// each named recipient the disclosures meant for it, sealed to its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transit {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
    pub parts: Vec<SealedPart>,
}

/// Why a transit item could not be opened or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitError {
    #[error("no sealed part for `{0}`")]
    NoPart(String),
    #[error("{0} sealed parts, over the limit of {MAX_PARTS}")]
    TooManyParts(usize),
    #[error("two sealed parts for `{0}`")]
    TwoParts(String),
    #[error("sealed part for `{recipient}`: {error}")]
    Seal { recipient: String, error: SealError },
    #[error("sealed part for `{0}` does not hold disclosures: {1}")]
    Plaintext(String, String),
    #[error("this node has no encryption key to open sealed parts")]
    NoKey,
    #[error("sealed by `{0}`, whose signing key is not pinned here")]
    UnknownSender(String),
}

impl Transit {
    /// The notice's id (SHA-256 of its body).
    pub fn id(&self) -> NoticeId {
        NoticeId::of_body(&self.body)
    }

    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.body.len() + self.signature.len() + self.parts.iter().map(part_len).sum::<usize>()
    }

    /// The signed body without any disclosure: what a relay may verify.
    pub fn bare(&self) -> Envelope {
        Envelope {
            body: self.body.clone(),
            signature: self.signature.clone(),
            disclosures: Vec::new(),
        }
    }

    /// The recipients it carries parts for, in order.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().map(|p| p.recipient.as_str())
    }

    /// Bounds and shape: at most [`MAX_PARTS`], one per recipient.
    pub fn check_parts(&self) -> Result<(), TransitError> {
        if self.parts.len() > MAX_PARTS {
            return Err(TransitError::TooManyParts(self.parts.len()));
        }
        for (i, p) in self.parts.iter().enumerate() {
            if self.parts[..i].iter().any(|q| q.recipient == p.recipient) {
                return Err(TransitError::TwoParts(p.recipient.clone()));
            }
        }
        Ok(())
    }

    /// The same item carrying only `recipient`'s part (what goes to it):
    /// no recipient learns what another was sent, even sealed.
    pub fn only_for(&self, recipient: &str) -> Option<Transit> {
        let part = self.parts.iter().find(|p| p.recipient == recipient)?;
        Some(Transit {
            body: self.body.clone(),
            signature: self.signature.clone(),
            parts: vec![part.clone()],
        })
    }

    /// This node's part, after the item's bounds are checked.
    pub fn part(&self, me: &str) -> Result<&SealedPart, TransitError> {
        self.check_parts()?;
        self.parts
            .iter()
            .find(|p| p.recipient == me)
            .ok_or_else(|| TransitError::NoPart(me.to_string()))
    }

    /// Opens this node's part under its context (accepted with the origin's
    /// pinned key: only the origin can seal under it): the envelope with
    /// the disclosures sealed to `me`, still to be verified like any
    /// received notice.
    pub fn open(&self, me: &str, ctx: &ReceiverContext) -> Result<Envelope, TransitError> {
        let part = self.part(me)?;
        let plain = ctx
            .open(Sealing::Disclosures, part, &self.id().0)
            .map_err(|e| TransitError::Seal {
                recipient: me.to_string(),
                error: e,
            })?;
        let content: PartContent = super::decode_exact(&plain)
            .map_err(|e| TransitError::Plaintext(me.to_string(), e.to_string()))?;
        Ok(Envelope {
            body: self.body.clone(),
            signature: self.signature.clone(),
            disclosures: content.disclosures,
        })
    }
}

/// About how many bytes a sealed part takes encoded.
fn part_len(p: &SealedPart) -> usize {
    p.enc.len() + p.ct.len() + p.recipient.len() + 8
}

/// Sealed plaintexts are padded to a multiple of this, so a relay learns
/// little of what a part holds from its length.
pub const PAD_TO: usize = 1024;

/// What a sealed part of a notice holds: the disclosures, and padding.
#[derive(Serialize, Deserialize)]
struct PartContent {
    disclosures: Vec<Disclosure>,
    #[serde(with = "serde_bytes")]
    pad: Vec<u8>,
}

/// Seals `disclosures` of the notice `envelope` under the origin's context
/// with their recipient, padded.
pub fn seal_disclosures(
    envelope: &Envelope,
    disclosures: &[Disclosure],
    ctx: &mut SenderContext,
    rng: &mut impl rand::CryptoRng,
) -> Result<SealedPart, SealError> {
    let id = NoticeId::of_body(&envelope.body);
    let mut content = PartContent {
        disclosures: disclosures.to_vec(),
        pad: Vec::new(),
    };
    let bare = postcard::to_allocvec(&content)
        .map_err(|e| SealError::Malformed(format!("encoding disclosures: {e}")))?;
    // The pad's own length prefix grows by at most 2 bytes here.
    let room = (PAD_TO - (bare.len() + 2) % PAD_TO) % PAD_TO;
    content.pad = vec![0; room];
    let plain = postcard::to_allocvec(&content)
        .map_err(|e| SealError::Malformed(format!("encoding disclosures: {e}")))?;
    ctx.seal(Sealing::Disclosures, &id.0, &plain, rng)
}

/// A hit report on a notice held in transit, sealed to the notice's origin:
/// the relays on the way learn who reports on which notice, not where or
/// what matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedHit {
    /// The screening node; a relay accepts the item only from it.
    pub reporter: String,
    /// The notice's origin, to whom it is sealed.
    pub origin: String,
    pub notice: NoticeId,
    /// SHA-256 of the report's body: one report delivered twice stays one.
    pub hit: [u8; 32],
    pub part: SealedPart,
}

impl SealedHit {
    /// Seals `report` (by `reporter`, on `notice`) under the reporter's
    /// context with `origin`.
    pub fn seal(
        report: &HitReport,
        reporter: &str,
        origin: &str,
        notice: NoticeId,
        ctx: &mut SenderContext,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<SealedHit, SealError> {
        let plain = postcard::to_allocvec(report)
            .map_err(|e| SealError::Malformed(format!("encoding a hit report: {e}")))?;
        let hit = NoticeId::of_body(&report.body).0;
        Ok(SealedHit {
            reporter: reporter.to_string(),
            origin: origin.to_string(),
            notice,
            hit,
            part: ctx.seal(Sealing::HitReport, &hit, &plain, rng)?,
        })
    }

    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.reporter.len() + self.origin.len() + 72 + part_len(&self.part)
    }

    /// Opens it on the origin (`me`) under the reporter's context: the report, whose id, reporter and
    /// notice must be what the outside says.
    pub fn open(&self, me: &str, ctx: &ReceiverContext) -> Result<HitReport, TransitError> {
        let plain = ctx
            .open(Sealing::HitReport, &self.part, &self.hit)
            .map_err(|e| TransitError::Seal {
                recipient: me.to_string(),
                error: e,
            })?;
        let report: HitReport = super::decode_exact(&plain)
            .map_err(|e| TransitError::Plaintext(me.to_string(), e.to_string()))?;
        let inner = report
            .peek()
            .map_err(|e| TransitError::Plaintext(me.to_string(), e.to_string()))?;
        if NoticeId::of_body(&report.body).0 != self.hit
            || inner.reporter != self.reporter
            || inner.notice != self.notice
            || inner.origin != self.origin
        {
            return Err(TransitError::Plaintext(
                me.to_string(),
                "the sealed report is not the one its envelope names".into(),
            ));
        }
        Ok(report)
    }
}

/// Most notices one delivery report speaks for (a feed batch's worth).
pub const MAX_OUTCOMES: usize = 256;
/// Longest refusal reason a delivery report carries.
pub const MAX_OUTCOME_REASON: usize = 512;

/// What a recipient states about the notices of one origin that reached it
/// in transit in one batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryBody {
    /// The recipient that received them.
    pub receiver: String,
    /// The notices' origin, to whom the report goes.
    pub origin: String,
    /// The relay they came through: the report goes back that way.
    pub via: String,
    pub at: i64,
    /// Per notice: `None`, stored; `Some(reason)`, refused, with the reason.
    pub outcomes: Vec<(NoticeId, Option<String>)>,
}

impl DeliveryBody {
    /// Bounds: at most [`MAX_OUTCOMES`] notices, each reason at most
    /// [`MAX_OUTCOME_REASON`] bytes, at least one notice.
    pub fn check(&self) -> Result<(), NoticeError> {
        if self.outcomes.is_empty() || self.outcomes.len() > MAX_OUTCOMES {
            return Err(NoticeError::Malformed(format!(
                "delivery report speaks for {} notices (1 to {MAX_OUTCOMES})",
                self.outcomes.len()
            )));
        }
        if self
            .outcomes
            .iter()
            .any(|(_, r)| r.as_ref().is_some_and(|r| r.len() > MAX_OUTCOME_REASON))
        {
            return Err(NoticeError::Malformed(format!(
                "delivery report reason over {MAX_OUTCOME_REASON} bytes"
            )));
        }
        Ok(())
    }
}

/// A delivery report: exact body bytes and the receiver's signature, so
/// the origin learns from the recipient itself, not from a relay, whether
/// its notice arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReport {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl DeliveryReport {
    /// Signs a delivery body with the receiver's key.
    pub fn sign(key: &SigningKey, body: &DeliveryBody) -> Result<DeliveryReport, NoticeError> {
        let (body, signature) =
            super::sign_statement(key, DELIVERY_DOMAIN, body, "delivery report")?;
        Ok(DeliveryReport { body, signature })
    }

    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.body.len() + self.signature.len()
    }

    /// Decodes the body without checking the signature.
    pub fn peek(&self) -> Result<DeliveryBody, NoticeError> {
        super::decode_exact(&self.body)
            .map_err(|e| NoticeError::Malformed(format!("delivery report: {e}")))
    }

    /// Verifies the signature with the receiver's pinned key, decodes and
    /// checks the bounds.
    pub fn verify(
        &self,
        key_of: impl Fn(&str) -> Option<VerifyingKey>,
    ) -> Result<DeliveryBody, NoticeError> {
        let body = self.peek()?;
        body.check()?;
        let key = key_of(&body.receiver)
            .ok_or_else(|| NoticeError::UnknownOrigin(body.receiver.clone()))?;
        super::verify_statement(&key, DELIVERY_DOMAIN, &self.body, &self.signature)?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::envelope::{seal as sign, Disclosure};
    use crate::notice::seal::DecryptionKey;
    use crate::notice::SubjectField;
    use rand::SeedableRng;

    fn notice() -> (Envelope, Vec<Disclosure>) {
        let d = vec![Disclosure {
            salt: [3; 16],
            field: SubjectField::FamilyName,
            value: postcard::to_allocvec("Quennell").unwrap(),
        }];
        let key = SigningKey::from_bytes(&[4; 32]);
        (sign(&key, vec![1, 2, 3], d.clone()), d)
    }

    #[test]
    fn the_recipient_opens_its_part_and_nobody_else_does() {
        let mut r = rand::rngs::StdRng::seed_from_u64(1);
        let s2 = DecryptionKey::generate(&mut r);
        let s3 = DecryptionKey::generate(&mut r);
        let (env, d) = notice();
        let origin = SigningKey::from_bytes(&[4; 32]);
        let pinned = origin.verifying_key();
        let mut to_s2 = SenderContext::new("s2", s2.public(), &origin, 0, &mut r).unwrap();
        let mut to_s3 = SenderContext::new("s3", s3.public(), &origin, 0, &mut r).unwrap();
        let t = Transit {
            body: env.body.clone(),
            signature: env.signature.clone(),
            parts: vec![
                seal_disclosures(&env, &d, &mut to_s2, &mut r).unwrap(),
                seal_disclosures(&env, &[], &mut to_s3, &mut r).unwrap(),
            ],
        };
        let accept = |me: &str, key: &DecryptionKey| {
            ReceiverContext::accept(t.part(me).unwrap(), me, key, ("s1", &pinned)).unwrap()
        };
        let (c2, c3) = (accept("s2", &s2), accept("s3", &s3));
        assert_eq!(t.open("s2", &c2).unwrap(), env);
        assert!(t.open("s3", &c3).unwrap().disclosures.is_empty());
        assert_eq!(t.open("s4", &c3), Err(TransitError::NoPart("s4".into())));
        // Padding hides lengths to the next 1024 bytes.
        assert_eq!(t.parts[0].ct.len(), t.parts[1].ct.len());
        let only = t.only_for("s2").unwrap();
        assert_eq!(only.recipients().collect::<Vec<_>>(), ["s2"]);
        // A part moved onto another notice does not open there.
        let mut moved = only.clone();
        moved.body.push(0);
        assert!(matches!(
            moved.open("s2", &c2),
            Err(TransitError::Seal { .. })
        ));
        // Anyone can seal to s2, but not under the origin's context: a
        // relay's own context is refused for want of the origin's
        // signature, and its ciphertext does not open under the origin's.
        let relay = SigningKey::from_bytes(&[9; 32]);
        let mut forged = SenderContext::new("s2", s2.public(), &relay, 0, &mut r).unwrap();
        let fake = seal_disclosures(&env, &[], &mut forged, &mut r).unwrap();
        assert!(ReceiverContext::accept(&fake, "s2", &s2, ("s1", &pinned)).is_err());
        let mut swapped = t.clone();
        swapped.parts[0].ct = fake.ct.clone();
        swapped.parts[0].nonce = fake.nonce;
        assert!(matches!(
            swapped.open("s2", &c2),
            Err(TransitError::Seal { .. })
        ));
        let mut twice = t.clone();
        twice.parts.push(twice.parts[0].clone());
        assert_eq!(
            twice.check_parts(),
            Err(TransitError::TwoParts("s2".into()))
        );
    }

    #[test]
    fn a_sealed_hit_opens_only_as_what_it_says_it_is() {
        use crate::notice::hit::HitBody;
        let mut r = rand::rngs::StdRng::seed_from_u64(2);
        let s1 = DecryptionKey::generate(&mut r);
        let k = SigningKey::from_bytes(&[5; 32]);
        let body = HitBody {
            reporter: "s2".into(),
            origin: "s1".into(),
            notice: NoticeId([1; 32]),
            at: 7,
            place: "Port of Antwerp".into(),
            contact: "desk".into(),
            matched: "name+dob".into(),
            nonce: [0; 16],
        };
        let report = HitReport::sign(&k, &body).unwrap();
        let mut ctx = SenderContext::new("s1", s1.public(), &k, 0, &mut r).unwrap();
        let sealed =
            SealedHit::seal(&report, "s2", "s1", NoticeId([1; 32]), &mut ctx, &mut r).unwrap();
        let open =
            ReceiverContext::accept(&sealed.part, "s1", &s1, ("s2", &k.verifying_key())).unwrap();
        assert_eq!(sealed.open("s1", &open).unwrap(), report);
        let mut lie = sealed.clone();
        lie.reporter = "s3".into();
        assert!(lie.open("s1", &open).is_err());
    }

    #[test]
    fn delivery_reports_verify_only_with_the_receivers_key() {
        let k = SigningKey::from_bytes(&[6; 32]);
        let body = DeliveryBody {
            receiver: "s2".into(),
            origin: "s1".into(),
            via: "hub".into(),
            at: 9,
            outcomes: vec![
                (NoticeId([2; 32]), Some("sealed part does not open".into())),
                (NoticeId([3; 32]), None),
            ],
        };
        let r = DeliveryReport::sign(&k, &body).unwrap();
        assert_eq!(r.verify(|_| Some(k.verifying_key())).unwrap(), body);
        let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
        assert!(r.verify(|_| Some(other)).is_err());
        let empty = DeliveryBody {
            outcomes: Vec::new(),
            ..body.clone()
        };
        let r = DeliveryReport::sign(&k, &empty).unwrap();
        assert!(r.verify(|_| Some(k.verifying_key())).is_err());
    }
}
