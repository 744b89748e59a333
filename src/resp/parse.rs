//! The incremental request parser (see the module docs of `resp` for the rules it follows).

use bytes::{Buf, Bytes, BytesMut};

use super::{Limits, ProtocolError};

/// Most argv slots reserved up front for a multibulk request, whatever count it declares.
const MAX_ARGV_PREALLOC: usize = 1024;

/// Per-connection request parser.
///
/// Feed it the connection's read buffer after every read; it takes complete requests off
/// the front of the buffer. Between calls the caller may only append to that buffer (as
/// `read_buf` does): a multibulk request is consumed argument by argument as its parts
/// arrive, and the parser keeps the arguments seen so far.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    /// Arguments of the multibulk request in progress.
    argv: Vec<Bytes>,
    /// Arguments of the multibulk request in progress still to come (0: between requests).
    remaining: usize,
    /// Length of the bulk whose `$<len>` line was read but whose data has not all arrived.
    bulk_len: Option<usize>,
    /// How many bytes at the front of the buffer were already searched, in vain, for the end
    /// of the line being read (or the index of a `\r` found there whose `\n` has not arrived).
    scanned: usize,
}

/// Arguments and bulk bytes an unauthenticated request may have (Redis's).
const UNAUTHENTICATED_MULTIBULK: i64 = 10;
const UNAUTHENTICATED_BULK: usize = 16 * 1024;

