//! Byte layout of records and of the cursor file (see the crate docs).
//!
//! Every parser here reads untrusted bytes: lengths are checked before use,
//! nothing is indexed out of range, nothing panics, and no allocation is
//! sized by a length field that was not first checked against the bytes
//! actually present.

use crate::Record;

/// First two bytes of every record.
pub(crate) const RECORD_MAGIC: [u8; 2] = [0xA7, 0x53];
/// Format version of a record.
pub(crate) const RECORD_VERSION: u8 = 1;
/// Magic, version, flags, body length, sequence number, CRC.
pub(crate) const HEADER_LEN: usize = 20;
/// Bytes of the header covered by the CRC (all but the CRC itself).
const CRC_COVERED: usize = 16;
/// Fixed part of a body: topic length, key length, timestamp.
pub(crate) const BODY_MIN: u64 = 16;

/// Bytes a record takes on disk besides its topic, key and payload.
pub const RECORD_OVERHEAD: u64 = HEADER_LEN as u64 + BODY_MIN;

/// Length of the `acked` cursor file.
pub(crate) const CURSOR_LEN: usize = 16;
const CURSOR_MAGIC: [u8; 4] = *b"SPAK";

/// The parsed, not yet verified, header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub body_len: u32,
    pub seq: u64,
    pub crc: u32,
}

/// Bytes a record takes on disk.
pub(crate) fn encoded_len(record: &Record) -> u64 {
    RECORD_OVERHEAD
        .saturating_add(record.topic.len() as u64)
        .saturating_add(record.key.len() as u64)
        .saturating_add(record.payload.len() as u64)
}

/// Frames `record` as sequence number `seq` into `out` (cleared first).
/// `None` if a length does not fit the format's `u32` fields; callers bound
/// records by the segment size first, so that does not happen.
pub(crate) fn encode(seq: u64, record: &Record, out: &mut Vec<u8>) -> Option<()> {
    let body_len = u32::try_from(encoded_len(record) - HEADER_LEN as u64).ok()?;
    let topic_len = u32::try_from(record.topic.len()).ok()?;
    let key_len = u32::try_from(record.key.len()).ok()?;
    out.clear();
    out.reserve(HEADER_LEN + body_len as usize);
    out.extend_from_slice(&RECORD_MAGIC);
    out.push(RECORD_VERSION);
    out.push(0);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&topic_len.to_le_bytes());
    out.extend_from_slice(record.topic.as_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&record.timestamp_ms.to_le_bytes());
    out.extend_from_slice(&record.payload);
    let mut hasher = crc_of_header(out.get(..CRC_COVERED)?);
    hasher.update(out.get(HEADER_LEN..)?);
    let crc = hasher.finalize().to_le_bytes();
    out.get_mut(CRC_COVERED..HEADER_LEN)?.copy_from_slice(&crc);
    Some(())
}

/// Parses the first [`HEADER_LEN`] bytes of `bytes`: `None` if there are
/// fewer, or the magic, version or flags are wrong.
pub(crate) fn parse_header(bytes: &[u8]) -> Option<Header> {
    let mut b = bytes.get(..HEADER_LEN)?;
    if take(&mut b, 2)? != RECORD_MAGIC || take(&mut b, 2)? != [RECORD_VERSION, 0] {
        return None;
    }
    Some(Header {
        body_len: take_u32(&mut b)?,
        seq: u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?),
        crc: take_u32(&mut b)?,
    })
}

/// A CRC hasher fed with the covered part of a header; feed it the body and
/// compare with [`Header::crc`].
pub(crate) fn crc_of_header(header: &[u8]) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header.get(..CRC_COVERED).unwrap_or(header));
    hasher
}

/// Decodes one whole framed record (header and body, nothing more) that
/// must carry sequence number `seq`. `None` if anything does not check out.
pub(crate) fn decode(bytes: &[u8], seq: u64) -> Option<Record> {
    let header = parse_header(bytes)?;
    let body = bytes.get(HEADER_LEN..)?;
    if header.seq != seq || body.len() != usize::try_from(header.body_len).ok()? {
        return None;
    }
    let mut hasher = crc_of_header(bytes);
    hasher.update(body);
    if hasher.finalize() != header.crc {
        return None;
    }
    let mut b = body;
    let topic_len = usize::try_from(take_u32(&mut b)?).ok()?;
    let topic = std::str::from_utf8(take(&mut b, topic_len)?).ok()?;
    let key_len = usize::try_from(take_u32(&mut b)?).ok()?;
    let key = take(&mut b, key_len)?;
    let timestamp_ms = i64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    Some(Record {
        topic: topic.to_owned(),
        key: key.to_vec(),
        payload: b.to_vec(),
        timestamp_ms,
    })
}

