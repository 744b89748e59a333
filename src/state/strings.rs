//! Strings and counters: GET/SET and friends, APPEND, ranges, INCR family.
//!
//! One [`StringOp::Set`] serves SET, SETNX, SETEX, PSETEX and GETSET; the
//! command layer shapes its outcome per command. Relative deadlines travel in
//! the op as durations and become absolute here, against the entry's time, so
//! every replica computes the same deadline.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::{OpResult, Outcome, StateError, MAX_STRING_LEN};

/// When a write applies, with respect to the key's existence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    Always,
    /// Only if the key does not exist (NX).
    IfAbsent,
    /// Only if the key exists (XX).
    IfPresent,
}

/// The deadline a write gives a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Deadline {
    /// No deadline (a plain SET clears any previous one).
    None,
    /// Keep the key's current deadline (KEEPTTL).
    Keep,
    /// Milliseconds after the entry's time (EX, PX).
    After(u64),
    /// Unix time in milliseconds (EXAT, PXAT).
    At(u64),
}

impl Deadline {
    /// The absolute deadline against `now`, or an error when it does not fit
    /// the signed 64-bit millisecond clock Redis uses.
    pub fn resolve(self, now: u64, current: Option<u64>) -> Result<Option<u64>, StateError> {
        match self {
            Deadline::None => Ok(None),
            Deadline::Keep => Ok(current),
            Deadline::After(ms) => match now.checked_add(ms) {
                Some(at) if at <= i64::MAX as u64 => Ok(Some(at)),
                _ => Err(StateError::InvalidExpireTime),
            },
            Deadline::At(at) if at <= i64::MAX as u64 => Ok(Some(at)),
            Deadline::At(_) => Err(StateError::InvalidExpireTime),
        }
    }
}

