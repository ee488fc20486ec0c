//! The wire protocol (DESIGN.md §6) without sockets: messages, length-prefixed
//! framing with the size bound checked before allocating, signed receipts,
//! and the per-link feed state kept by sender and receiver.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use crate::notice::{Item, NoticeId};

/// ALPN protocol id of vigil over QUIC.
pub const ALPN: &[u8] = b"vigil/1";
/// Protocol version carried in `Hello`.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest frame accepted or sent.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Domain separation for receipts.
pub const RECEIPT_DOMAIN: &[u8] = b"vigil/receipt/v1\0";
/// Batches a sender may have unacknowledged on one feed.
pub const WINDOW: usize = 4;
/// Log entries per batch, at most.
pub const BATCH_ENTRIES: usize = 256;
/// Envelope bytes per batch, leaving room for framing under `MAX_FRAME`.
pub const BATCH_BYTES: usize = MAX_FRAME - 64 * 1024;

/// One wire message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First frame each way on a feed stream.
    Hello {
        node_id: String,
        version: u16,
        epoch: u64,
    },
    /// Receiver → sender: its cursor into the sender's log.
    Subscribe { epoch: u64, after: u64 },
    /// Sender → receiver: entries after the cursor that the receiver may
    /// have; `through` is the last log seq the sender examined, so filtered
    /// entries still advance the cursor.
    Batch {
        through: u64,
        entries: Vec<(u64, Item)>,
    },
    /// Receiver → sender, after the batch is flushed.
    Receipt(SignedReceipt),
    /// Sender → receiver, after its Hello: the highest seq (and its id) of
    /// the receiver's own notices that the sender holds, so a node whose
    /// store was rebuilt continues its numbering instead of reusing seqs
    /// that its peers would refuse as equivocation.
    YourLast { seq: u64, id: NoticeId },
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

/// Sender side of one feed: where the stream stands and which batches await
/// a receipt. Bounded by [`WINDOW`].
#[derive(Debug)]
pub struct FeedSender {
    epoch: u64,
    next_after: u64,
    /// Each batch in flight: its `through` and the (log seq, notice id) of
    /// the entries it carried, so a receipt can say what was delivered.
    in_flight: VecDeque<(u64, Vec<(u64, NoticeId)>)>,
}

impl FeedSender {
    /// Starts a feed for a `Subscribe{epoch, after}`: a cursor into another
    /// epoch of this store restarts at 0.
    pub fn new(local_epoch: u64, sub_epoch: u64, after: u64) -> FeedSender {
        FeedSender {
            epoch: local_epoch,
            next_after: if sub_epoch == local_epoch { after } else { 0 },
            in_flight: VecDeque::new(),
        }
    }

    /// The log position after which the next batch starts.
    pub fn after(&self) -> u64 {
        self.next_after
    }

    /// True while another batch may be sent without exceeding the window.
    pub fn can_send(&self) -> bool {
        self.in_flight.len() < WINDOW
    }

    /// Records a sent batch that examined the log through `through`.
    pub fn sent(&mut self, through: u64, carried: Vec<(u64, NoticeId)>) {
        self.next_after = through;
        self.in_flight.push_back((through, carried));
    }

    /// Checks a receipt: it must acknowledge the oldest batch in flight, in
    /// this epoch. Returns the entries that batch carried.
    pub fn receipt(&mut self, r: &ReceiptBody) -> Result<Vec<(u64, NoticeId)>, ProtoError> {
        if r.epoch != self.epoch {
            return Err(ProtoError::BadReceipt(format!(
                "epoch {} is not ours",
                r.epoch
            )));
        }
        match self.in_flight.front() {
            Some((t, _)) if *t == r.through => Ok(self
                .in_flight
                .pop_front()
                .map(|(_, c)| c)
                .unwrap_or_default()),
            Some((t, _)) => Err(ProtoError::BadReceipt(format!(
                "acknowledges {} but {t} is the oldest batch in flight",
                r.through
            ))),
            None => Err(ProtoError::BadReceipt("no batch in flight".into())),
        }
    }
}

/// Receiver side of one feed: the sender's epoch and the cursor.
#[derive(Debug)]
pub struct FeedReceiver {
    epoch: u64,
    through: u64,
}

impl FeedReceiver {
    /// Resumes from the stored cursor; the sender's `Hello` epoch decides
    /// whether it still applies.
    pub fn new(stored_epoch: u64, stored_through: u64, sender_epoch: u64) -> FeedReceiver {
        FeedReceiver {
            epoch: sender_epoch,
            through: if stored_epoch == sender_epoch {
                stored_through
            } else {
                0
            },
        }
    }

