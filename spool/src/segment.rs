//! Segment files: naming, the in-memory index, and the recovery scan.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{SpoolError, io_at};
use crate::format::{self, BODY_MIN, HEADER_LEN};

/// Suffix of segment file names.
const SUFFIX: &str = ".seg";
/// Digits of the first sequence number in a segment file name.
const DIGITS: usize = 20;
/// Sequence numbers stay below this (at 10^6 appends a second that takes
/// 146,000 years); larger numbers in file names or the cursor are damage.
/// Keeps all sequence arithmetic far from overflow.
pub(crate) const MAX_SEQ: u64 = 1 << 62;
/// Read buffer of the recovery scan.
const SCAN_BUFFER: usize = 256 * 1024;

/// One segment file and the byte offset of each of its records. Records
/// hold consecutive sequence numbers from `first_seq`.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_seq: u64,
    pub path: PathBuf,
    /// Start offset of each record, in order.
    pub offsets: Vec<u32>,
    /// Length of the valid records (= the file's length, but for a torn
    /// write that could not be undone).
    pub len: u64,
    /// Everything in it has been fsynced (only tracked for closed
    /// segments, so that `sync` under `FsyncPolicy::Never` can finish
    /// the job).
    pub synced: bool,
}

impl Segment {
    pub fn new(first_seq: u64, path: PathBuf) -> Self {
        Self {
            first_seq,
            path,
            offsets: Vec::new(),
            len: 0,
            synced: true,
        }
    }

    /// Number of records.
    pub fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// One past the last sequence number held.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.count()
    }

    /// Byte range `[start, end)` of record `seq`, `None` if not held here.
    pub fn range(&self, seq: u64) -> Option<(u64, u64)> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        let start = u64::from(*self.offsets.get(index)?);
        let end = self
            .offsets
            .get(index + 1)
            .map_or(self.len, |&next| u64::from(next));
        Some((start, end))
    }

    /// Records and bytes held here with sequence numbers above `acked`.
    pub fn pending(&self, acked: u64) -> (u64, u64) {
        let from = acked.saturating_add(1).max(self.first_seq);
        match self.range(from) {
            Some((start, _)) => (self.end_seq() - from, self.len - start),
            None => (0, 0),
        }
    }

    /// Cuts the segment (index and file) to the records before `seq`;
    /// returns the bytes removed.
    pub fn cut_before(&mut self, seq: u64) -> Result<u64, SpoolError> {
        let Some((start, _)) = self.range(seq) else {
            return Ok(0);
        };
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io_at(&self.path))?;
        file.set_len(start).map_err(io_at(&self.path))?;
        let keep = usize::try_from(seq - self.first_seq).unwrap_or(usize::MAX);
        self.offsets.truncate(keep);
        let removed = self.len - start;
        self.len = start;
        Ok(removed)
    }
}

/// The file name of the segment whose first record is `first_seq`.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{first_seq:020}{SUFFIX}")
}

/// The first sequence number in a segment file name; `None` for any other
/// name (and for sequence number 0, which is never used, or one from
/// [`MAX_SEQ`] up).
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&seq| seq > 0 && seq < MAX_SEQ)
}

/// Segment files in `dir`, by first sequence number. Other files are
/// ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let Some(first_seq) = entry.file_name().to_str().and_then(parse_name) else {
            continue;
        };
        if entry.file_type().map_err(io_at(&entry.path()))?.is_file() {
            found.push((first_seq, entry.path()));
        }
    }
    found.sort_unstable_by_key(|&(first_seq, _)| first_seq);
    Ok(found)
}

/// What the recovery scan found in one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Start offsets of the intact records, in order.
    pub offsets: Vec<u32>,
    /// Length of the intact prefix.
    pub valid_len: u64,
    /// Length of the file.
    pub file_len: u64,
}