/// What GETEX does to the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GetExDeadline {
    Unchanged,
    Persist,
    Set(Deadline),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StringOp {
    /// Outcome: the old value (or nil) when `get`; else OK, or nil when the
    /// condition did not hold.
    Set {
        key: Bytes,
        value: Bytes,
        condition: Condition,
        get: bool,
        deadline: Deadline,
    },
    /// Outcome: OK.
    MSet { pairs: Vec<(Bytes, Bytes)> },
    /// Outcome: 1 when every key was absent and all were set, else 0.
    MSetNx { pairs: Vec<(Bytes, Bytes)> },
    /// Outcome: the new length.
    Append { key: Bytes, value: Bytes },
    /// Outcome: the new length.
    SetRange {
        key: Bytes,
        offset: u64,
        value: Bytes,
    },
    /// Outcome: the new value.
    IncrBy { key: Bytes, delta: i64 },
    /// Outcome: the new value as a bulk string.
    IncrByFloat { key: Bytes, delta: f64 },
    /// Outcome: the value (or nil); the key is deleted.
    GetDel { key: Bytes },
    /// Outcome: the value (or nil), with the deadline changed.
    GetEx { key: Bytes, deadline: GetExDeadline },
    /// SETBIT: bit `offset` (0 is the most significant bit of the first
    /// byte), growing the string with zero bytes. Outcome: the bit before.
    SetBit { key: Bytes, offset: u64, bit: bool },
    /// BITOP: see [`super::bits::operate`].
    BitOp {
        op: super::bits::BitOperation,
        dest: Bytes,
        keys: Vec<Bytes>,
    },
    /// PFADD: see [`super::hll::pfadd`].
    PfAdd { key: Bytes, elements: Vec<Bytes> },
    /// PFMERGE: see [`super::hll::pfmerge`].
    PfMerge { dest: Bytes, sources: Vec<Bytes> },
    /// PFDEBUG GETREG (`registers`) or TODENSE.
    PfDebug { key: Bytes, registers: bool },
    /// BITFIELD with a SET or INCRBY: see [`super::bits::field_update`].
    BitField {
        key: Bytes,
        fields: Vec<super::bits::Field>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StringQuery {
    Get {
        key: Bytes,
    },
    MGet {
        keys: Vec<Bytes>,
    },
    StrLen {
        key: Bytes,
    },
    /// Redis's inclusive, negative-from-the-end range.
    GetRange {
        key: Bytes,
        start: i64,
        end: i64,
    },
    /// GETBIT: 0 past the end of the string or for an absent key.
    GetBit {
        key: Bytes,
        offset: u64,
    },
    /// BITCOUNT: see [`super::bits::count`].
    BitCount {
        key: Bytes,
        range: Option<super::bits::Range>,
    },
    /// BITPOS: see [`super::bits::position`].
    BitPos {
        key: Bytes,
        bit: bool,
        range: Option<super::bits::Range>,
    },
    /// LCS: the longest common subsequence of two strings (absent keys are
    /// empty).
    Lcs {
        a: Bytes,
        b: Bytes,
        form: LcsForm,
    },
    /// PFCOUNT: see [`super::hll::pfcount`].
    PfCount {
        keys: Vec<Bytes>,
    },
    /// PFDEBUG DECODE (`decode`) or ENCODING.
    PfDebug {
        key: Bytes,
        decode: bool,
    },
    /// BITFIELD_RO, or BITFIELD with GETs only.
    BitField {
        key: Bytes,
        fields: Vec<super::bits::Field>,
    },
}

/// What LCS answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LcsForm {
    /// The subsequence itself.
    Text,
    /// Its length.
    Len,
    /// The matching ranges: `{matches: [[[a from, a to], [b from, b to]
    /// (, length)] ...], len: n}`, ranges shorter than `min_len` left out.
    Idx { with_len: bool, min_len: u64 },
}

/// The string at `key`, nil when absent, WRONGTYPE for another type.
pub(crate) fn get_string<'a>(
    db: &'a Db,
    key: &Bytes,
    now: u64,
) -> Result<Option<&'a Bytes>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// A string value to store: a copy of the op's. The op's bytes are a
/// slice of a larger buffer: on the node the client is on, the
/// connection's read buffer (up to 1 MiB, a deep pipeline's thousands of
/// requests); elsewhere, the log entry they were decoded from. Stored as a
/// slice, one live value holds that whole buffer: after a load, every
/// buffer of the load stays resident.
fn kept(value: &Bytes) -> Bytes {
    Bytes::copy_from_slice(value)
}

