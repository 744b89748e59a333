//! The peer wire decoder (`concord::transport::wire::Frame::decode`) on
//! arbitrary bytes, as a peer connection reads them.
//!
//! Checks: no panic; a frame that decodes re-encodes to exactly the bytes
//! it was read from (the format has one encoding per frame), which decode
//! to the same frame; the stream decodes the same however it is cut into
//! reads; `Chunk` frames fed to `Reassembly` never panic and never give a
//! message of another length than announced.

#![no_main]

use bytes::BytesMut;
use concord::transport::wire::{Frame, Reassembly, WireError};
use libfuzzer_sys::fuzz_target;

/// Decodes frames off `buf` until it needs more or fails.
fn drain(buf: &mut BytesMut, out: &mut Vec<Frame>) -> Result<(), WireError> {
    loop {
        let before = buf.clone();
        match Frame::decode(buf)? {
            Some(frame) => {
                let used = before.len() - buf.len();
                let mut again = BytesMut::new();
                frame.encode(&mut again);
                assert_eq!(
                    &again[..],
                    &before[..used],
                    "{frame:?} re-encodes differently"
                );
                let back = Frame::decode(&mut again).expect("re-encoded frame decodes");
                assert_eq!(back.as_ref(), Some(&frame));
                assert!(again.is_empty());
                out.push(frame);
            }
            None => {
                assert_eq!(&before[..], &buf[..], "an incomplete frame consumed bytes");
                return Ok(());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    // All at once.
    let mut buf = BytesMut::from(data);
    let mut whole = Vec::new();
    let whole_end = drain(&mut buf, &mut whole);

    // In reads of `step + 1` bytes.
    let mut buf = BytesMut::new();
    let mut chunked = Vec::new();
    let mut chunked_end = Ok(());
    for piece in data.chunks(usize::from(step) + 1) {
        buf.extend_from_slice(piece);
        chunked_end = drain(&mut buf, &mut chunked);
        if chunked_end.is_err() {
            break;
        }
    }
    assert_eq!(whole, chunked);
    assert_eq!(whole_end, chunked_end);

    // Chunks reassembled as a connection does.
    let mut reassembly = Reassembly::default();
    for frame in whole {
        if let Frame::Chunk {
            total,
            offset,
            data,
        } = frame
        {
            if let Ok(Some(message)) = reassembly.add(total, offset, data) {
                assert_eq!(message.len() as u64, total);
            }
        }
    }
});
