//! Errors a command can meet while it is applied or read.
//!
//! Each variant's text is the one Redis 7 sends, without the leading `-`.
//! These are answers to the client, never failures of the node: applying an
//! op either succeeds or returns one of these, identically on every replica.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StateError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR hash value is not a float")]
    HashNotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR index out of range")]
    IndexOutOfRange,
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    /// A deadline that does not fit in a signed 64-bit millisecond clock. The
    /// command layer names the command in the text Redis sends.
    #[error("ERR invalid expire time")]
    InvalidExpireTime,
    #[error("ERR syntax error")]
    Syntax,
    #[error("NOSESSION session {0} does not exist or has ended")]
    NoSession(u64),
    #[error("FENCED lock '{lock}' is not held by token {token}")]
    Fenced { lock: String, token: u64 },
    #[error("ERR no such instance")]
    NoSuchInstance,
    #[error("ERR no such breaker '{0}'")]
    NoSuchBreaker(String),
    #[error("ERR resulting score is not a number (NaN)")]
    ScoreNan,
    #[error("NOSCRIPT No matching script. Please use EVAL.")]
    NoScript,
    #[error("NOTBUSY No scripts in execution right now.")]
    NotBusy,
    /// A script op applied by a state that has no script host installed.
    #[error("ERR scripting is not available on this node")]
    NoScriptHost,
    /// A script's error reply, in full (code and text), as Redis sends it.
    #[error("{0}")]
    Script(String),
    #[error(transparent)]
    Stream(#[from] super::streams::StreamError),
    #[error("ERR The specified keys must contain string values")]
    LcsNotStrings,
    #[error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")]
    LcsTooLarge,
    /// A script served as a read reached a write command, or is an EVAL
    /// whose body is not cached yet: the node sends it through the log
    /// instead ([`ScriptQuery::EvalShaFirst`]). Never a client's answer.
    ///
    /// [`ScriptQuery::EvalShaFirst`]: super::scripts::ScriptQuery::EvalShaFirst
    #[error("ERR a script served as a read reached a write command")]
    ScriptWrites,
    #[error("ERR One or more scores can't be converted into double")]
    SortNotDouble,
    /// The answer of a waiting command that CLIENT UNBLOCK ... ERROR ended.
    #[error("UNBLOCKED client unblocked via CLIENT UNBLOCK")]
    Unblocked,
    /// An ACL write refused (ACL SETUSER's rules, ACL DELUSER default...).
    #[error(transparent)]
    Acl(#[from] super::acl::AclError),
    #[error(transparent)]
    Hll(#[from] super::hll::HllError),
    /// An argument error found while the command ran (the geo commands
    /// read some arguments only after looking at their key, and RESTORE's
    /// BUSYKEY comes before its payload's errors, as in Redis): the full
    /// text, code included.
    #[error("{0}")]
    Argument(String),
    /// RESTORE onto an existing key without REPLACE.
    #[error("BUSYKEY Target key name already exists.")]
    BusyKey,
    /// DUMP of a value concord has no RDB encoding for yet (streams).
    #[error("ERR concord cannot DUMP {0} values yet")]
    CannotDump(String),
    /// MOVE to the database the key is in.
    #[error("ERR source and destination objects are the same")]
    SameObject,
}