pub fn apply(db: &mut Db, now: u64, op: &StringOp) -> OpResult {
    match op {
        StringOp::Set {
            key,
            value,
            condition,
            get,
            deadline,
        } => {
            // One lookup for the current entry, one to store.
            let current = db.live(key, now);
            let old = match (get, current.map(|e| &e.value)) {
                (true, Some(Value::String(s))) => Some(s.clone()),
                (true, Some(_)) => return Err(StateError::WrongType),
                _ => None,
            };
            let exists = current.is_some();
            let current_deadline = current.and_then(|e| e.expires_at());
            let holds = match condition {
                Condition::Always => true,
                Condition::IfAbsent => !exists,
                Condition::IfPresent => exists,
            };
            if holds {
                let at = deadline.resolve(now, current_deadline)?;
                db.insert(key.clone(), Value::String(kept(value)), at);
            }
            Ok(match (get, holds) {
                (true, _) => Outcome::bulk_or_nil(old),
                (false, true) => Outcome::Ok,
                (false, false) => Outcome::Nil,
            })
        }
        StringOp::MSet { pairs } => {
            for (k, v) in pairs {
                db.insert(k.clone(), Value::String(kept(v)), None);
            }
            Ok(Outcome::Ok)
        }
        StringOp::MSetNx { pairs } => {
            if pairs.iter().any(|(k, _)| db.get(k, now).is_some()) {
                return Ok(Outcome::Int(0));
            }
            for (k, v) in pairs {
                db.insert(k.clone(), Value::String(kept(v)), None);
            }
            Ok(Outcome::Int(1))
        }
        StringOp::Append { key, value } => {
            let current = get_string(db, key, now)?.cloned().unwrap_or_default();
            if current.len() + value.len() > MAX_STRING_LEN {
                return Err(StateError::StringTooLong);
            }
            let joined = concat(current, value);
            let len = joined.len();
            db.insert_keep_ttl(key.clone(), Value::String(joined), now);
            Ok(Outcome::Int(len as i64))
        }
        StringOp::SetRange { key, offset, value } => {
            let current = get_string(db, key, now)?.cloned();
            let offset = *offset as usize;
            if value.is_empty() {
                // Redis answers the current length and creates nothing.
                return Ok(Outcome::Int(current.map_or(0, |c| c.len()) as i64));
            }
            if offset.saturating_add(value.len()) > MAX_STRING_LEN {
                return Err(StateError::StringTooLong);
            }
            let current = current.unwrap_or_default();
            let mut buf = BytesMut::with_capacity(current.len().max(offset + value.len()));
            buf.extend_from_slice(&current);
            if buf.len() < offset + value.len() {
                buf.resize(offset + value.len(), 0);
            }
            buf[offset..offset + value.len()].copy_from_slice(value);
            let len = buf.len();
            db.insert_keep_ttl(key.clone(), Value::String(buf.freeze()), now);
            Ok(Outcome::Int(len as i64))
        }
        StringOp::SetBit { key, offset, bit } => {
            let byte = (*offset / 8) as usize;
            let mask = 0x80u8 >> (*offset % 8);
            let mut buf = BytesMut::from(get_string(db, key, now)?.map_or(&[][..], |s| &s[..]));
            if buf.len() <= byte {
                buf.resize(byte + 1, 0);
            }
            let before = buf[byte] & mask != 0;
            if *bit {
                buf[byte] |= mask;
            } else {
                buf[byte] &= !mask;
            }
            db.insert_keep_ttl(key.clone(), Value::String(buf.freeze()), now);
            Ok(Outcome::Int(i64::from(before)))
        }
        StringOp::BitOp { op, dest, keys } => super::bits::operate(db, now, *op, dest, keys),
        StringOp::BitField { key, fields } => super::bits::field_update(db, now, key, fields),
        StringOp::PfAdd { key, elements } => super::hll::pfadd(db, now, key, elements),
        StringOp::PfMerge { dest, sources } => super::hll::pfmerge(db, now, dest, sources),
        StringOp::PfDebug { key, registers } => super::hll::pfdebug_dense(db, now, key, *registers),
        StringOp::IncrBy { key, delta } => {
            // One lookup to read (purging an expired key), one to store.
            let current = match db.live(key, now).map(|e| &e.value) {
                None => 0,
                Some(Value::String(s)) => parse_i64(s).ok_or(StateError::NotInteger)?,
                Some(_) => return Err(StateError::WrongType),
            };
            let next = current.checked_add(*delta).ok_or(StateError::Overflow)?;
            db.replace_live(key, Value::String(format_i64(next)));
            Ok(Outcome::Int(next))
        }
        StringOp::IncrByFloat { key, delta } => {
            let current = get_string(db, key, now)?;
            let text = add_float(current.map(|c| &c[..]), *delta, StateError::NotFloat)?;
            db.insert_keep_ttl(key.clone(), Value::String(text.clone()), now);
            Ok(Outcome::Bulk(text))
        }
        StringOp::GetDel { key } => {
            let value = get_string(db, key, now)?.cloned();
            if value.is_some() {
                db.remove(key);
            }
            Ok(Outcome::bulk_or_nil(value))
        }
        StringOp::GetEx { key, deadline } => {
            let Some(value) = get_string(db, key, now)?.cloned() else {
                return Ok(Outcome::Nil);
            };
            match deadline {
                GetExDeadline::Unchanged => {}
                GetExDeadline::Persist => {
                    db.set_deadline(key, None);
                }
                GetExDeadline::Set(d) => {
                    let current = db.get(key, now).and_then(|e| e.expires_at());
                    match d.resolve(now, current)? {
                        Some(at) if at <= now => {
                            db.remove(key);
                        }
                        at => {
                            db.set_deadline(key, at);
                        }
                    }
                }
            }
            Ok(Outcome::Bulk(value))
        }
    }
}