impl RequestParser {
    /// A parser for a new connection.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            argv: Vec::new(),
            remaining: 0,
            bulk_len: None,
            scanned: 0,
        }
    }

    /// The limits this parser enforces.
    /// Bytes of the request in progress already parsed out of the buffer
    /// (its complete arguments): with what is still in the buffer, what
    /// the connection holds of it.
    pub fn held_bytes(&self) -> usize {
        self.argv.iter().map(Bytes::len).sum()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the connection has not authenticated yet: then requests are
    /// held to Redis's small limits, so a stranger cannot make the node
    /// buffer a large request before it is refused.
    pub fn set_unauthenticated(&mut self, on: bool) {
        self.limits.unauthenticated = on;
    }

    /// Whether part of a multibulk request has been taken from the buffer and the rest is
    /// still awaited (so the connection closing now cuts a request in half).
    pub fn in_progress(&self) -> bool {
        self.remaining > 0
    }

    /// Takes one complete request from the front of `buf` (consuming its bytes) and returns
    /// its argv as zero-copy `Bytes` (split off `buf` and frozen).
    ///
    /// `Ok(None)`: more bytes are needed; what was parsed so far is kept, so call again with
    /// the same buffer once more bytes were appended. Empty inline lines and `*0`/`*-1`
    /// requests are skipped, as Redis does. After `Err` the parser and buffer are in an
    /// unspecified (but safe) state: answer `-ERR <text>` and close the connection.
    pub fn next_request(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut argv = Vec::new();
        Ok(self.next_request_into(buf, &mut argv)?.then_some(argv))
    }

    /// [`RequestParser::next_request`] into `argv`, whose old contents are
    /// dropped: `Ok(true)` when it holds a request. Passing the same vector
    /// for every request of a connection saves an allocation per request (the
    /// parser and the caller swap vectors).
    pub fn next_request_into(
        &mut self,
        buf: &mut BytesMut,
        argv: &mut Vec<Bytes>,
    ) -> Result<bool, ProtocolError> {
        loop {
            if self.remaining == 0 {
                match buf.first() {
                    None => return Ok(false),
                    Some(b'*') => {
                        if !self.start_multibulk(buf)? {
                            return Ok(false);
                        }
                        if self.remaining == 0 {
                            continue; // `*0` or `*-1`: nothing to run
                        }
                    }
                    Some(_) => match self.inline(buf)? {
                        None => return Ok(false),
                        Some(line) if line.is_empty() => continue, // blank line
                        Some(line) => {
                            *argv = line;
                            return Ok(true);
                        }
                    },
                }
            }
            if !self.continue_multibulk(buf)? {
                return Ok(false);
            }
            std::mem::swap(&mut self.argv, argv);
            // The caller's previous request, and room for the next one.
            if self.argv.capacity() > MAX_ARGV_PREALLOC {
                self.argv = Vec::new();
            } else {
                self.argv.clear();
            }
            return Ok(true);
        }
    }

    /// Finds `needle` within the first `max_inline_len + 1` bytes of `buf`, resuming where
    /// the previous search left off. `Ok(None)`: not there yet.
    fn find_line_end(
        &mut self,
        buf: &[u8],
        needle: u8,
        too_long: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        let window = buf.len().min(self.limits.max_inline_len.saturating_add(1));
        let from = self.scanned.min(window);
        match buf[from..window].iter().position(|&b| b == needle) {
            Some(i) => {
                self.scanned = from + i;
                Ok(Some(from + i))
            }
            None if buf.len() > self.limits.max_inline_len => Err(too_long),
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }

    /// Reads a header line (`*<n>` or `$<n>`) ended by `\r` plus one more byte, as Redis does.
    /// Returns the index of the `\r`, or `None` if the line is not complete yet.
    fn header_line(
        &mut self,
        buf: &[u8],
        too_long: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        match self.find_line_end(buf, b'\r', too_long)? {
            Some(cr) if cr + 2 <= buf.len() => Ok(Some(cr)),
            _ => Ok(None),
        }
    }

    /// Reads the `*<count>` line. `Ok(false)`: incomplete.
    fn start_multibulk(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        let Some(cr) = self.header_line(buf, ProtocolError::TooBigMultibulkCount)? else {
            return Ok(false);
        };
        let count = parse_i64(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        if count > 0 && count as u64 > self.limits.max_multibulk_len as u64 {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if self.limits.unauthenticated && count > UNAUTHENTICATED_MULTIBULK {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        buf.advance(cr + 2);
        self.scanned = 0;
        if count > 0 {
            let count = count as usize; // <= max_multibulk_len, so it fits
            self.remaining = count;
            self.argv.clear();
            self.argv.reserve_exact(count.min(MAX_ARGV_PREALLOC));
        }
        Ok(true)
    }

    /// Reads as many arguments of the multibulk request in progress as `buf` holds.
    /// `Ok(true)`: the request is complete, in `self.argv`.
    fn continue_multibulk(&mut self, buf: &mut BytesMut) -> Result<bool, ProtocolError> {
        while self.remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    let Some(cr) = self.header_line(buf, ProtocolError::TooBigBulkCount)? else {
                        return Ok(false);
                    };
                    if buf[0] != b'$' {
                        return Err(ProtocolError::ExpectedDollar(buf[0]));
                    }
                    let len = parse_i64(&buf[1..cr])
                        .filter(|&len| len >= 0 && len as u64 <= self.limits.max_bulk_len as u64)
                        .ok_or(ProtocolError::InvalidBulkLength)?
                        as usize;
                    if self.limits.unauthenticated && len > UNAUTHENTICATED_BULK {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    buf.advance(cr + 2);
                    self.scanned = 0;
                    self.bulk_len = Some(len);
                    len
                }
            };
            if buf.len() < len.saturating_add(2) {
                return Ok(false);
            }
            self.argv.push(buf.split_to(len).freeze());
            buf.advance(2);
            self.bulk_len = None;
            self.remaining -= 1;
        }
        Ok(true)
    }

    /// Reads one inline line and splits it. `Ok(Some(empty))` for a blank line.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(nl) = self.find_line_end(buf, b'\n', ProtocolError::TooBigInlineRequest)? else {
            return Ok(None);
        };
        let line = buf.split_to(nl + 1).freeze();
        self.scanned = 0;
        let end = if nl > 0 && line[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        split_args(&line, end).map(Some)
    }
}

/// Redis's `string2ll`: an optional `-`, then `0` alone or digits not starting with `0`;
/// nothing else (no `+`, no spaces, no `-0`), and it must fit an `i64`.
fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'0'] => return Some(0),
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') if digits.len() <= 20 => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        0i64.checked_sub_unsigned(v)
    } else {
        i64::try_from(v).ok()
    }
}

