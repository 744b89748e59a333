//! Replies and their RESP2/RESP3 encoding.

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

/// A reply to a client, independent of the protocol version it is encoded in.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`. A `Cow` so that `+OK`, `+PONG`, ... cost no allocation.
    Simple(Cow<'static, str>),
    /// `-text`: the full text including its code (`ERR ...`, `WRONGTYPE ...`), without the
    /// leading `-`.
    Error(String),
    /// `:n`
    Int(i64),
    /// `$len` + bytes
    Bulk(Bytes),
    /// The null bulk string: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// The null array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// `*n`
    Array(Vec<Reply>),
    /// `%n` in RESP3; a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `~n` in RESP3; an array in RESP2.
    Set(Vec<Reply>),
    /// Pairs as Redis 7.2 sends HRANDFIELD WITHVALUES and ZRANGE WITHSCORES:
    /// an array of two-element arrays in RESP3, one flat array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
    /// `,text` in RESP3; a bulk string in RESP2. Text from [`format_double`].
    Double(f64),
    /// `#t`/`#f` in RESP3; `:1`/`:0` in RESP2.
    Bool(bool),
    /// `(digits` in RESP3; a bulk string in RESP2.
    BigNumber(String),
    /// `=len` + `fmt:` + text in RESP3 (`format` is e.g. `*b"txt"`); a bulk of the text in
    /// RESP2.
    Verbatim { format: [u8; 3], text: Bytes },
    /// `>n` (out-of-band data, e.g. pub/sub messages) in RESP3; an array in RESP2.
    Push(Vec<Reply>),
    /// Several replies to one command, sent one after the other (SUBSCRIBE
    /// confirms each channel with a reply of its own).
    Frames(Vec<Reply>),
    /// A map in RESP3; an array of two-element `[key, value]` arrays in
    /// RESP2 (XREAD's streams).
    KeyedArrays(Vec<(Reply, Reply)>),
    /// A double as Redis prints coordinates (GEOPOS, WITHCOORD): `,text` in RESP3, a bulk
    /// string in RESP2, the text from [`format_human_double`].
    HumanDouble(f64),
}

impl Reply {
    /// `+OK`
    pub fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// An error reply; `text` includes its code, e.g. `"ERR syntax error"`.
    pub fn error(text: impl Into<String>) -> Reply {
        Reply::Error(text.into())
    }

    /// A simple string reply; free for `&'static str`.
    pub fn simple(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Simple(text.into())
    }

