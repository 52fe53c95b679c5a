//! The record framing shared by log segments: header + payload, checksummed.
//!
//! ```text
//! offset  size  field
//!      0     4  payload length, u32 little-endian
//!      4     4  crc32c over bytes 0..4 and 8..16 of the header, then the payload
//!      8     1  kind (see `Kind`)
//!      9     1  flags: bit 0 = last record of a group commit (fsync follows)
//!     10     2  reserved, zero
//!     12     4  group-commit sequence number (wrapping), equal for all
//!               records written by one group commit
//!     16     n  payload (postcard)
//! ```
//!
//! The checksum covers the length, so a corrupted length is detected too. The
//! group-commit sequence and flag tell recovery whether the record after a
//! bad one was written by the same group commit (see `log.rs`, "Recovery").

use super::options::RECORD_HEADER_BYTES;

pub(crate) const HEADER: usize = RECORD_HEADER_BYTES;
pub(crate) const FLAG_BATCH_END: u8 = 1;

const _: () = assert!(HEADER == 16);

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// First record of every segment: `SegmentHeader`.
    SegmentHeader = 1,
    /// An openraft `Entry`.
    Entry = 2,
    /// The vote (`Vote`).
    Vote = 3,
    /// The committed log id (`Option<LogId>`).
    Committed = 4,
    /// Entries up to and including this `LogId` are purged.
    Purge = 5,
    /// Entries from this index (`u64`) on are removed.
    Truncate = 6,
}

impl Kind {
    pub(crate) fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::SegmentHeader,
            2 => Kind::Entry,
            3 => Kind::Vote,
            4 => Kind::Committed,
            5 => Kind::Purge,
            6 => Kind::Truncate,
            _ => return None,
        })
    }
}

/// A decoded, checksum-verified header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub kind: Kind,
    pub flags: u8,
    pub batch: u32,
}

impl Header {
    pub(crate) fn batch_end(&self) -> bool {
        self.flags & FLAG_BATCH_END != 0
    }
}

/// Appends a record with an unsealed header (length and kind set; checksum,
/// flags and batch are filled by [`seal`] when the writer knows them).
/// Returns the offset of the record in `buf`.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    kind: Kind,
    payload: &T,
) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf[start + 8] = kind as u8;
    let mut b = std::mem::take(buf);
    b = postcard::to_extend(payload, b).expect("postcard encoding to a Vec cannot fail");
    *buf = b;
    let len = buf.len() - start - HEADER;
    let len = u32::try_from(len).expect("record payload exceeds u32");
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    start
}

/// The total length (header + payload) of the record at the start of `rec`,
/// from its (unsealed or sealed) length field.
pub(crate) fn record_len(rec: &[u8]) -> usize {
    HEADER + u32::from_le_bytes(rec[0..4].try_into().unwrap()) as usize
}

/// Fills flags, batch and checksum of the record at the start of `rec`.
pub(crate) fn seal(rec: &mut [u8], flags: u8, batch: u32) {
    let total = record_len(rec);
    let rec = &mut rec[..total];
    assert!(
        Kind::from_u8(rec[8]).is_some(),
        "sealing a record of unknown kind"
    );
    rec[9] = flags;
    rec[10] = 0;
    rec[11] = 0;
    rec[12..16].copy_from_slice(&batch.to_le_bytes());
    let crc = checksum(rec);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
    // Pair assertion (TigerStyle): what we are about to write verifies.
    debug_assert!(parse(rec, u32::MAX).is_ok());
}

fn checksum(rec: &[u8]) -> u32 {
    let c = crc32c::crc32c(&rec[0..4]);
    let c = crc32c::crc32c_append(c, &rec[8..HEADER]);
    crc32c::crc32c_append(c, &rec[HEADER..])
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Fewer bytes than a header.
    ShortHeader,
    /// The header is malformed (unknown kind, reserved bits, oversize length).
    BadHeader(String),
    /// The payload extends past the end of the data.
    ShortPayload { len: u32 },
    /// The checksum does not match.
    Checksum,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::ShortHeader => write!(f, "incomplete record header"),
            Invalid::BadHeader(m) => write!(f, "malformed record header: {m}"),
            Invalid::ShortPayload { len } => write!(
                f,
                "record payload of {len} bytes extends past the end of the file"
            ),
            Invalid::Checksum => write!(f, "record checksum mismatch"),
        }
    }
}

/// Parses and verifies the record at the start of `data`. Returns the header
/// and the payload.
pub(crate) fn parse(data: &[u8], record_bytes_max: u32) -> Result<(Header, &[u8]), Invalid> {
    if data.len() < HEADER {
        return Err(Invalid::ShortHeader);
    }
    let len = u32::from_le_bytes(data[0..4].try_into().unwrap());
    let crc = u32::from_le_bytes(data[4..8].try_into().unwrap());
    let Some(kind) = Kind::from_u8(data[8]) else {
        return Err(Invalid::BadHeader(format!("unknown kind {}", data[8])));
    };
    let flags = data[9];
    if flags & !FLAG_BATCH_END != 0 || data[10] != 0 || data[11] != 0 {
        return Err(Invalid::BadHeader("reserved bits set".into()));
    }
    if len > record_bytes_max {
        return Err(Invalid::BadHeader(format!(
            "length {len} above the record limit {record_bytes_max}"
        )));
    }
    let end = HEADER + len as usize;
    if data.len() < end {
        return Err(Invalid::ShortPayload { len });
    }
    if checksum(&data[..end]) != crc {
        return Err(Invalid::Checksum);
    }
    let batch = u32::from_le_bytes(data[12..16].try_into().unwrap());
    Ok((
        Header {
            len,
            kind,
            flags,
            batch,
        },
        &data[HEADER..end],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_every_flipped_bit() {
        let mut buf = Vec::new();
        let off = encode(&mut buf, Kind::Truncate, &12345u64);
        seal(&mut buf[off..], FLAG_BATCH_END, 7);
        let (h, payload) = parse(&buf, 1 << 20).unwrap();
        assert_eq!(
            h,
            Header {
                len: payload.len() as u32,
                kind: Kind::Truncate,
                flags: FLAG_BATCH_END,
                batch: 7
            }
        );
        assert_eq!(postcard::from_bytes::<u64>(payload).unwrap(), 12345);
        for i in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(parse(&b, 1 << 20).is_err(), "flipped bit {i} undetected");
        }
        for cut in 0..buf.len() {
            assert!(parse(&buf[..cut], 1 << 20).is_err());
        }
    }
}