/// `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits `line[..end]` into arguments following the rules of Redis's `sdssplitargs`:
/// blanks separate arguments; `"..."` understands `\n \r \t \b \a \xHH` and `\<any>`;
/// `'...'` understands only `\'`; a closing quote must be followed by a blank or the end.
/// The line is read as a C string: it ends at its first NUL byte.
///
/// Arguments without quotes are zero-copy slices of `line`.
fn split_args(line: &Bytes, end: usize) -> Result<Vec<Bytes>, ProtocolError> {
    let s = &line[..end];
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    // Like a C string: reading past the end gives NUL.
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut argv = Vec::new();
    let mut p = 0;
    loop {
        while p < s.len() && is_c_space(s[p]) {
            p += 1;
        }
        if p >= s.len() {
            return Ok(argv);
        }
        let start = p;
        // Some(..) once the argument has quotes and so can no longer be a plain slice.
        let mut owned: Option<Vec<u8>> = None;
        loop {
            match at(p) {
                b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                quote @ (b'"' | b'\'') => {
                    let mut arg = s[start..p].to_vec();
                    p += 1;
                    p = if quote == b'"' {
                        double_quoted(s, p, &mut arg)?
                    } else {
                        single_quoted(s, p, &mut arg)?
                    };
                    owned = Some(arg);
                    break;
                }
                _ => p += 1,
            }
        }
        argv.push(match owned {
            Some(arg) => Bytes::from(arg),
            None => line.slice(start..p),
        });
    }
}

/// Reads a `"..."` body starting after the opening quote; returns the index after the
/// closing quote.
fn double_quoted(s: &[u8], mut p: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    loop {
        match at(p) {
            0 => return Err(ProtocolError::UnbalancedQuotes),
            b'\\' if at(p + 1) == b'x' => {
                if let (Some(hi), Some(lo)) = (hex_value(at(p + 2)), hex_value(at(p + 3))) {
                    arg.push(hi * 16 + lo);
                    p += 4;
                } else {
                    arg.push(b'x');
                    p += 2;
                }
            }
            b'\\' if at(p + 1) != 0 => {
                arg.push(match at(p + 1) {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => other,
                });
                p += 2;
            }
            b'"' => return closing_quote(s, p),
            other => {
                arg.push(other);
                p += 1;
            }
        }
    }
}

/// Reads a `'...'` body starting after the opening quote; returns the index after the
/// closing quote.
fn single_quoted(s: &[u8], mut p: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    loop {
        match at(p) {
            0 => return Err(ProtocolError::UnbalancedQuotes),
            b'\\' if at(p + 1) == b'\'' => {
                arg.push(b'\'');
                p += 2;
            }
            b'\'' => return closing_quote(s, p),
            other => {
                arg.push(other);
                p += 1;
            }
        }
    }
}

