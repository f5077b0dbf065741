//! Behaviour of the spool through its public API and its files on disk.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spool::{ConfigError, FsyncPolicy, RECORD_OVERHEAD, Record, Spool, SpoolConfig, SpoolError};

const TOPIC: &str = "edge.detections";

fn config(max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::OnRoll,
        cursor_persist_interval: spool::DEFAULT_CURSOR_PERSIST_INTERVAL,
    }
}

/// Longer than any test runs: the periodic cursor write never comes due.
const NEVER: Duration = Duration::from_secs(3600);
/// A periodic cursor write interval that tests wait past with a sleep
/// (a sleep lasts at least as long as asked, so this cannot flake).
const SHORT: Duration = Duration::from_millis(50);

/// The value in the cursor file `acked` (documented layout: "SPAK", the
/// u64 little-endian, CRC-32).
fn cursor_on_disk(dir: &Path) -> Option<u64> {
    let bytes = fs::read(dir.join("acked")).ok()?;
    assert_eq!(bytes.len(), 16, "cursor file size");
    assert_eq!(&bytes[..4], b"SPAK");
    Some(u64::from_le_bytes(bytes[4..12].try_into().unwrap()))
}

/// Record number `i`: payload sizes vary, contents identify it.
fn record(i: u64) -> Record {
    let len = 100 + (i * 37 % 150) as usize;
    Record::new(
        TOPIC,
        format!("cam-{}", i % 4),
        (0..len)
            .map(|j| (i as usize + j) as u8)
            .collect::<Vec<u8>>(),
        1_700_000_000_000 + i as i64,
    )
}

fn append_range(spool: &mut Spool, range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.map(|i| spool.append(&record(i)).unwrap()).collect()
}

fn drain(spool: &mut Spool) -> Vec<(u64, Record)> {
    std::iter::from_fn(|| spool.next().unwrap()).collect()
}

fn seqs(read: &[(u64, Record)]) -> Vec<u64> {
    read.iter().map(|(seq, _)| *seq).collect()
}

/// Segment files, oldest first.
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

/// Sum of the lengths of every file in `dir`.
fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn assert_records(read: &[(u64, Record)], expected: impl IntoIterator<Item = u64>) {
    let expected: Vec<u64> = expected.into_iter().collect();
    assert_eq!(seqs(read), expected);
    for (seq, got) in read {
        assert_eq!(got, &record(*seq), "record {seq}");
    }
}

#[test]
fn round_trip_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.is_clean());
    assert_eq!((recovery.records, recovery.next_seq), (0, 1));
    assert!(spool.is_empty());

    let seqs_appended = append_range(&mut spool, 1..=200);
    assert_eq!(seqs_appended, (1..=200).collect::<Vec<_>>());
    let bytes: u64 = (1..=200).map(|i| record(i).encoded_len()).sum();
    let stats = spool.stats();
    assert_eq!(stats.appended, 200);
    assert_eq!(stats.pending_records, 200);
    assert_eq!(stats.pending_bytes, bytes);
    assert_eq!(stats.disk_bytes, bytes);
    assert_eq!(stats.next_seq, 201);
    assert!(stats.segments >= 8, "{stats:?}");
    assert_eq!(stats.segments, segment_files(dir.path()).len());
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, bytes);
    for path in segment_files(dir.path()) {
        assert!(fs::metadata(&path).unwrap().len() <= 4096);
    }
    assert!(!spool.is_empty());

    let read = drain(&mut spool);
    assert_records(&read, 1..=200);
    assert!(spool.next().unwrap().is_none());
    // Reading does not acknowledge.
    assert_eq!(spool.stats().pending_records, 200);

    // Appends after the reader caught up are read next.
    append_range(&mut spool, 201..=203);
    assert_records(&drain(&mut spool), 201..=203);
}

