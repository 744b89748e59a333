//! What a normal log entry carries: the leader's time stamp and a batch of
//! ops proposed together.
//!
//! One entry per batch (not per op) keeps the per-op cost of raft — entry
//! headers, protobuf framing, WAL records — off the hot path: a loop of the
//! driver turns everything clients sent meanwhile into one entry.

use serde::{Deserialize, Serialize};

use crate::state::Op;

/// Bumped when the layout changes; an unknown version stops the node rather
/// than being misapplied.
pub const PAYLOAD_FORMAT: u8 = 1;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposing leader's wall clock, in Unix milliseconds.
    pub time_ms: u64,
    pub ops: Vec<Op>,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("entry payload is empty")]
    Empty,
    #[error("entry payload format {0} is not supported (this build reads {PAYLOAD_FORMAT})")]
    UnknownFormat(u8),
    #[error("entry payload cannot be decoded: {0}")]
    Decode(#[from] postcard::Error),
}

#[derive(Serialize)]
struct BatchRef<'a> {
    time_ms: u64,
    ops: &'a [Op],
}

pub fn encode(time_ms: u64, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![PAYLOAD_FORMAT];
    let body = postcard::to_stdvec(&BatchRef { time_ms, ops }).expect("ops serialize");
    out.extend(body);
    out
}

pub fn decode(data: &[u8]) -> Result<Batch, PayloadError> {
    let (&format, body) = data.split_first().ok_or(PayloadError::Empty)?;
    if format != PAYLOAD_FORMAT {
        return Err(PayloadError::UnknownFormat(format));
    }
    Ok(postcard::from_bytes(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keys::KeyOp;

    #[test]
    fn a_batch_round_trips() {
        let ops = vec![
            Op::Key(KeyOp::Del {
                keys: vec!["a".into(), "b".into()],
            }),
            Op::ExpireKeys(vec!["c".into()]),
        ];
        let data = encode(1234, &ops);
        assert_eq!(decode(&data).unwrap(), Batch { time_ms: 1234, ops });
        assert!(matches!(
            decode(&[9, 1, 2]),
            Err(PayloadError::UnknownFormat(9))
        ));
        assert!(matches!(decode(&[]), Err(PayloadError::Empty)));
    }
}
