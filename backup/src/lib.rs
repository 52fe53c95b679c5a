//! The raftkv backup file: a consistent, point-in-time copy of a cluster's
//! key-value state. `raft-node` encodes it (the Cluster service's `Backup`
//! call streams the bytes), `raftctl snapshot save` writes them to a file and
//! `raftctl snapshot inspect` and `raft-node --restore` decode it.
//!
//! Pure code: no files, sockets or clocks. The encoder hands out bytes; the
//! decoder reads any [`std::io::Read`] and names the byte offset of every
//! problem it finds.
//!
//! ```text
//! file      = preamble header-frame entries-frame* end-frame
//! preamble  = magic "RAFTKVBK" (8 bytes) | format version u32             12 bytes
//! frame     = kind u8 | payload length u32 | crc32c(kind, length) u32
//!             | crc32c(payload) u32 | payload                        13 + n bytes
//! kind 1    header: one JSON object ([`Header`])
//! kind 2    entries: count u32, then count entries; keys strictly ascending
//!           across the whole file
//!   entry   = key length u32 | key | value length u32 | value
//!             | create_revision u64 | mod_revision u64 | version u64
//! kind 3    end: keys u64 | crc32c of every byte of the file before this frame u32
//! ```
//!
//! Integers are little-endian. A frame's length is checked by its own
//! checksum before the payload is read, so a damaged length is reported as a
//! checksum mismatch, not as a huge allocation or a false truncation. The end
//! frame's whole-file checksum catches frames that were dropped, duplicated or
//! reordered; its key count must match the header's and the entries read.
//! Nothing may follow the end frame.
//!
//! The format version changes whenever a reader of the old version could not
//! read the new files; new JSON fields in the header do not change it
//! (unknown fields are ignored).

use std::io::Read;

use serde::{Deserialize, Serialize};

/// The first 8 bytes of every backup file.
pub const MAGIC: [u8; 8] = *b"RAFTKVBK";
/// The format this build writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Magic and format version.
pub const PREAMBLE_BYTES: usize = 12;
/// Kind, length and the two checksums in front of every payload.
pub const FRAME_HEADER_BYTES: usize = 13;
/// An entries frame is closed once its payload reaches this size: large enough
/// that framing costs nothing (13 bytes per 256 KiB), small enough that the
/// node streams a backup in pieces far below a gRPC message limit.
pub const ENTRIES_FRAME_BYTES_TARGET: usize = 256 * 1024;
/// The largest payload a decoder accepts (a frame holds at least one entry, so
/// this also bounds one key plus its value). It bounds what a damaged or
/// hostile file can make a reader allocate.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Lengths, revisions and version of one entry, around its key and value.
pub const ENTRY_OVERHEAD_BYTES: usize = 4 + 4 + 8 + 8 + 8;

const _: () = assert!(ENTRIES_FRAME_BYTES_TARGET < FRAME_PAYLOAD_BYTES_MAX);
const _: () = assert!(FRAME_PAYLOAD_BYTES_MAX <= u32::MAX as usize);

const KIND_HEADER: u8 = 1;
const KIND_ENTRIES: u8 = 2;
const KIND_END: u8 = 3;
const END_PAYLOAD_BYTES: usize = 8 + 4;

/// What a backup holds besides the keys: where and when it was taken. Printed
/// by `raftctl snapshot inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The cluster the backup was taken from (a restore makes a new one).
    pub cluster_id: String,
    /// The leader that served it.
    pub node_id: u64,
    /// When the leader took it (milliseconds since the Unix epoch).
    pub created_at_unix_ms: u64,
    /// The store revision of the state (every key's `mod_revision` is at most this).
    pub revision: u64,
    /// The last log index applied to the state, and its term: the state is
    /// the one every member had after applying this index.
    pub log_index: u64,
    pub log_term: u64,
    /// Number of keys that follow.
    pub keys: u64,
    /// The membership at `log_index` (for information: a restore starts a new
    /// cluster with new members).
    pub membership: Membership,
    /// The version of `raft-node` that wrote the backup.
    pub server_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Voter IDs of each configuration: one, or two during a joint change.
    pub configs: Vec<Vec<u64>>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub node_id: u64,
    pub name: String,
    pub client_addr: String,
    pub peer_addr: String,
    pub voter: bool,
}