#[test]
fn interleaved_append_and_read_follow_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    for i in 1..=300 {
        assert_eq!(spool.append(&record(i)).unwrap(), i);
        if i % 3 == 0 {
            let read = drain(&mut spool);
            assert_records(&read, i - 2..=i);
            spool.ack(i).unwrap();
        }
    }
    assert!(spool.is_empty());
    // Acknowledged segments are gone; only the active one is left.
    assert_eq!(spool.stats().segments, 1);
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[test]
fn empty_fields_and_exact_fit_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 16, 4096)).unwrap();
    let empty = Record::default();
    let exact = Record::new(
        "t",
        Vec::new(),
        vec![7u8; 4096 - RECORD_OVERHEAD as usize - 1],
        -5,
    );
    assert_eq!(exact.encoded_len(), 4096);
    assert_eq!(spool.append(&empty).unwrap(), 1);
    assert_eq!(spool.append(&exact).unwrap(), 2);
    assert_eq!(spool.append(&empty).unwrap(), 3);
    assert_eq!(spool.next().unwrap(), Some((1, empty.clone())));
    assert_eq!(spool.next().unwrap(), Some((2, exact)));
    assert_eq!(spool.next().unwrap(), Some((3, empty)));
    assert_eq!(spool.stats().segments, 3);
}

#[test]
fn ack_deletes_segments_and_reopen_replays_only_unacknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 4096);
    let (mut spool, _) = Spool::open(dir.path(), cfg.clone()).unwrap();
    append_range(&mut spool, 1..=200);
    let segments_before = spool.stats().segments;
    let read = drain(&mut spool);
    assert_eq!(read.len(), 200);

    spool.ack(120).unwrap();
    let stats = spool.stats();
    assert!(stats.segments < segments_before, "{stats:?}");
    assert_eq!(stats.segments, segment_files(dir.path()).len());
    assert_eq!(stats.pending_records, 80);
    assert_eq!(
        stats.pending_bytes,
        (121..=200).map(|i| record(i).encoded_len()).sum::<u64>()
    );
    assert_eq!(stats.acked, 120);
    // The oldest remaining segment holds record 120 or 121 (whole
    // acknowledged segments only are deleted).
    let first_kept: u64 = segment_files(dir.path())[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(first_kept <= 121 && first_kept > 1, "{first_kept}");
    // Acknowledging again, or something older, is harmless.
    spool.ack(100).unwrap();
    spool.ack(120).unwrap();
    assert_eq!(spool.stats().pending_records, 80);
    drop(spool);

    let (mut spool, recovery) = Spool::open(dir.path(), cfg.clone()).unwrap();
    assert!(recovery.is_clean(), "{recovery:?}");
    assert_eq!(recovery.records, 80);
    assert_eq!(recovery.acked, 120);
    assert_eq!(recovery.next_seq, 201);
    assert_records(&drain(&mut spool), 121..=200);

    // The sequence continues after a reopen.
    assert_eq!(spool.append(&record(201)).unwrap(), 201);
    assert_records(&drain(&mut spool), [201]);

    // Everything acknowledged and synced: a reopen replays nothing.
    spool.ack(201).unwrap();
    assert!(spool.is_empty());
    spool.sync().unwrap();
    drop(spool);
    let (mut spool, recovery) = Spool::open(dir.path(), cfg).unwrap();
    assert_eq!((recovery.records, recovery.next_seq), (0, 202));
    assert!(spool.is_empty());
    assert!(spool.next().unwrap().is_none());
    assert_eq!(spool.append(&record(202)).unwrap(), 202);
}

#[test]
fn ack_beyond_the_last_append_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 16, 4096)).unwrap();
    assert!(matches!(
        spool.ack(1),
        Err(SpoolError::AckOutOfRange { upto: 1, last: 0 })
    ));
    spool.ack(0).unwrap();
    append_range(&mut spool, 1..=3);
    assert!(matches!(
        spool.ack(4),
        Err(SpoolError::AckOutOfRange { upto: 4, last: 3 })
    ));
    // Acknowledging ahead of the reader moves the reader along.
    spool.ack(2).unwrap();
    assert_records(&drain(&mut spool), [3]);
}

