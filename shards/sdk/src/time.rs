//! Wall-clock time from `wasi:clocks/wall-clock`, as Unix milliseconds or RFC 3339 text.

use crate::bindings::wasi::clocks::wall_clock;

/// Milliseconds since the Unix epoch.
///
/// ```no_run
/// use arkham_shard_sdk::time;
///
/// let started = time::now_unix_millis();
/// // ... work ...
/// let took_ms = time::now_unix_millis().saturating_sub(started);
/// ```
pub fn now_unix_millis() -> u64 {
    let now = wall_clock::now();
    now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
}

/// The current UTC time as RFC 3339 with milliseconds, e.g. `"2026-03-21T09:05:00.123Z"`.
/// The fixed width makes these strings sort like the instants they name.
///
/// ```no_run
/// let created_at = arkham_shard_sdk::time::now_rfc3339();
/// assert!(created_at.ends_with('Z'));
/// ```
pub fn now_rfc3339() -> String {
    rfc3339_from_unix_millis(now_unix_millis())
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
///
/// ```
/// use arkham_shard_sdk::time::rfc3339_from_unix_millis;
///
/// assert_eq!(rfc3339_from_unix_millis(951_782_400_123), "2000-02-29T00:00:00.123Z");
/// ```
pub fn rfc3339_from_unix_millis(millis: u64) -> String {
    let seconds = millis / 1000;
    let days = (seconds / 86_400) as i64;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_from_unix_millis(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339_from_unix_millis(1_774_083_900_000),
            "2026-03-21T09:05:00.000Z"
        );
    }
}
