//! How long `run` waits before trying again: after a destination's failed exports, and while
//! the database does not answer at start. Exponential and capped.

use std::time::Duration;

/// After a destination's first failed export, the next attempt waits this long ...
pub const EXPORT_FIRST: Duration = Duration::from_secs(60);
/// ... doubling with each failure in a row, up to this.
pub const EXPORT_MAX: Duration = Duration::from_secs(3600);

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
        let waits: Vec<u64> = (0..10)
            .map(|n| after(n, EXPORT_FIRST, EXPORT_MAX).as_secs())
            .collect();
        assert_eq!(waits, [0, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(after(u32::MAX, EXPORT_FIRST, EXPORT_MAX), EXPORT_MAX);
        assert_eq!(
            after(3, DATABASE_FIRST, DATABASE_MAX),
            Duration::from_secs(4)
        );
        assert_eq!(after(40, DATABASE_FIRST, DATABASE_MAX), DATABASE_MAX);
    }
}
