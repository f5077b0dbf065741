//! A durable, bounded, on-disk message spool for the edge agent's Kafka
//! egress. The publisher appends every outgoing message ([`Spool::append`]);
//! a sender reads them in order ([`Spool::next`]) with a bounded window in
//! flight, acknowledges them in order as Kafka confirms delivery
//! ([`Spool::ack`]) and, after a failed delivery, rewinds to the first
//! unacknowledged record ([`Spool::rewind`]) and retries later. Plain `std`,
//! synchronous: call it from a blocking thread or `spawn_blocking`.
//!
//! # Layout
//!
//! A spool is one directory, open in one [`Spool`] at a time:
//!
//! ```text
//! <dir>/lock                      held with flock(2) while open; owner's pid (informational)
//! <dir>/acked                     ack cursor, 16 bytes, replaced atomically
//! <dir>/00000000000000000001.seg  segment: records 1, 2, ..., 17
//! <dir>/00000000000000000018.seg  segment: records 18, ...; the newest is appended to
//! ```
//!
//! **Sequence numbers** start at 1 (0 means "none") and increase by one per
//! appended record, across restarts. A **segment** file is named after the
//! sequence number of its first record (20 digits, zero-padded) and holds
//! records with consecutive sequence numbers, back to back, with no file
//! header. Segments are append-only; a new one is started (the old one
//! *rolled*) when the next record would take the current one past
//! `segment_bytes`. A record (all integers little-endian):
//!
//! ```text
//! offset size field
//!      0    2 magic A7 53
//!      2    1 version = 1
//!      3    1 flags = 0 (reserved)
//!      4    4 n = body length (u32)
//!      8    8 sequence number (u64)
//!     16    4 CRC-32 (IEEE, as crc32fast) of bytes 0..16 followed by the body
//!     20    n body: u32 topic length t | topic (t bytes, UTF-8)
//!                 | u32 key length k | key (k bytes) | i64 timestamp_ms
//!                 | payload (the remaining n - 16 - t - k bytes)
//! ```
//!
//! so a record takes [`RECORD_OVERHEAD`] (36) bytes plus topic, key and
//! payload. The **cursor** file `acked` holds `"SPAK"`, the u64 sequence
//! number up to which everything is acknowledged, and a CRC-32 of those 12
//! bytes. It is replaced by writing `acked.tmp`, fsyncing it, renaming it
//! over `acked` and fsyncing the directory (no fsyncs under
//! [`FsyncPolicy::Never`]), so it is always the old or the new value.
//!
//! # Recovery
//!
//! [`Spool::open`] reads every segment and verifies every record (framing,
//! sequence number, length within the file, CRC): O(spool size) of reading.
//! At the first bad record of the newest segment (a torn write after a crash)
//! the file is truncated there ([`Recovery::torn_tail`]). A bad record in an
//! older segment means disk corruption: the rest of that segment is cut off,
//! its sequence numbers skipped, and the scan carries on with the next
//! segment ([`Recovery::corrupt_segments`]). A length field is only ever
//! trusted up to the bytes actually left in the file, so a torn header that
//! claims 4 GB is a torn tail, not an allocation. A missing or damaged
//! cursor means nothing is known to be acknowledged: every retained record
//! is replayed. Opening never panics on bad bytes and never returns a record
//! that failed its checks; [`Spool::next`] checks each record again.
//!
//! # Guarantees
//!
//! - **Order**: [`Spool::next`] returns records in append order, each with
//!   the sequence number [`Spool::append`] returned.
//! - **Process crash**: every append is written to the OS before it returns,
//!   so a crash or `SIGKILL` of the process loses nothing; at worst a record
//!   being written is cut off on reopen (its `append` had not returned).
//! - **Power loss**: records written since the last fsync may be lost; when
//!   that is depends on the [`FsyncPolicy`] (default: on segment roll and on
//!   [`Spool::sync`]). Deletions are not fsynced: a segment deleted just
//!   before a power loss may come back and be replayed (at least once).
//! - **At least once**: the cursor is persisted when acknowledged segments
//!   are deleted, on [`Spool::sync`], when the [`Spool`] is dropped, and by
//!   [`Spool::ack`] whenever `cursor_persist_interval` (default 1 s) has
//!   passed since it was last persisted. After a crash, acknowledgements
//!   since the last persist are lost and those records replayed again, with
//!   their old sequence numbers: **at most the records acknowledged within
//!   one `cursor_persist_interval`** (never more than about one segment;
//!   with the interval set to zero, up to about one segment). After a power
//!   loss the bound holds only for fsynced cursor writes (see
//!   [`SpoolConfig::cursor_persist_interval`]). Consumers must tolerate
//!   duplicates (deduplicate on the message's own id).
//!   Sequence numbers are unique in a spool as long as the disk keeps what
//!   was written; after a power loss, numbers of records that never reached
//!   the disk are issued again, so do not use them as global ids.
//! - **Bounded**: the directory's apparent size (sum of file lengths) never
//!   exceeds `max_bytes`. To make room, the oldest whole segments are
//!   deleted, acknowledged or not; unacknowledged records lost that way are
//!   counted in [`SpoolStats::dropped_records`] and
//!   [`SpoolStats::dropped_bytes`], and their sequence numbers are skipped by
//!   [`Spool::next`]. Nothing is logged: the caller logs.
//! - Acknowledged records are deleted a whole segment at a time, never the
//!   segment being appended to, so up to one segment of acknowledged records
//!   stays on disk.
//!
//! # Limits
//!
//! One process, one [`Spool`] per directory ([`SpoolError::Locked`]), on a
//! local filesystem. A record larger than `segment_bytes` (1 GiB at most) is
//! refused with [`SpoolError::RecordTooLarge`]. The in-memory index costs 4
//! bytes per record on disk. Methods take `&mut self`; a [`Spool`] is `Send`
//! and `Sync`: own it in one blocking thread or share it behind a mutex.