#[test]
fn rewind_redelivers_from_the_first_unacknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    append_range(&mut spool, 1..=100);

    let first: Vec<_> = (0..30).map(|_| spool.next().unwrap().unwrap()).collect();
    assert_records(&first, 1..=30);
    spool.ack(10).unwrap();
    let more: Vec<_> = (0..5).map(|_| spool.next().unwrap().unwrap()).collect();
    assert_records(&more, 31..=35);

    spool.rewind();
    assert_records(&drain(&mut spool), 11..=100);

    // Again after the reader crossed several segments and acks deleted some.
    spool.ack(57).unwrap();
    spool.rewind();
    assert_records(&drain(&mut spool), 58..=100);

    // Nothing unacknowledged read yet: rewind is a no-op.
    spool.ack(100).unwrap();
    spool.rewind();
    assert!(spool.next().unwrap().is_none());
}

/// Appends `n` records over several segments, closes the spool and returns
/// the path of the newest segment file and the end offset of each of its
/// records.
fn spool_with_records(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
    let (mut spool, _) = Spool::open(dir, config(1 << 20, 4096)).unwrap();
    append_range(&mut spool, 1..=n);
    drop(spool);
    let files = segment_files(dir);
    let last = files.last().unwrap().clone();
    let first_seq: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut end = 0;
    let ends = (first_seq..=n)
        .map(|i| {
            end += record(i).encoded_len();
            end
        })
        .collect();
    (last, ends)
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5A;
    fs::write(path, bytes).unwrap();
}

#[test]
fn torn_tail_mid_record_is_cut_and_appends_continue() {
    // Cut 7 bytes into the last record's body, then 5 bytes into its header.
    for (case, cut_of) in [
        ("mid-body", (|_prev, full| full - 7) as fn(u64, u64) -> u64),
        ("mid-header", |prev, _full| prev + 5),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (last, ends) = spool_with_records(dir.path(), 60);
        assert!(ends.len() >= 2);
        let full = *ends.last().unwrap();
        let previous_end = ends[ends.len() - 2];
        let cut = cut_of(previous_end, full);
        set_len(&last, cut);

        let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
        assert!(recovery.torn_tail, "{case}: {recovery:?}");
        assert_eq!(recovery.corrupt_segments, 0);
        assert_eq!(recovery.truncated_bytes, cut - previous_end);
        assert_eq!(recovery.records, 59);
        assert_eq!(recovery.next_seq, 60);
        assert_eq!(fs::metadata(&last).unwrap().len(), previous_end);
        assert_records(&drain(&mut spool), 1..=59);

        // The torn record's append never returned: its number is reissued.
        assert_eq!(spool.append(&record(60)).unwrap(), 60);
        assert_eq!(spool.append(&record(61)).unwrap(), 61);
        assert_records(&drain(&mut spool), 60..=61);
        drop(spool);
        let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
        assert!(recovery.is_clean(), "{case}: {recovery:?}");
        assert_records(&drain(&mut spool), 1..=61);
    }
}

#[test]
fn flipped_payload_byte_in_the_last_segment_cuts_from_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let (last, ends) = spool_with_records(dir.path(), 60);
    assert!(ends.len() >= 4);
    let full = *ends.last().unwrap();
    // Record 58 is the third to last; damage the middle of its payload.
    let start_58 = ends[ends.len() - 4];
    let end_58 = ends[ends.len() - 3];
    flip_byte(&last, (start_58 + end_58) / 2 + 10);

    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.torn_tail);
    assert_eq!(recovery.truncated_bytes, full - start_58);
    assert_eq!(recovery.records, 57);
    assert_records(&drain(&mut spool), 1..=57);
    assert_eq!(spool.append(&record(58)).unwrap(), 58);
    assert_records(&drain(&mut spool), [58]);
}

