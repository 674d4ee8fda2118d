//! Wall-clock time in China Standard Time (UTC+8 all year), which both providers' APIs speak:
//! WeChat Pay's `time_expire` (RFC 3339 with `+08:00`) and Alipay's `timestamp` / `time_expire`
//! (`yyyy-MM-dd HH:mm:ss`, Beijing time). The time is always given, never read from the clock.

use std::time::{Duration, UNIX_EPOCH};

const OFFSET_SECS: i64 = 8 * 3600;
/// 9999-12-31T23:59:59 local: the last second RFC 3339 can write.
const LAST_LOCAL_SECS: i64 = 253_402_300_799;

/// `yyyy-MM-ddTHH:mm:ss` in China Standard Time for a unix time in seconds (clamped to the
/// years 1970 to 9999 local time, which every deadline is well within).
pub fn wall_clock(unix_secs: i64) -> String {
    let local = unix_secs
        .saturating_add(OFFSET_SECS)
        .clamp(0, LAST_LOCAL_SECS);
    // Shifted by the offset, the UTC rendering reads as the local wall clock; its `Z` goes.
    let utc =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(local.unsigned_abs()))
            .to_string();
    utc.trim_end_matches('Z').to_owned()
}

#[cfg(test)]
mod tests {
    use super::wall_clock;

    #[test]
    fn the_wall_clock_is_utc_plus_eight() {
        assert_eq!(wall_clock(0), "1970-01-01T08:00:00");
        assert_eq!(wall_clock(1_528_425_296), "2018-06-08T10:34:56");
        assert_eq!(wall_clock(1_709_164_800), "2024-02-29T08:00:00");
        assert_eq!(wall_clock(1_735_660_799), "2024-12-31T23:59:59");
        assert_eq!(wall_clock(i64::MIN), "1970-01-01T00:00:00");
        assert_eq!(wall_clock(i64::MAX), "9999-12-31T23:59:59");
    }
}
