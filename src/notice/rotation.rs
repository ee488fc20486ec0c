//! Signing-key rotation: a statement signed by both a node's old and new
//! key that hands its numbering over from one key to the next, and the
//! key ring each node keeps per origin so that every notice is verified
//! with the key that was in force for its sequence number.
//!
//! A member is who holds its pinned signing key; a rotation statement is
//! that holder saying "from my message `after_seq + 1` on, this other key
//! is me", countersigned by the new key so nobody can name a key they do
//! not hold. Notices up to `after_seq` stay verifiable with the old key;
//! one the old key signed with a later sequence number is equivocation.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{NoticeError, NoticeId};

/// Domain separation for rotation statements.
pub const ROTATION_DOMAIN: &[u8] = b"vigil/rotation/v1\0";

/// How many rotations of one node a ring (and a `Hello`) holds: decades of
/// yearly rotations. Beyond it a statement is refused, so a member cannot
/// grow another node's store or handshakes without bound.
pub const MAX_ROTATIONS: usize = 64;

/// What a rotation statement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationBody {
    /// The node whose key changes.
    pub node: String,
    /// The key retired: it signed this node's messages up to `after_seq`.
    pub old_key: [u8; 32],
    /// The key in force from `after_seq + 1` on.
    pub new_key: [u8; 32],
    /// The node's last sequence number signed with the old key.
    pub after_seq: u64,
    /// When the node rotated (Unix seconds; informative, and where no
    /// sequence number exists, the boundary in time).
    pub at: i64,
}

/// A rotation statement: the body and both keys' signatures over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub old_signature: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub new_signature: Vec<u8>,
}

impl Rotation {
    /// Signs `body` with the old and the new key (which must be the keys
    /// the body names).
    pub fn sign(
        old: &SigningKey,
        new: &SigningKey,
        body: &RotationBody,
    ) -> Result<Rotation, NoticeError> {
        if body.old_key != old.verifying_key().to_bytes()
            || body.new_key != new.verifying_key().to_bytes()
        {
            return Err(NoticeError::Malformed(
                "rotation statement: the keys signing are not the keys it names".into(),
            ));
        }
        let (bytes, old_signature) =
            super::sign_statement(old, ROTATION_DOMAIN, body, "rotation statement")?;
        let (_, new_signature) =
            super::sign_statement(new, ROTATION_DOMAIN, body, "rotation statement")?;
        Ok(Rotation {
            body: bytes,
            old_signature,
            new_signature,
        })
    }

    /// The statement's id: SHA-256 of its body (its log entry's id).
    pub fn id(&self) -> NoticeId {
        NoticeId::of_body(&self.body)
    }

    /// About how many bytes it takes encoded.
    pub fn approx_len(&self) -> usize {
        self.body.len() + self.old_signature.len() + self.new_signature.len() + 6
    }

    /// Decodes the body without checking anything.
    pub fn peek(&self) -> Result<RotationBody, NoticeError> {
        super::decode_exact(&self.body)
            .map_err(|e| NoticeError::Malformed(format!("rotation statement: {e}")))
    }

    /// Decodes the body and checks both signatures with the keys it names
    /// (strict, and neither key weak), and that the keys differ. Who may
    /// make it (that the old key is the node's) is the ring's question.
    pub fn verify(&self) -> Result<RotationBody, NoticeError> {
        let body = self.peek()?;
        if body.old_key == body.new_key {
            return Err(NoticeError::Malformed(
                "rotation statement: the new key is the old one".into(),
            ));
        }
        for (key, sig, which) in [
            (&body.old_key, &self.old_signature, "old"),
            (&body.new_key, &self.new_signature, "new"),
        ] {
            let k = VerifyingKey::from_bytes(key).map_err(|_| {
                NoticeError::Malformed(format!("rotation statement: the {which} key is not a key"))
            })?;
            if k.is_weak() {
                return Err(NoticeError::Malformed(format!(
                    "rotation statement: the {which} key is weak"
                )));
            }
            super::verify_statement(&k, ROTATION_DOMAIN, &self.body, sig)?;
        }
        Ok(body)
    }
}

/// Why a rotation statement does not extend a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("{0}")]
    Invalid(#[from] NoticeError),
    #[error("rotation statement for `{stated}`, not `{node}`")]
    WrongNode { node: String, stated: String },
    #[error("rotation statement of `{node}` retires a key this node does not hold for it")]
    Unlinked { node: String },
    #[error("rotation statement of `{node}` hands over after seq {after_seq}, before its previous rotation (after seq {previous})")]
    Backwards {
        node: String,
        after_seq: u64,
        previous: u64,
    },
    #[error("rotation statement of `{node}` names a key it already used")]
    Reused { node: String },
    #[error("`{node}` already rotated its key {MAX_ROTATIONS} times; more are refused")]
    TooMany { node: String },
}

