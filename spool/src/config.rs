//! Spool configuration and its validation.

use std::time::Duration;

/// Smallest accepted [`SpoolConfig::segment_bytes`]: 4 KiB.
pub const MIN_SEGMENT_BYTES: u64 = 4 * 1024;

/// Largest accepted [`SpoolConfig::segment_bytes`]: 1 GiB (record offsets
/// inside a segment are kept as `u32`).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// Bytes of [`SpoolConfig::max_bytes`] set aside for the small metadata
/// files (`lock`, `acked`, `acked.tmp`: together under 64 bytes), so that the
/// whole directory, not only its segments, stays within `max_bytes`.
pub const METADATA_RESERVE: u64 = 64;

/// When appended data is forced to stable storage with `fsync`
/// (`fdatasync`).
///
/// Whatever the policy, every [`append`](crate::Spool::append) hands its
/// record to the operating system (`write(2)`) before it returns, so a
/// crash or `SIGKILL` of the process loses nothing that was appended. The
/// policy only matters when the *machine* loses power or the kernel panics:
/// then records written since the last fsync may be lost (the torn or
/// missing tail is detected and cut off on the next open; it is never
/// returned as garbage).
///
/// Every policy but [`Never`](FsyncPolicy::Never) also fsyncs a segment
/// when it is closed (rolled), the cursor file when it is replaced, and the
/// directory when files are created. [`Spool::sync`](crate::Spool::sync)
/// fsyncs everything under every policy.
///
/// Trade-off: an fsync costs roughly 0.1–1 ms on an SSD and 5–50 ms on SD
/// cards and eMMC, so [`Always`](FsyncPolicy::Always) caps the append rate
/// on slow flash (and wears it); the bounded policies lose at most `n`
/// records or the given interval of records on power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// fsync after every append: nothing appended is lost on power loss.
    /// Slowest.
    Always,
    /// fsync after every `n` appends (`n >= 1`): at most `n - 1` records
    /// lost on power loss.
    EveryN(u32),
    /// fsync on the first append at least this long after the previous
    /// fsync (checked on append; there is no background thread, so call
    /// [`Spool::sync`](crate::Spool::sync) when appends stop for long).
    Interval(Duration),
    /// The default: fsync when a segment is rolled and on
    /// [`Spool::sync`](crate::Spool::sync) only; on power loss, up to one
    /// segment of recent records may be lost. Cheapest durable choice.
    #[default]
    OnRoll,
    /// Never fsync, not even on roll or for the cursor file; only
    /// [`Spool::sync`](crate::Spool::sync) does. Survives process crashes
    /// only; for tests and tmpfs.
    Never,
}

/// How big the spool may grow and how it is split into files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Upper bound on the apparent size (sum of file lengths) of the spool
    /// directory. When an append would exceed it, the oldest whole segments
    /// are deleted, acknowledged or not, and counted as dropped.
    /// At least `2 * segment_bytes`.
    pub max_bytes: u64,
    /// Target size of one segment file, and the largest record accepted
    /// (36 bytes of framing + topic + key + payload). Between 4 KiB and
    /// 1 GiB. Smaller segments free space in finer steps (both when records
    /// are acknowledged and when the oldest are dropped) at the cost of
    /// more files.
    pub segment_bytes: u64,
    /// When data is fsynced; see [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
    /// How often, at most, [`Spool::ack`](crate::Spool::ack) writes the
    /// ack cursor file while acknowledgements advance, besides when
    /// acknowledged segments are deleted, on
    /// [`Spool::sync`](crate::Spool::sync) and on drop. This bounds what a
    /// crash replays: at most the records acknowledged within one interval
    /// (those since the last write). Each write is one small temp-file write
    /// and rename, fsynced only under [`FsyncPolicy::Always`],
    /// [`EveryN`](FsyncPolicy::EveryN) and
    /// [`Interval`](FsyncPolicy::Interval) (then two fsyncs per interval at
    /// most); under [`OnRoll`](FsyncPolicy::OnRoll) and
    /// [`Never`](FsyncPolicy::Never) a periodic write survives a crash of
    /// the process, not a power loss. `Duration::ZERO` turns periodic writes
    /// off: the cursor is then written only on segment deletion, sync and
    /// drop. Default: 1 s.
    pub cursor_persist_interval: Duration,
}

/// 1 s: a crash replays at most about a second of acknowledged messages,
/// for one small file write a second (a cursor write per ack batch would cost
/// a file write, and with fsync a flash write, per Kafka confirmation).
pub const DEFAULT_CURSOR_PERSIST_INTERVAL: Duration = Duration::from_secs(1);

