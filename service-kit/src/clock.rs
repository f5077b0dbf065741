//! Wall-clock time as the wire carries it: microseconds since the Unix epoch.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix microseconds (0 for a clock set before 1970).
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020_and_does_not_go_back() {
        let a = super::now_us();
        let b = super::now_us();
        assert!(a > 1_577_836_800_000_000, "{a}");
        assert!(b >= a);
    }
}
