//! Which steps of the exchange raise which desk events ([`crate::events`]):
//! each is published once the step's write is done, so an event never
//! announces what was not recorded. (A receipt's write is flushed with the
//! next one; after a crash the receipt comes again and so may its event.)

use super::Exchange;
use crate::events::EventKind;
use crate::notice::hit::HitReport;
use crate::notice::{self, NoticeId};
use crate::store::{Accepted, Delivery};

impl Exchange {
    /// `notice_received` for each notice of a batch stored here (not those
    /// carried in transit), within `[alerts] notice_kinds` and
    /// `notice_handling`; `hit_received` for each hit report on one of
    /// this node's notices.
    pub(super) fn raise_received(
        &self,
        from: &str,
        accepted: &[Accepted],
        stored: &[NoticeId],
        hits: &[(HitReport, bool)],
        now: i64,
    ) {
        let cfg = self.config();
        for a in accepted {
            if a.carried.is_some() || !stored.contains(&a.id) {
                continue;
            }
            let Ok(body) = notice::Body::decode(&a.envelope.body) else {
                continue;
            };
            let alerts = &cfg.alerts;
            if alerts
                .notice_kinds
                .as_ref()
                .is_some_and(|k| !k.contains(&body.kind))
                || alerts
                    .notice_handling
                    .as_ref()
                    .is_some_and(|h| !h.contains(&body.handling))
            {
                continue;
            }
            self.events.publish(
                EventKind::NoticeReceived {
                    notice: a.id.to_string(),
                    origin: a.origin.clone(),
                    from: from.to_string(),
                    kind: body.kind.as_str().to_string(),
                    handling: format!("{:?}", body.handling),
                },
                now,
            );
        }
        for (h, forward) in hits {
            let Ok(body) = h.peek() else { continue };
            if *forward || body.origin != self.me() {
                continue;
            }
            self.events.publish(
                EventKind::HitReceived {
                    notice: body.notice.to_string(),
                    hit: hex::encode(h.id()),
                    reporter: body.reporter,
                    place: body.place,
                    matched: body.matched,
                    checked_at: crate::time::rfc3339(body.at),
                },
                now,
            );
        }
    }

    /// `delivery_rejected` for each refusal among recorded outcomes.
    pub(super) fn raise_rejected(&self, outcomes: &[(NoticeId, String, Delivery)], now: i64) {
        for (id, member, d) in outcomes {
            if let Delivery::Rejected { reason, .. } | Delivery::RelaysRefused { reason, .. } = d {
                self.events.publish(
                    EventKind::DeliveryRejected {
                        notice: id.to_string(),
                        member: member.clone(),
                        reason: reason.clone(),
                    },
                    now,
                );
            }
        }
    }
}
