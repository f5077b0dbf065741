//! The one error type of the crate.

use std::io;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// Why a spool operation failed. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file or directory of the spool could not be read or written.
    #[error(
        "spool file {path}: {source} (check that the spool directory is on a mounted, \
         writable filesystem with free space)"
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The configuration is out of bounds.
    #[error("invalid spool configuration: {0}")]
    Config(#[from] ConfigError),
    /// A record does not fit in one segment. Nothing was written.
    #[error(
        "record of {size} bytes (with 36 bytes of framing) is larger than a spool segment \
         ({max} bytes); raise segment_bytes or send smaller messages"
    )]
    RecordTooLarge {
        /// Bytes the record would take on disk.
        size: u64,
        /// `segment_bytes`.
        max: u64,
    },
    /// Another open spool (in this or another process) holds the directory.
    #[error(
        "spool directory {} is in use{}; stop the other instance or give this one its own \
         spool directory",
        dir.display(),
        pid.map(|pid| format!(" by process {pid}")).unwrap_or_default()
    )]
    Locked {
        /// The spool directory.
        dir: PathBuf,
        /// The process id the holder wrote into the lock file, if readable.
        pid: Option<u32>,
    },
    /// `ack` named a sequence number that was never appended.
    #[error(
        "ack({upto}) is beyond the last appended sequence number {last}; acknowledge only \
         sequence numbers returned by next()"
    )]
    AckOutOfRange {
        /// The argument of `ack`.
        upto: u64,
        /// The last sequence number appended (0 if none).
        last: u64,
    },
}

/// Maps an I/O error to [`SpoolError::Io`] on `path`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}