mod config;
mod error;
mod format;
mod lock;
mod segment;

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use config::{
    ConfigError, DEFAULT_CURSOR_PERSIST_INTERVAL, FsyncPolicy, MAX_SEGMENT_BYTES, METADATA_RESERVE,
    MIN_SEGMENT_BYTES, SpoolConfig,
};
pub use error::SpoolError;
pub use format::RECORD_OVERHEAD;

use error::io_at;
use segment::Segment;

/// Name of the ack cursor file.
const CURSOR_FILE: &str = "acked";
/// Name of the cursor file while it is being replaced.
const CURSOR_TMP: &str = "acked.tmp";
/// Read buffer of the sender's cursor.
const READ_BUFFER: usize = 64 * 1024;
/// Piece size of the recovery scan's CRC pass.
const SCAN_CHUNK: usize = 64 * 1024;

/// One message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Kafka topic.
    pub topic: String,
    /// Kafka message key (may be empty).
    pub key: Vec<u8>,
    /// Message value.
    pub payload: Vec<u8>,
    /// Message timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Record {
    /// A record from its parts.
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        payload: impl Into<Vec<u8>>,
        timestamp_ms: i64,
    ) -> Self {
        Self {
            topic: topic.into(),
            key: key.into(),
            payload: payload.into(),
            timestamp_ms,
        }
    }

    /// Bytes this record takes on disk: [`RECORD_OVERHEAD`] + topic + key +
    /// payload. Must not exceed `segment_bytes`.
    pub fn encoded_len(&self) -> u64 {
        format::encoded_len(self)
    }
}

/// What [`Spool::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files kept.
    pub segments: usize,
    /// Intact unacknowledged records: what [`Spool::next`] will replay.
    pub records: u64,
    /// Their bytes on disk.
    pub bytes: u64,
    /// Bytes cut off the ends of segments: the torn tail and the rest of
    /// corrupt segments.
    pub truncated_bytes: u64,
    /// The newest segment ended in a torn or corrupt record (expected after
    /// a crash in the middle of an append); it was cut off.
    pub torn_tail: bool,
    /// Older segments that held a corrupt record (disk corruption, not a
    /// crash); each was cut off at that record and its remaining sequence
    /// numbers are skipped.
    pub corrupt_segments: usize,
    /// Unacknowledged records deleted because the directory was over a
    /// (smaller) `max_bytes`; also counted in [`SpoolStats::dropped_records`].
    pub dropped_records: u64,
    /// The cursor file existed but was damaged; every retained record will
    /// be replayed.
    pub cursor_invalid: bool,
    /// Everything up to this sequence number is acknowledged (0: nothing).
    pub acked: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
}