    /// The epoch the cursor refers to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Checks a batch: it must move forward and its entries must lie within
    /// (cursor, through], ascending. Advances the cursor.
    pub fn batch<T>(&mut self, through: u64, entries: &[(u64, T)]) -> Result<(), ProtoError> {
        if through <= self.through {
            return Err(ProtoError::Unexpected("batch does not advance the cursor"));
        }
        let mut last = self.through;
        for (seq, _) in entries {
            if *seq <= last || *seq > through {
                return Err(ProtoError::Unexpected(
                    "batch entries out of order or range",
                ));
            }
            last = *seq;
        }
        self.through = through;
        Ok(())
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

    #[test]
    fn sender_window_and_receipt_order() {
        let mut s = FeedSender::new(5, 5, 10);
        assert_eq!(s.after(), 10);
        for t in [20, 30, 40, 50] {
            assert!(s.can_send());
            s.sent(t, vec![(t, NoticeId([t as u8; 32]))]);
        }
        assert!(!s.can_send());
        let r = |through| ReceiptBody {
            receiver: "b".into(),
            sender: "a".into(),
            epoch: 5,
            through,
            rejected: vec![],
            at: 0,
        };
        assert!(s.receipt(&r(30)).is_err(), "out-of-order receipt");
        assert_eq!(s.receipt(&r(20)), Ok(vec![(20, NoticeId([20; 32]))]));
        assert!(s.can_send());
    }

    fn receipt(epoch: u64, through: u64) -> ReceiptBody {
        ReceiptBody {
            receiver: "b".into(),
            sender: "a".into(),
            epoch,
            through,
            rejected: vec![],
            at: 0,
        }
    }

    fn none() -> [(u64, ()); 0] {
        []
    }

    #[test]
    fn epoch_change_restarts_from_zero() {
        // The sender's store was rebuilt (epoch 4 -> 5): a cursor into the
        // old epoch means nothing, both sides restart from 0.
        assert_eq!(FeedSender::new(5, 4, 10).after(), 0);
        let mut r = FeedReceiver::new(4, 10, 5);
        assert_eq!(r.epoch(), 5);
        assert!(r.batch(3, &none()).is_ok());
        // A receipt for the old epoch is refused.
        let mut s = FeedSender::new(5, 4, 10);
        s.sent(3, vec![]);
        assert!(s.receipt(&receipt(4, 3)).is_err());
        assert!(s.receipt(&receipt(5, 3)).is_ok());
    }

    #[test]
    fn reconnect_mid_batch_resends_from_the_stored_cursor() {
        let mut s = FeedSender::new(7, 7, 0);
        s.sent(20, vec![(20, NoticeId([20; 32]))]);
        s.sent(30, vec![(30, NoticeId([30; 32]))]);
        let mut r = FeedReceiver::new(0, 0, 7);
        r.batch(20, &[(20, ())]).unwrap();
        // The connection drops while batch 30 is on the wire: the receiver
        // stored through 20 only, and subscribes again from there.
        let s2 = FeedSender::new(7, 7, 20);
        assert_eq!(s2.after(), 20);
        let mut r2 = FeedReceiver::new(7, 20, 7);
        r2.batch(30, &[(25, ()), (30, ())]).unwrap();
        drop(s);
    }

    #[test]
    fn a_lost_receipt_costs_nothing_on_reconnect() {
        // The receiver stored and flushed through 30, but its receipt never
        // arrived: the sender's in-flight batch dies with the connection and
        // the next subscription starts after 30, so nothing is sent twice.
        let mut s = FeedSender::new(7, 7, 0);
        s.sent(30, vec![]);
        let resumed = FeedSender::new(7, 7, 30);
        assert_eq!(resumed.after(), 30);
        assert!(
            s.receipt(&receipt(7, 31)).is_err(),
            "a receipt for a batch never sent"
        );
    }

    #[test]
    fn duplicate_or_backward_batches_are_protocol_errors() {
        let mut r = FeedReceiver::new(7, 0, 7);
        r.batch(30, &[(10, ()), (30, ())]).unwrap();
        assert!(r.batch(30, &[(30, ())]).is_err(), "same batch twice");
        assert!(r.batch(20, &none()).is_err(), "going backward");
        assert!(
            r.batch(40, &[(35, ()), (35, ())]).is_err(),
            "entries not ascending"
        );
        assert!(r.batch(40, &[(41, ())]).is_err(), "entry beyond through");
        assert!(
            r.batch(40, &[(30, ())]).is_err(),
            "entry at or below the cursor"
        );
        r.batch(40, &[(31, ()), (40, ())]).unwrap();
    }
}
