//! The one clock of the agent: the wall clock of what is saved and shown ([`UnixMs`],
//! [`wall_text`]), the boot clock shared with the kernel, both read at once ([`Now`]), and
//! ban expiries expressed on the boot clock.
//!
//! The XDP program compares expiries with `bpf_ktime_get_boot_ns()`; this module reads the
//! same clock (`CLOCK_BOOTTIME`) so that the agent and the kernel agree to the nanosecond.

use std::time::Duration;

use ban_common::PERMANENT;

/// Unix time in milliseconds: when a line was written, a ban made or ends, as saved and
/// shown.
pub type UnixMs = i64;

/// The two clocks: wall for what is saved and shown, boot for the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub wall: UnixMs,
    pub boot: u64,
}

impl Now {
    pub fn read() -> Self {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, ms);
        Self {
            wall,
            boot: boot_ns(),
        }
    }
}

/// `d` in milliseconds, as the wall clock counts (saturating at `i64::MAX`).
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A wall-clock time as an operator reads it (UTC, to the second).
pub fn wall_text(ms: UnixMs) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// A wall-clock time in the system's time zone, as fail2ban-client shows a ban's start
/// and end (`2026-12-07 14:00:00`).
pub fn local_text(ms: UnixMs) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| ms.to_string())
}

/// Nanoseconds of `CLOCK_BOOTTIME`: time since boot, suspend included.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists since Linux 2.6.39.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // clock_gettime only fails for an invalid clock id or pointer, neither possible here.
    debug_assert_eq!(rc, 0);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// When a ban ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expiry {
    /// At this `CLOCK_BOOTTIME` instant, in nanoseconds.
    At(u64),
    /// Never: a permanent ban.
    Never,
}

impl Expiry {
    /// A ban that ends `duration` after the boot-clock instant `now_ns`.
    pub fn after(now_ns: u64, duration: Duration) -> Self {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        match now_ns.saturating_add(nanos) {
            // 0 means "permanent" in the kernel map, and u64::MAX is as good as never.
            PERMANENT | u64::MAX => Self::Never,
            at => Self::At(at),
        }
    }

    /// The value the kernel stores.
    pub fn to_kernel(self) -> u64 {
        match self {
            Self::At(at) => at,
            Self::Never => PERMANENT,
        }
    }

    /// The inverse of [`Expiry::to_kernel`].
    pub fn from_kernel(expires_at_ns: u64) -> Self {
        match expires_at_ns {
            PERMANENT => Self::Never,
            at => Self::At(at),
        }
    }

    /// Time left at `now_ns`: `None` for a permanent ban, zero once expired.
    pub fn remaining(self, now_ns: u64) -> Option<Duration> {
        match self {
            Self::At(at) => Some(Duration::from_nanos(at.saturating_sub(now_ns))),
            Self::Never => None,
        }
    }

    /// Whether the ban has ended at `now_ns` (the kernel's rule: the expiry is exclusive).
    pub fn expired(self, now_ns: u64) -> bool {
        matches!(self, Self::At(at) if now_ns >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_moves_forward() {
        let a = boot_ns();
        let b = boot_ns();
        assert!(a > 0 && b >= a);
    }

    #[test]
    fn expiry_round_trips_through_the_kernel_encoding() {
        for expiry in [Expiry::Never, Expiry::At(1), Expiry::At(123_456_789)] {
            assert_eq!(Expiry::from_kernel(expiry.to_kernel()), expiry);
        }
    }

    #[test]
    fn a_huge_duration_is_permanent_not_wrapped() {
        assert_eq!(Expiry::after(5, Duration::MAX), Expiry::Never);
        assert_eq!(
            Expiry::after(5, Duration::from_secs(1)),
            Expiry::At(1_000_000_005)
        );
    }

    #[test]
    fn expiry_is_exclusive() {
        let expiry = Expiry::At(100);
        assert!(!expiry.expired(99));
        assert!(expiry.expired(100));
        assert_eq!(expiry.remaining(40), Some(Duration::from_nanos(60)));
        assert_eq!(expiry.remaining(400), Some(Duration::ZERO));
        assert!(!Expiry::Never.expired(u64::MAX));
    }
}