#[test]
fn corrupt_record_in_an_older_segment_drops_the_rest_of_that_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    append_range(&mut spool, 1..=150);
    drop(spool);
    let files = segment_files(dir.path());
    assert!(files.len() >= 5);
    let victim = &files[1];
    let first: u64 = victim
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let next_first: u64 = files[2]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Damage the third record of the second segment (its sequence number
    // field, so the CRC and the expected number both fail).
    let offset: u64 = (first..first + 2).map(|i| record(i).encoded_len()).sum();
    flip_byte(victim, offset + 9);
    let victim_len = fs::metadata(victim).unwrap().len();

    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(!recovery.torn_tail);
    assert_eq!(recovery.corrupt_segments, 1);
    assert_eq!(recovery.truncated_bytes, victim_len - offset);
    let lost = next_first - (first + 2);
    assert_eq!(recovery.records, 150 - lost);
    let expected: Vec<u64> = (1..first + 2).chain(next_first..=150).collect();
    assert_records(&drain(&mut spool), expected);
    assert_eq!(spool.append(&record(151)).unwrap(), 151);
    assert_records(&drain(&mut spool), [151]);
}

#[test]
fn length_field_claiming_4_gib_is_a_torn_tail_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let (last, ends) = spool_with_records(dir.path(), 20);
    let full = *ends.last().unwrap();
    // A header for record 21 whose body length says almost 4 GiB.
    let mut header = vec![0xA7, 0x53, 1, 0];
    header.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    header.extend_from_slice(&21u64.to_le_bytes());
    header.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
    header.extend_from_slice(b"some bytes of a body");
    let mut file = OpenOptions::new().append(true).open(&last).unwrap();
    file.write_all(&header).unwrap();
    drop(file);

    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.torn_tail);
    assert_eq!(recovery.truncated_bytes, header.len() as u64);
    assert_eq!(fs::metadata(&last).unwrap().len(), full);
    assert_records(&drain(&mut spool), 1..=20);
}

#[test]
fn garbage_files_and_a_damaged_cursor_do_not_lose_records() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = spool_with_records(dir.path(), 30);
    fs::write(dir.path().join("acked"), b"nonsense").unwrap();
    fs::write(dir.path().join("acked.tmp"), b"half-written").unwrap();
    fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
    fs::write(
        dir.path().join("00000000000000000000.seg"),
        b"seq 0 is never used",
    )
    .unwrap();

    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.cursor_invalid);
    assert_eq!(recovery.records, 30);
    assert!(!dir.path().join("acked.tmp").exists());
    assert_records(&drain(&mut spool), 1..=30);
}

#[test]
fn bounded_spool_drops_the_oldest_segments_and_counts_them_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 16 * 1024;
    let (mut spool, _) = Spool::open(dir.path(), config(max_bytes, 4096)).unwrap();
    let mut total_bytes = 0;
    for i in 1..=1000 {
        assert_eq!(spool.append(&record(i)).unwrap(), i);
        total_bytes += record(i).encoded_len();
        assert!(dir_size(dir.path()) <= max_bytes, "after append {i}");
        let stats = spool.stats();
        assert_eq!(stats.dropped_records + stats.pending_records, i);
        assert_eq!(stats.dropped_bytes + stats.pending_bytes, total_bytes);
        assert_eq!(stats.disk_bytes, stats.pending_bytes);
    }
    let stats = spool.stats();
    assert!(stats.dropped_records > 800, "{stats:?}");
    // What is left is the newest records, in order, none missing.
    let read = drain(&mut spool);
    let first = 1000 - stats.pending_records + 1;
    assert_records(&read, first..=1000);
    // Acknowledging a dropped sequence number is fine.
    spool.ack(3).unwrap();
    assert_eq!(spool.stats().pending_records, stats.pending_records);
    spool.sync().unwrap();
    assert!(dir_size(dir.path()) <= max_bytes);
}