/// What a statement did to a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extended {
    /// Already held: nothing changed.
    Known,
    /// A new key is in force from `after_seq + 1` on.
    Added,
}

/// One origin's keys in order, with the sequence numbers where each took
/// over: the pinned (or own) key is one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRing {
    node: String,
    /// The first key this ring knows.
    first: [u8; 32],
    /// Each rotation since, in order: `chain[i].old_key` is the key before
    /// it (`first` for the first), checked when added.
    chain: Vec<RotationBody>,
    /// The statements themselves, for passing on (same order).
    statements: Vec<Rotation>,
}

impl KeyRing {
    /// A ring holding only `key` (a pin, or this node's own key).
    pub fn new(node: &str, key: VerifyingKey) -> KeyRing {
        KeyRing {
            node: node.to_string(),
            first: key.to_bytes(),
            chain: Vec::new(),
            statements: Vec::new(),
        }
    }

    /// The node whose keys these are.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = [u8; 32]> + '_ {
        std::iter::once(self.first).chain(self.chain.iter().map(|r| r.new_key))
    }

    /// Whether `key` is one of the ring's keys.
    pub fn holds(&self, key: &VerifyingKey) -> bool {
        self.keys().any(|k| k == key.to_bytes())
    }

    /// The key in force now: the last one.
    pub fn current(&self) -> VerifyingKey {
        let k = self.chain.last().map_or(self.first, |r| r.new_key);
        // Every key in the ring was checked to be a key when added.
        VerifyingKey::from_bytes(&k).unwrap_or_else(|_| unreachable_key())
    }

    /// The rotations, oldest first.
    pub fn rotations(&self) -> &[RotationBody] {
        &self.chain
    }

    /// The statements, oldest first (what a `Hello` carries).
    pub fn statements(&self) -> &[Rotation] {
        &self.statements
    }

    /// The key that signed (or signs) the node's message `seq`.
    pub fn key_for_seq(&self, seq: u64) -> VerifyingKey {
        let mut key = self.first;
        for r in &self.chain {
            if seq <= r.after_seq {
                break;
            }
            key = r.new_key;
        }
        VerifyingKey::from_bytes(&key).unwrap_or_else(|_| unreachable_key())
    }

    /// The key in force at time `at` (for statements without a sequence
    /// number, such as hit reports).
    pub fn key_at(&self, at: i64) -> VerifyingKey {
        let mut key = self.first;
        for r in &self.chain {
            if at < r.at {
                break;
            }
            key = r.new_key;
        }
        VerifyingKey::from_bytes(&key).unwrap_or_else(|_| unreachable_key())
    }

    /// Every key in force at some time within `grace` seconds of `at`: a
    /// statement without a sequence number (a hit or delivery report)
    /// signed just before a rotation may carry the rotation's second or a
    /// later one, so its time alone cannot say which key signed it.
    pub fn keys_near(&self, at: i64, grace: i64) -> Vec<VerifyingKey> {
        let mut out = Vec::new();
        let mut start = i64::MIN;
        let mut key = self.first;
        for r in &self.chain {
            if start <= at.saturating_add(grace) && r.at > at.saturating_sub(grace) {
                out.extend(VerifyingKey::from_bytes(&key).ok());
            }
            start = r.at;
            key = r.new_key;
        }
        if start <= at.saturating_add(grace) {
            out.extend(VerifyingKey::from_bytes(&key).ok());
        }
        out
    }

    /// The rotation that retired a key signing message `seq` if that key
    /// is not the one for `seq`: how a message signed by a retired key
    /// after its rotation (equivocation) is told from a forgery.
    pub fn retired_before(&self, seq: u64) -> impl Iterator<Item = &RotationBody> {
        self.chain.iter().filter(move |r| r.after_seq < seq)
    }

    /// Verifies `r` and adds it: at the end when it retires the current
    /// key, or at the front when its new key is the ring's first (a ring
    /// started from a pin the operator already updated learns the keys
    /// before it). A statement already held changes nothing.
    pub fn extend(&mut self, r: &Rotation) -> Result<Extended, RotationError> {
        let body = r.verify()?;
        if body.node != self.node {
            return Err(RotationError::WrongNode {
                node: self.node.clone(),
                stated: body.node,
            });
        }
        if self.chain.contains(&body) {
            return Ok(Extended::Known);
        }
        if self.chain.len() >= MAX_ROTATIONS {
            return Err(RotationError::TooMany {
                node: self.node.clone(),
            });
        }
        let current = self.chain.last().map_or(self.first, |r| r.new_key);
        if body.old_key == current {
            if let Some(last) = self.chain.last() {
                if body.after_seq < last.after_seq {
                    return Err(RotationError::Backwards {
                        node: self.node.clone(),
                        after_seq: body.after_seq,
                        previous: last.after_seq,
                    });
                }
            }
            if self.keys().any(|k| k == body.new_key) {
                return Err(RotationError::Reused {
                    node: self.node.clone(),
                });
            }
            self.chain.push(body);
            self.statements.push(r.clone());
            return Ok(Extended::Added);
        }
        if body.new_key == self.first {
            if let Some(next) = self.chain.first() {
                if body.after_seq > next.after_seq {
                    return Err(RotationError::Backwards {
                        node: self.node.clone(),
                        after_seq: next.after_seq,
                        previous: body.after_seq,
                    });
                }
            }
            if self.keys().any(|k| k == body.old_key) {
                return Err(RotationError::Reused {
                    node: self.node.clone(),
                });
            }
            self.first = body.old_key;
            self.chain.insert(0, body);
            self.statements.insert(0, r.clone());
            return Ok(Extended::Added);
        }
        Err(RotationError::Unlinked {
            node: self.node.clone(),
        })
    }

    /// Adds every statement of `statements` (a node's chain as it sends
    /// it, in any order) that links to this ring, repeating until none
    /// more does; a statement that never links is refused. Returns the
    /// statements that were new.
    pub fn extend_all(&mut self, statements: &[Rotation]) -> Result<Vec<Rotation>, RotationError> {
        if statements.len() > MAX_ROTATIONS {
            return Err(RotationError::TooMany {
                node: self.node.clone(),
            });
        }
        let mut left: Vec<&Rotation> = statements.iter().collect();
        let mut added = Vec::new();
        let mut forward = true;
        while !left.is_empty() {
            let before = left.len();
            let mut rest = Vec::new();
            // Alternate directions: a chain sent oldest first links
            // forward from an old key in one pass and backward from the
            // current key in one pass.
            if !forward {
                left.reverse();
            }
            forward = !forward;
            for r in left {
                if self.statements.contains(r) {
                    continue;
                }
                match self.extend(r) {
                    Ok(Extended::Added) => added.push(r.clone()),
                    Ok(Extended::Known) => {}
                    Err(RotationError::Unlinked { .. }) => rest.push(r),
                    Err(e) => return Err(e),
                }
            }
            if rest.len() == before {
                return Err(RotationError::Unlinked {
                    node: self.node.clone(),
                });
            }
            left = rest;
        }
        Ok(added)
    }

    /// A ring from recorded statements, starting at the first one's old
    /// key; `None` if they do not form one chain.
    pub fn from_statements(node: &str, statements: &[Rotation]) -> Option<KeyRing> {
        let first = statements.first()?.peek().ok()?;
        let mut ring = KeyRing::new(node, VerifyingKey::from_bytes(&first.old_key).ok()?);
        for s in statements {
            if ring.extend(s).ok()? != Extended::Added {
                return None;
            }
        }
        Some(ring)
    }
}