/// One key as a user of the store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// An entry borrowed from the encoder's caller (no copy of the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

impl Entry {
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            key: &self.key,
            value: &self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// The shape every entry must have, checked by the encoder before it writes
/// and by the decoder after it reads. `None` if fine, else the reason.
fn entry_problem(e: &EntryRef<'_>, previous: Option<&[u8]>, revision: u64) -> Option<String> {
    if e.key.is_empty() {
        return Some("an empty key".into());
    }
    if let Some(p) = previous
        && e.key <= p
    {
        return Some("keys out of order".into());
    }
    if e.version == 0 {
        return Some("version 0".into());
    }
    if e.create_revision == 0 || e.create_revision > e.mod_revision {
        return Some(format!(
            "create_revision {} with mod_revision {}",
            e.create_revision, e.mod_revision
        ));
    }
    if e.mod_revision > revision {
        return Some(format!(
            "mod_revision {} beyond the backup's revision {revision}",
            e.mod_revision
        ));
    }
    None
}

/// A bug in the encoder's caller: the node's state did not have the shape a
/// backup requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot back up key {index}: {reason}")]
    BadEntry { index: u64, reason: String },
    #[error("the header announces {announced} keys but {pushed} were pushed")]
    KeyCount { announced: u64, pushed: u64 },
}

/// Turns a header and the entries, in key order, into the bytes of a backup.
///
/// ```
/// use raftkv_backup::{Decoder, Encoder, Entry, Header};
/// let header = Header { revision: 1, keys: 1, ..Header::default() };
/// let (mut enc, mut bytes) = Encoder::new(&header);
/// let e = Entry { key: b"k".to_vec(), value: b"v".to_vec(), create_revision: 1, mod_revision: 1, version: 1 };
/// bytes.extend(enc.push(e.as_ref()).unwrap().unwrap_or_default());
/// bytes.extend(enc.finish().unwrap());
/// let mut dec = Decoder::open(&bytes[..]).unwrap();
/// assert_eq!(dec.next_batch().unwrap(), Some(vec![e]));
/// assert_eq!(dec.next_batch().unwrap(), None);
/// ```
#[derive(Debug)]
pub struct Encoder {
    /// crc32c of every byte handed out so far.
    crc: u32,
    revision: u64,
    announced: u64,
    pushed: u64,
    batch: Vec<u8>,
    batch_count: u32,
    last_key: Option<Vec<u8>>,
}

impl Encoder {
    /// The encoder, and the file's first bytes (preamble and header frame).
    pub fn new(header: &Header) -> (Encoder, Vec<u8>) {
        let mut out = Vec::with_capacity(PREAMBLE_BYTES + 256);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let json = serde_json::to_vec(header).expect("a header serializes");
        push_frame(&mut out, KIND_HEADER, &json);
        let enc = Encoder {
            crc: crc32c::crc32c(&out),
            revision: header.revision,
            announced: header.keys,
            pushed: 0,
            batch: Vec::new(),
            batch_count: 0,
            last_key: None,
        };
        (enc, out)
    }

    /// Adds the next entry (keys strictly ascending). Returns a frame's bytes
    /// whenever one is full.
    pub fn push(&mut self, e: EntryRef<'_>) -> Result<Option<Vec<u8>>, EncodeError> {
        let bad = |reason: String| EncodeError::BadEntry {
            index: self.pushed,
            reason,
        };
        if let Some(reason) = entry_problem(&e, self.last_key.as_deref(), self.revision) {
            return Err(bad(reason));
        }
        let size = ENTRY_OVERHEAD_BYTES + e.key.len() + e.value.len();
        if 4 + size > FRAME_PAYLOAD_BYTES_MAX {
            return Err(bad(format!(
                "{size} bytes exceed the frame limit of {FRAME_PAYLOAD_BYTES_MAX}"
            )));
        }
        if self.batch_count > 0 && 4 + self.batch.len() + size > FRAME_PAYLOAD_BYTES_MAX {
            // Cannot happen with the target far below the limit, but a full
            // frame is always closed before it could overflow.
            let frame = self.take_batch();
            self.append_entry(&e);
            return Ok(frame);
        }
        self.append_entry(&e);
        if self.batch.len() >= ENTRIES_FRAME_BYTES_TARGET {
            return Ok(self.take_batch());
        }
        Ok(None)
    }