#[test]
fn dropping_counts_only_unacknowledged_records_and_moves_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(8192 + 64, 4096)).unwrap();
    append_range(&mut spool, 1..=10);
    assert_eq!(spool.stats().segments, 1);
    // Read and acknowledge part of the oldest segment, leave the reader in it.
    let read: Vec<_> = (0..6).map(|_| spool.next().unwrap().unwrap()).collect();
    assert_records(&read, 1..=6);
    spool.ack(4).unwrap();

    // Fill until the oldest segment (1..) has to go.
    let mut i = 10;
    while spool.stats().dropped_records == 0 {
        i += 1;
        spool.append(&record(i)).unwrap();
    }
    let files = segment_files(dir.path());
    let oldest_kept: u64 = files[0]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let stats = spool.stats();
    // Records 1..=4 were acknowledged; 5..oldest_kept were lost.
    assert_eq!(stats.dropped_records, oldest_kept - 5);
    assert_eq!(
        stats.dropped_bytes,
        (5..oldest_kept)
            .map(|j| record(j).encoded_len())
            .sum::<u64>()
    );
    assert_eq!(stats.acked, oldest_kept - 1);
    // The reader skips the dropped numbers.
    let read = drain(&mut spool);
    assert_records(&read, oldest_kept..=i);
    // A rewind cannot go back into dropped records either.
    spool.rewind();
    assert_eq!(spool.next().unwrap().unwrap().0, oldest_kept);
}

#[test]
fn a_smaller_max_bytes_is_enforced_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    append_range(&mut spool, 1..=400);
    drop(spool);
    assert!(dir_size(dir.path()) > 16 * 1024);
    let (mut spool, recovery) = Spool::open(dir.path(), config(16 * 1024, 4096)).unwrap();
    assert!(dir_size(dir.path()) <= 16 * 1024);
    assert!(recovery.dropped_records > 0);
    assert_eq!(recovery.dropped_records + recovery.records, 400);
    assert_records(&drain(&mut spool), 400 - recovery.records + 1..=400);
}

#[test]
fn record_too_large_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(dir.path(), config(1 << 16, 4096)).unwrap();
    append_range(&mut spool, 1..=2);
    let big = Record::new(TOPIC, b"k".to_vec(), vec![0u8; 4096], 0);
    let size = big.encoded_len();
    match spool.append(&big) {
        Err(SpoolError::RecordTooLarge { size: s, max: 4096 }) => assert_eq!(s, size),
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    let message = spool.append(&big).unwrap_err().to_string();
    assert!(message.contains("segment_bytes"), "{message}");
    assert_eq!(spool.stats().appended, 2);
    assert_eq!(spool.append(&record(3)).unwrap(), 3);
    assert_records(&drain(&mut spool), 1..=3);
}

#[test]
fn bad_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (config(1 << 20, 1000), ConfigError::SegmentTooSmall(1000)),
        (
            config(6000, 4096),
            ConfigError::MaxBytesTooSmall {
                max_bytes: 6000,
                segment_bytes: 4096,
            },
        ),
        (
            SpoolConfig {
                fsync: FsyncPolicy::EveryN(0),
                ..config(1 << 20, 4096)
            },
            ConfigError::EveryNZero,
        ),
        (
            SpoolConfig {
                fsync: FsyncPolicy::Interval(Duration::ZERO),
                ..config(1 << 20, 4096)
            },
            ConfigError::ZeroInterval,
        ),
    ];
    for (cfg, expected) in cases {
        match Spool::open(dir.path().join("never-created"), cfg) {
            Err(SpoolError::Config(e)) => assert_eq!(e, expected),
            other => panic!("expected {expected:?}, got {other:?}"),
        }
    }
    assert!(!dir.path().join("never-created").exists());
}

