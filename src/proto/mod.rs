//! The wire protocol without sockets: messages, length-prefixed framing
//! with the size bound checked before allocating, signed receipts, rate
//! limits ([`self`]), the feed cursors of sender and receiver ([`feed`]),
//! and the session state machine that owns the order of messages on a
//! link ([`session`]). Nothing here reads a clock or touches a socket:
//! the drivers in `net` (QUIC) and `testkit` (in memory) feed it events
//! and carry out its actions.

pub mod feed;
pub mod session;

pub use feed::{FeedReceiver, FeedSender};
pub use session::{Action, Event, Feed, Session, SessionParams};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::notice::{Envelope, Item};

/// ALPN protocol id of vigil over QUIC.
pub const ALPN: &[u8] = b"vigil/1";
/// Protocol version carried in `Hello`.
pub const PROTOCOL_VERSION: u16 = 4;
/// Domain separation for the proof that binds a TLS session to a
/// member's signing key.
pub const BIND_DOMAIN: &[u8] = b"vigil/bind/v1\0";
/// The label of the TLS keying-material exporter (RFC 5705, RFC 8446
/// section 7.5) whose output each side signs.
pub const BIND_LABEL: &[u8] = b"EXPORTER-vigil-bind-v1";
/// Largest frame accepted or sent.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Domain separation for receipts.
pub const RECEIPT_DOMAIN: &[u8] = b"vigil/receipt/v1\0";
/// Batches a sender may have unacknowledged on one feed.
pub const WINDOW: usize = 4;
/// Receipts a `Subscribe` carries again, at most: the window's, and the
/// one before them, which says where the first of them began.
pub const RECENT_RECEIPTS: usize = WINDOW + 1;
/// Log entries per batch, at most.
pub const BATCH_ENTRIES: usize = 256;
/// Envelope bytes per batch, leaving room for framing under `MAX_FRAME`.
pub const BATCH_BYTES: usize = MAX_FRAME - 64 * 1024;

/// One wire message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First frame each way on a feed stream. `proof` is the sender's
    /// signature binding this TLS session to its signing key
    /// ([`bind_message`]): a certificate from the federation CA proves only
    /// a name, the pinned signing key proves the member.
    Hello {
        node_id: String,
        version: u16,
        epoch: u64,
        #[serde(with = "serde_bytes")]
        proof: Vec<u8>,
        /// The sender's signing-key rotations, oldest first (at most
        /// [`crate::notice::rotation::MAX_ROTATIONS`]): a member whose pin
        /// is an older key follows them to the key that made `proof`.
        rotations: Vec<crate::notice::rotation::Rotation>,
    },
    /// Receiver → sender: its cursor into the sender's log, and the last
    /// receipts it signed for the sender's batches in that epoch (at most
    /// [`RECENT_RECEIPTS`], oldest first, consecutive batches, the first
    /// having begun after `receipts_from`), stored with the cursor: those
    /// lost with an earlier link still settle what they acknowledged.
    Subscribe {
        epoch: u64,
        after: u64,
        receipts_from: u64,
        receipts: Vec<SignedReceipt>,
    },
    /// Sender → receiver: entries after the cursor that the receiver may
    /// have; `through` is the last log seq the sender examined, so filtered
    /// entries still advance the cursor.
    Batch {
        through: u64,
        entries: Vec<(u64, Item)>,
    },
    /// Receiver → sender, after the batch is flushed.
    Receipt(SignedReceipt),
    /// Sender → receiver, after its Hello: the receiver's own notice with
    /// the highest seq the sender holds, signed by the receiver itself (so
    /// no member can make it skip numbers), so a node whose store was
    /// rebuilt continues its numbering instead of reusing seqs that its
    /// peers would refuse as equivocation.
    YourLast { envelope: Envelope },
    /// Node → member (on the node's follow stream, after its `Hello`): the
    /// signed head of the node's processing log, for the member to witness
    /// ([`crate::witness`]).
    WitnessHead(crate::witness::SignedHead),
    /// Member → node: the hashes of your entries from this one to the head
    /// you sent, please (the head it holds is at `from`).
    WitnessAsk { from: u64, to: u64 },
    /// Node → member: those hashes, in order (at most
    /// [`crate::witness::MAX_SEGMENT`] + 1).
    WitnessSegment { to: u64, hashes: Vec<[u8; 32]> },
    /// Member → node: its cosignature of the head.
    Cosigned(crate::witness::Cosignature),
    /// Member → node: the head does not extend the one it cosigned before.
    WitnessRefused { reason: String },
}

