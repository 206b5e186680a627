//! UTC calendar arithmetic on unix seconds (no time zones, no clock): month boundaries and
//! week boundaries, with Howard Hinnant's `days_from_civil` algorithm.

use kb_core::window::{DAY, HOUR};

/// Hours in Kubecost's month (`730` = 365 × 24 / 12), used to turn monthly rates into hourly.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// Returns `(year, month 1..=12, day 1..=31)` of the UTC day containing `ts`.
pub fn civil_from_unix(ts: i64) -> (i64, u32, u32) {
    let z = ts.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Returns unix seconds of midnight UTC of `year-month-day` (day may overflow the month:
/// day 32 of January is February 1st).
pub fn unix_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let m = i64::from(month);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * DAY
}

/// Returns the start of the UTC month containing `ts`.
pub fn month_start(ts: i64) -> i64 {
    let (y, m, _) = civil_from_unix(ts);
    unix_from_civil(y, m, 1)
}

/// Returns the start of the UTC month after the one containing `ts`.
pub fn next_month_start(ts: i64) -> i64 {
    let (y, m, _) = civil_from_unix(ts);
    if m == 12 {
        unix_from_civil(y + 1, 1, 1)
    } else {
        unix_from_civil(y, m + 1, 1)
    }
}

/// Returns the day of week of `ts` in UTC, 0 = Sunday (Kubecost's budget convention).
pub fn weekday(ts: i64) -> u32 {
    // 1970-01-01 was a Thursday (4).
    (ts.div_euclid(DAY) + 4).rem_euclid(7) as u32
}

/// Returns the hour of the week of `ts` (0..168), counted from Sunday 00:00 UTC.
pub fn hour_of_week(ts: i64) -> usize {
    (weekday(ts) as i64 * 24 + ts.rem_euclid(DAY) / HOUR) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trips() {
        // 2024-02-29T12:00:00Z
        let ts = 1_709_208_000;
        assert_eq!(civil_from_unix(ts), (2024, 2, 29));
        assert_eq!(month_start(ts), 1_706_745_600); // 2024-02-01
        assert_eq!(next_month_start(ts), 1_709_251_200); // 2024-03-01
        assert_eq!(next_month_start(1_703_980_800), 1_704_067_200); // 2023-12-31 -> 2024-01-01
        assert_eq!(unix_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_unix(-1), (1969, 12, 31));
        assert_eq!(weekday(0), 4);
        assert_eq!(weekday(1_704_585_600), 0); // 2024-01-07 was a Sunday
        assert_eq!(hour_of_week(1_704_585_600 + 5 * HOUR), 5);
    }
}