/// Reads a segment from the start and verifies every record: framing,
/// expected sequence number, length within the file, CRC. Stops at the
/// first record that fails (a torn write or corruption); everything from
/// there is invalid. Bodies are streamed through the CRC in `chunk`-sized
/// pieces, so a bogus length never causes a large allocation.
pub(crate) fn scan(file: &File, first_seq: u64, chunk: &mut [u8]) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(SCAN_BUFFER, file);
    let mut offsets = Vec::new();
    let mut pos = 0u64;
    let mut header = [0u8; HEADER_LEN];
    'records: while pos < file_len {
        let Ok(offset) = u32::try_from(pos) else {
            break;
        };
        let remaining = file_len - pos;
        if remaining < HEADER_LEN as u64 || !read_full(&mut reader, &mut header)? {
            break;
        }
        let Some(parsed) = format::parse_header(&header) else {
            break;
        };
        let body_len = u64::from(parsed.body_len);
        if parsed.seq != first_seq + offsets.len() as u64
            || body_len < BODY_MIN
            || body_len > remaining - HEADER_LEN as u64
        {
            break;
        }
        let mut hasher = format::crc_of_header(&header);
        let mut left = body_len;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            let Some(piece) = chunk.get_mut(..n) else {
                break 'records;
            };
            if n == 0 || !read_full(&mut reader, piece)? {
                break 'records;
            }
            hasher.update(piece);
            left -= n as u64;
        }
        if hasher.finalize() != parsed.crc {
            break;
        }
        offsets.push(offset);
        pos += HEADER_LEN as u64 + body_len;
    }
    Ok(Scan {
        offsets,
        valid_len: pos,
        file_len,
    })
}

/// Fills `buf`; `false` if the file ended first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Record;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        assert_eq!(file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_name(&file_name(1)), Some(1));
        assert_eq!(parse_name(&file_name(MAX_SEQ - 1)), Some(MAX_SEQ - 1));
        for bad in [
            "00000000000000000000.seg",
            "0000000000000000001.seg",
            "000000000000000000001.seg",
            "99999999999999999999.seg",
            "18446744073709551615.seg",
            "0000000000000000000a.seg",
            "+0000000000000000001.seg",
            "00000000000000000001.seg.tmp",
            "acked",
            "lock",
        ] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    fn write_records(path: &Path, first_seq: u64, n: u64) -> Vec<u64> {
        let mut file = File::create(path).unwrap();
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        let mut len = 0;
        for seq in first_seq..first_seq + n {
            let record = Record {
                topic: "t".into(),
                key: vec![1, 2],
                payload: vec![seq as u8; 10 + seq as usize],
                timestamp_ms: 0,
            };
            format::encode(seq, &record, &mut buf).unwrap();
            file.write_all(&buf).unwrap();
            len += buf.len() as u64;
            ends.push(len);
        }
        ends
    }

    #[test]
    fn scan_stops_at_a_torn_record_and_at_a_wrong_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(5));
        let ends = write_records(&path, 5, 4);
        let mut chunk = vec![0; 7]; // tiny on purpose: bodies span pieces
        let full = scan(&File::open(&path).unwrap(), 5, &mut chunk).unwrap();
        assert_eq!(full.offsets.len(), 4);
        assert_eq!(full.valid_len, ends[3]);
        assert_eq!(full.file_len, ends[3]);

        let wrong_first = scan(&File::open(&path).unwrap(), 4, &mut chunk).unwrap();
        assert_eq!(wrong_first.offsets.len(), 0);
        assert_eq!(wrong_first.valid_len, 0);

        for cut in ends[2]..ends[3] {
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(cut)
                .unwrap();
            let torn = scan(&File::open(&path).unwrap(), 5, &mut chunk).unwrap();
            assert_eq!(torn.offsets.len(), 3, "cut at {cut}");
            assert_eq!(torn.valid_len, ends[2]);
            assert_eq!(torn.file_len, cut);
        }
    }
}