impl Recovery {
    /// Nothing was cut off, dropped or reset: a clean shutdown, or a crash
    /// between appends.
    pub fn is_clean(&self) -> bool {
        self.truncated_bytes == 0
            && !self.torn_tail
            && self.corrupt_segments == 0
            && self.dropped_records == 0
            && !self.cursor_invalid
    }
}

/// Counters and sizes of an open spool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records not yet acknowledged, read or not.
    pub pending_records: u64,
    /// Their bytes on disk (with framing).
    pub pending_bytes: u64,
    /// Bytes of all segment files, acknowledged records included.
    pub disk_bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Unacknowledged records lost since open: deleted to stay within
    /// `max_bytes`, or found corrupt when read. Records acknowledged before
    /// their segment was deleted are not counted.
    pub dropped_records: u64,
    /// Their bytes on disk.
    pub dropped_bytes: u64,
    /// Records appended since open.
    pub appended: u64,
    /// Everything up to this sequence number is acknowledged or dropped.
    pub acked: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
    /// Periodic cursor writes that failed since open (tried again one
    /// `cursor_persist_interval` later; acknowledgements still hold in
    /// memory, a crash would replay more).
    pub cursor_write_errors: u64,
}

/// The sender's position in a segment.
struct Reader {
    first_seq: u64,
    /// Offset of the next byte `file` returns.
    pos: u64,
    file: BufReader<File>,
}

/// An open spool directory; see the crate docs.
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    /// Bytes available to segment files.
    budget: u64,
    /// Held for the lifetime of the spool.
    _lock: File,
    /// Oldest first; never empty; the last one is appended to.
    segments: VecDeque<Segment>,
    /// Append handle (`O_APPEND`) on the last segment.
    active: File,
    /// A failed write could not be undone: the active file may end in
    /// garbage, so the next append starts a new segment.
    active_poisoned: bool,
    next_seq: u64,
    acked: u64,
    /// The cursor value last written to `acked`, and whether it was fsynced.
    persisted: Option<(u64, bool)>,
    /// When `acked` was last written (or the spool opened): the start of
    /// the current `cursor_persist_interval`.
    last_persist: Instant,
    /// Periodic cursor writes that failed (see [`SpoolStats`]).
    cursor_write_errors: u64,
    /// Sequence number the next [`Spool::next`] returns (or the first one
    /// after it that exists).
    read_seq: u64,
    reader: Option<Reader>,
    disk_bytes: u64,
    /// Encoding / decoding buffer.
    buf: Vec<u8>,
    /// Appends since the last fsync of the active segment.
    unsynced: u32,
    last_fsync: Instant,
    dropped_records: u64,
    dropped_bytes: u64,
    appended: u64,
}

impl fmt::Debug for Spool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .field("segments", &self.segments.len())
            .field("next_seq", &self.next_seq)
            .field("acked", &self.acked)
            .field("read_seq", &self.read_seq)
            .finish_non_exhaustive()
    }
}

impl Spool {
    /// Opens (creating it if missing) the spool in `dir`: takes the lock,
    /// verifies every record, cuts off torn or corrupt data, restores the
    /// ack cursor and enforces `max_bytes`. The read cursor starts at the
    /// first unacknowledged record.
    ///
    /// # Errors
    /// [`SpoolError::Config`] for a bad config, [`SpoolError::Locked`] if
    /// another open spool holds `dir`, [`SpoolError::Io`] if the directory
    /// cannot be created, read or repaired.
    pub fn open(
        dir: impl AsRef<Path>,
        config: SpoolConfig,
    ) -> Result<(Spool, Recovery), SpoolError> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let lock = lock::acquire(&dir)?;
        remove_if_exists(&dir.join(CURSOR_TMP))?;
        let mut recovery = Recovery::default();

        let cursor_path = dir.join(CURSOR_FILE);
        let cursor = match fs::read(&cursor_path) {
            Ok(bytes) => {
                let value = format::decode_cursor(&bytes).filter(|&v| v < segment::MAX_SEQ);
                recovery.cursor_invalid = value.is_none();
                value
            }
            Err(e) if e.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(io_at(&cursor_path)(e)),
        };