    /// The last entries frame (if any) and the end frame. Fails if the
    /// number of entries differs from the header's.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        if self.pushed != self.announced {
            return Err(EncodeError::KeyCount {
                announced: self.announced,
                pushed: self.pushed,
            });
        }
        let mut out = self.take_batch().unwrap_or_default();
        let mut end = Vec::with_capacity(END_PAYLOAD_BYTES);
        end.extend_from_slice(&self.pushed.to_le_bytes());
        end.extend_from_slice(&self.crc.to_le_bytes());
        push_frame(&mut out, KIND_END, &end);
        Ok(out)
    }

    fn append_entry(&mut self, e: &EntryRef<'_>) {
        let b = &mut self.batch;
        b.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        b.extend_from_slice(e.key);
        b.extend_from_slice(&(e.value.len() as u32).to_le_bytes());
        b.extend_from_slice(e.value);
        b.extend_from_slice(&e.create_revision.to_le_bytes());
        b.extend_from_slice(&e.mod_revision.to_le_bytes());
        b.extend_from_slice(&e.version.to_le_bytes());
        self.batch_count += 1;
        self.pushed += 1;
        self.last_key = Some(e.key.to_vec());
    }

    fn take_batch(&mut self) -> Option<Vec<u8>> {
        if self.batch_count == 0 {
            return None;
        }
        let mut payload = Vec::with_capacity(4 + self.batch.len());
        payload.extend_from_slice(&self.batch_count.to_le_bytes());
        payload.append(&mut self.batch);
        self.batch_count = 0;
        let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
        push_frame(&mut out, KIND_ENTRIES, &payload);
        self.crc = crc32c::crc32c_append(self.crc, &out);
        Some(out)
    }
}

fn frame_header_crc(kind: u8, len: u32) -> u32 {
    let mut b = [0u8; 5];
    b[0] = kind;
    b[1..].copy_from_slice(&len.to_le_bytes());
    crc32c::crc32c(&b)
}

fn push_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    assert!(payload.len() <= FRAME_PAYLOAD_BYTES_MAX, "frame too large");
    let len = payload.len() as u32;
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_header_crc(kind, len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why a backup file was refused. Every variant names where (a byte offset
/// from the start of the file) when it can.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("reading the backup failed at byte {at}: {source}")]
    Io {
        at: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("not a raftkv backup: bad magic at byte 0 (expected \"RAFTKVBK\")")]
    BadMagic,
    #[error(
        "unsupported format version {found} (this build reads format version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u32 },
    #[error("truncated at byte {at}: the file ends {inside}")]
    Truncated { at: u64, inside: String },
    #[error("checksum mismatch in the {what} at byte {at}")]
    Checksum { at: u64, what: &'static str },
    #[error("malformed backup at byte {at}: {reason}")]
    Malformed { at: u64, reason: String },
}

impl DecodeError {
    /// The byte offset the problem was found at (0 for the magic).
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::BadMagic => 0,
            DecodeError::UnsupportedVersion { .. } => 8,
            DecodeError::Io { at, .. }
            | DecodeError::Truncated { at, .. }
            | DecodeError::Checksum { at, .. }
            | DecodeError::Malformed { at, .. } => *at,
        }
    }
}

/// A verified backup, as `raftctl snapshot inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub header: Header,
    pub format_version: u32,
    /// The whole file's size.
    pub bytes: u64,
    /// crc32c of every byte before the end frame, as recorded there (and verified).
    pub checksum: u32,
    /// Entries frames.
    pub frames: u64,
}

/// Reads a backup, checking everything as it goes: hand it the file's bytes
/// through any reader. [`Decoder::next_batch`] returns `None` only once the
/// end frame has been verified and nothing follows it.
#[derive(Debug)]
pub struct Decoder<R> {
    r: R,
    offset: u64,
    crc: u32,
    header: Header,
    keys: u64,
    frames: u64,
    last_key: Option<Vec<u8>>,
    checksum: Option<u32>,
}