/// Never reached: ring keys are decoded when added. A panic here would be
/// a bug in this module, not bad input.
fn unreachable_key() -> VerifyingKey {
    unreachable!("a key ring holds only keys that decode")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn rotation(old: u8, new: u8, after_seq: u64, at: i64) -> Rotation {
        let body = RotationBody {
            node: "alpha".into(),
            old_key: key(old).verifying_key().to_bytes(),
            new_key: key(new).verifying_key().to_bytes(),
            after_seq,
            at,
        };
        Rotation::sign(&key(old), &key(new), &body).unwrap()
    }

    #[test]
    fn each_sequence_number_has_the_key_in_force_when_it_was_signed() {
        let mut ring = KeyRing::new("alpha", key(1).verifying_key());
        assert_eq!(
            ring.extend(&rotation(1, 2, 10, 100)).unwrap(),
            Extended::Added
        );
        assert_eq!(
            ring.extend(&rotation(2, 3, 25, 200)).unwrap(),
            Extended::Added
        );
        assert_eq!(
            ring.extend(&rotation(2, 3, 25, 200)).unwrap(),
            Extended::Known
        );
        for (seq, k) in [(1, 1), (10, 1), (11, 2), (25, 2), (26, 3), (u64::MAX, 3)] {
            assert_eq!(ring.key_for_seq(seq), key(k).verifying_key(), "seq {seq}");
        }
        for (at, k) in [(0, 1), (99, 1), (100, 2), (199, 2), (200, 3)] {
            assert_eq!(ring.key_at(at), key(k).verifying_key(), "at {at}");
        }
        assert_eq!(ring.current(), key(3).verifying_key());
        assert_eq!(ring.retired_before(11).count(), 1);
        assert_eq!(ring.retired_before(10).count(), 0);
        let again = KeyRing::from_statements("alpha", ring.statements()).unwrap();
        assert_eq!(again, ring);
    }

    #[test]
    fn only_the_holder_of_the_current_key_can_rotate_it() {
        let mut ring = KeyRing::new("alpha", key(1).verifying_key());
        // Someone holding another key cannot hand alpha's numbering over.
        assert!(matches!(
            ring.extend(&rotation(7, 8, 10, 100)),
            Err(RotationError::Unlinked { .. })
        ));
        // Both signatures are needed: the new key must not be named by
        // someone who does not hold it.
        let mut r = rotation(1, 2, 10, 100);
        r.new_signature = rotation(1, 3, 10, 100).new_signature;
        assert!(matches!(ring.extend(&r), Err(RotationError::Invalid(_))));
        let mut r = rotation(1, 2, 10, 100);
        r.old_signature[0] ^= 1;
        assert!(matches!(ring.extend(&r), Err(RotationError::Invalid(_))));
        // Another node's statement.
        let body = RotationBody {
            node: "bravo".into(),
            old_key: key(1).verifying_key().to_bytes(),
            new_key: key(2).verifying_key().to_bytes(),
            after_seq: 1,
            at: 1,
        };
        let r = Rotation::sign(&key(1), &key(2), &body).unwrap();
        assert!(matches!(
            ring.extend(&r),
            Err(RotationError::WrongNode { .. })
        ));
        // Numbering never goes back, and a key is never used twice.
        ring.extend(&rotation(1, 2, 10, 100)).unwrap();
        assert!(matches!(
            ring.extend(&rotation(2, 3, 9, 100)),
            Err(RotationError::Backwards { .. })
        ));
        assert!(matches!(
            ring.extend(&rotation(2, 1, 20, 100)),
            Err(RotationError::Reused { .. })
        ));
        assert_eq!(ring.current(), key(2).verifying_key());
    }

    #[test]
    fn a_ring_started_from_an_updated_pin_learns_the_keys_before_it() {
        // The operator already pinned key 3; the statements arrive oldest
        // first or newest first, and old notices verify either way.
        let mut ring = KeyRing::new("alpha", key(3).verifying_key());
        assert_eq!(
            ring.extend(&rotation(2, 3, 25, 200)).unwrap(),
            Extended::Added
        );
        assert_eq!(
            ring.extend(&rotation(1, 2, 10, 100)).unwrap(),
            Extended::Added
        );
        assert_eq!(ring.key_for_seq(5), key(1).verifying_key());
        assert_eq!(ring.key_for_seq(20), key(2).verifying_key());
        assert_eq!(ring.current(), key(3).verifying_key());
        // A statement whose hand-over comes after the next one's.
        let mut ring = KeyRing::new("alpha", key(3).verifying_key());
        ring.extend(&rotation(2, 3, 25, 200)).unwrap();
        assert!(matches!(
            ring.extend(&rotation(1, 2, 30, 100)),
            Err(RotationError::Backwards { .. })
        ));
    }

    #[test]
    fn a_chain_sent_whole_extends_a_ring_from_any_key_in_it() {
        let chain = [rotation(1, 2, 10, 100), rotation(2, 3, 25, 200)];
        for pin in [1, 2, 3] {
            let mut ring = KeyRing::new("alpha", key(pin).verifying_key());
            let mut reversed = chain.to_vec();
            reversed.reverse();
            let added = ring.extend_all(&reversed).unwrap();
            assert_eq!(added.len(), 2, "pin {pin}");
            assert_eq!(ring.current(), key(3).verifying_key());
            assert_eq!(ring.key_for_seq(1), key(1).verifying_key());
            assert!(ring.extend_all(&chain).unwrap().is_empty());
        }
        // A chain that never reaches the pinned key proves nothing.
        let mut ring = KeyRing::new("alpha", key(9).verifying_key());
        assert!(matches!(
            ring.extend_all(&chain),
            Err(RotationError::Unlinked { .. })
        ));
        assert_eq!(ring.current(), key(9).verifying_key());
    }

    #[test]
    fn a_ring_holds_a_bounded_number_of_rotations() {
        let mut ring = KeyRing::new("alpha", key(1).verifying_key());
        for i in 0..MAX_ROTATIONS as u8 {
            ring.extend(&rotation(i + 1, i + 2, u64::from(i), 0))
                .unwrap();
        }
        let n = MAX_ROTATIONS as u8;
        assert!(matches!(
            ring.extend(&rotation(n + 1, n + 2, 1000, 0)),
            Err(RotationError::TooMany { .. })
        ));
    }
}