#[test]
fn a_second_open_of_a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/spool");
    let (spool, _) = Spool::open(&path, config(1 << 16, 4096)).unwrap();
    match Spool::open(&path, config(1 << 16, 4096)) {
        Err(SpoolError::Locked { dir, pid }) => {
            assert_eq!(dir, path);
            assert_eq!(pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let message = Spool::open(&path, config(1 << 16, 4096))
        .unwrap_err()
        .to_string();
    assert!(message.contains("in use"), "{message}");
    drop(spool);
    Spool::open(&path, config(1 << 16, 4096)).unwrap();
}

#[test]
fn a_stale_lock_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    // A pid above the kernel's maximum (4194304): certainly not alive.
    fs::write(dir.path().join("lock"), "4194999\n").unwrap();
    let (spool, _) = Spool::open(dir.path(), config(1 << 16, 4096)).unwrap();
    let owner = fs::read_to_string(dir.path().join("lock")).unwrap();
    assert_eq!(owner.trim(), std::process::id().to_string());
    drop(spool);
    // A lock file naming a live process (here ourselves, as after a restart
    // as pid 1 in a container) but not locked by anyone is stale too.
    fs::write(dir.path().join("lock"), format!("{}\n", std::process::id())).unwrap();
    Spool::open(dir.path(), config(1 << 16, 4096)).unwrap();
}

#[test]
fn drop_without_sync_keeps_everything() {
    for fsync in [
        FsyncPolicy::Never,
        FsyncPolicy::OnRoll,
        FsyncPolicy::Always,
        FsyncPolicy::EveryN(3),
        FsyncPolicy::Interval(Duration::from_millis(1)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            fsync,
            ..config(1 << 20, 4096)
        };
        let (mut spool, _) = Spool::open(dir.path(), cfg.clone()).unwrap();
        append_range(&mut spool, 1..=100);
        let read: Vec<_> = (0..10).map(|_| spool.next().unwrap().unwrap()).collect();
        assert_records(&read, 1..=10);
        spool.ack(10).unwrap();
        drop(spool);
        let (mut spool, recovery) = Spool::open(dir.path(), cfg).unwrap();
        assert!(recovery.is_clean(), "{fsync:?}: {recovery:?}");
        // The drop persisted the acknowledgement.
        assert_eq!(recovery.acked, 10, "{fsync:?}");
        assert_records(&drain(&mut spool), 11..=100);
        spool.sync().unwrap();
    }
}

/// Environment variable that turns `crash_child` into the crashing child.
const CHILD_DIR: &str = "SPOOL_TEST_CRASH_DIR";
/// Environment variable naming what the child does before it crashes.
const CHILD_SCENARIO: &str = "SPOOL_TEST_CRASH_SCENARIO";

/// Not a test by itself: run by the `a_crashed_process_*` tests in a child
/// process, which it aborts (no destructors, no flush, no cursor write on
/// drop) in the middle of its work.
#[test]
#[ignore = "run as a child process by the a_crashed_process_* tests"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let scenario = std::env::var(CHILD_SCENARIO).unwrap();
    // One segment: acknowledgements delete nothing, so only sync and the
    // periodic cursor write persist them.
    let interval = if scenario == "interval" { SHORT } else { NEVER };
    let cfg = SpoolConfig {
        cursor_persist_interval: interval,
        ..config(4 << 20, 1 << 20)
    };
    let (mut spool, _) = Spool::open(dir, cfg).unwrap();
    append_range(&mut spool, 1..=500);
    for _ in 0..300 {
        spool.next().unwrap().unwrap();
    }
    match scenario.as_str() {
        "sync" => {
            spool.ack(100).unwrap();
            spool.sync().unwrap();
            spool.ack(150).unwrap();
        }
        "interval" => {
            // More than the interval since the open (or since a write by
            // this first ack): the second ack writes the cursor.
            spool.ack(100).unwrap();
            std::thread::sleep(SHORT + Duration::from_millis(10));
            spool.ack(250).unwrap();
        }
        "no-interval" => {
            // The interval (an hour) never elapses: the old behaviour.
            spool.ack(100).unwrap();
            spool.ack(250).unwrap();
        }
        other => panic!("unknown scenario {other}"),
    }
    std::process::abort();
}