        let found = segment::list(&dir)?;
        let last_index = found.len().saturating_sub(1);
        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(found.len() + 1);
        let mut chunk = vec![0u8; SCAN_CHUNK];
        for (index, (first_seq, path)) in found.into_iter().enumerate() {
            if let Some(previous) = segments.back_mut()
                && previous.end_seq() > first_seq
            {
                // Overlapping sequence numbers cannot come from appends;
                // trust the newer file.
                recovery.truncated_bytes += previous.cut_before(first_seq)?;
                recovery.corrupt_segments += 1;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_at(&path))?;
            let scan = segment::scan(&file, first_seq, &mut chunk).map_err(io_at(&path))?;
            if scan.valid_len < scan.file_len {
                file.set_len(scan.valid_len).map_err(io_at(&path))?;
                recovery.truncated_bytes += scan.file_len - scan.valid_len;
                if index == last_index {
                    recovery.torn_tail = true;
                } else {
                    recovery.corrupt_segments += 1;
                }
            }
            segments.push_back(Segment {
                first_seq,
                path,
                offsets: scan.offsets,
                len: scan.valid_len,
                synced: true,
            });
        }

        // Everything before the oldest segment is gone: acknowledged, or
        // dropped, which counts the same here.
        let floor = segments.front().map_or(0, |s| s.first_seq - 1);
        let acked = cursor.unwrap_or(floor).max(floor);
        let next_seq = segments.back().map_or(1, Segment::end_seq).max(acked + 1);

        // The newest segment must be the one the next record goes to.
        if segments.back().is_none_or(|s| s.end_seq() != next_seq) {
            if let Some(newest) = segments.back()
                && newest.count() == 0
            {
                remove_if_exists(&newest.path)?;
                segments.pop_back();
            }
            let path = dir.join(segment::file_name(next_seq));
            create_segment(&path)?;
            if config.fsync != FsyncPolicy::Never {
                fsync_dir(&dir)?;
            }
            segments.push_back(Segment::new(next_seq, path));
        }
        // Fully acknowledged (or empty) segments other than the newest.
        while segments.len() > 1
            && let Some(oldest) = segments.front()
            && oldest.end_seq() <= acked + 1
        {
            remove_if_exists(&oldest.path)?;
            segments.pop_front();
        }
        let active = match segments.back() {
            Some(newest) => OpenOptions::new()
                .append(true)
                .open(&newest.path)
                .map_err(io_at(&newest.path))?,
            None => return Err(no_active_segment(&dir)),
        };

        let disk_bytes = segments.iter().map(|s| s.len).sum();
        let mut spool = Spool {
            budget: config.segment_budget(),
            dir,
            config,
            _lock: lock,
            segments,
            active,
            active_poisoned: false,
            next_seq,
            acked,
            persisted: cursor.map(|value| (value, true)),
            last_persist: Instant::now(),
            cursor_write_errors: 0,
            read_seq: acked + 1,
            reader: None,
            disk_bytes,
            buf: Vec::new(),
            unsynced: 0,
            last_fsync: Instant::now(),
            dropped_records: 0,
            dropped_bytes: 0,
            appended: 0,
        };
        while spool.disk_bytes > spool.budget && spool.segments.len() > 1 {
            spool.drop_oldest()?;
        }

