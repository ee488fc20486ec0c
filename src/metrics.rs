//! What `GET /metrics` reports, in the Prometheus text format
//! (`prometheus-client`), without a token and without personal data.
//!
//! Why: the on-call engineer watches a node next to everything else they
//! run, with the tools they already have. Counters here are counted where
//! the exchange decides (received, refused, sent, withheld, receipted);
//! everything else is read when scraped into a [`Snapshot`], so a scrape
//! costs no scan of the store. Labels name configured members, notice
//! states, event names and a small fixed set of reason classes
//! ([`reason_class`]), never a notice, a subject or a free-text reason:
//! the label sets stay bounded whatever peers send.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::store::NoticeState;

/// A member label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabel {
    member: String,
}

/// A member and the class of a decision's reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    member: String,
    reason: String,
}

/// One label `name = value` (state, event, outcome, certificate).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabel {
    certificate: String,
}

/// Delivery latency buckets, seconds: from a second (a member online) to a
/// day (a member that was down overnight). Times are whole seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    1.0, 2.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Most members whose last receipt time is kept (members are configured,
/// so this only bounds a config of absurd size).
const MAX_MEMBERS: usize = 4096;

/// The counters the exchange updates as it decides.
pub struct Metrics {
    /// Notices from each member stored here (new ones only).
    received: Family<MemberLabel, Counter>,
    /// Notices from each member refused here, by reason class.
    refused: Family<ReasonLabels, Counter>,
    /// Notices (or sealed parts) sent to each member.
    sent: Family<MemberLabel, Counter>,
    /// Notices outbound policy kept from each member, by reason class.
    withheld: Family<ReasonLabels, Counter>,
    /// From a batch going out to the member's receipt for it.
    latency: Family<MemberLabel, Histogram, fn() -> Histogram>,
    /// When each member's last receipt was recorded (this node's clock).
    last_receipt: Mutex<HashMap<String, i64>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            received: Family::default(),
            refused: Family::default(),
            sent: Family::default(),
            withheld: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            last_receipt: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn member(m: &str) -> MemberLabel {
    MemberLabel {
        member: m.to_string(),
    }
}

fn with_reason(m: &str, reason: &str) -> ReasonLabels {
    ReasonLabels {
        member: m.to_string(),
        reason: reason_class(reason).to_string(),
    }
}

impl Metrics {
    /// `n` new notices from `peer` stored.
    pub fn received(&self, peer: &str, n: usize) {
        if n > 0 {
            self.received.get_or_create(&member(peer)).inc_by(n as u64);
        }
    }

    /// A notice from `peer` refused for `reason`.
    pub fn refused(&self, peer: &str, reason: &str) {
        self.refused.get_or_create(&with_reason(peer, reason)).inc();
    }

    /// A notice (or its sealed part) sent to `to`.
    pub fn sent(&self, to: &str) {
        self.sent.get_or_create(&member(to)).inc();
    }

    /// A notice kept from `to` for `reason`.
    pub fn withheld(&self, to: &str, reason: &str) {
        self.withheld.get_or_create(&with_reason(to, reason)).inc();
    }

    /// `peer` receipted, at `now`, a notice sent at `sent_at`.
    pub fn delivered(&self, peer: &str, sent_at: i64, now: i64) {
        let secs = now.saturating_sub(sent_at).max(0) as f64;
        self.latency.get_or_create(&member(peer)).observe(secs);
    }

    /// `peer`'s receipt was recorded at `now`.
    pub fn receipt(&self, peer: &str, now: i64) {
        let mut last = self.last_receipt.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() < MAX_MEMBERS || last.contains_key(peer) {
            last.insert(peer.to_string(), now);
        }
    }

    /// When `peer`'s last receipt was recorded in this run.
    pub fn last_receipt(&self, peer: &str) -> Option<i64> {
        let last = self.last_receipt.lock().unwrap_or_else(|p| p.into_inner());
        last.get(peer).copied()
    }