    /// A bulk string reply.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// The protocol version a connection speaks (switched with `HELLO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

/// Appends the encoding of `reply` in `protocol` to `out`.
pub fn encode(reply: &Reply, protocol: Protocol, out: &mut BytesMut) {
    let resp3 = protocol == Protocol::Resp3;
    match reply {
        Reply::Simple(text) => put_line(out, b'+', text.as_bytes()),
        Reply::Error(text) => put_line(out, b'-', text.as_bytes()),
        Reply::Int(n) => {
            out.reserve(24);
            out.put_u8(b':');
            put_i64(out, *n);
            out.put_slice(b"\r\n");
        }
        Reply::Bulk(data) => put_bulk(out, data),
        Reply::Nil if resp3 => out.put_slice(b"_\r\n"),
        Reply::Nil => out.put_slice(b"$-1\r\n"),
        Reply::NilArray if resp3 => out.put_slice(b"_\r\n"),
        Reply::NilArray => out.put_slice(b"*-1\r\n"),
        Reply::Array(items) => {
            put_header(out, b'*', items.len());
            for item in items {
                encode(item, protocol, out);
            }
        }
        Reply::Map(pairs) => {
            if resp3 {
                put_header(out, b'%', pairs.len());
            } else {
                put_header(out, b'*', pairs.len().saturating_mul(2));
            }
            for (key, value) in pairs {
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Reply::Pairs(pairs) => {
            if resp3 {
                put_header(out, b'*', pairs.len());
            } else {
                put_header(out, b'*', pairs.len().saturating_mul(2));
            }
            for (first, second) in pairs {
                if resp3 {
                    put_header(out, b'*', 2);
                }
                encode(first, protocol, out);
                encode(second, protocol, out);
            }
        }
        Reply::Frames(replies) => {
            for reply in replies {
                encode(reply, protocol, out);
            }
        }
        Reply::KeyedArrays(pairs) => {
            put_header(out, if resp3 { b'%' } else { b'*' }, pairs.len());
            for (key, value) in pairs {
                if !resp3 {
                    put_header(out, b'*', 2);
                }
                encode(key, protocol, out);
                encode(value, protocol, out);
            }
        }
        Reply::Set(items) | Reply::Push(items) => {
            let kind = match (resp3, reply) {
                (false, _) => b'*',
                (true, Reply::Set(_)) => b'~',
                (true, _) => b'>',
            };
            put_header(out, kind, items.len());
            for item in items {
                encode(item, protocol, out);
            }
        }
        Reply::Double(v) => {
            let text = DoubleText::new(*v);
            if resp3 {
                out.reserve(text.len + 3);
                out.put_u8(b',');
                out.put_slice(text.as_bytes());
                out.put_slice(b"\r\n");
            } else {
                put_bulk(out, text.as_bytes());
            }
        }
        Reply::Bool(b) => out.put_slice(match (resp3, b) {
            (true, true) => b"#t\r\n",
            (true, false) => b"#f\r\n",
            (false, true) => b":1\r\n",
            (false, false) => b":0\r\n",
        }),
        Reply::BigNumber(digits) if resp3 => put_line(out, b'(', digits.as_bytes()),
        Reply::BigNumber(digits) => put_bulk(out, digits.as_bytes()),
        Reply::Verbatim { format, text } if resp3 => {
            put_header(out, b'=', text.len() + 4);
            out.reserve(text.len() + 6);
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Reply::Verbatim { text, .. } => put_bulk(out, text),
        Reply::HumanDouble(v) if resp3 => put_line(out, b',', format_human_double(*v).as_bytes()),
        Reply::HumanDouble(v) => put_bulk(out, format_human_double(*v).as_bytes()),
    }
}

/// `<kind><text>\r\n`, with any CR or LF inside `text` replaced by a space (as Redis does
/// for status and error replies), so a reply can never break the framing.
fn put_line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    if text.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            text.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(text);
    }
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', data.len());
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// `<kind><len>\r\n`
fn put_header(out: &mut BytesMut, kind: u8, len: usize) {
    out.reserve(24);
    out.put_u8(kind);
    put_u64(out, len as u64);
    out.put_slice(b"\r\n");
}

fn put_i64(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_u64(out, n.unsigned_abs());
}

/// Decimal digits of `n`, without going through `fmt`.
fn put_u64(out: &mut BytesMut, n: u64) {
    if n < 10 {
        out.put_u8(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let start = write_u64(&mut digits, n);
    out.put_slice(&digits[start..]);
}

/// Writes `n` right-aligned into `buf`; returns the index of its first digit.
fn write_u64(buf: &mut [u8; 20], mut n: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return i;
        }
    }
}

/// Redis's text for a double (`d2string` in Redis 7.2's `util.c`): used for RESP3 `,`
/// replies and for the bulk string a RESP2 client gets instead.
///
/// * `nan`, `inf`, `-inf`; `0` and `-0`;
/// * integral values with magnitude up to 2^62 as plain integers (`3`, not `3.0`);
/// * anything else with the shortest digits that round-trip, laid out like Redis's
///   `fpconv_dtoa`: plain digits when the decimal exponent is small, otherwise
///   `d.ddde+XX` / `d.ddde-X` (no zero padding of the exponent).
///
/// The layout rules are Redis's exactly; the digits are the shortest that round-trip
/// (Rust's float formatting). Redis gets its digits from Grisu2, which for a few values
/// in a thousand gives a longer or differently rounded form (`4.3993004000000004` where we
/// give `4.3993004`; for integral values above 2^62 that can also change the layout, e.g.
/// `49999999999999996000000` where we give `5e+22`). Both forms parse back to the same
/// double.
pub fn format_double(v: f64) -> String {
    let text = DoubleText::new(v);
    // Only ASCII is ever written.
    String::from_utf8_lossy(text.as_bytes()).into_owned()
}

/// A double in Redis's "human" long-double form: 17 decimals, trailing zeros (and a bare
/// point) dropped, `-0` as `0` (`13.36138933897018433`, `180`). The decimals are exact:
/// the double's binary value rounded to 17 places, as glibc's `%.17Lf` prints it.
pub fn format_human_double(v: f64) -> String {
    if v.is_nan() {
        return "nan".to_owned();
    }
    if v.is_infinite() {
        return if v < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    let mut text = format!("{v:.17}");
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = "0".to_owned();
    }
    text
}

/// A double's text in a stack buffer (the longest form is 26 bytes).
struct DoubleText {
    buf: [u8; 32],
    len: usize,
}

/// 2^62: Redis prints integral doubles up to this magnitude as integers.
const INTEGRAL_LIMIT: f64 = 4_611_686_018_427_387_904.0;

impl DoubleText {
    fn new(v: f64) -> Self {
        let mut t = DoubleText {
            buf: [0; 32],
            len: 0,
        };
        if v.is_nan() {
            t.push(b"nan");
        } else if v.is_infinite() {
            t.push(if v < 0.0 { b"-inf" } else { b"inf" });
        } else if v == 0.0 {
            t.push(if v.is_sign_negative() { b"-0" } else { b"0" });
        } else if (-INTEGRAL_LIMIT..=INTEGRAL_LIMIT).contains(&v) && v.fract() == 0.0 {
            let n = v as i64;
            if n < 0 {
                t.push(b"-");
            }
            let mut digits = [0u8; 20];
            let start = write_u64(&mut digits, n.unsigned_abs());
            t.push(&digits[start..]);
        } else {
            t.shortest(v);
        }
        t
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn push_zeros(&mut self, count: usize) {
        self.buf[self.len..self.len + count].fill(b'0');
        self.len += count;
    }

    /// Finite, non-zero, not a small integer.
    fn shortest(&mut self, v: f64) {
        // Rust's `{:e}` gives the shortest round-trip digits, e.g. "1.2345e-7", "5e300".
        let mut sci = StackWriter::default();
        // Cannot fail: the longest such text is 24 bytes.
        let _ = write!(sci, "{:e}", v.abs());
        let text = sci.as_bytes();
        let e = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
        let mut digits = [0u8; 20];
        let mut n = 0;
        for &b in &text[..e] {
            if b.is_ascii_digit() && n < digits.len() {
                digits[n] = b;
                n += 1;
            }
        }
        let digits = &digits[..n];
        let exp_text = text.get(e + 1..).unwrap_or(b"0");
        let (exp_neg, exp_digits) = match exp_text {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, exp_text),
        };
        let mut decimal_exp: i32 = 0;
        for &b in exp_digits {
            decimal_exp = decimal_exp * 10 + i32::from(b - b'0');
        }
        if exp_neg {
            decimal_exp = -decimal_exp;
        }

        if v < 0.0 {
            self.push(b"-");
        }
        // The value is `digits` * 10^k.
        let n = n as i32;
        let k = decimal_exp - (n - 1);
        let exp_abs = decimal_exp.abs();
        if k >= 0 && exp_abs < n + 7 {
            // Plain integer: digits, then k zeros.
            self.push(digits);
            self.push_zeros(k as usize);
        } else if k < 0 && (k > -7 || exp_abs < 4) {
            // Plain decimal.
            let int_len = n + k;
            if int_len <= 0 {
                self.push(b"0.");
                self.push_zeros((-int_len) as usize);
                self.push(digits);
            } else {
                let (int, frac) = digits.split_at(int_len as usize);
                self.push(int);
                self.push(b".");
                self.push(frac);
            }
        } else {
            // Scientific: d[.ddd]e(+|-)X
            self.push(&digits[..1]);
            if digits.len() > 1 {
                self.push(b".");
                self.push(&digits[1..]);
            }
            self.push(if decimal_exp < 0 { b"e-" } else { b"e+" });
            let mut buf = [0u8; 20];
            let start = write_u64(&mut buf, u64::from(exp_abs.unsigned_abs()));
            self.push(&buf[start..]);
        }
    }
}

/// A `fmt::Write` into a fixed stack buffer (fails instead of growing).
#[derive(Default)]
struct StackWriter {
    buf: [u8; 32],
    len: usize,
}

impl StackWriter {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for StackWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(reply: &Reply, protocol: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(reply, protocol, &mut out);
        out.to_vec()
    }

    fn both(reply: &Reply) -> (String, String) {
        (
            String::from_utf8_lossy(&enc(reply, Protocol::Resp2)).into_owned(),
            String::from_utf8_lossy(&enc(reply, Protocol::Resp3)).into_owned(),
        )
    }

    #[test]
    fn scalars() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(both(&Reply::ok()), s("+OK\r\n", "+OK\r\n"));
        assert_eq!(
            both(&Reply::error("ERR bad\r\nthing\n")),
            s("-ERR bad  thing \r\n", "-ERR bad  thing \r\n")
        );
        assert_eq!(both(&Reply::simple("a\rb")), s("+a b\r\n", "+a b\r\n"));
        assert_eq!(both(&Reply::Int(0)), s(":0\r\n", ":0\r\n"));
        assert_eq!(
            both(&Reply::Int(i64::MIN)),
            s(":-9223372036854775808\r\n", ":-9223372036854775808\r\n")
        );
        assert_eq!(
            both(&Reply::Int(i64::MAX)),
            s(":9223372036854775807\r\n", ":9223372036854775807\r\n")
        );
        assert_eq!(both(&Reply::Int(-42)), s(":-42\r\n", ":-42\r\n"));
        assert_eq!(both(&Reply::bulk("")), s("$0\r\n\r\n", "$0\r\n\r\n"));
        assert_eq!(
            both(&Reply::bulk("a\r\nb")),
            s("$4\r\na\r\nb\r\n", "$4\r\na\r\nb\r\n")
        );
        assert_eq!(both(&Reply::Nil), s("$-1\r\n", "_\r\n"));
        assert_eq!(both(&Reply::NilArray), s("*-1\r\n", "_\r\n"));
        assert_eq!(both(&Reply::Bool(true)), s(":1\r\n", "#t\r\n"));
        assert_eq!(both(&Reply::Bool(false)), s(":0\r\n", "#f\r\n"));
        assert_eq!(both(&Reply::Double(1.5)), s("$3\r\n1.5\r\n", ",1.5\r\n"));
        assert_eq!(
            both(&Reply::Double(f64::NEG_INFINITY)),
            s("$4\r\n-inf\r\n", ",-inf\r\n")
        );
        assert_eq!(
            both(&Reply::BigNumber("123456789012345678901234567890".into())),
            s(
                "$30\r\n123456789012345678901234567890\r\n",
                "(123456789012345678901234567890\r\n"
            )
        );
        assert_eq!(
            both(&Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hi\r\n")
            }),
            s("$4\r\nhi\r\n\r\n", "=8\r\ntxt:hi\r\n\r\n")
        );
    }

    #[test]
    fn aggregates() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(both(&Reply::Array(vec![])), s("*0\r\n", "*0\r\n"));
        assert_eq!(
            both(&Reply::Array(vec![
                Reply::Int(1),
                Reply::Nil,
                Reply::Array(vec![Reply::ok()])
            ])),
            s(
                "*3\r\n:1\r\n$-1\r\n*1\r\n+OK\r\n",
                "*3\r\n:1\r\n_\r\n*1\r\n+OK\r\n"
            )
        );
        assert_eq!(
            both(&Reply::Map(vec![(Reply::bulk("k"), Reply::Double(2.0))])),
            s("*2\r\n$1\r\nk\r\n$1\r\n2\r\n", "%1\r\n$1\r\nk\r\n,2\r\n")
        );
        assert_eq!(
            both(&Reply::Set(vec![Reply::bulk("a"), Reply::Bool(true)])),
            s("*2\r\n$1\r\na\r\n:1\r\n", "~2\r\n$1\r\na\r\n#t\r\n")
        );
        assert_eq!(
            both(&Reply::Push(vec![Reply::bulk("message")])),
            s("*1\r\n$7\r\nmessage\r\n", ">1\r\n$7\r\nmessage\r\n")
        );
    }

