//! How long `run` waits before trying again: after a destination's failed exports
//! (`run.failed_export_backoff_secs`, doubling up to `run.failed_export_backoff_max_secs`), and
//! while the database does not answer at start. Exponential and capped.

use std::time::Duration;

/// While the database does not answer at start, the first retry waits this long ...
pub const DATABASE_FIRST: Duration = Duration::from_secs(1);
/// ... doubling up to this.
pub const DATABASE_MAX: Duration = Duration::from_secs(30);

/// The wait after `failures` failures in a row (none before the first): `first`, doubling
/// with each further failure, never more than `max`.
pub fn after(failures: u32, first: Duration, max: Duration) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(31);
    first.saturating_mul(1 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_wait_up_to_the_cap() {
        let (first, max) = (Duration::from_secs(60), Duration::from_secs(3600));
        let waits: Vec<u64> = (0..10).map(|n| after(n, first, max).as_secs()).collect();
        assert_eq!(waits, [0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(after(u32::MAX, first, max), max);
        assert_eq!(
            after(3, DATABASE_FIRST, DATABASE_MAX),
            Duration::from_secs(4)
        );
        assert_eq!(after(40, DATABASE_FIRST, DATABASE_MAX), DATABASE_MAX);
    }
}
