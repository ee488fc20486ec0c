//! Signing keys over time: this node's own rotation (`vigil key rotate`),
//! members' rotation statements received over links, and the key each
//! origin's message is verified with (docs/protocol.md, "Key rotation").
//!
//! A member's keys are its pinned key plus the rotations recorded here
//! that lead through it. The pin stays the root of trust: rotations are
//! only followed from a key this node already trusts, and a pin the
//! recorded rotations never reach (an operator's emergency replacement)
//! sets them aside.

use ed25519_dalek::{SigningKey, VerifyingKey};
use std::sync::Arc;
use tracing::{info, warn};

use super::Exchange;
use crate::keys::format_public_key;
use crate::notice::rotation::{Extended, KeyRing, Rotation, RotationBody, RotationError};
use crate::notice::{Envelope, NoticeError};
use crate::store::{AuditDraft, Operation, StoreError};

/// How far from a report's own time a rotation may be for the key before
/// it to still count: a report made just before a rotation can go out
/// stamped in the same second or after.
const REPORT_GRACE: i64 = 600;

/// Why this node's key was not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("signing the rotation statement: {0}")]
    Sign(#[from] NoticeError),
    #[error("recording the rotation: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Ring(#[from] RotationError),
    #[error("the new key file: {0}")]
    Key(String),
}

/// Why a member's rotation statement was not followed.
#[derive(Debug, thiserror::Error)]
pub enum AcceptRotationError {
    #[error("{0}")]
    Refused(String),
    #[error("recording a rotation: {0}")]
    Store(#[from] StoreError),
}

/// What start-up found when it compared pins with recorded rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// The pin is an older key of the member: the config is out of date
    /// (the node runs on the rotated key; the operator updates the pin).
    ConfigBehind { member: String, current: String },
    /// The pin is no key the recorded rotations lead to: the operator
    /// replaced it, so the recorded rotations are out of date and set
    /// aside.
    RotationsSetAside { member: String },
}

/// Why the node must not start on its keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error("this store records this node's rotation to {recorded}, but identity.signing_key holds {configured}: the key file is out of date (the new key is in the file named with `.next` beside it if the rotation was cut short)")]
    OwnKeyBehind {
        recorded: String,
        configured: String,
    },
    #[error("checking key rotations: {0}")]
    Store(#[from] StoreError),
}

impl Exchange {
    /// The keys of `origin` this node trusts, as a ring: the recorded
    /// rotations when they lead through the pin (this node's own key for
    /// itself), otherwise the pin alone. `None` for an unknown origin.
    pub fn ring_of(&self, origin: &str) -> Option<Arc<KeyRing>> {
        let pin = self.pin_of(origin)?;
        match self.store.ring(origin) {
            Some(r) if r.holds(&pin) => Some(r),
            _ => Some(Arc::new(KeyRing::new(origin, pin))),
        }
    }

    /// The configured key of `origin`: the member's pin, or this node's
    /// own key in force.
    fn pin_of(&self, origin: &str) -> Option<VerifyingKey> {
        if origin == self.me() {
            return Some(self.signer().verifying_key());
        }
        self.config().member(origin).map(|m| m.signing_key)
    }

    /// The key in force now for `origin` (this node or a member): what
    /// its link proofs and receipts are checked with.
    pub fn key_of(&self, origin: &str) -> Option<VerifyingKey> {
        if origin == self.me() {
            return Some(self.signer().verifying_key());
        }
        let pin = self.pin_of(origin)?;
        match self.store.ring(origin) {
            Some(r) if r.holds(&pin) => Some(r.current()),
            _ => Some(pin),
        }
    }

    /// The key that signed `origin`'s message `seq`.
    pub fn key_for(&self, origin: &str, seq: u64) -> Option<VerifyingKey> {
        let pin = self.pin_of(origin)?;
        match self.store.ring(origin) {
            Some(r) if r.holds(&pin) => Some(r.key_for_seq(seq)),
            _ => Some(pin),
        }
    }

    /// The key `origin` signed with at time `at` (statements without a
    /// sequence number: hit and delivery reports).
    pub fn key_at(&self, origin: &str, at: i64) -> Option<VerifyingKey> {
        let pin = self.pin_of(origin)?;
        match self.store.ring(origin) {
            Some(r) if r.holds(&pin) => Some(r.key_at(at)),
            _ => Some(pin),
        }
    }

    /// This node's own rotation statements, oldest first: what each
    /// `Hello` carries (none after an operator replaced the key).
    pub fn own_rotations(&self) -> Vec<Rotation> {
        self.ring_of(self.me())
            .map_or_else(Vec::new, |r| r.statements().to_vec())
    }