impl Message {
    /// Whether the message belongs to witnessing, which the link driver
    /// handles beside the feeds.
    pub fn is_witness(&self) -> bool {
        matches!(
            self,
            Message::WitnessHead(_)
                | Message::WitnessAsk { .. }
                | Message::WitnessSegment { .. }
                | Message::Cosigned(_)
                | Message::WitnessRefused { .. }
        )
    }
}

/// Protocol violations; each closes the stream with a reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    FrameTooLarge(usize),
    #[error("undecodable frame: {0}")]
    Garbage(String),
    #[error("unexpected message: {0}")]
    Unexpected(&'static str),
    #[error("receipt: {0}")]
    BadReceipt(String),
    #[error("rate limit exceeded: {0}")]
    RateLimited(&'static str),
    #[error("the peer did not prove the member's signing key: {0}")]
    NotProven(&'static str),
}

/// Application close codes of a link, so a refused or closed peer learns
/// why.
pub mod close {
    /// Normal shutdown.
    pub const SHUTDOWN: u32 = 0;
    /// The certificate's name is not a member with a direct link.
    pub const NOT_A_MEMBER: u32 = 1;
    /// The certificate does not match the member's pinned fingerprint.
    pub const PIN_MISMATCH: u32 = 2;
    /// A frame or message broke the protocol.
    pub const PROTOCOL: u32 = 3;
    /// A better connection to the same member replaced this one.
    pub const DUPLICATE: u32 = 4;
    /// The member exceeded its rate limit.
    pub const RATE_LIMITED: u32 = 5;
    /// A config reload removed the member or changed how it is reached or
    /// authenticated; a new connection is authorized under the new config.
    pub const RELOADED: u32 = 6;
    /// The peer did not prove it holds the member's pinned signing key for
    /// this TLS session (an impostor with a certificate for its name).
    pub const NOT_PROVEN: u32 = 7;
    /// The peer did not prove who it is in time.
    pub const TOO_SLOW: u32 = 8;
}

/// Reads the length prefix and refuses an oversize frame before any
/// allocation for its payload.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, ProtoError> {
    let n = u32::from_be_bytes(prefix) as usize;
    if n > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge(n));
    }
    Ok(n)
}

/// What a node signs to bind a TLS session to its signing key: the domain,
/// the session's exported keying material and the signer's id. The
/// exporter differs for every TLS session, so a proof cannot be replayed
/// on another connection.
pub fn bind_message(exported: &[u8; 32], signer: &str) -> Vec<u8> {
    let mut m = BIND_DOMAIN.to_vec();
    m.extend_from_slice(exported);
    m.extend_from_slice(signer.as_bytes());
    m
}

/// Encodes a message as one frame (u32 BE length + postcard).
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, ProtoError> {
    let mut out = vec![0u8; 4];
    postcard::to_io(msg, &mut out).map_err(|e| ProtoError::Garbage(e.to_string()))?;
    let n = out.len() - 4;
    if n > MAX_FRAME {
        return Err(ProtoError::FrameTooLarge(n));
    }
    out[..4].copy_from_slice(&(n as u32).to_be_bytes());
    Ok(out)
}

/// Decodes a frame's payload, refusing trailing bytes.
pub fn decode_payload(payload: &[u8]) -> Result<Message, ProtoError> {
    crate::notice::decode_exact(payload).map_err(|e| ProtoError::Garbage(e.to_string()))
}

/// What a receiver signs when it acknowledges a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub receiver: String,
    pub sender: String,
    pub epoch: u64,
    pub through: u64,
    pub rejected: Vec<(u64, String)>,
    pub at: i64,
}

/// A receipt: exact body bytes and the receiver's signature over them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedReceipt {
    /// Signs a receipt body with the receiver's key.
    pub fn sign(key: &SigningKey, body: &ReceiptBody) -> Result<SignedReceipt, ProtoError> {
        let bytes = postcard::to_allocvec(body)
            .map_err(|e| ProtoError::Garbage(format!("encoding a receipt: {e}")))?;
        let mut msg = RECEIPT_DOMAIN.to_vec();
        msg.extend_from_slice(&bytes);
        Ok(SignedReceipt {
            body: bytes,
            signature: key.sign(&msg).to_bytes().to_vec(),
        })
    }

    /// Verifies the signature with the receiver's pinned key and decodes.
    pub fn verify(&self, key: &VerifyingKey) -> Result<ReceiptBody, ProtoError> {
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| ProtoError::BadReceipt("signature length".into()))?;
        let mut msg = RECEIPT_DOMAIN.to_vec();
        msg.extend_from_slice(&self.body);
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| ProtoError::BadReceipt("signature does not verify".into()))?;
        postcard::from_bytes(&self.body).map_err(|e| ProtoError::BadReceipt(e.to_string()))
    }
}