        let stats = spool.stats();
        recovery.segments = stats.segments;
        recovery.records = stats.pending_records;
        recovery.bytes = stats.pending_bytes;
        recovery.dropped_records = stats.dropped_records;
        recovery.acked = stats.acked;
        recovery.next_seq = stats.next_seq;
        Ok((spool, recovery))
    }

    /// Appends `record` and returns its sequence number. The record is
    /// written to the OS before this returns (and fsynced as the
    /// [`FsyncPolicy`] says). If the spool would exceed `max_bytes`, the
    /// oldest whole segments are deleted first, acknowledged or not, and
    /// their unacknowledged records counted as dropped.
    ///
    /// # Errors
    /// [`SpoolError::RecordTooLarge`] if the record takes more than
    /// `segment_bytes`; [`SpoolError::Io`] if it cannot be written or
    /// fsynced (disk full, ...). On error the record is not in the spool and
    /// the sequence number is not used.
    pub fn append(&mut self, record: &Record) -> Result<u64, SpoolError> {
        let size = format::encoded_len(record);
        let seq = self.next_seq;
        if size > self.config.segment_bytes || format::encode(seq, record, &mut self.buf).is_none()
        {
            return Err(SpoolError::RecordTooLarge {
                size,
                max: self.config.segment_bytes,
            });
        }

        let must_roll = self.segments.back().is_none_or(|active| {
            active.end_seq() != seq
                || (active.count() > 0 && active.len + size > self.config.segment_bytes)
        });
        if self.active_poisoned || must_roll {
            self.roll()?;
        }
        while self.disk_bytes + size > self.budget && self.segments.len() > 1 {
            self.drop_oldest()?;
        }

        let Some(active) = self.segments.back_mut() else {
            return Err(no_active_segment(&self.dir));
        };
        let offset = u32::try_from(active.len).map_err(|_| {
            io_at(&active.path)(std::io::Error::new(
                ErrorKind::InvalidData,
                "segment longer than 4 GiB",
            ))
        })?;
        let written = self.active.write_all(&self.buf).and_then(|()| {
            let fsync = match self.config.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::EveryN(n) => self.unsynced.saturating_add(1) >= n,
                FsyncPolicy::Interval(every) => self.last_fsync.elapsed() >= every,
                FsyncPolicy::OnRoll | FsyncPolicy::Never => false,
            };
            if fsync {
                self.active.sync_data()?;
            }
            Ok(fsync)
        });
        match written {
            Ok(fsynced) => {
                if fsynced {
                    self.unsynced = 0;
                    self.last_fsync = Instant::now();
                } else {
                    self.unsynced = self.unsynced.saturating_add(1);
                }
            }
            Err(e) => {
                // Take back whatever part of the record reached the file, so
                // that later appends do not follow garbage.
                if self.active.set_len(active.len).is_err() {
                    self.active_poisoned = true;
                }
                self.reader = None;
                return Err(io_at(&active.path)(e));
            }
        }
        active.offsets.push(offset);
        active.len += size;
        self.disk_bytes += size;
        self.next_seq += 1;
        self.appended += 1;
        Ok(seq)
    }

    /// The next record after the read cursor, with its sequence number, and
    /// advances the cursor; `None` when every appended record has been read.
    /// Sequence numbers of dropped records are skipped. Reads sequentially
    /// through a buffered reader on the current segment.
    ///
    /// A record that fails its checks here (the disk changed it since it was
    /// written or verified) is skipped and counted as dropped.
    ///
    /// # Errors
    /// [`SpoolError::Io`] if the segment cannot be read; the cursor does not
    /// move, so the call can be retried.
    #[expect(
        clippy::should_implement_trait,
        reason = "fallible, and None only means 'nothing yet': not an Iterator"
    )]
    pub fn next(&mut self) -> Result<Option<(u64, Record)>, SpoolError> {
        loop {
            if self.read_seq >= self.next_seq {
                return Ok(None);
            }
            let index = self
                .segments
                .partition_point(|s| s.end_seq() <= self.read_seq);
            let Some(segment) = self.segments.get(index) else {
                return Ok(None);
            };
            self.read_seq = self.read_seq.max(segment.first_seq);
            let seq = self.read_seq;
            let Some((start, end)) = segment.range(seq) else {
                return Ok(None);
            };
            let reader = match self.reader.take() {
                Some(reader) if reader.first_seq == segment.first_seq && reader.pos == start => {
                    reader
                }
                Some(mut reader) if reader.first_seq == segment.first_seq => {
                    reader
                        .file
                        .seek(SeekFrom::Start(start))
                        .map_err(io_at(&segment.path))?;
                    reader.pos = start;
                    reader
                }
                _ => {
                    let mut file = File::open(&segment.path).map_err(io_at(&segment.path))?;
                    file.seek(SeekFrom::Start(start))
                        .map_err(io_at(&segment.path))?;
                    Reader {
                        first_seq: segment.first_seq,
                        pos: start,
                        file: BufReader::with_capacity(READ_BUFFER, file),
                    }
                }
            };
            let mut reader = reader;
            let size = end - start;
            self.buf.clear();
            let read = (&mut reader.file).take(size).read_to_end(&mut self.buf);
            let record = match read {
                Ok(n) if n as u64 == size => {
                    reader.pos = end;
                    self.reader = Some(reader);
                    format::decode(&self.buf, seq)
                }
                // The file is shorter than written: the disk lost data.
                Ok(_) => None,
                Err(e) => return Err(io_at(&segment.path)(e)),
            };
            self.read_seq = seq + 1;
            match record {
                Some(record) => return Ok(Some((seq, record))),
                None => {
                    self.dropped_records += 1;
                    self.dropped_bytes += size;
                }
            }
        }
    }

    /// Acknowledges every record up to and including `upto`: they will not
    /// be replayed, and segments holding only acknowledged records (other
    /// than the one being appended to) are deleted. Acknowledging an
    /// already acknowledged or dropped sequence number is a no-op. If
    /// `upto` is past the read cursor, the read cursor moves past it.
    ///
    /// The cursor file is written when a segment is deleted, when
    /// `cursor_persist_interval` has passed since it was last written (a
    /// small atomic file write, fsynced only under the policies that fsync
    /// appends), and on [`sync`](Spool::sync) and drop; after a crash the
    /// acknowledgements since the last write are lost and those records
    /// replayed.
    ///
    /// # Errors
    /// [`SpoolError::AckOutOfRange`] if `upto` was never appended;
    /// [`SpoolError::Io`] if the cursor cannot be written before a segment
    /// is deleted, or the segment cannot be deleted: the acknowledgement
    /// still holds in memory and both are tried again on the next call. A
    /// failed periodic write is no error: it is counted in
    /// [`SpoolStats::cursor_write_errors`] and tried again an interval later.
    pub fn ack(&mut self, upto: u64) -> Result<(), SpoolError> {
        let last = self.next_seq - 1;
        if upto > last {
            return Err(SpoolError::AckOutOfRange { upto, last });
        }
        if upto > self.acked {
            self.acked = upto;
            self.read_seq = self.read_seq.max(upto + 1);
        }
        let done = self
            .segments
            .iter()
            .take(self.segments.len() - 1)
            .take_while(|s| s.end_seq() <= self.acked + 1)
            .count();
        let interval = self.config.cursor_persist_interval;
        let due = !interval.is_zero()
            && self.persisted.is_none_or(|(value, _)| value != self.acked)
            && self.last_persist.elapsed() >= interval;
        if done == 0
            && due
            && self
                .persist_cursor(self.config.fsyncs_periodic_cursor())
                .is_err()
        {
            // Best effort: counted, and tried again an interval later, not
            // on every acknowledgement; deliveries go on.
            self.cursor_write_errors += 1;
            self.last_persist = Instant::now();
        }
        if done > 0 {
            self.persist_cursor(self.config.fsync != FsyncPolicy::Never)?;
            for _ in 0..done {
                let Some(oldest) = self.segments.front() else {
                    break;
                };
                remove_if_exists(&oldest.path)?;
                self.disk_bytes -= oldest.len;
                self.segments.pop_front();
            }
        }
        Ok(())
    }

    /// Moves the read cursor back to the first unacknowledged record, e.g.
    /// after a failed delivery: [`next`](Spool::next) returns it again.
    pub fn rewind(&mut self) {
        self.read_seq = self.acked + 1;
    }

    /// Makes everything durable: fsyncs the segment data, writes and fsyncs
    /// the cursor file, fsyncs the directory. Call it on shutdown, and
    /// periodically (e.g. every second) to bound what a power loss can take
    /// (a crash of the process is already bounded by
    /// `cursor_persist_interval`).
    ///
    /// # Errors
    /// [`SpoolError::Io`] if anything cannot be written or fsynced.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        for segment in self.segments.iter_mut().filter(|s| !s.synced) {
            match File::open(&segment.path).and_then(|f| f.sync_data()) {
                Ok(()) => segment.synced = true,
                Err(e) if e.kind() == ErrorKind::NotFound => segment.synced = true,
                Err(e) => return Err(io_at(&segment.path)(e)),
            }
        }
        if let Some(active) = self.segments.back() {
            self.active.sync_data().map_err(io_at(&active.path))?;
        }
        self.unsynced = 0;
        self.last_fsync = Instant::now();
        self.persist_cursor(true)?;
        fsync_dir(&self.dir)
    }

    /// Sizes and counters.
    pub fn stats(&self) -> SpoolStats {
        let (pending_records, pending_bytes) =
            self.segments.iter().fold((0, 0), |(records, bytes), s| {
                let (r, b) = s.pending(self.acked);
                (records + r, bytes + b)
            });
        SpoolStats {
            pending_records,
            pending_bytes,
            disk_bytes: self.disk_bytes,
            segments: self.segments.len(),
            dropped_records: self.dropped_records,
            dropped_bytes: self.dropped_bytes,
            appended: self.appended,
            acked: self.acked,
            next_seq: self.next_seq,
            cursor_write_errors: self.cursor_write_errors,
        }
    }

    /// Whether every record is acknowledged (or dropped).
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.end_seq() <= self.acked + 1)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.config
    }

    /// Closes the active segment (fsynced unless the policy is `Never`) and
    /// starts a new one for sequence number `next_seq`.
    fn roll(&mut self) -> Result<(), SpoolError> {
        let never = self.config.fsync == FsyncPolicy::Never;
        if let Some(active) = self.segments.back_mut() {
            if self.active_poisoned && self.active.set_len(active.len).is_ok() {
                self.active_poisoned = false;
            }
            if never || self.active_poisoned {
                active.synced = self.unsynced == 0;
            } else {
                self.active.sync_data().map_err(io_at(&active.path))?;
                active.synced = true;
            }
            if active.count() == 0 {
                // Nothing in it (e.g. its only append failed): replace it.
                // The new file may get the same name, so forget any reader.
                remove_if_exists(&active.path)?;
                self.disk_bytes -= active.len;
                self.segments.pop_back();
                self.reader = None;
            }
        }
        let path = self.dir.join(segment::file_name(self.next_seq));
        let file = create_segment(&path)?;
        if !never {
            fsync_dir(&self.dir)?;
        }
        self.active = file;
        self.active_poisoned = false;
        self.unsynced = 0;
        self.last_fsync = Instant::now();
        self.segments.push_back(Segment::new(self.next_seq, path));
        Ok(())
    }

    /// Deletes the oldest segment to make room; its unacknowledged records
    /// count as dropped. Callers keep at least one segment.
    fn drop_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(oldest) = self.segments.front() else {
            return Ok(());
        };
        remove_if_exists(&oldest.path)?;
        let (records, bytes) = oldest.pending(self.acked);
        self.dropped_records += records;
        self.dropped_bytes += bytes;
        self.disk_bytes -= oldest.len;
        self.segments.pop_front();
        if let Some(first_seq) = self.segments.front().map(|s| s.first_seq) {
            self.acked = self.acked.max(first_seq - 1);
            self.read_seq = self.read_seq.max(first_seq);
        }
        Ok(())
    }

    /// Writes the cursor file if it is behind (or, with `fsync`, not yet
    /// durable): temp file, optional fsync, rename, optional directory fsync.
    fn persist_cursor(&mut self, fsync: bool) -> Result<(), SpoolError> {
        if let Some((value, durable)) = self.persisted
            && value == self.acked
            && (durable || !fsync)
        {
            return Ok(());
        }
        let tmp = self.dir.join(CURSOR_TMP);
        let path = self.dir.join(CURSOR_FILE);
        let mut file = File::create(&tmp).map_err(io_at(&tmp))?;
        file.write_all(&format::encode_cursor(self.acked))
            .map_err(io_at(&tmp))?;
        if fsync {
            file.sync_all().map_err(io_at(&tmp))?;
        }
        drop(file);
        fs::rename(&tmp, &path).map_err(io_at(&path))?;
        if fsync {
            fsync_dir(&self.dir)?;
        }
        self.persisted = Some((self.acked, fsync));
        self.last_persist = Instant::now();
        Ok(())
    }
}

impl Drop for Spool {
    /// Persists acknowledgements made since the cursor was last written
    /// (best effort, errors ignored), so a clean stop replays nothing that
    /// was acknowledged. Data is not fsynced here: call
    /// [`sync`](Spool::sync) for that.
    fn drop(&mut self) {
        let _ = self.persist_cursor(self.config.fsync != FsyncPolicy::Never);
    }
}

/// Creates an empty segment file (emptying a leftover of the same name) and
/// returns its append handle.
fn create_segment(path: &Path) -> Result<File, SpoolError> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_at(path))?;
    file.set_len(0).map_err(io_at(path))?;
    Ok(file)
}

/// The invariant "there is always an active segment" broke; cannot happen.
fn no_active_segment(dir: &Path) -> SpoolError {
    io_at(dir)(std::io::Error::other("spool has no active segment"))
}

fn remove_if_exists(path: &Path) -> Result<(), SpoolError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at(path)(e)),
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}