impl Default for SpoolConfig {
    /// 256 MiB in 8 MiB segments, fsync on roll, cursor written at least
    /// every second while acknowledgements advance.
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            fsync: FsyncPolicy::OnRoll,
            cursor_persist_interval: DEFAULT_CURSOR_PERSIST_INTERVAL,
        }
    }
}

/// A [`SpoolConfig`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `segment_bytes` below [`MIN_SEGMENT_BYTES`].
    #[error("segment_bytes = {0} is too small; use at least 4096 (a few MiB is typical)")]
    SegmentTooSmall(u64),
    /// `segment_bytes` above [`MAX_SEGMENT_BYTES`].
    #[error("segment_bytes = {0} is too large; use at most 1073741824 (1 GiB)")]
    SegmentTooLarge(u64),
    /// `max_bytes` below twice `segment_bytes`.
    #[error(
        "max_bytes = {max_bytes} is less than twice segment_bytes = {segment_bytes}; \
         raise max_bytes or lower segment_bytes"
    )]
    MaxBytesTooSmall {
        /// The configured bound.
        max_bytes: u64,
        /// The configured segment size.
        segment_bytes: u64,
    },
    /// `FsyncPolicy::EveryN(0)`.
    #[error("fsync = EveryN(0) is not a policy; use EveryN(1) or Always to fsync every append")]
    EveryNZero,
    /// `FsyncPolicy::Interval(Duration::ZERO)`.
    #[error("fsync = Interval(0) is not a policy; use Always to fsync every append")]
    ZeroInterval,
}

impl SpoolConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(ConfigError::SegmentTooSmall(self.segment_bytes));
        }
        if self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(ConfigError::SegmentTooLarge(self.segment_bytes));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(ConfigError::MaxBytesTooSmall {
                max_bytes: self.max_bytes,
                segment_bytes: self.segment_bytes,
            });
        }
        match self.fsync {
            FsyncPolicy::EveryN(0) => Err(ConfigError::EveryNZero),
            FsyncPolicy::Interval(d) if d.is_zero() => Err(ConfigError::ZeroInterval),
            _ => Ok(()),
        }
    }

    /// The bytes available to segment files: `max_bytes` less
    /// [`METADATA_RESERVE`]. Always at least `segment_bytes` for a valid
    /// config, so one full segment plus one record always fits once every
    /// older segment is gone.
    pub(crate) fn segment_budget(&self) -> u64 {
        self.max_bytes.saturating_sub(METADATA_RESERVE)
    }

    /// Whether a periodic cursor write is fsynced: only under the policies
    /// that fsync appends themselves (see
    /// [`cursor_persist_interval`](SpoolConfig::cursor_persist_interval)).
    pub(crate) fn fsyncs_periodic_cursor(&self) -> bool {
        matches!(
            self.fsync,
            FsyncPolicy::Always | FsyncPolicy::EveryN(_) | FsyncPolicy::Interval(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_bytes: u64, segment_bytes: u64, fsync: FsyncPolicy) -> SpoolConfig {
        SpoolConfig {
            max_bytes,
            segment_bytes,
            fsync,
            cursor_persist_interval: DEFAULT_CURSOR_PERSIST_INTERVAL,
        }
    }

    #[test]
    fn default_is_valid() {
        assert_eq!(SpoolConfig::default().validate(), Ok(()));
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::OnRoll);
    }

    #[test]
    fn bounds_are_enforced() {
        let ok = FsyncPolicy::OnRoll;
        assert_eq!(
            config(1 << 20, 4095, ok).validate(),
            Err(ConfigError::SegmentTooSmall(4095))
        );
        assert_eq!(config(8192, 4096, ok).validate(), Ok(()));
        assert_eq!(
            config(8191, 4096, ok).validate(),
            Err(ConfigError::MaxBytesTooSmall {
                max_bytes: 8191,
                segment_bytes: 4096
            })
        );
        assert_eq!(
            config(u64::MAX, (1 << 30) + 1, ok).validate(),
            Err(ConfigError::SegmentTooLarge((1 << 30) + 1))
        );
        assert_eq!(
            config(1 << 20, 4096, FsyncPolicy::EveryN(0)).validate(),
            Err(ConfigError::EveryNZero)
        );
        assert_eq!(
            config(1 << 20, 4096, FsyncPolicy::Interval(Duration::ZERO)).validate(),
            Err(ConfigError::ZeroInterval)
        );
        assert_eq!(
            config(
                1 << 20,
                4096,
                FsyncPolicy::Interval(Duration::from_millis(1))
            )
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn budget_always_holds_a_full_segment() {
        let c = config(8192, 4096, FsyncPolicy::OnRoll);
        assert!(c.segment_budget() >= c.segment_bytes);
    }
}
