//! Which refused connections get a processing-log entry and a log line of
//! their own, and the summary of those that do not.
//!
//! Why: anyone who can send UDP can make the node refuse connections, and
//! each refusal recorded in full costs processing log (kept for years) and
//! log lines. Per source address, the first [`PER_SOURCE`] refusals of a
//! [`WINDOW_SECS`] window are recorded in full; the rest are counted, and
//! when the window ends one summary entry says how many were suppressed
//! and from where. Memory is bounded too: at most [`MAX_SOURCES`] sources
//! are tracked per window; refusals from further sources are only counted.
//!
//! Pure logic: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;

/// The length of a counting window, in seconds.
pub const WINDOW_SECS: i64 = 60;
/// Refusals recorded in full per source and window.
pub const PER_SOURCE: u32 = 5;
/// Sources tracked per window.
pub const MAX_SOURCES: usize = 1024;
/// Sources named in a summary (those with the most suppressed).
pub const SUMMARY_SOURCES: usize = 5;

/// Whether one refusal is recorded in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Record,
    Suppress,
}

/// What a window suppressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Start of the window (Unix seconds).
    pub from: i64,
    /// Refusals counted but not recorded.
    pub suppressed: u64,
    /// Sources they came from (untracked sources count as one).
    pub sources: usize,
    /// The sources with the most suppressed refusals.
    pub top: Vec<(IpAddr, u64)>,
}

impl Summary {
    /// The summary as one processing-log decision (bounded length).
    pub fn decision(&self) -> String {
        let top: Vec<String> = self.top.iter().map(|(ip, n)| format!("{ip} {n}")).collect();
        format!(
            "{} refused connections not recorded one by one since {} ({} sources; most: {})",
            self.suppressed,
            crate::time::rfc3339(self.from),
            self.sources,
            top.join(", ")
        )
    }
}

/// The counters of the current window.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Start of the current window; `None` before the first refusal.
    from: Option<i64>,
    /// Per tracked source: (recorded, suppressed).
    sources: HashMap<IpAddr, (u32, u64)>,
    /// Suppressed refusals from sources beyond [`MAX_SOURCES`].
    untracked: u64,
}

impl Refusals {
    /// Ends the window if it is over: its summary, if it suppressed any.
    pub fn roll(&mut self, now: i64) -> Option<Summary> {
        let from = self.from?;
        if now < from.saturating_add(WINDOW_SECS) {
            return None;
        }
        let mut suppressed: Vec<(IpAddr, u64)> = self
            .sources
            .drain()
            .filter(|(_, (_, s))| *s > 0)
            .map(|(ip, (_, s))| (ip, s))
            .collect();
        let untracked = std::mem::take(&mut self.untracked);
        self.from = None;
        let total = suppressed.iter().map(|(_, s)| s).sum::<u64>() + untracked;
        if total == 0 {
            return None;
        }
        suppressed.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let sources = suppressed.len() + usize::from(untracked > 0);
        suppressed.truncate(SUMMARY_SOURCES);
        Some(Summary {
            from,
            suppressed: total,
            sources,
            top: suppressed,
        })
    }

    /// Counts one refusal from `ip`; returns whether to record it in full
    /// and the summary of the window it closed, if any.
    pub fn note(&mut self, ip: IpAddr, now: i64) -> (Verdict, Option<Summary>) {
        let summary = self.roll(now);
        self.from.get_or_insert(now);
        let tracked = self.sources.len() < MAX_SOURCES || self.sources.contains_key(&ip);
        if !tracked {
            self.untracked += 1;
            return (Verdict::Suppress, summary);
        }
        let (recorded, suppressed) = self.sources.entry(ip).or_default();
        if *recorded < PER_SOURCE {
            *recorded += 1;
            (Verdict::Record, summary)
        } else {
            *suppressed += 1;
            (Verdict::Suppress, summary)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn a_flood_from_one_source_is_recorded_five_times_then_summarised() {
        let mut r = Refusals::default();
        let verdicts: Vec<_> = (0..5000).map(|i| r.note(ip(7), 100 + i / 100).0).collect();
        let recorded = verdicts.iter().filter(|v| **v == Verdict::Record).count();
        assert_eq!(recorded, PER_SOURCE as usize);
        assert_eq!(r.roll(159), None, "window still open");
        let s = r.roll(160).expect("summary when the window ends");
        assert_eq!(s.suppressed, 5000 - 5);
        assert_eq!(s.sources, 1);
        assert_eq!(s.top, vec![(ip(7), 4995)]);
        assert!(s.decision().contains("4995 refused connections"));
        // A new window records again.
        assert_eq!(r.note(ip(7), 200).0, Verdict::Record);
        // A window that suppressed nothing has no summary.
        assert_eq!(r.roll(400), None);
    }

    proptest! {
        /// Whatever the sources and times: full records are at most
        /// PER_SOURCE per tracked source and window, every refusal is
        /// either recorded or counted in a summary, and memory stays bounded.
        #[test]
        fn every_refusal_is_recorded_or_counted(
            events in proptest::collection::vec((0u32..3000, 0i64..5), 1..4000)
        ) {
            let mut r = Refusals::default();
            let (mut now, mut recorded, mut counted) = (0i64, 0u64, 0u64);
            for (src, dt) in &events {
                now += dt;
                let (v, s) = r.note(ip(*src), now);
                if v == Verdict::Record { recorded += 1; }
                if let Some(s) = s {
                    counted += s.suppressed;
                    prop_assert!(s.top.len() <= SUMMARY_SOURCES);
                }
                prop_assert!(r.sources.len() <= MAX_SOURCES);
            }
            if let Some(s) = r.roll(i64::MAX) { counted += s.suppressed; }
            prop_assert_eq!(recorded + counted, events.len() as u64);
        }
    }
}