/// The `acked` file's bytes for cursor value `acked`.
pub(crate) fn encode_cursor(acked: u64) -> [u8; CURSOR_LEN] {
    let mut out = [0; CURSOR_LEN];
    out[..4].copy_from_slice(&CURSOR_MAGIC);
    out[4..12].copy_from_slice(&acked.to_le_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The cursor value in an `acked` file, `None` if it is not exactly a
/// well-formed cursor.
pub(crate) fn decode_cursor(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != CURSOR_LEN {
        return None;
    }
    let mut b = bytes;
    if take(&mut b, 4)? != CURSOR_MAGIC {
        return None;
    }
    let acked = u64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
    let crc = take_u32(&mut b)?;
    (crc32fast::hash(bytes.get(..12)?) == crc).then_some(acked)
}

/// Splits `n` bytes off the front of `b`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = b.split_at_checked(n)?;
    *b = tail;
    Some(head)
}

fn take_u32(b: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(b, 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            topic: "edge.detections".into(),
            key: b"cam-7".to_vec(),
            payload: (0..=255).collect(),
            timestamp_ms: -1_234_567,
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode(42, &sample(), &mut buf).unwrap();
        assert_eq!(buf.len() as u64, encoded_len(&sample()));
        assert_eq!(&buf[..2], &RECORD_MAGIC);
        assert_eq!(decode(&buf, 42), Some(sample()));
        assert_eq!(
            decode(&buf, 43),
            None,
            "a record is bound to its sequence number"
        );
    }

    #[test]
    fn empty_fields_round_trip() {
        let record = Record::default();
        let mut buf = Vec::new();
        encode(1, &record, &mut buf).unwrap();
        assert_eq!(buf.len() as u64, RECORD_OVERHEAD);
        assert_eq!(decode(&buf, 1), Some(record));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode(7, &sample(), &mut buf).unwrap();
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert_eq!(decode(&bad, 7), None, "flip of bit {bit} in byte {i}");
            }
        }
    }

    #[test]
    fn truncations_and_extensions_are_rejected_without_panic() {
        let mut buf = Vec::new();
        encode(7, &sample(), &mut buf).unwrap();
        for n in 0..buf.len() {
            assert_eq!(decode(&buf[..n], 7), None);
            let _ = parse_header(&buf[..n]);
        }
        buf.push(0);
        assert_eq!(decode(&buf, 7), None);
    }

    #[test]
    fn inconsistent_inner_lengths_are_rejected_even_with_a_valid_crc() {
        // A body whose topic length points past its end, re-checksummed.
        let mut buf = Vec::new();
        encode(3, &sample(), &mut buf).unwrap();
        buf[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut hasher = crc_of_header(&buf);
        hasher.update(&buf[HEADER_LEN..]);
        let crc = hasher.finalize().to_le_bytes();
        buf[CRC_COVERED..HEADER_LEN].copy_from_slice(&crc);
        assert_eq!(decode(&buf, 3), None);
    }

    #[test]
    fn header_claiming_4_gib_parses_but_is_just_a_number() {
        let mut buf = Vec::new();
        encode(9, &sample(), &mut buf).unwrap();
        buf[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_header(&buf).map(|h| h.body_len), Some(u32::MAX));
        assert_eq!(decode(&buf, 9), None);
    }

    #[test]
    fn cursor_round_trip_and_rejects_damage() {
        let bytes = encode_cursor(123_456);
        assert_eq!(decode_cursor(&bytes), Some(123_456));
        for i in 0..CURSOR_LEN {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert_eq!(decode_cursor(&bad), None);
        }
        assert_eq!(decode_cursor(&bytes[..15]), None);
        assert_eq!(decode_cursor(&[]), None);
    }
}