pub fn read(db: &Db, now: u64, query: &StringQuery) -> OpResult {
    match query {
        StringQuery::Get { key } => Ok(Outcome::bulk_or_nil(get_string(db, key, now)?.cloned())),
        StringQuery::MGet { keys } => Ok(Outcome::Array(
            keys.iter()
                .map(|k| match db.get(k, now).map(|e| &e.value) {
                    Some(Value::String(s)) => Outcome::Bulk(s.clone()),
                    _ => Outcome::Nil,
                })
                .collect(),
        )),
        StringQuery::StrLen { key } => Ok(Outcome::Int(
            get_string(db, key, now)?.map_or(0, |s| s.len()) as i64,
        )),
        StringQuery::GetRange { key, start, end } => {
            let Some(s) = get_string(db, key, now)? else {
                return Ok(Outcome::Bulk(Bytes::new()));
            };
            Ok(Outcome::Bulk(range_of(s, *start, *end)))
        }
        StringQuery::GetBit { key, offset } => {
            let byte = (*offset / 8) as usize;
            let set = get_string(db, key, now)?
                .and_then(|s| s.get(byte))
                .is_some_and(|b| b & (0x80u8 >> (*offset % 8)) != 0);
            Ok(Outcome::Int(i64::from(set)))
        }
        StringQuery::BitCount { key, range } => super::bits::count(db, now, key, *range),
        StringQuery::BitPos { key, bit, range } => {
            super::bits::position(db, now, key, *bit, *range)
        }
        StringQuery::BitField { key, fields } => super::bits::field_get(db, now, key, fields),
        StringQuery::PfCount { keys } => super::hll::pfcount(db, now, keys),
        StringQuery::PfDebug { key, decode } => super::hll::pfdebug_read(db, now, key, *decode),
        StringQuery::Lcs { a, b, form } => {
            let string = |key| match db.get(key, now).map(|e| &e.value) {
                None => Ok(Bytes::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(StateError::LcsNotStrings),
            };
            lcs(&string(a)?, &string(b)?, *form)
        }
    }
}

/// LCS as Redis computes it: the dynamic-programming table of prefix LCS
/// lengths, walked back from the ends; ranges come out last match first.
fn lcs(a: &[u8], b: &[u8], form: LcsForm) -> OpResult {
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen + 1).saturating_mul(blen + 1);
    if cells.saturating_mul(4) > MAX_STRING_LEN {
        return Err(StateError::LcsTooLarge);
    }
    let mut table = vec![0u32; cells];
    let at = |i: usize, j: usize| j + i * (blen + 1);
    for i in 1..=alen {
        for j in 1..=blen {
            table[at(i, j)] = if a[i - 1] == b[j - 1] {
                table[at(i - 1, j - 1)] + 1
            } else {
                table[at(i - 1, j)].max(table[at(i, j - 1)])
            };
        }
    }
    let total = table[at(alen, blen)];
    if form == LcsForm::Len {
        return Ok(Outcome::Int(i64::from(total)));
    }
    let (with_len, min_len) = match form {
        LcsForm::Idx { with_len, min_len } => (with_len, min_len),
        _ => (false, 0),
    };
    let mut text = vec![0u8; total as usize];
    let mut left = total as usize;
    let mut matches = Vec::new();
    // `None`: no range is open.
    let mut range: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            text[left - 1] = a[i - 1];
            range = match range {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((a_start, a_end, b_start, b_end)) if a_start == i && b_start == j => {
                    Some((a_start - 1, a_end, b_start - 1, b_end))
                }
                open => {
                    emit = true;
                    open
                }
            };
            if range.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            left -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[at(i - 1, j)] > table[at(i, j - 1)] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit {
            if let Some((a_start, a_end, b_start, b_end)) = range.take() {
                let len = (a_end - a_start + 1) as u64;
                if min_len == 0 || len >= min_len {
                    let pair = |from: usize, to: usize| {
                        Outcome::Array(vec![Outcome::Int(from as i64), Outcome::Int(to as i64)])
                    };
                    let mut item = vec![pair(a_start, a_end), pair(b_start, b_end)];
                    if with_len {
                        item.push(Outcome::Int(len as i64));
                    }
                    matches.push(Outcome::Array(item));
                }
            }
        }
    }
    Ok(match form {
        LcsForm::Idx { .. } => Outcome::Map(vec![
            (
                Outcome::Bulk(Bytes::from_static(b"matches")),
                Outcome::Array(matches),
            ),
            (
                Outcome::Bulk(Bytes::from_static(b"len")),
                Outcome::Int(i64::from(total)),
            ),
        ]),
        _ => Outcome::Bulk(Bytes::from(text)),
    })
}

