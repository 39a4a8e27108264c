//! Timestamps and durations for people.

use crate::journal::Millis;

/// `2026-11-29 17:21:50 UTC` for a [`Millis`] timestamp.
pub fn format_time(at: Millis) -> String {
    let mut out = String::with_capacity(23);
    push_time(&mut out, at);
    out
}

/// [`format_time`], appended to `out` (a plan describes every done step
/// with one: no `format!` machinery per step).
pub fn push_time(out: &mut String, at: Millis) {
    let secs = at / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    if !(0..=9999).contains(&y) {
        use std::fmt::Write;
        let _ = write!(out, "{y:04}");
    } else {
        push_digits(out, y as u64, 4);
    }
    out.push('-');
    push_digits(out, u64::from(m), 2);
    out.push('-');
    push_digits(out, u64::from(d), 2);
    out.push(' ');
    push_digits(out, rem / 3600, 2);
    out.push(':');
    push_digits(out, rem % 3600 / 60, 2);
    out.push(':');
    push_digits(out, rem % 60, 2);
    out.push_str(" UTC");
}

/// `n` as exactly `width` decimal digits (n < 10^width).
fn push_digits(out: &mut String, n: u64, width: u32) {
    for i in (0..width).rev() {
        out.push(char::from(b'0' + (n / 10u64.pow(i) % 10) as u8));
    }
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm, valid for every date we will see).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `420ms`, `12.0s`, `3m05s`, `2h01m` for a duration in milliseconds.
pub fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1000, ms % 1000 / 100)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_and_durations() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_time(1_795_972_910_000), "2026-11-29 17:21:50 UTC");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(format_time(253_402_300_799_000), "9999-12-31 23:59:59 UTC");
        assert_eq!(format_time(253_402_300_800_000), "10000-01-01 00:00:00 UTC");
        assert_eq!(format_duration_ms(420), "420ms");
        assert_eq!(format_duration_ms(1420), "1.4s");
        assert_eq!(format_duration_ms(185_000), "3m05s");
        assert_eq!(format_duration_ms(7_260_000), "2h01m");
    }
}
