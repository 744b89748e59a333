//! Snapshot decoding (`concord::state::State::decode_snapshot`) on
//! arbitrary bytes.
//!
//! Checks: it decodes or refuses, never panics; reading the same bytes as
//! a file (`decode_snapshot_from`) gives the same verdict; a state that
//! decodes encodes to a snapshot that decodes to a state with the same
//! digest, which encodes to the same bytes again.

#![no_main]

use concord::state::State;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = State::decode_snapshot(data);
    let from_file = State::decode_snapshot_from(data, data.len() as u64);
    assert_eq!(
        decoded.is_ok(),
        from_file.is_ok(),
        "in memory: {:?}, as a file: {:?}",
        decoded.as_ref().err(),
        from_file.as_ref().err()
    );
    let Ok(state) = decoded else { return };
    let digest = state.digest();
    assert_eq!(from_file.expect("decoded").digest(), digest);

    let encoded = state.encode_snapshot();
    let again = State::decode_snapshot(&encoded).expect("a re-encoded snapshot decodes");
    assert_eq!(
        again.digest(),
        digest,
        "the digest changed through a snapshot"
    );
    assert_eq!(
        again.encode_snapshot(),
        encoded,
        "a snapshot of the restored state differs"
    );
});