/// Runs `crash_child` with `scenario` on a new spool directory, reopens the
/// spool the dead child left and checks that nothing appended is missing and
/// that exactly the records after `acked` are replayed.
fn assert_crash_replays_after(scenario: &str, acked: u64) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_SCENARIO, scenario)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    // The kernel released the dead child's lock.
    let (mut spool, recovery) = Spool::open(dir.path(), config(4 << 20, 1 << 20)).unwrap();
    assert!(recovery.is_clean(), "{recovery:?}");
    assert_eq!(recovery.next_seq, 501);
    assert_eq!(recovery.acked, acked, "{scenario}");
    assert_eq!(recovery.records, 500 - acked, "{scenario}");
    assert_records(&drain(&mut spool), acked + 1..=500);
}

#[test]
fn a_crashed_process_loses_no_appended_record() {
    // The acknowledgements after the last sync are lost, so 101..=150 are
    // delivered again (at least once).
    assert_crash_replays_after("sync", 100);
}

#[test]
fn a_crashed_process_replays_only_what_was_acknowledged_within_the_interval() {
    // The ack after the interval wrote the cursor: only 251..=500 come back.
    assert_crash_replays_after("interval", 250);
}

#[test]
fn a_crashed_process_before_the_interval_replays_every_unsaved_ack() {
    // No segment deleted, no sync, interval not elapsed: the cursor file was
    // never written, so everything is replayed and nothing is lost.
    assert_crash_replays_after("no-interval", 0);
}

/// A spool in `dir` holding records 1..=100, all read, none acknowledged.
fn drained_spool(dir: &Path, cfg: SpoolConfig) -> Spool {
    let (mut spool, _) = Spool::open(dir, cfg).unwrap();
    append_range(&mut spool, 1..=100);
    drain(&mut spool);
    spool
}

#[test]
fn the_cursor_is_written_once_the_interval_has_passed() {
    for fsync in [FsyncPolicy::Never, FsyncPolicy::OnRoll, FsyncPolicy::Always] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            fsync,
            cursor_persist_interval: SHORT,
            ..config(4 << 20, 1 << 20)
        };
        let mut spool = drained_spool(dir.path(), cfg);
        std::thread::sleep(SHORT + Duration::from_millis(10));
        spool.ack(40).unwrap();
        assert_eq!(cursor_on_disk(dir.path()), Some(40), "{fsync:?}");
        // Acknowledging nothing new writes nothing.
        fs::remove_file(dir.path().join("acked")).unwrap();
        std::thread::sleep(SHORT + Duration::from_millis(10));
        spool.ack(40).unwrap();
        assert_eq!(cursor_on_disk(dir.path()), None, "{fsync:?}");
        spool.ack(60).unwrap();
        assert_eq!(cursor_on_disk(dir.path()), Some(60), "{fsync:?}");
        // Never a leftover temp file in the directory.
        assert!(!dir.path().join("acked.tmp").exists());
        drop(spool);
    }
}

