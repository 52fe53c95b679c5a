//! The format's own tests: examples of every refusal, and properties (round
//! trip; every damaged byte and every cut is refused, naming where).

use proptest::prelude::*;

use super::*;

fn entry(k: &str, v: &str, create: u64, modr: u64, version: u64) -> Entry {
    Entry {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
        create_revision: create,
        mod_revision: modr,
        version,
    }
}

fn header(revision: u64, keys: u64) -> Header {
    Header {
        cluster_id: "c0ffee".into(),
        node_id: 7,
        created_at_unix_ms: 1_700_000_000_000,
        revision,
        log_index: 42,
        log_term: 3,
        keys,
        membership: Membership {
            configs: vec![vec![7, 8, 9]],
            members: vec![Member {
                node_id: 7,
                name: "node-0".into(),
                client_addr: "127.0.0.1:7000".into(),
                peer_addr: "127.0.0.1:7001".into(),
                voter: true,
            }],
        },
        server_version: "0.1.0".into(),
    }
}

fn sample() -> (Header, Vec<Entry>, Vec<u8>) {
    let entries = vec![
        entry("a", "1", 1, 4, 2),
        entry("b", "", 2, 2, 1),
        entry("c/d", "three", 5, 5, 1),
    ];
    let h = header(5, 3);
    let bytes = encode_all(&h, &entries).unwrap();
    (h, entries, bytes)
}

#[test]
fn round_trip_keeps_header_entries_and_revisions() {
    let (h, entries, bytes) = sample();
    let (summary, got) = decode_all(&bytes[..]).unwrap();
    assert_eq!(summary.header, h);
    assert_eq!(got, entries);
    assert_eq!(summary.bytes, bytes.len() as u64);
    assert_eq!(summary.format_version, FORMAT_VERSION);
    assert_eq!(summary.frames, 1);
}

#[test]
fn an_empty_store_is_a_valid_backup() {
    let bytes = encode_all(&header(0, 0), &[]).unwrap();
    let (summary, got) = decode_all(&bytes[..]).unwrap();
    assert!(got.is_empty());
    assert_eq!(summary.frames, 0);
}

#[test]
fn bad_magic_is_named() {
    let (_, _, mut bytes) = sample();
    bytes[0] = b'X';
    let e = decode_all(&bytes[..]).unwrap_err();
    assert!(matches!(e, DecodeError::BadMagic), "{e}");
    assert!(e.to_string().contains("bad magic"), "{e}");
    let e = decode_all(&b"hello"[..]).unwrap_err();
    assert!(matches!(e, DecodeError::BadMagic), "{e}");
}

#[test]
fn an_unknown_format_version_is_named() {
    let (_, _, mut bytes) = sample();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let e = decode_all(&bytes[..]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported format version 2 (this build reads format version 1)"
    );
}

#[test]
fn a_flipped_payload_byte_is_a_checksum_mismatch_of_its_frame() {
    let (_, _, mut bytes) = sample();
    let n = bytes.len();
    // Inside the entries frame: the end frame is the last 25 bytes.
    bytes[n - 30] ^= 0x01;
    let e = decode_all(&bytes[..]).unwrap_err();
    assert!(
        matches!(e, DecodeError::Checksum { what: "frame", .. }),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("checksum mismatch in the frame at byte "),
        "{e}"
    );
}

#[test]
fn a_damaged_length_is_a_checksum_mismatch_not_a_truncation() {
    let (_, _, mut bytes) = sample();
    bytes[PREAMBLE_BYTES + 1] ^= 0x40;
    let e = decode_all(&bytes[..]).unwrap_err();
    assert!(
        matches!(e, DecodeError::Checksum { at, what: "frame header" } if at == PREAMBLE_BYTES as u64),
        "{e}"
    );
}

#[test]
fn a_cut_file_is_truncated_at_its_length() {
    let (_, _, bytes) = sample();
    let e = decode_all(&bytes[..100]).unwrap_err();
    assert!(matches!(e, DecodeError::Truncated { at: 100, .. }), "{e}");
    assert!(e.to_string().starts_with("truncated at byte 100"), "{e}");
    let e = decode_all(&bytes[..0]).unwrap_err();
    assert!(matches!(e, DecodeError::Truncated { at: 0, .. }), "{e}");
}

#[test]
fn a_dropped_frame_is_caught_by_the_whole_file_checksum() {
    // Two entries frames; remove the second one whole.
    let big = "x".repeat(ENTRIES_FRAME_BYTES_TARGET);
    let entries = vec![entry("a", &big, 1, 1, 1), entry("b", "y", 2, 2, 1)];
    let bytes = encode_all(&header(2, 2), &entries).unwrap();
    let (summary, _) = decode_all(&bytes[..]).unwrap();
    assert_eq!(summary.frames, 2);
    let end_len = FRAME_HEADER_BYTES + END_PAYLOAD_BYTES;
    let second_len = FRAME_HEADER_BYTES + 4 + ENTRY_OVERHEAD_BYTES + 2;
    let cut_at = bytes.len() - end_len - second_len;
    let mut dropped = bytes[..cut_at].to_vec();
    dropped.extend_from_slice(&bytes[bytes.len() - end_len..]);
    let e = decode_all(&dropped[..]).unwrap_err();
    assert!(
        matches!(e, DecodeError::Checksum { at, .. } if at == cut_at as u64),
        "{e}"
    );
}

