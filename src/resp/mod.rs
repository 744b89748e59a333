//! RESP framing: parsing client requests and encoding replies (RESP2 and RESP3).
//!
//! This module only deals with bytes on the wire; it knows nothing about commands.
//!
//! # Requests
//!
//! [`RequestParser`] turns the bytes a client sent into argument vectors, one request at a
//! time, the way Redis's `networking.c` (`processInputBuffer`, `processMultibulkBuffer`,
//! `processInlineBuffer`) does: a request whose first byte is `*` is a multibulk request
//! (`*<n>\r\n` followed by `n` times `$<len>\r\n<len bytes>\r\n`), anything else is an
//! inline command line split with the rules of Redis's `sdssplitargs`.
//!
//! We parse requests with our own small incremental parser rather than with the
//! `redis-protocol` crate's decoder, because a server needs things a general frame decoder
//! does not give:
//!
//! * **Redis's exact protocol errors.** Clients and test suites look at the text
//!   (`Protocol error: invalid bulk length`, `expected '$', got ':'`, ...), and the point at
//!   which an error is reported matters too (a bulk length over the limit is rejected as soon
//!   as its header line is complete, before any of its data arrives).
//! * **Limits enforced before allocating.** A declared count or length is checked against
//!   [`Limits`] when its header is read, and no buffer is ever sized from an untrusted number
//!   (argv capacity is capped at 1024 up front and grows only as arguments really arrive).
//! * **Inline commands** (`PING\r\n`, `SET "a b" c\n` from telnet or `redis-cli` pipes),
//!   which are not RESP frames at all.
//! * **Zero-copy arguments without re-parsing.** Each argument is split off the connection's
//!   read buffer (`split_to` + `freeze`) as soon as it is complete, and the parser remembers
//!   how far a partial request got (and how far it already scanned for a line end), so a big
//!   request arriving in many reads is not rescanned from its start on every read.
//!
//! `redis-protocol` is still used, in tests only, as an oracle: random argument vectors
//! encoded by its RESP2 encoder must parse back identically, and every [`Reply`] we encode
//! must decode with its RESP2/RESP3 decoders to the equivalent frame.
//!
//! Known, deliberate differences from Redis 7.2 (all at the edges of malformed input):
//!
//! * Redis searches line ends with `strchr`, so a NUL byte before the line end makes it wait
//!   for more data; we search all bytes, so such a line is parsed (and, for a count line,
//!   rejected as an invalid length) instead of stalling. An inline line is still cut at its
//!   first NUL byte before splitting, as `sdssplitargs` does.
//! * Redis applies its 64 KiB line limit to whatever happens to be buffered, so whether an
//!   over-long line is an error depends on how the bytes were chunked by reads. We apply
//!   [`Limits::max_inline_len`] to the line itself (the line end must come within that many
//!   bytes), which gives the same verdict for every chunking.
//! * Like Redis, the two bytes after a bulk's data (and after a header line's `\r`) are
//!   skipped without checking that they are `\r\n`.
//! * `expected '$', got 'X'` shows a byte >= 0x80 as the Latin-1 character of that value,
//!   where Redis would send the raw byte.
//!
//! # Replies
//!
//! [`Reply`] is what commands answer; [`encode`] writes it in the connection's [`Protocol`],
//! downgrading RESP3-only types for RESP2 clients the way Redis does (maps become flat
//! arrays, doubles bulk strings, booleans integers, ...). [`format_double`] is Redis's
//! `d2string`.

mod parse;
mod reply;

#[cfg(test)]
mod proptests;

pub use parse::RequestParser;
pub use reply::{encode, format_double, format_human_double, Protocol, Reply};

/// Limits on what a client may send, checked before anything is allocated for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk argument, in bytes (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Largest accepted number of arguments in a multibulk request (1024 * 1024).
    pub max_multibulk_len: usize,
    /// Longest accepted line, in bytes: an inline request, or the count line of a
    /// multibulk request or of one of its bulks (Redis's `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
    /// The connection has not authenticated: at most 10 arguments of at
    /// most 16 KiB each (Redis's limits for unauthenticated clients).
    pub unauthenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            unauthenticated: false,
        }
    }
}

/// A malformed request. The connection is answered `-ERR <Display text>` and closed.
///
/// The `Display` texts are Redis's, without the `ERR ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// No line end within [`Limits::max_inline_len`] bytes of an inline request.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// An inline request with an unterminated quote, or a closing quote not followed by a
    /// space or the end of the line.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// No `\r` within [`Limits::max_inline_len`] bytes of the `*<count>` line.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// The `*<count>` is not an integer or is over [`Limits::max_multibulk_len`].
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// No `\r` within [`Limits::max_inline_len`] bytes of a `$<len>` line.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// An element of a multibulk request does not start with `$`; holds the byte found.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// The `$<len>` is not an integer, is negative, or is over [`Limits::max_bulk_len`].
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// More than 10 arguments before the connection authenticated.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk over 16 KiB before the connection authenticated.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

impl ProtocolError {
    /// The error reply sent to the client before the connection is closed (`ERR` + text).
    pub fn to_reply(&self) -> Reply {
        Reply::Error(format!("ERR {self}"))
    }
}
