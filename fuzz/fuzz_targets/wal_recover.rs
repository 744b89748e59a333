//! WAL recovery (`concord::storage::Wal::open`) from arbitrary segment
//! files.
//!
//! Input: one config byte, then the segment files' bytes separated by
//! [`SEPARATOR`]. The segments are written as `<seq>.wal` with 16-digit
//! sequence numbers from 1 (config bit 0 set: from 7; bit 1 set: one number
//! is skipped before the last segment, a missing segment), into a
//! directory on tmpfs where one exists. Config bit 2 set: the CRC of
//! every frame is recomputed first (walking the frames by their length
//! fields), so mutated records get past the checksum to the record
//! decoder and the replay.
//!
//! Checks: `Wal::open` recovers or refuses with an error, never panics.
//! When it recovers, the entries are contiguous and above the snapshot
//! mark; opening again (the torn tail, if any, now cut) recovers the same
//! with no torn tail; an entry appended after that is recovered after
//! them.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use concord::storage::{Record, Recovered, Wal, WalOptions};
use libfuzzer_sys::fuzz_target;
use raft::eraftpb::Entry;

/// Between two segments' bytes in the input.
const SEPARATOR: &[u8] = b"~SG~";

fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("concord-fuzz-wal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("fuzz directory");
        dir
    })
}

fn options() -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        preallocate: false,
    }
}

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        parts.push(&rest[..at]);
        rest = &rest[at + SEPARATOR.len()..];
    }
    parts.push(rest);
    parts
}

/// Rewrites the CRC of each `[len u32][crc u32][body]` frame in `segment`
/// to match its body, as far as the lengths lead.
fn fix_crcs(segment: &mut [u8]) {
    let mut off = 0;
    while off + 8 <= segment.len() {
        let len = u32::from_le_bytes(segment[off..off + 4].try_into().unwrap()) as usize;
        if len == 0 || segment.len() - off - 8 < len {
            return;
        }
        let crc = crc32fast::hash(&segment[off + 8..off + 8 + len]);
        segment[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
        off += 8 + len;
    }
}

fn check_shape(r: &Recovered) {
    for pair in r.entries.windows(2) {
        assert_eq!(pair[1].index, pair[0].index + 1, "entries not contiguous");
    }
    if let (Some((mark, _)), Some(first)) = (r.snapshot_mark, r.entries.first()) {
        assert_eq!(
            first.index,
            mark + 1,
            "entries do not resume after the mark"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, data)) = data.split_first() else {
        return;
    };
    let parts = split(data);
    if parts.len() > 8 {
        return;
    }
    let dir = dir();
    for item in std::fs::read_dir(dir).expect("list") {
        std::fs::remove_file(item.expect("entry").path()).expect("clean");
    }
    let first: u64 = if config & 1 == 1 { 7 } else { 1 };
    let n = parts.len() as u64;
    for (i, part) in parts.iter().enumerate() {
        let mut seq = first + i as u64;
        if config & 2 == 2 && n > 1 && i as u64 == n - 1 {
            seq += 1;
        }
        let name = format!("{seq:016}.wal");
        let mut part = part.to_vec();
        if config & 4 == 4 {
            fix_crcs(&mut part);
        }
        std::fs::write(dir.join(name), part).expect("write segment");
    }

    let recovered = match Wal::open(dir, options()) {
        Ok((wal, recovered)) => {
            drop(wal);
            recovered
        }
        Err(_) => return,
    };
    check_shape(&recovered);

    // Once repaired, the log reads the same.
    let (mut wal, again) = Wal::open(dir, options()).expect("a recovered WAL reopens");
    assert_eq!(again.torn_tail, None, "a torn tail survived its repair");
    assert_eq!(again.hard_state, recovered.hard_state);
    assert_eq!(again.snapshot_mark, recovered.snapshot_mark);
    assert_eq!(again.entries, recovered.entries);

    // And takes the next entry where it ended.
    let next = match (recovered.entries.last(), recovered.snapshot_mark) {
        (Some(last), _) => last.index.checked_add(1),
        (None, Some((mark, _))) => mark.checked_add(1),
        (None, None) => Some(1),
    };
    let Some(next) = next else { return };
    let mut entry = Entry::default();
    entry.index = next;
    entry.term = recovered.entries.last().map_or(1, |e| e.term);
    entry.data = bytes::Bytes::from_static(b"fuzz");
    wal.append(&[Record::Entry(entry.clone())])
        .expect("append after recovery");
    wal.sync().expect("sync after recovery");
    drop(wal);
    let (_wal, last) = Wal::open(dir, options()).expect("reopens after an append");
    let mut want = recovered.entries.clone();
    want.push(entry);
    assert_eq!(
        last.entries, want,
        "the appended entry was not recovered after the others"
    );
    assert_eq!(last.snapshot_mark, recovered.snapshot_mark);
});
