//! One opener per spool directory.
//!
//! The `lock` file is held with an exclusive advisory lock
//! ([`File::try_lock`], `flock(2)` on Linux) for as long as the spool is
//! open. The kernel drops the lock when the process exits or is killed, so
//! a lock can never go stale: a lock file left by a dead process (whatever
//! pid it names, even one reused by a new process, as happens with pid 1 in
//! containers) is simply taken over. Two opens in the same process
//! conflict too (each opens its own file description). The file is never
//! deleted (deleting it would let two openers lock different inodes). The
//! pid written into it only serves the [`SpoolError::Locked`] message.
//! Advisory locks are not reliable on network filesystems; keep the spool
//! on a local disk.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use crate::error::{SpoolError, io_at};

/// Name of the lock file.
pub(crate) const LOCK_FILE: &str = "lock";

/// Takes the lock on `dir`, held until the returned file is dropped.
pub(crate) fn acquire(dir: &Path) -> Result<File, SpoolError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.trim().parse().ok());
            return Err(SpoolError::Locked {
                dir: dir.to_path_buf(),
                pid,
            });
        }
        Err(TryLockError::Error(e)) => return Err(io_at(&path)(e)),
    }
    file.set_len(0).map_err(io_at(&path))?;
    writeln!(file, "{}", std::process::id()).map_err(io_at(&path))?;
    Ok(file)
}
