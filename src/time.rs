//! Time helpers. Every timestamp inside vigil is whole seconds since the Unix
//! epoch (UTC); RFC 3339 is only the operator-facing rendering.

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;

/// Seconds in one day, for retention arithmetic.
pub const DAY: i64 = 86_400;

/// The current wall-clock time in Unix seconds.
pub fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Renders Unix seconds as RFC 3339 (UTC), the operator JSON format.
pub fn rfc3339(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ts.to_string())
}

/// Parses an RFC 3339 timestamp into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}