#[test]
fn a_failed_periodic_cursor_write_is_counted_not_returned_and_retried_an_interval_later() {
    // Long enough that the two acks below fall in one interval even on a
    // loaded machine.
    let interval = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let cfg = SpoolConfig {
        cursor_persist_interval: interval,
        ..config(4 << 20, 1 << 20)
    };
    let mut spool = drained_spool(dir.path(), cfg);
    // A directory where the temp file goes: every cursor write fails.
    fs::create_dir(dir.path().join("acked.tmp")).unwrap();
    std::thread::sleep(interval + Duration::from_millis(10));
    spool.ack(40).unwrap();
    spool.ack(50).unwrap();
    assert_eq!(
        spool.stats().cursor_write_errors,
        1,
        "not retried on every ack"
    );
    assert_eq!(cursor_on_disk(dir.path()), None);
    // Writable again: the next write, an interval later, succeeds.
    fs::remove_dir(dir.path().join("acked.tmp")).unwrap();
    std::thread::sleep(interval + Duration::from_millis(10));
    spool.ack(60).unwrap();
    assert_eq!(cursor_on_disk(dir.path()), Some(60));
    assert_eq!(spool.stats().cursor_write_errors, 1);
}

#[test]
fn a_zero_or_unelapsed_interval_writes_no_cursor_on_ack() {
    for interval in [Duration::ZERO, NEVER] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            cursor_persist_interval: interval,
            ..config(4 << 20, 1 << 20)
        };
        let mut spool = drained_spool(dir.path(), cfg);
        std::thread::sleep(SHORT);
        spool.ack(40).unwrap();
        spool.ack(60).unwrap();
        assert_eq!(cursor_on_disk(dir.path()), None, "{interval:?}");
        // A clean close still writes it.
        drop(spool);
        assert_eq!(cursor_on_disk(dir.path()), Some(60), "{interval:?}");
    }
}

#[test]
fn a_cursor_ahead_of_the_data_keeps_sequence_numbers_increasing() {
    // After a power loss the cursor can be newer than the segments: take a
    // cursor at 1000 from another spool.
    let other = tempfile::tempdir().unwrap();
    let (mut spool, _) = Spool::open(other.path(), config(1 << 20, 1 << 16)).unwrap();
    for _ in 0..1000 {
        spool.append(&Record::default()).unwrap();
    }
    spool.ack(1000).unwrap();
    spool.sync().unwrap();
    drop(spool);

    let dir = tempfile::tempdir().unwrap();
    spool_with_records(dir.path(), 30);
    fs::copy(other.path().join("acked"), dir.path().join("acked")).unwrap();
    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert_eq!(
        (recovery.acked, recovery.records, recovery.next_seq),
        (1000, 0, 1001)
    );
    assert!(spool.is_empty());
    assert_eq!(
        segment_files(dir.path()).len(),
        1,
        "acknowledged segments deleted"
    );
    assert!(spool.next().unwrap().is_none());
    assert_eq!(spool.append(&record(1)).unwrap(), 1001);
    assert_eq!(spool.next().unwrap(), Some((1001, record(1))));
}

#[test]
fn spool_and_error_can_cross_threads() {
    fn assert_send<T: Send + Sync + 'static>() {}
    assert_send::<Spool>();
    assert_send::<SpoolError>();
    assert_send::<Record>();
}

#[test]
fn a_torn_write_left_by_a_failed_append_is_not_followed_by_garbage() {
    // Simulate what a crash between two write(2) calls of one record leaves
    // behind, then keep using the spool.
    let dir = tempfile::tempdir().unwrap();
    let (last, ends) = spool_with_records(dir.path(), 10);
    let mut file = OpenOptions::new().write(true).open(&last).unwrap();
    file.seek(SeekFrom::Start(*ends.last().unwrap())).unwrap();
    let mut partial = Vec::new();
    partial.extend_from_slice(&[0xA7, 0x53, 1, 0]);
    partial.extend_from_slice(&200u32.to_le_bytes());
    partial.extend_from_slice(&11u64.to_le_bytes());
    file.write_all(&partial).unwrap();
    drop(file);
    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.torn_tail);
    for i in 11..=40 {
        assert_eq!(spool.append(&record(i)).unwrap(), i);
    }
    drop(spool);
    let (mut spool, recovery) = Spool::open(dir.path(), config(1 << 20, 4096)).unwrap();
    assert!(recovery.is_clean());
    assert_records(&drain(&mut spool), 1..=40);
}