/// GETRANGE's clamping: negative offsets count from the end, the range is
/// inclusive, and an empty or inverted range is the empty string.
fn range_of(s: &Bytes, start: i64, end: i64) -> Bytes {
    let len = s.len() as i64;
    if len == 0 || (start < 0 && end < 0 && start > end) {
        return Bytes::new();
    }
    let mut start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let mut end = if end < 0 { (len + end).max(0) } else { end };
    if end >= len {
        end = len - 1;
    }
    if start > end {
        return Bytes::new();
    }
    start = start.min(len);
    s.slice(start as usize..=end as usize)
}

/// Appends without copying `current` when this is its only reference.
fn concat(current: Bytes, tail: &Bytes) -> Bytes {
    let mut buf = match current.try_into_mut() {
        Ok(buf) => buf,
        Err(shared) => BytesMut::from(&shared[..]),
    };
    buf.extend_from_slice(tail);
    buf.freeze()
}

/// INCRBYFLOAT's arithmetic, shared with HINCRBYFLOAT: `current` (absent
/// reads as 0) plus `delta`, as the text that is stored and answered.
pub(crate) fn add_float(
    current: Option<&[u8]>,
    delta: f64,
    not_float: StateError,
) -> Result<Bytes, StateError> {
    let current = match current {
        Some(text) => parse_f64(text).ok_or(not_float)?,
        None => 0.0,
    };
    let next = current + delta;
    if !next.is_finite() {
        return Err(StateError::NanOrInfinity);
    }
    Ok(Bytes::from(format_float(next)))
}

/// Redis's strict integer syntax: optional '-', digits, no leading zeros
/// (except "0"), no '+', no spaces, fits in i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut value: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        value = if neg {
            value.checked_mul(10)?.checked_sub(d)?
        } else {
            value.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(value)
}

/// A float as Redis's `string2ld` accepts it: no spaces, not NaN, finite
/// or infinite spelled out ("inf", "-inf").
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty()
        || text.starts_with(char::is_whitespace)
        || text.ends_with(char::is_whitespace)
    {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_nan() {
        return None;
    }
    Some(value)
}

pub fn format_i64(v: i64) -> Bytes {
    Bytes::from(v.to_string())
}

/// INCRBYFLOAT's text: plain decimal notation, shortest digits that read
/// back as the same double, no trailing ".0".
pub fn format_float(v: f64) -> String {
    let text = format!("{v}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_syntax_is_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"9223372036854775808",
            b"1e3",
            b"abc",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn ranges_clamp_like_redis() {
        let s = Bytes::from_static(b"Hello World");
        assert_eq!(range_of(&s, 0, 3), "Hell");
        assert_eq!(range_of(&s, -3, -1), "rld");
        assert_eq!(range_of(&s, 0, -1), "Hello World");
        assert_eq!(range_of(&s, 10, 100), "d");
        assert_eq!(range_of(&s, 5, 3), "");
        assert_eq!(range_of(&s, -1, -5), "");
        assert_eq!(range_of(&s, -100, 2), "Hel");
    }

    #[test]
    fn floats_format_without_trailing_zero() {
        assert_eq!(format_float(10.5 + 0.1), "10.6");
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(-0.25), "-0.25");
        assert_eq!(format_float(5.0e3), "5000");
    }
}
