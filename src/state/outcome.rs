//! What applying an op or answering a query produces.
//!
//! `Outcome` is shaped like a reply but says nothing of RESP versions: the
//! command layer turns it into RESP2 or RESP3 for each connection, and maps it
//! where one op serves several commands (SETNX answers 1/0 where SET NX answers
//! OK/nil). It is serializable so a follower can relay the leader's answer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StateError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// `+OK`
    Ok,
    /// A status line other than OK (TYPE's `+string`).
    Status(String),
    /// The null reply.
    Nil,
    /// The null array: `*-1` in RESP2 (LPOP with a count on a missing key,
    /// a timed-out BLPOP), the null reply in RESP3.
    NilArray,
    Int(i64),
    Bulk(Bytes),
    /// A double: RESP3 `,`; a bulk string in RESP2.
    Double(f64),
    Array(Vec<Outcome>),
    /// Field/value pairs: a RESP3 map, a flat array in RESP2.
    Map(Vec<(Outcome, Outcome)>),
    /// Ordered pairs that may repeat (HRANDFIELD WITHVALUES): an array of
    /// two-element arrays in RESP3, a flat array in RESP2.
    Pairs(Vec<(Outcome, Outcome)>),
    /// An unordered collection: a RESP3 set, an array in RESP2.
    Set(Vec<Outcome>),
    /// A per-element error inside an array (e.g. a transaction's results).
    Error(StateError),
    /// The client waits: its answer comes later as a [`Wakeup`] for
    /// `ticket`, or, past `timeout_ms` (0: no limit), from the state's own
    /// give-up timer. The node that took the request holds its reply until
    /// then; a client never sees this outcome.
    ///
    /// [`Wakeup`]: super::Wakeup
    Blocked {
        ticket: super::Ticket,
        timeout_ms: u64,
    },
}

pub type OpResult = Result<Outcome, StateError>;

impl Outcome {
    pub fn bulk_or_nil(value: Option<Bytes>) -> Outcome {
        value.map_or(Outcome::Nil, Outcome::Bulk)
    }

    pub fn bool(value: bool) -> Outcome {
        Outcome::Int(value as i64)
    }
}