    #[test]
    fn encode_appends() {
        let mut out = BytesMut::from(&b"x"[..]);
        encode(&Reply::Int(7), Protocol::Resp2, &mut out);
        encode(&Reply::ok(), Protocol::Resp3, &mut out);
        assert_eq!(&out[..], b"x:7\r\n+OK\r\n");
    }

    #[test]
    fn doubles_like_redis() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (3.0, "3"),
            (-3.0, "-3"),
            (1.5, "1.5"),
            (-1.5, "-1.5"),
            (0.1, "0.1"),
            (0.30000000000000004, "0.30000000000000004"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123456.789, "123456.789"),
            (1234.5678901234, "1234.5678901234"),
            (0.001, "0.001"),
            (0.000001, "0.000001"),
            (0.0000015, "1.5e-6"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (0.000012345, "1.2345e-5"),
            (0.0012345678901234567, "0.0012345678901234567"),
            (1e15 + 0.5, "1000000000000000.5"),
            (4611686018427387904.0, "4611686018427387904"),
            (-4611686018427387904.0, "-4611686018427387904"),
            (9223372036854775808.0, "9223372036854776000"),
            (1.2345678901234568e20, "123456789012345680000"),
            (1e19, "1e+19"),
            (1.5e20, "1.5e+20"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (1e300, "1e+300"),
            (-1e300, "-1e+300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (-f64::NAN, "nan"),
        ];
        for &(v, want) in cases {
            assert_eq!(format_double(v), want, "{v:e}");
        }
    }
}