/// A closing quote at `p` must be followed by a blank or the end of the line.
fn closing_quote(s: &[u8], p: usize) -> Result<usize, ProtocolError> {
    match s.get(p + 1) {
        Some(&b) if !is_c_space(b) => Err(ProtocolError::UnbalancedQuotes),
        _ => Ok(p + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> RequestParser {
        RequestParser::new(Limits::default())
    }

    fn args(v: &[&[u8]]) -> Vec<Bytes> {
        v.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    /// Parses everything in `input` (given at once), returning the requests and the final
    /// outcome (`Ok(())`: need more / buffer empty).
    fn parse_all(
        p: &mut RequestParser,
        input: &[u8],
    ) -> (Vec<Vec<Bytes>>, Result<(), ProtocolError>) {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.next_request(&mut buf) {
                Ok(Some(argv)) => out.push(argv),
                Ok(None) => return (out, Ok(())),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// Feeds `input` one byte at a time.
    fn parse_bytewise(
        p: &mut RequestParser,
        input: &[u8],
    ) -> (Vec<Vec<Bytes>>, Result<(), ProtocolError>) {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match p.next_request(&mut buf) {
                    Ok(Some(argv)) => out.push(argv),
                    Ok(None) => break,
                    Err(e) => return (out, Err(e)),
                }
            }
        }
        (out, Ok(()))
    }

    fn one(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        parser().next_request(&mut BytesMut::from(input))
    }

    fn err(input: &[u8]) -> String {
        one(input).unwrap_err().to_string()
    }

    #[test]
    fn error_texts_are_redis_texts() {
        let big = 64 * 1024;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                b"*x\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1048577\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*+1\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*01\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*-0\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1 \r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*99999999999999999999\r\n".to_vec(),
                "Protocol error: invalid multibulk length",
            ),
            (
                b"*1\r\n$x\r\n".to_vec(),
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$-1\r\n".to_vec(),
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$\r\n".to_vec(),
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n$536870913\r\n".to_vec(),
                "Protocol error: invalid bulk length",
            ),
            (
                b"*1\r\n:1\r\n".to_vec(),
                "Protocol error: expected '$', got ':'",
            ),
            (
                b"*2\r\n$1\r\na\r\n*1\r\n".to_vec(),
                "Protocol error: expected '$', got '*'",
            ),
            (
                [&b"*"[..], &vec![b'1'; big + 1]].concat(),
                "Protocol error: too big mbulk count string",
            ),
            (
                [&b"*1\r\n$"[..], &vec![b'1'; big]].concat(),
                "Protocol error: too big bulk count string",
            ),
            (
                vec![b'a'; big + 1],
                "Protocol error: too big inline request",
            ),
            (
                b"SET \"a\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET 'a\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET \"a\"b c\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET 'a'b c\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET \"a\\\"\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET \"a\\\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
            (
                b"SET \"a\0\"\r\n".to_vec(),
                "Protocol error: unbalanced quotes in request",
            ),
        ];
        for (input, text) in cases {
            assert_eq!(
                err(&input),
                text,
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        assert_eq!(
            ProtocolError::InvalidBulkLength.to_reply(),
            crate::resp::Reply::Error("ERR Protocol error: invalid bulk length".into())
        );
    }

    #[test]
    fn line_limits_are_exact() {
        let big = 64 * 1024;
        // Exactly the limit without a line end: wait for more.
        assert_eq!(one(&vec![b'a'; big]), Ok(None));
        assert_eq!(one(&[&b"*"[..], &vec![b'1'; big - 1]].concat()), Ok(None));
        // A line of exactly the limit is accepted.
        let mut line = vec![b'a'; big];
        line.push(b'\n');
        assert_eq!(one(&line).unwrap().unwrap().len(), 1);
        // The line end one byte too late is not.
        let mut line = vec![b'a'; big + 1];
        line.push(b'\n');
        assert_eq!(one(&line), Err(ProtocolError::TooBigInlineRequest));
    }

    #[test]
    fn multibulk_basics() {
        assert_eq!(
            one(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"),
            Ok(Some(args(&[b"SET", b"k", b""])))
        );
        // Binary data, including CR/LF inside a bulk.
        assert_eq!(
            one(b"*2\r\n$3\r\nGET\r\n$4\r\n\r\n\0\xff\r\n"),
            Ok(Some(args(&[b"GET", b"\r\n\0\xff"])))
        );
        // Redis skips the two bytes after the data without looking at them.
        assert_eq!(one(b"*1\r\n$3\r\nfooXY"), Ok(Some(args(&[b"foo"]))));
    }

    #[test]
    fn inline_splitting() {
        let cases: Vec<(&[u8], Vec<&[u8]>)> = vec![
            (b"PING\r\n", vec![b"PING"]),
            (b"PING\n", vec![b"PING"]),
            (b"  SET\tk  v \t\r\n", vec![b"SET", b"k", b"v"]),
            (b"SET \"a b\" 'c d'\r\n", vec![b"SET", b"a b", b"c d"]),
            (
                b"x \"\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
                vec![b"x", b"\n\r\t\x08\x07\\\"q"],
            ),
            (
                b"x \"\\x41\\x4a\\xfF\\x4g\\x\"\n",
                vec![b"x", b"AJ\xffx4gx"],
            ),
            (b"x 'it\\'s' 'a\\b\\n'\n", vec![b"x", b"it's", b"a\\b\\n"]),
            (b"x foo\"bar baz\" q\n", vec![b"x", b"foobar baz", b"q"]),
            (b"x \"\" ''\n", vec![b"x", b"", b""]),
            (b"x \"a\"\x0bb\n", vec![b"x", b"a", b"b"]),
            (b"a\x0bb\n", vec![b"a\x0bb"]),
            (b"\x0b\x0c a\n", vec![b"a"]),
            (b"a\rb\r\n", vec![b"a", b"b"]),
            (b"GET a\0b c\r\n", vec![b"GET", b"a"]),
            (b"x \"a\"\n", vec![b"x", b"a"]),
            (b"\xc3\xa9t\xc3\xa9\n", vec![b"\xc3\xa9t\xc3\xa9"]),
        ];
        for (input, want) in cases {
            assert_eq!(
                one(input),
                Ok(Some(args(&want))),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn skips_blank_lines_and_empty_multibulks() {
        let (reqs, end) = parse_all(
            &mut parser(),
            b"\r\n\n   \r\n*0\r\n*-1\r\n*-7\r\nPING\r\n*0\r\n",
        );
        assert_eq!(reqs, vec![args(&[b"PING"])]);
        assert_eq!(end, Ok(()));
    }

    #[test]
    fn pipelined_requests_in_one_buffer() {
        let input = b"*1\r\n$4\r\nPING\r\nECHO \"hi there\"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
                      *2\r\n$3\r\nDEL\r\n$1\r\nk\r\nQUIT\n*1\r\n$4\r\nPI";
        let mut p = parser();
        let mut buf = BytesMut::from(&input[..]);
        let mut reqs = Vec::new();
        while let Some(r) = p.next_request(&mut buf).unwrap() {
            reqs.push(r);
        }
        assert_eq!(
            reqs,
            vec![
                args(&[b"PING"]),
                args(&[b"ECHO", b"hi there"]),
                args(&[b"GET", b"k"]),
                args(&[b"DEL", b"k"]),
                args(&[b"QUIT"]),
            ]
        );
        // The partial request's header and complete bulk headers were already consumed.
        assert!(p.in_progress());
        assert_eq!(&buf[..], b"PI");
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(p.next_request(&mut buf), Ok(Some(args(&[b"PING"]))));
        assert!(!p.in_progress());
        assert!(buf.is_empty());
    }

    #[test]
    fn every_split_point_gives_the_same_requests() {
        let input: &[u8] = b"*3\r\n$3\r\nSET\r\n$5\r\nk\r\ney\r\n$0\r\n\r\n\
            SET \"a\\x41\" 'b c'\r\n\r\n*0\r\n*2\r\n$4\r\nECHO\r\n$2\r\n\0\n\r\n\
            PING\n*1\r\n$4\r\nQUIT\r\n";
        let (all, end) = parse_all(&mut parser(), input);
        assert_eq!(end, Ok(()));
        assert_eq!(all.len(), 5);
        assert_eq!(parse_bytewise(&mut parser(), input), (all.clone(), Ok(())));
        for cut in 0..=input.len() {
            let mut p = parser();
            let mut buf = BytesMut::from(&input[..cut]);
            let mut got = Vec::new();
            while let Some(r) = p.next_request(&mut buf).unwrap() {
                got.push(r);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(r) = p.next_request(&mut buf).unwrap() {
                got.push(r);
            }
            assert_eq!(got, all, "cut at {cut}");
        }
    }

    #[test]
    fn errors_do_not_depend_on_chunking() {
        for input in [
            &b"*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n"[..],
            b"PING\r\n\"x\n",
            b"*2\r\n$1\r\na\r\n$a\r\n",
        ] {
            let (a, ea) = parse_all(&mut parser(), input);
            assert!(ea.is_err());
            assert_eq!(parse_bytewise(&mut parser(), input), (a, ea));
        }
    }

    #[test]
    fn bulk_over_limit_errors_before_its_data() {
        let limits = Limits {
            max_bulk_len: 10,
            ..Limits::default()
        };
        let mut p = RequestParser::new(limits);
        assert_eq!(
            p.next_request(&mut BytesMut::from(&b"*1\r\n$10\r\n"[..])),
            Ok(None)
        );
        let mut p = RequestParser::new(limits);
        assert_eq!(
            p.next_request(&mut BytesMut::from(&b"*1\r\n$11\r\n"[..])),
            Err(ProtocolError::InvalidBulkLength)
        );
        // With the default limit: 512 MiB is fine (waits), one more byte is not.
        assert_eq!(one(b"*1\r\n$536870912\r\n"), Ok(None));
        assert_eq!(
            one(b"*1\r\n$536870913\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn multibulk_count_limit() {
        let limits = Limits {
            max_multibulk_len: 3,
            ..Limits::default()
        };
        let mut p = RequestParser::new(limits);
        assert_eq!(
            p.next_request(&mut BytesMut::from(&b"*3\r\n"[..])),
            Ok(None)
        );
        let mut p = RequestParser::new(limits);
        assert_eq!(
            p.next_request(&mut BytesMut::from(&b"*4\r\n"[..])),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn one_argv_vector_serves_every_request() {
        let mut p = parser();
        let mut argv = Vec::new();
        let mut buf =
            BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING x\r\n*1\r\n$4\r\nPI"[..]);
        assert_eq!(p.next_request_into(&mut buf, &mut argv), Ok(true));
        assert_eq!(argv, vec![Bytes::from("GET"), Bytes::from("a")]);
        assert_eq!(p.next_request_into(&mut buf, &mut argv), Ok(true));
        assert_eq!(argv, vec![Bytes::from("PING"), Bytes::from("x")]);
        assert_eq!(p.next_request_into(&mut buf, &mut argv), Ok(false));
        buf.extend_from_slice(b"NG\r\n");
        assert_eq!(p.next_request_into(&mut buf, &mut argv), Ok(true));
        assert_eq!(argv, vec![Bytes::from("PING")]);
        // A request with many arguments leaves no big vector in the parser.
        let mut big = BytesMut::from(format!("*{}\r\n", 2 * MAX_ARGV_PREALLOC).as_bytes());
        for _ in 0..2 * MAX_ARGV_PREALLOC {
            big.extend_from_slice(b"$1\r\nx\r\n");
        }
        big.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(p.next_request_into(&mut big, &mut argv), Ok(true));
        assert_eq!(argv.len(), 2 * MAX_ARGV_PREALLOC);
        assert_eq!(p.next_request_into(&mut big, &mut argv), Ok(true));
        assert_eq!(argv, vec![Bytes::from("PING")]);
        assert!(p.argv.capacity() <= MAX_ARGV_PREALLOC);
    }

    #[test]
    fn huge_declared_counts_do_not_allocate() {
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*1048576\r\n$536870912\r\n"[..]);
        assert_eq!(p.next_request(&mut buf), Ok(None));
        assert!(p.argv.capacity() <= MAX_ARGV_PREALLOC);
        assert_eq!(p.bulk_len, Some(512 * 1024 * 1024));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn big_bulk_in_many_reads_is_consumed_as_it_completes() {
        let mut p = parser();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n");
        assert_eq!(p.next_request(&mut buf), Ok(None));
        // Everything up to the big bulk's data has been taken off the buffer.
        assert!(buf.is_empty());
        for _ in 0..100 {
            buf.extend_from_slice(&[b'v'; 1000]);
            assert_eq!(p.next_request(&mut buf), Ok(None));
        }
        buf.extend_from_slice(b"\r\nPING\r\n");
        let argv = p.next_request(&mut buf).unwrap().unwrap();
        assert_eq!(argv.len(), 3);
        assert_eq!(argv[2].len(), 100_000);
        assert_eq!(p.next_request(&mut buf), Ok(Some(args(&[b"PING"]))));
    }

    #[test]
    fn slow_header_line_is_not_rescanned() {
        // A count line dribbling in: each call only looks at the new bytes.
        let mut p = parser();
        let mut buf = BytesMut::from(&b"*"[..]);
        for _ in 0..1000 {
            assert_eq!(p.next_request(&mut buf), Ok(None));
            assert_eq!(p.scanned, buf.len());
            buf.extend_from_slice(b" ");
        }
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            p.next_request(&mut buf),
            Err(ProtocolError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn parse_i64_matches_string2ll() {
        for (s, want) in [
            (&b"0"[..], Some(0)),
            (b"1", Some(1)),
            (b"-1", Some(-1)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"-9223372036854775809", None),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-", None),
            (b"-0", None),
            (b"00", None),
            (b"+1", None),
            (b" 1", None),
            (b"1a", None),
        ] {
            assert_eq!(parse_i64(s), want, "{:?}", String::from_utf8_lossy(s));
        }
    }
}
