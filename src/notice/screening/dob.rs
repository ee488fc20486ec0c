//! Dates of birth as real notices hold them: a full date, or only the year
//! and month, or only the year (`1980-04-01`, `1980-04`, `1980`). Two dates
//! agree when every part both of them hold is equal, so a notice that knows
//! only `1980` is found by a query for `1980-04-01`.

/// Earliest year of birth accepted: no one alive, wanted or missing was
/// born before it.
pub const MIN_YEAR: u16 = 1850;

/// A date of birth, possibly partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartialDate {
    pub year: u16,
    /// 1..=12, or `None` when only the year is known.
    pub month: Option<u8>,
    /// Day of the month, only with a month.
    pub day: Option<u8>,
}

/// Why a date of birth was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("`{0}` is not a date of birth YYYY-MM-DD, YYYY-MM or YYYY")]
    Format(String),
    #[error("`{0}` is not a day of the calendar")]
    NoSuchDay(String),
    #[error("`{0}` is before {MIN_YEAR}")]
    TooEarly(String),
    #[error("`{0}` is in the future")]
    Future(String),
}

fn digits(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

impl PartialDate {
    /// Parses `YYYY-MM-DD`, `YYYY-MM` or `YYYY` (surrounding white space
    /// ignored) and checks the day exists. Does not know today: see
    /// [`PartialDate::check_not_after`].
    pub fn parse(s: &str) -> Result<PartialDate, DateError> {
        let t = s.trim();
        let bad = || DateError::Format(t.to_string());
        let mut parts = t.split('-');
        let year = parts.next().and_then(|y| digits(y, 4)).ok_or_else(bad)?;
        let month = match parts.next() {
            None => None,
            Some(m) => Some(
                digits(m, 2)
                    .filter(|m| (1..=12).contains(m))
                    .ok_or_else(bad)?,
            ),
        };
        let day = match parts.next() {
            None => None,
            Some(d) => Some(digits(d, 2).filter(|d| *d >= 1).ok_or_else(bad)?),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        let year = u16::try_from(year).map_err(|_| bad())?;
        if year < MIN_YEAR {
            return Err(DateError::TooEarly(t.to_string()));
        }
        let date = PartialDate {
            year,
            month: month.map(|m| m as u8),
            day: day.map(|d| d as u8),
        };
        if let (Some(m), Some(d)) = (date.month, date.day) {
            let month = ::time::Month::try_from(m).map_err(|_| bad())?;
            if d > month.length(i32::from(year)) {
                return Err(DateError::NoSuchDay(t.to_string()));
            }
        }
        Ok(date)
    }

    /// Refuses a date after `today` (Unix seconds): a date of birth in the
    /// future is a typing error.
    pub fn check_not_after(&self, today: i64) -> Result<(), DateError> {
        let now = ::time::OffsetDateTime::from_unix_timestamp(today)
            .map(|t| t.date())
            .unwrap_or(::time::Date::MIN);
        let (y, m, d) = (now.year(), u8::from(now.month()), now.day());
        let later = (
            i32::from(self.year),
            self.month.unwrap_or(1),
            self.day.unwrap_or(1),
        ) > (y, m, d);
        if later {
            return Err(DateError::Future(self.to_string()));
        }
        Ok(())
    }

    /// True when every part both dates hold is equal.
    pub fn agrees(&self, other: &PartialDate) -> bool {
        fn same<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        self.year == other.year && same(self.month, other.month) && same(self.day, other.day)
    }

    /// True for a full date (year, month and day).
    pub fn is_full(&self) -> bool {
        self.day.is_some()
    }

    /// The date packed as `YYYYMMDD` with 00 for a missing part: the
    /// store's screening index orders notices by it.
    pub fn packed(&self) -> u32 {
        u32::from(self.year) * 10_000
            + u32::from(self.month.unwrap_or(0)) * 100
            + u32::from(self.day.unwrap_or(0))
    }

    /// The inverse of [`PartialDate::packed`]; `None` for a value no date packs to.
    pub fn unpacked(v: u32) -> Option<PartialDate> {
        let year = u16::try_from(v / 10_000).ok()?;
        let (month, day) = ((v / 100 % 100) as u8, (v % 100) as u8);
        if month > 12 || day > 31 || (month == 0 && day != 0) || year == 0 {
            return None;
        }
        Some(PartialDate {
            year,
            month: (month != 0).then_some(month),
            day: (day != 0).then_some(day),
        })
    }

    /// The packed ranges a notice must fall in to agree with this date:
    /// the notices with exactly this date or any more precise one, plus
    /// those that hold only a coarser part of it.
    pub fn agreeing_ranges(&self) -> Vec<std::ops::RangeInclusive<u32>> {
        let y = u32::from(self.year) * 10_000;
        match (self.month, self.day) {
            (Some(m), Some(d)) => {
                let ym = y + u32::from(m) * 100;
                vec![ym + u32::from(d)..=ym + u32::from(d), ym..=ym, y..=y]
            }
            (Some(m), None) => {
                let ym = y + u32::from(m) * 100;
                vec![ym..=ym + 31, y..=y]
            }
            _ => vec![y..=y + 1231],
        }
    }
}

impl std::fmt::Display for PartialDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_and_partial_dates_parse_and_bad_ones_are_refused() {
        for ok in ["1980-04-01", "1980-04", "1980", " 2000-02-29 "] {
            let d = PartialDate::parse(ok).unwrap();
            assert_eq!(d.to_string(), ok.trim());
        }
        for bad in [
            "-1980-04-01",
            "1980-4-1",
            "80",
            "1980-13",
            "1980-00",
            "1980-04-00",
            "1981-02-29",
            "1980-04-31",
            "1980-04-01-01",
            "1799",
            "",
            "١٩٨٠",
        ] {
            assert!(PartialDate::parse(bad).is_err(), "{bad}");
        }
        let today = 1_800_000_000; // 2027-01-15
        assert!(PartialDate::parse("2999-01-01")
            .unwrap()
            .check_not_after(today)
            .is_err());
        assert!(PartialDate::parse("2027-01")
            .unwrap()
            .check_not_after(today)
            .is_ok());
        assert!(PartialDate::parse("2027-01-16")
            .unwrap()
            .check_not_after(today)
            .is_err());
    }

    #[test]
    fn partial_dates_agree_with_the_dates_they_contain() {
        let p = |s| PartialDate::parse(s).unwrap();
        assert!(p("1980").agrees(&p("1980-04-01")));
        assert!(p("1980-04-01").agrees(&p("1980-04")));
        assert!(!p("1980-05").agrees(&p("1980-04-01")));
        assert!(!p("1981").agrees(&p("1980-04-01")));
        assert!(!p("1980-04-02").agrees(&p("1980-04-01")));
    }

    fn any_date() -> impl Strategy<Value = PartialDate> {
        (
            1850u16..2030,
            prop::option::of(1u8..=12),
            1u8..=28,
            any::<bool>(),
        )
            .prop_map(|(year, month, day, with_day)| PartialDate {
                year,
                month,
                day: (month.is_some() && with_day).then_some(day),
            })
    }

    proptest! {
        /// Parsing what a date prints gives it back; packing round-trips.
        #[test]
        fn display_parse_and_pack_round_trip(d in any_date()) {
            prop_assert_eq!(PartialDate::parse(&d.to_string()), Ok(d));
            prop_assert_eq!(PartialDate::unpacked(d.packed()), Some(d));
        }

        /// The ranges of one date cover exactly the dates that agree with
        /// it: what the index scans is what the matcher accepts.
        #[test]
        fn agreeing_ranges_cover_exactly_the_agreeing_dates(a in any_date(), b in any_date()) {
            let covered = a.agreeing_ranges().iter().any(|r| r.contains(&b.packed()));
            prop_assert_eq!(covered, a.agrees(&b));
        }
    }
}