impl<R: Read> Decoder<R> {
    /// Reads and checks the preamble and the header frame.
    pub fn open(r: R) -> Result<Self, DecodeError> {
        let mut d = Decoder {
            r,
            offset: 0,
            crc: 0,
            header: Header::default(),
            keys: 0,
            frames: 0,
            last_key: None,
            checksum: None,
        };
        let mut pre = [0u8; PREAMBLE_BYTES];
        let got = d.read_some(&mut pre)?;
        let magic_got = got.min(MAGIC.len());
        if pre[..magic_got] != MAGIC[..magic_got] {
            return Err(DecodeError::BadMagic);
        }
        if got < PREAMBLE_BYTES {
            return Err(d.truncated("inside its preamble (magic and format version)"));
        }
        let found = u32::from_le_bytes(pre[8..12].try_into().expect("4 bytes"));
        if found != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { found });
        }
        d.crc = crc32c::crc32c(&pre);
        let (at, kind, payload) = d
            .read_frame()?
            .ok_or_else(|| d.truncated("before its header frame"))?;
        if kind != KIND_HEADER {
            return Err(DecodeError::Malformed {
                at,
                reason: format!("the first frame is of kind {kind}, not a header"),
            });
        }
        d.header = serde_json::from_slice(&payload).map_err(|e| DecodeError::Malformed {
            at,
            reason: format!("undecodable header: {e}"),
        })?;
        Ok(d)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next entries, or `None` at the (verified) end of the file.
    pub fn next_batch(&mut self) -> Result<Option<Vec<Entry>>, DecodeError> {
        if self.checksum.is_some() {
            return Ok(None);
        }
        let before = self.crc;
        let Some((at, kind, payload)) = self.read_frame()? else {
            return Err(self.truncated("before its end frame"));
        };
        match kind {
            KIND_ENTRIES => {
                self.frames += 1;
                self.entries(at, &payload).map(Some)
            }
            KIND_END => {
                self.end(at, &payload, before)?;
                Ok(None)
            }
            other => Err(DecodeError::Malformed {
                at,
                reason: format!("unexpected frame kind {other}"),
            }),
        }
    }

    /// Reads to the end, checking everything, without keeping the entries.
    pub fn verify(mut self) -> Result<Summary, DecodeError> {
        while self.next_batch()?.is_some() {}
        Ok(self.summary().expect("verified to the end"))
    }

    /// Once [`Decoder::next_batch`] returned `None`: what was verified.
    pub fn summary(&self) -> Option<Summary> {
        Some(Summary {
            header: self.header.clone(),
            format_version: FORMAT_VERSION,
            bytes: self.offset,
            checksum: self.checksum?,
            frames: self.frames,
        })
    }

    fn entries(&mut self, at: u64, p: &[u8]) -> Result<Vec<Entry>, DecodeError> {
        let payload_at = at + FRAME_HEADER_BYTES as u64;
        let mut cur = Cursor { p, pos: 0 };
        let bad = |pos: usize, reason: String| DecodeError::Malformed {
            at: payload_at + pos as u64,
            reason,
        };
        let short = |pos: usize| bad(pos, "an entries frame ends inside an entry".into());
        let count = cur.u32().ok_or_else(|| short(0))?;
        // Each entry takes at least its overhead: refuse a count that cannot
        // fit before allocating for it.
        if count as usize > p.len() / ENTRY_OVERHEAD_BYTES {
            return Err(bad(0, format!("{count} entries cannot fit in the frame")));
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let start = cur.pos;
            let e = (|| {
                let klen = cur.u32()? as usize;
                let key = cur.bytes(klen)?.to_vec();
                let vlen = cur.u32()? as usize;
                let value = cur.bytes(vlen)?.to_vec();
                Some(Entry {
                    key,
                    value,
                    create_revision: cur.u64()?,
                    mod_revision: cur.u64()?,
                    version: cur.u64()?,
                })
            })()
            .ok_or_else(|| short(start))?;
            if let Some(reason) =
                entry_problem(&e.as_ref(), self.last_key.as_deref(), self.header.revision)
            {
                return Err(bad(start, format!("key number {}: {reason}", self.keys)));
            }
            self.keys += 1;
            self.last_key = Some(e.key.clone());
            out.push(e);
        }
        if cur.pos != p.len() {
            return Err(bad(cur.pos, "bytes after the last entry of a frame".into()));
        }
        Ok(out)
    }

    fn end(&mut self, at: u64, p: &[u8], crc_before: u32) -> Result<(), DecodeError> {
        if p.len() != END_PAYLOAD_BYTES {
            return Err(DecodeError::Malformed {
                at,
                reason: format!("an end frame of {} bytes", p.len()),
            });
        }
        let keys = u64::from_le_bytes(p[0..8].try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(p[8..12].try_into().expect("4 bytes"));
        if crc != crc_before {
            return Err(DecodeError::Checksum {
                at,
                what: "whole file (recorded in the end frame)",
            });
        }
        if keys != self.keys || keys != self.header.keys {
            return Err(DecodeError::Malformed {
                at,
                reason: format!(
                    "the end frame counts {keys} keys, the header {}, the file holds {}",
                    self.header.keys, self.keys
                ),
            });
        }
        let mut probe = [0u8; 1];
        if self.read_some(&mut probe)? > 0 {
            return Err(DecodeError::Malformed {
                at: self.offset - 1,
                reason: "bytes after the end frame".into(),
            });
        }
        self.checksum = Some(crc);
        Ok(())
    }

    /// The next frame as (offset, kind, payload), checksums verified; `None`
    /// at a clean end of input.
    fn read_frame(&mut self) -> Result<Option<(u64, u8, Vec<u8>)>, DecodeError> {
        let at = self.offset;
        let mut h = [0u8; FRAME_HEADER_BYTES];
        let got = self.read_some(&mut h)?;
        if got == 0 {
            return Ok(None);
        }
        let inside = || format!("inside the frame that starts at byte {at}");
        if got < h.len() {
            self.read_exact(&mut h[got..], &inside())?;
        }
        let kind = h[0];
        let len = u32::from_le_bytes(h[1..5].try_into().expect("4 bytes"));
        let header_crc = u32::from_le_bytes(h[5..9].try_into().expect("4 bytes"));
        let payload_crc = u32::from_le_bytes(h[9..13].try_into().expect("4 bytes"));
        if frame_header_crc(kind, len) != header_crc {
            return Err(DecodeError::Checksum {
                at,
                what: "frame header",
            });
        }
        if len as usize > FRAME_PAYLOAD_BYTES_MAX {
            return Err(DecodeError::Malformed {
                at,
                reason: format!("a frame of {len} bytes (at most {FRAME_PAYLOAD_BYTES_MAX})"),
            });
        }
        let mut payload = vec![0u8; len as usize];
        self.read_exact(&mut payload, &inside())?;
        if crc32c::crc32c(&payload) != payload_crc {
            return Err(DecodeError::Checksum { at, what: "frame" });
        }
        self.crc = crc32c::crc32c_append(self.crc, &h);
        self.crc = crc32c::crc32c_append(self.crc, &payload);
        Ok(Some((at, kind, payload)))
    }

    fn truncated(&self, inside: &str) -> DecodeError {
        DecodeError::Truncated {
            at: self.offset,
            inside: inside.to_string(),
        }
    }

    /// Fills `buf` or fails naming where the input ended.
    fn read_exact(&mut self, buf: &mut [u8], inside: &str) -> Result<(), DecodeError> {
        let got = self.read_some(buf)?;
        if got < buf.len() {
            return Err(self.truncated(inside));
        }
        Ok(())
    }

    /// Reads until `buf` is full or the input ends; returns the bytes read.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, DecodeError> {
        let mut got = 0;
        while got < buf.len() {
            match self.r.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => {
                    got += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(DecodeError::Io {
                        at: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(got)
    }
}

/// Bounds-checked reads from a payload.
struct Cursor<'a> {
    p: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.p.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

/// Encodes a whole backup in memory (tests and small tools; the node streams
/// with [`Encoder`] instead).
pub fn encode_all(header: &Header, entries: &[Entry]) -> Result<Vec<u8>, EncodeError> {
    let (mut enc, mut out) = Encoder::new(header);
    for e in entries {
        if let Some(frame) = enc.push(e.as_ref())? {
            out.extend(frame);
        }
    }
    out.extend(enc.finish()?);
    Ok(out)
}

/// Decodes a whole backup into memory.
pub fn decode_all<R: Read>(r: R) -> Result<(Summary, Vec<Entry>), DecodeError> {
    let mut d = Decoder::open(r)?;
    let mut all = Vec::new();
    while let Some(batch) = d.next_batch()? {
        all.extend(batch);
    }
    Ok((d.summary().expect("verified to the end"), all))
}

#[cfg(feature = "store")]
pub mod store;

#[cfg(test)]
mod tests;
