//! The cursor state of one feed: the sender's window of batches awaiting
//! a receipt, and the receiver's position in the sender's log.

use std::collections::VecDeque;

use super::{ProtoError, ReceiptBody, BATCH_ENTRIES, WINDOW};
use crate::notice::NoticeId;

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
        // A batch covers at most BATCH_ENTRIES positions of the sender's
        // log (the log is dense), so a claim beyond is a lie that would set
        // the cursor past entries never sent.
        let span_ok = through <= self.through.saturating_add(BATCH_ENTRIES as u64);
        if !span_ok || entries.len() > BATCH_ENTRIES {
            return Err(ProtoError::Unexpected(
                "batch claims more log positions than a batch may cover",
            ));
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
    use crate::notice::NoticeId;
    use crate::proto::ReceiptBody;

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

    #[test]
    fn a_batch_cannot_claim_more_positions_than_a_batch_covers() {
        let mut r = FeedReceiver::new(5, 10, 5);
        assert!(r.batch(u64::MAX, &none()).is_err());
        assert!(r.batch(10 + BATCH_ENTRIES as u64 + 1, &none()).is_err());
        assert!(r.batch(10 + BATCH_ENTRIES as u64, &none()).is_ok());
        let mut near_end = FeedReceiver::new(5, u64::MAX - 1, 5);
        assert!(near_end.batch(u64::MAX, &none()).is_ok());
        assert!(near_end.batch(u64::MAX, &none()).is_err());
    }
}