/// Batch frames a member may send per second on its feed, and the burst.
/// A sender at the machine's limit (~27k notices/s in batches of 256) needs
/// about 110 frames/s.
pub const FRAME_RATE: (f64, f64) = (200.0, 400.0);
/// Feed entries a member may send per second, and the burst.
pub const ENTRY_RATE: (f64, f64) = (50_000.0, 100_000.0);

/// A token bucket for per-member rate limits. Time is passed in (seconds
/// from any fixed origin), so it is tested without clocks.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: f64,
}

impl TokenBucket {
    /// A full bucket refilling at `per_sec` up to `capacity`.
    pub fn new((per_sec, capacity): (f64, f64), now: f64) -> TokenBucket {
        TokenBucket {
            per_sec,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Takes `n` tokens if available; false means the limit is exceeded.
    pub fn take(&mut self, now: f64, n: f64) -> bool {
        let elapsed = (now - self.last).max(0.0);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let mut b = TokenBucket::new((10.0, 20.0), 0.0);
        assert!((0..20).all(|_| b.take(0.0, 1.0)), "the burst");
        assert!(!b.take(0.0, 1.0), "then nothing at the same instant");
        assert!(b.take(0.5, 5.0), "half a second refills five");
        assert!(!b.take(0.5, 1.0));
        assert!(
            b.take(100.0, 20.0) && !b.take(100.0, 1.0),
            "never beyond capacity"
        );
    }

    #[test]
    fn oversize_prefix_is_refused_before_allocation() {
        assert_eq!(frame_len((MAX_FRAME as u32).to_be_bytes()), Ok(MAX_FRAME));
        assert_eq!(
            frame_len((MAX_FRAME as u32 + 1).to_be_bytes()),
            Err(ProtoError::FrameTooLarge(MAX_FRAME + 1))
        );
    }

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let m = Message::Subscribe {
            epoch: 7,
            after: 42,
            receipts_from: 0,
            receipts: Vec::new(),
        };
        let f = encode_frame(&m).unwrap();
        let n = frame_len(f[..4].try_into().unwrap()).unwrap();
        assert_eq!(decode_payload(&f[4..4 + n]).unwrap(), m);
        assert!(decode_payload(&[0xff, 0xff, 0xff]).is_err());
        let mut extra = f[4..].to_vec();
        extra.push(0);
        assert!(decode_payload(&extra).is_err());
    }

    #[test]
    fn a_subscribe_with_five_full_receipts_fits_a_frame() {
        // The worst a follower sends again: five receipts of full batches,
        // every position refused with a reason of 300 bytes (the cut the
        // exchange applies to each reason it puts in a receipt).
        let k = SigningKey::from_bytes(&[7u8; 32]);
        let body = ReceiptBody {
            receiver: "b".repeat(63),
            sender: "a".repeat(63),
            epoch: u64::MAX,
            through: u64::MAX,
            rejected: (0..BATCH_ENTRIES as u64)
                .map(|s| (u64::MAX - s, "é".repeat(150)))
                .collect(),
            at: i64::MIN,
        };
        let r = SignedReceipt::sign(&k, &body).unwrap();
        let m = Message::Subscribe {
            epoch: u64::MAX,
            after: u64::MAX,
            receipts_from: u64::MAX,
            receipts: vec![r; RECENT_RECEIPTS],
        };
        let f = encode_frame(&m).unwrap();
        assert!(f.len() < MAX_FRAME / 2, "{} bytes", f.len());
    }

    #[test]
    fn receipt_signature_binds_the_body() {
        let k = SigningKey::from_bytes(&[7u8; 32]);
        let body = ReceiptBody {
            receiver: "b".into(),
            sender: "a".into(),
            epoch: 1,
            through: 9,
            rejected: vec![],
            at: 0,
        };
        let mut r = SignedReceipt::sign(&k, &body).unwrap();
        assert_eq!(r.verify(&k.verifying_key()).unwrap(), body);
        r.body[0] ^= 1;
        assert!(r.verify(&k.verifying_key()).is_err());
    }
}