    /// Records the rotations a member's `Hello` proved (the session
    /// checked them against the key it trusted), then flushes.
    pub fn accept_hello_rotations(
        &self,
        peer: &str,
        statements: &[Rotation],
        now: i64,
    ) -> Result<(), AcceptRotationError> {
        for r in statements {
            self.accept_rotation(peer, r, now)?;
        }
        self.store.flush()?;
        Ok(())
    }

    /// The keys a report of `origin` timed `at` may be signed with (see
    /// [`KeyRing::keys_near`]); none for this node itself.
    pub fn report_keys(&self, origin: &str, at: i64) -> Vec<VerifyingKey> {
        if origin == self.me() {
            return Vec::new();
        }
        let Some(pin) = self.pin_of(origin) else {
            return Vec::new();
        };
        match self.store.ring(origin) {
            Some(r) if r.holds(&pin) => r.keys_near(at, REPORT_GRACE),
            _ => vec![pin],
        }
    }

    /// Every key of `origin`, oldest first.
    pub fn keys_of(&self, origin: &str) -> Vec<VerifyingKey> {
        self.ring_of(origin).map_or_else(Vec::new, |r| {
            r.keys()
                .filter_map(|k| VerifyingKey::from_bytes(&k).ok())
                .collect()
        })
    }

    /// For a notice whose signature does not verify with the key of its
    /// sequence number: the refusal reason when a key its origin retired
    /// before that number signed it (equivocation: the old key signs
    /// nothing after its rotation).
    pub fn retired_signer(&self, envelope: &Envelope) -> Option<String> {
        let body = crate::notice::Body::decode(&envelope.body).ok()?;
        let ring = self.ring_of(&body.origin)?;
        let found = ring.retired_before(body.seq).find_map(|r| {
            let old = VerifyingKey::from_bytes(&r.old_key).ok()?;
            crate::notice::verify_with(envelope, |_, _| Some(old))
                .ok()
                .map(|_| {
                    format!(
                        "equivocation: seq {} of `{}` is signed with the key it retired after seq {} (rotation at {})",
                        body.seq,
                        body.origin,
                        r.after_seq,
                        crate::time::rfc3339(r.at)
                    )
                })
        });
        found
    }

    /// Rotates this node's signing key to `new`: a statement signed by
    /// both keys enters the log (every member gets it, through relays
    /// too) and is flushed, then `new` signs everything from the next
    /// message on. `persist` runs before the statement is written and
    /// must make `new` durable (the key file), so a crash never leaves a
    /// recorded rotation without its key. Returns the statement's body.
    pub fn rotate_key(
        &self,
        new: SigningKey,
        actor: &str,
        now: i64,
        persist: impl FnOnce(&SigningKey) -> Result<(), RotateError>,
    ) -> Result<RotationBody, RotateError> {
        let old = self.signer();
        let me = self.me().to_string();
        let mut made = None;
        let new = Arc::new(new);
        persist(&new)?;
        self.store.rotate_own(
            now,
            |after_seq| -> Result<_, RotateError> {
                let body = RotationBody {
                    node: me.clone(),
                    old_key: old.verifying_key().to_bytes(),
                    new_key: new.verifying_key().to_bytes(),
                    after_seq,
                    at: now,
                };
                let statement = Rotation::sign(&old, &new, &body)?;
                // From the rotations still followed: none after an
                // operator replaced the key.
                let mut ring = self
                    .ring_of(&me)
                    .map_or_else(|| KeyRing::new(&me, old.verifying_key()), |r| (*r).clone());
                ring.extend(&statement)?;
                let audit = AuditDraft {
                    actor: actor.to_string(),
                    operation: Operation::Alter,
                    notice: Some(statement.id()),
                    peer: None,
                    justification: None,
                    decision: format!(
                        "signing key rotated: {} -> {} from seq {}",
                        format_public_key(&old.verifying_key()),
                        format_public_key(&new.verifying_key()),
                        after_seq + 1
                    ),
                };
                made = Some(body);
                Ok((ring, statement, vec![audit]))
            },
            || {
                *self.signing.write().unwrap_or_else(|p| p.into_inner()) = new.clone();
                // Contexts this node sealed under were signed by the old
                // key: new ones are signed by the new.
                self.senders
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            },
        )?;
        let body = made.ok_or_else(|| StoreError::Corrupt("rotation not built".into()))?;
        info!(
            key = %format_public_key(&new.verifying_key()),
            after_seq = body.after_seq,
            "signing key rotated"
        );
        Ok(body)
    }