    /// The text exposition of these counters and of `s`.
    pub fn render(&self, s: &Snapshot) -> String {
        let mut r = Registry::default();
        let held = Family::<StateLabel, Gauge>::default();
        for (state, n) in &s.by_state {
            held.get_or_create(&StateLabel {
                state: state.as_str().into(),
            })
            .set(*n as i64);
        }
        r.register("vigil_notices_held", "Notices held, by state", held);
        r.register(
            "vigil_notices_received",
            "Notices from each member stored here",
            self.received.clone(),
        );
        r.register(
            "vigil_notices_refused",
            "Notices from each member refused here, by reason class",
            self.refused.clone(),
        );
        r.register(
            "vigil_notices_sent",
            "Notices sent to each member (sealed parts included)",
            self.sent.clone(),
        );
        r.register(
            "vigil_notices_withheld",
            "Notices outbound policy kept from each member, by reason class",
            self.withheld.clone(),
        );
        let connected = Family::<MemberLabel, Gauge>::default();
        let backlog = Family::<MemberLabel, Gauge>::default();
        let since = Family::<MemberLabel, Gauge>::default();
        for m in &s.members {
            connected
                .get_or_create(&member(&m.id))
                .set(m.connected as i64);
            backlog.get_or_create(&member(&m.id)).set(clamp(m.backlog));
            if let Some(at) = m.last_receipt {
                since
                    .get_or_create(&member(&m.id))
                    .set(s.now.saturating_sub(at).max(0));
            }
        }
        r.register(
            "vigil_member_connected",
            "1 while the member's link is up",
            connected,
        );
        r.register(
            "vigil_member_backlog",
            "Entries of this node's log after the member's last receipt",
            backlog,
        );
        r.register_with_unit(
            "vigil_member_since_receipt",
            "Time since the member's last receipt (absent: none yet)",
            Unit::Seconds,
            since,
        );
        r.register_with_unit(
            "vigil_delivery_latency",
            "From a batch going out to the member's receipt for it, per notice",
            Unit::Seconds,
            self.latency.clone(),
        );
        let bytes = Gauge::<i64>::default();
        bytes.set(clamp(s.store_bytes));
        r.register_with_unit(
            "vigil_store_size",
            "Size of the store on disk",
            Unit::Bytes,
            bytes,
        );
        let audit = Gauge::<i64>::default();
        audit.set(clamp(s.audit_entries));
        r.register(
            "vigil_audit_entries",
            "Entries in the processing log",
            audit,
        );
        let events = Family::<EventLabel, Counter>::default();
        for (name, n) in &s.events {
            events
                .get_or_create(&EventLabel {
                    event: name.to_string(),
                })
                .inc_by(*n);
        }
        r.register(
            "vigil_events",
            "Events raised for the desk, by name",
            events,
        );
        let runs = Family::<OutcomeLabel, Counter>::default();
        for (outcome, n) in [
            ("delivered", s.hook_delivered),
            ("failed", s.hook_failed),
            ("dropped", s.hook_dropped),
        ] {
            runs.get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc_by(n);
        }
        r.register(
            "vigil_alerts",
            "Events handed to the alert hook, by outcome (dropped: the hook was behind)",
            runs,
        );
        let expiry = Family::<CertificateLabel, Gauge>::default();
        for (name, not_after) in &s.certificates {
            expiry
                .get_or_create(&CertificateLabel {
                    certificate: name.clone(),
                })
                .set(not_after.saturating_sub(s.now));
        }
        r.register_with_unit(
            "vigil_certificate_expiry",
            "Time until the certificate expires (negative: expired)",
            Unit::Seconds,
            expiry,
        );
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What a scrape reads from the node besides the counters.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The scrape's time (unix seconds).
    pub now: i64,
    /// Notices held in each state.
    pub by_state: Vec<(NoticeState, usize)>,
    /// Every configured member.
    pub members: Vec<MemberSnapshot>,
    /// The store's size on disk.
    pub store_bytes: u64,
    /// Entries in the processing log.
    pub audit_entries: u64,
    /// Events raised in this run, by name.
    pub events: Vec<(&'static str, u64)>,
    /// Alert hook runs that exited 0.
    pub hook_delivered: u64,
    /// Alert hook runs that failed or timed out.
    pub hook_failed: u64,
    /// Events not handed to the hook because it was behind.
    pub hook_dropped: u64,
    /// (certificate, not after in unix seconds).
    pub certificates: Vec<(String, i64)>,
}

/// One member's link as a scrape sees it.
#[derive(Debug)]
pub struct MemberSnapshot {
    pub id: String,
    pub connected: bool,
    /// This node's log entries after the member's last receipt.
    pub backlog: u64,
    /// When its last receipt was recorded, if any.
    pub last_receipt: Option<i64>,
}

/// The class of a refusal or withholding reason, from a fixed set: the
/// reasons themselves are free text that may name fields or members, and
/// would make the label set unbounded.
pub fn reason_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    const CLASSES: [(&str, &str); 17] = [
        ("equivocat", "equivocation"),
        ("signature", "signature"),
        ("not signed", "signature"),
        ("text field", "text"),
        ("mandatory", "mandatory_field"),
        ("expired", "expired"),
        ("expiry", "expired"),
        ("audience", "audience"),
        ("special categor", "special_categories"),
        ("adequate", "adequacy"),
        ("grading", "grading"),
        ("handling", "handling"),
        ("h2", "handling"),
        ("kind", "kind"),
        ("relay", "transit"),
        ("seal", "sealed"),
        ("hit report", "hit_report"),
    ];
    CLASSES
        .iter()
        .find(|(needle, _)| r.contains(needle))
        .map_or("other", |(_, class)| class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_a_fixed_set_of_classes() {
        for (reason, class) in [
            ("notice expired at 2026-01-01T00:00:00Z", "expired"),
            ("`bravo` is not in the notice's audience", "audience"),
            (
                "equivocation: origin seq 4 already holds another notice",
                "equivocation",
            ),
            ("kind `wanted` not sent to this member", "kind"),
            ("bad signature", "signature"),
            ("text field `family_name` has a control character", "text"),
            ("H2 notices go only to named members", "handling"),
            ("anything else at all, naming John Doe", "other"),
        ] {
            assert_eq!(reason_class(reason), class, "{reason}");
        }
    }

    #[test]
    fn a_render_names_every_metric_and_no_reason_text() {
        let m = Metrics::default();
        m.received("bravo", 3);
        m.refused("bravo", "text field `family_name` naming John Doe");
        m.sent("bravo");
        m.withheld("bravo", "kind `wanted` not sent");
        m.delivered("bravo", 100, 103);
        let s = Snapshot {
            now: 1000,
            by_state: NoticeState::ALL.iter().map(|s| (*s, 1)).collect(),
            members: vec![MemberSnapshot {
                id: "bravo".into(),
                connected: true,
                backlog: 2,
                last_receipt: Some(990),
            }],
            store_bytes: 4096,
            audit_entries: 12,
            events: vec![("hit_received", 1)],
            hook_delivered: 1,
            hook_failed: 0,
            hook_dropped: 0,
            certificates: vec![("node".into(), 1000 + 86400)],
        };
        let text = m.render(&s);
        for line in [
            "vigil_notices_held{state=\"transit\"} 1",
            "vigil_notices_received_total{member=\"bravo\"} 3",
            "vigil_notices_refused_total{member=\"bravo\",reason=\"text\"} 1",
            "vigil_notices_sent_total{member=\"bravo\"} 1",
            "vigil_notices_withheld_total{member=\"bravo\",reason=\"kind\"} 1",
            "vigil_member_connected{member=\"bravo\"} 1",
            "vigil_member_backlog{member=\"bravo\"} 2",
            "vigil_member_since_receipt_seconds{member=\"bravo\"} 10",
            "vigil_delivery_latency_seconds_count{member=\"bravo\"} 1",
            "vigil_store_size_bytes 4096",
            "vigil_audit_entries 12",
            "vigil_events_total{event=\"hit_received\"} 1",
            "vigil_alerts_total{outcome=\"delivered\"} 1",
            "vigil_certificate_expiry_seconds{certificate=\"node\"} 86400",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("Doe"), "{text}");
    }
}
