//! UTC calendar times of Unix milliseconds, for the timestamps people read: the
//! relay's admin listing, the CLI's history, chat's day separators and IRC's
//! `server-time` tags. No time zone database is needed for UTC, and one conversion
//! keeps every front end showing the same date for the same instant.

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// A Unix time as a UTC date and time of day, in the proleptic Gregorian calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime {
    /// The year, e.g. 2026.
    pub year: u64,
    /// The month, 1 to 12.
    pub month: u8,
    /// The day of the month, 1 to 31.
    pub day: u8,
    /// The hour, 0 to 23.
    pub hour: u8,
    /// The minute, 0 to 59.
    pub minute: u8,
    /// The second, 0 to 59 (Unix time has no leap seconds).
    pub second: u8,
    /// The millisecond, 0 to 999.
    pub millisecond: u16,
}

impl UtcTime {
    /// The UTC calendar time of `unix_ms` milliseconds after 1970-01-01T00:00:00Z.
    #[must_use]
    pub fn from_unix_ms(unix_ms: u64) -> Self {
        let (days, in_day) = (unix_ms / DAY_MS, unix_ms % DAY_MS);
        let (year, month, day) = civil_from_days(days);
        let secs = in_day / 1000;
        // Each narrowing below is of a value already bounded by its modulus.
        Self {
            year,
            month: narrow(month),
            day: narrow(day),
            hour: narrow(secs / 3600),
            minute: narrow(secs / 60 % 60),
            second: narrow(secs % 60),
            millisecond: u16::try_from(in_day % 1000).unwrap_or(0),
        }
    }

    /// The date as `YYYY-MM-DD`.
    #[must_use]
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The time of day as `HH:MM:SS`.
    #[must_use]
    pub fn time_of_day(&self) -> String {
        format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second)
    }
}

/// The days since 1970-01-01 of the UTC day holding `unix_ms`.
#[must_use]
pub fn unix_day(unix_ms: u64) -> u64 {
    unix_ms / DAY_MS
}

fn narrow(value: u64) -> u8 {
    u8::try_from(value).unwrap_or(0)
}

/// The date `days` after 1970-01-01: Howard Hinnant's `civil_from_days`, for
/// non-negative days (unsigned input cannot be before the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(ms: u64) -> (u64, u8, u8, u8, u8, u8, u16) {
        let t = UtcTime::from_unix_ms(ms);
        (
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.millisecond,
        )
    }

    #[test]
    fn known_instants() {
        assert_eq!(parts(0), (1970, 1, 1, 0, 0, 0, 0));
        // A century leap day, and the instant before the day after it.
        assert_eq!(parts(951_827_696_789), (2000, 2, 29, 12, 34, 56, 789));
        assert_eq!(parts(951_868_799_999), (2000, 2, 29, 23, 59, 59, 999));
        assert_eq!(parts(951_868_800_000), (2000, 3, 1, 0, 0, 0, 0));
        assert_eq!(parts(1_796_605_323_456), (2026, 12, 7, 1, 2, 3, 456));
        // 2100 is not a leap year.
        assert_eq!(parts(4_107_542_399_000), (2100, 2, 28, 23, 59, 59, 0));
        assert_eq!(parts(4_107_542_400_000), (2100, 3, 1, 0, 0, 0, 0));
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let mut before = UtcTime::from_unix_ms(0);
        for day in 1..146_097 {
            let now = UtcTime::from_unix_ms(day * DAY_MS);
            assert!(now > before, "day {day}: {now:?} after {before:?}");
            let next_day = now.day == before.day + 1 && now.month == before.month;
            let next_month = now.day == 1 && now.month == before.month % 12 + 1;
            assert!(
                next_day || next_month,
                "day {day}: {now:?} after {before:?}"
            );
            before = now;
        }
        assert_eq!(before.date(), "2369-12-31");
    }

    #[test]
    fn formats() {
        let t = UtcTime::from_unix_ms(951_827_696_789);
        assert_eq!(t.date(), "2000-02-29");
        assert_eq!(t.time_of_day(), "12:34:56");
        assert_eq!(unix_day(951_827_696_789), 11_016);
    }
}