    /// Follows a member's rotation statement, received from `peer` (in a
    /// `Hello` or a feed batch): it must verify and retire a key this node
    /// trusts for that node. Recorded with a processing-log entry; on a
    /// relay it also enters the log, so the members behind get it. The
    /// caller flushes. Returns whether it was new.
    pub fn accept_rotation(
        &self,
        peer: &str,
        statement: &Rotation,
        now: i64,
    ) -> Result<Extended, AcceptRotationError> {
        let stated = statement
            .peek()
            .map_err(|e| AcceptRotationError::Refused(e.to_string()))?;
        let node = stated.node.clone();
        if node == self.me() {
            // This node's own, coming back: known, or not ours.
            let known = self
                .store
                .ring(&node)
                .is_some_and(|r| r.statements().contains(statement));
            return if known {
                Ok(Extended::Known)
            } else {
                Err(AcceptRotationError::Refused(
                    "a rotation statement in this node's name that it did not make".into(),
                ))
            };
        }
        let Some(trusted) = self.ring_of(&node) else {
            return Err(AcceptRotationError::Refused(format!(
                "rotation statement of `{node}`, which is not a member"
            )));
        };
        // Rotations recorded before a pin that is ahead of them are
        // extended when the statement leads them to the pin, so no key
        // before it is lost; otherwise only the trusted ring is.
        let pin = self.pin_of(&node);
        let mut ring = match self.store.ring(&node) {
            Some(recorded) if *recorded != *trusted => {
                let mut r = (*recorded).clone();
                match (r.extend(statement), pin) {
                    (Ok(Extended::Added), Some(p)) if r.holds(&p) => (*recorded).clone(),
                    _ => (*trusted).clone(),
                }
            }
            _ => (*trusted).clone(),
        };
        match ring.extend(statement) {
            Ok(Extended::Known) => Ok(Extended::Known),
            Ok(Extended::Added) => {
                let body = stated;
                let old = VerifyingKey::from_bytes(&body.old_key).ok();
                let new = VerifyingKey::from_bytes(&body.new_key).ok();
                let (old, new) = match (old, new) {
                    (Some(o), Some(n)) => (format_public_key(&o), format_public_key(&n)),
                    _ => return Err(AcceptRotationError::Refused("bad key".into())),
                };
                let audit = AuditDraft {
                    actor: format!("member:{peer}"),
                    operation: Operation::Alter,
                    notice: Some(statement.id()),
                    peer: Some(peer.to_string()),
                    justification: None,
                    decision: format!(
                        "signing key of {node} rotated: {old} -> {new} from seq {}",
                        body.after_seq + 1
                    ),
                };
                let pass_on = self.config().relay.then_some(Some(peer));
                self.store
                    .record_ring(ring, statement, pass_on, &[audit], now)?;
                warn!(
                    member = %node,
                    peer = %peer,
                    key = %new,
                    after_seq = body.after_seq,
                    "a member rotated its signing key; update its signing_key in the config at leisure"
                );
                Ok(Extended::Added)
            }
            Err(e) => Err(AcceptRotationError::Refused(e.to_string())),
        }
    }

    /// Compares, at start, each member's pin and this node's own key with
    /// the rotations recorded: an own key file behind the recorded
    /// rotation refuses the start; a pin behind is reported (the node runs
    /// on the rotated key); a pin the recorded rotations never reach is an
    /// operator's replacement, which sets them aside (audited).
    pub fn check_pins(&self, now: i64) -> Result<Vec<PinCheck>, KeyCheckError> {
        let _ = now;
        let own = self.signer().verifying_key();
        if let Some(r) = self.store.ring(self.me()) {
            if r.holds(&own) && r.current() != own {
                return Err(KeyCheckError::OwnKeyBehind {
                    recorded: format_public_key(&r.current()),
                    configured: format_public_key(&own),
                });
            }
            if !r.holds(&own) {
                // The operator put a new key in the key file (a
                // compromised one replaced): this node's own rotations are
                // no longer followed, nor sent in its Hello.
                warn!(key = %format_public_key(&own), "the signing key file holds a key none of this node's recorded rotations lead to: an operator's replacement; those rotations are no longer followed");
            }
        }
        let mut found = Vec::new();
        for ring in self.store.rings() {
            let node = ring.node().to_string();
            if node == self.me() {
                continue;
            }
            let Some(pin) = self.pin_of(&node) else {
                continue;
            };
            if !ring.holds(&pin) {
                // Kept, not followed: the pin may be an operator's
                // replacement, or a key the member rotated to whose
                // statement has not come yet (it then extends them).
                warn!(member = %node, pinned = %format_public_key(&pin), "the pinned key is none the member's recorded rotations lead to (an operator's replacement, or a rotation not yet received): the pin alone is followed until they reach it");
                found.push(PinCheck::RotationsSetAside { member: node });
            } else if ring.current() != pin {
                let current = format_public_key(&ring.current());
                warn!(member = %node, pinned = %format_public_key(&pin), current = %current, "the config pins a key this member rotated away from: update its signing_key");
                found.push(PinCheck::ConfigBehind {
                    member: node,
                    current,
                });
            }
        }
        Ok(found)
    }
}