#[test]
fn bytes_after_the_end_are_refused() {
    let (_, _, mut bytes) = sample();
    let n = bytes.len() as u64;
    bytes.push(0);
    let e = decode_all(&bytes[..]).unwrap_err();
    assert!(
        matches!(e, DecodeError::Malformed { at, .. } if at == n),
        "{e}"
    );
}

#[test]
fn the_encoder_refuses_entries_a_store_cannot_hold() {
    let (mut enc, _) = Encoder::new(&header(5, 2));
    enc.push(entry("b", "", 1, 1, 1).as_ref()).unwrap();
    let e = enc.push(entry("a", "", 1, 1, 1).as_ref()).unwrap_err();
    assert!(e.to_string().contains("out of order"), "{e}");
    let e = enc.push(entry("c", "", 1, 6, 1).as_ref()).unwrap_err();
    assert!(
        e.to_string().contains("beyond the backup's revision 5"),
        "{e}"
    );
    let e = enc.push(entry("c", "", 3, 2, 1).as_ref()).unwrap_err();
    assert!(e.to_string().contains("create_revision 3"), "{e}");
    let e = enc.finish().unwrap_err();
    assert_eq!(
        e,
        EncodeError::KeyCount {
            announced: 2,
            pushed: 1
        }
    );
}

#[test]
fn the_decoder_refuses_what_the_encoder_would_not_write() {
    // A well-framed file whose keys repeat: only a bug or a forger makes one.
    let (h, _, _) = sample();
    let (_, mut bytes) = Encoder::new(&h);
    let mut payload = Vec::new();
    payload.extend_from_slice(&2u32.to_le_bytes());
    for _ in 0..2 {
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.push(b'k');
        payload.extend_from_slice(&0u32.to_le_bytes());
        for v in [1u64, 1, 1] {
            payload.extend_from_slice(&v.to_le_bytes());
        }
    }
    push_frame(&mut bytes, KIND_ENTRIES, &payload);
    let e = decode_all(&bytes[..]).unwrap_err();
    assert!(
        e.to_string().contains("key number 1: keys out of order"),
        "{e}"
    );
}

fn arb_entries() -> impl Strategy<Value = (u64, Vec<Entry>)> {
    prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 1..24),
        (
            prop::collection::vec(any::<u8>(), 0..64),
            1u64..50,
            0u64..50,
            1u64..9,
        ),
        0..40,
    )
    .prop_map(|m| {
        let entries: Vec<Entry> = m
            .into_iter()
            .map(|(key, (value, create, extra, version))| Entry {
                key,
                value,
                create_revision: create,
                mod_revision: create + extra,
                version,
            })
            .collect();
        let revision = entries.iter().map(|e| e.mod_revision).max().unwrap_or(0);
        (revision, entries)
    })
}

fn arb_header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        ".{0,20}",
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u64>(), 0..4),
    )
        .prop_map(
            |(node_id, cluster_id, log_index, log_term, voters)| Header {
                cluster_id,
                node_id,
                log_index,
                log_term,
                membership: Membership {
                    configs: vec![voters],
                    members: Vec::new(),
                },
                ..Header::default()
            },
        )
}

proptest! {
    #[test]
    fn decode_of_encode_is_the_identity((revision, entries) in arb_entries(), mut h in arb_header()) {
        h.revision = revision;
        h.keys = entries.len() as u64;
        let bytes = encode_all(&h, &entries).unwrap();
        let (summary, got) = decode_all(&bytes[..]).unwrap();
        prop_assert_eq!(summary.header, h);
        prop_assert_eq!(got, entries);
        prop_assert_eq!(summary.bytes, bytes.len() as u64);
    }

    #[test]
    fn every_damaged_byte_is_refused((revision, entries) in arb_entries(), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
        let h = Header { revision, keys: entries.len() as u64, ..Header::default() };
        let mut bytes = encode_all(&h, &entries).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let e = decode_all(&bytes[..]).unwrap_err();
        // Refused at or before the damaged byte's frame, never after it.
        prop_assert!(e.offset() <= i as u64, "byte {} damaged, refused at {}: {}", i, e.offset(), e);
    }

    #[test]
    fn every_cut_is_truncated_at_its_length((revision, entries) in arb_entries(), pos in any::<prop::sample::Index>()) {
        let h = Header { revision, keys: entries.len() as u64, ..Header::default() };
        let bytes = encode_all(&h, &entries).unwrap();
        let cut = pos.index(bytes.len());
        let e = decode_all(&bytes[..cut]).unwrap_err();
        let truncated = matches!(e, DecodeError::Truncated { at, .. } if at == cut as u64);
        prop_assert!(truncated, "cut at {}: {}", cut, e);
    }
}
