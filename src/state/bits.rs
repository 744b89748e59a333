//! BITCOUNT, BITPOS and BITOP on string values, as Redis answers them.
//!
//! Bits are numbered from the most significant bit of the first byte.
//! Ranges are Redis's: inclusive, negative counts from the end, in bytes
//! unless BIT is given, clamped to the string.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::db::Db;
use super::strings::get_string;
use super::{OpResult, Outcome, Value};

/// Whether a range counts bytes (the default) or bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Byte,
    Bit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BitOperation {
    And,
    Or,
    Xor,
    Not,
}

/// A range as given: start, end (None: to the end), unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: i64,
    pub end: Option<i64>,
    pub unit: Unit,
}

/// The range as absolute bit positions `[first, last]` within a string of
/// `len` bytes; None when it is empty.
fn bit_span(len: usize, range: Option<Range>) -> Option<(u64, u64)> {
    let Some(range) = range else {
        return (len > 0).then(|| (0, len as u64 * 8 - 1));
    };
    let total = match range.unit {
        Unit::Byte => len as i64,
        Unit::Bit => len as i64 * 8,
    };
    // Both from the end and crossed: empty before clamping (Redis checks
    // this first, or both would clamp to the first byte).
    if range.start < 0 && range.end.is_some_and(|e| e < 0 && range.start > e) {
        return None;
    }
    let resolve = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let start = resolve(range.start);
    let end = resolve(range.end.unwrap_or(-1)).min(total - 1);
    if total == 0 || start > end {
        return None;
    }
    Some(match range.unit {
        Unit::Byte => (start as u64 * 8, end as u64 * 8 + 7),
        Unit::Bit => (start as u64, end as u64),
    })
}

fn bit_at(s: &[u8], i: u64) -> bool {
    s[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
}

/// BITCOUNT key [start end [BYTE|BIT]].
pub fn count(db: &Db, now: u64, key: &Bytes, range: Option<Range>) -> OpResult {
    let Some(s) = get_string(db, key, now)? else {
        return Ok(Outcome::Int(0));
    };
    let Some((first, last)) = bit_span(s.len(), range) else {
        return Ok(Outcome::Int(0));
    };
    // Whole bytes in the middle by popcount, the partial edges bit by bit.
    let mut n: u64 = 0;
    let mut i = first;
    while i <= last {
        if i % 8 == 0 && i + 7 <= last {
            let from = (i / 8) as usize;
            let to = ((last + 1) / 8) as usize;
            n += s[from..to]
                .iter()
                .map(|b| u64::from(b.count_ones()))
                .sum::<u64>();
            i = to as u64 * 8;
        } else {
            n += u64::from(bit_at(s, i));
            i += 1;
        }
    }
    Ok(Outcome::Int(n as i64))
}

/// BITPOS key bit [start [end [BYTE|BIT]]]: the first bit set to `bit` in
/// the range, or -1. Looking for 0 without an end, a string of ones
/// answers the first bit past it, as Redis (the string is taken as padded
/// with zeros).
pub fn position(db: &Db, now: u64, key: &Bytes, bit: bool, range: Option<Range>) -> OpResult {
    let Some(s) = get_string(db, key, now)? else {
        return Ok(Outcome::Int(if bit { -1 } else { 0 }));
    };
    let end_given = range.is_some_and(|r| r.end.is_some());
    let Some((first, last)) = bit_span(s.len(), range) else {
        return Ok(Outcome::Int(-1));
    };
    let mut i = first;
    while i <= last {
        if i % 8 == 0 && i + 7 <= last {
            let byte = s[(i / 8) as usize];
            let skip = if bit { byte == 0 } else { byte == 0xff };
            if skip {
                i += 8;
                continue;
            }
        }
        if bit_at(s, i) == bit {
            return Ok(Outcome::Int(i as i64));
        }
        i += 1;
    }
    if !bit && !end_given {
        return Ok(Outcome::Int((last + 1) as i64));
    }
    Ok(Outcome::Int(-1))
}

/// BITOP op dest key [key ...]: the result is as long as the longest
/// source (absent keys are empty, shorter ones padded with zeros); an
/// empty result deletes `dest`. Outcome: the result's length.
pub fn operate(db: &mut Db, now: u64, op: BitOperation, dest: &Bytes, keys: &[Bytes]) -> OpResult {
    let mut sources: Vec<Bytes> = Vec::with_capacity(keys.len());
    for key in keys {
        sources.push(get_string(db, key, now)?.cloned().unwrap_or_default());
    }
    let len = sources.iter().map(Bytes::len).max().unwrap_or(0);
    if len == 0 {
        db.purge_if_expired(dest, now);
        db.remove(dest);
        return Ok(Outcome::Int(0));
    }
    let byte = |s: &Bytes, i: usize| s.get(i).copied().unwrap_or(0);
    let mut out = BytesMut::zeroed(len);
    for (i, o) in out.iter_mut().enumerate() {
        let mut it = sources.iter();
        let first = byte(it.next().expect("at least one source"), i);
        *o = match op {
            BitOperation::Not => !first,
            BitOperation::And => it.fold(first, |acc, s| acc & byte(s, i)),
            BitOperation::Or => it.fold(first, |acc, s| acc | byte(s, i)),
            BitOperation::Xor => it.fold(first, |acc, s| acc ^ byte(s, i)),
        };
    }
    db.purge_if_expired(dest, now);
    db.insert(dest.clone(), Value::String(out.freeze()), None);
    Ok(Outcome::Int(len as i64))
}

/// A BITFIELD integer type: `i1`..`i64` or `u1`..`u63`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldType {
    pub signed: bool,
    pub bits: u8,
}

/// What BITFIELD does when SET or INCRBY leaves the type's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overflow {
    Wrap,
    Sat,
    /// Nothing is written and the answer is nil.
    Fail,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldAction {
    Get,
    Set(i64, Overflow),
    IncrBy(i64, Overflow),
}

/// One BITFIELD subcommand: a field of `kind` at bit `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub kind: FieldType,
    pub offset: u64,
    pub action: FieldAction,
}

/// The field's bits read most significant first, as an unsigned number;
/// bits past the end of `s` read as 0.
fn get_unsigned(s: &[u8], offset: u64, bits: u8) -> u64 {
    let mut value = 0u64;
    for j in 0..u64::from(bits) {
        let i = offset + j;
        let bit = s
            .get((i / 8) as usize)
            .is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
        value = (value << 1) | u64::from(bit);
    }
    value
}

fn get_signed(s: &[u8], offset: u64, bits: u8) -> i64 {
    let mut value = get_unsigned(s, offset, bits);
    if bits < 64 && value & (1u64 << (bits - 1)) != 0 {
        value |= u64::MAX << bits;
    }
    value as i64
}

/// Writes the low `bits` bits of `value`; `s` is long enough.
fn set_bits(s: &mut [u8], offset: u64, bits: u8, value: u64) {
    for j in 0..u64::from(bits) {
        let i = offset + j;
        let mask = 0x80u8 >> (i % 8);
        let byte = &mut s[(i / 8) as usize];
        if value & (1u64 << (u64::from(bits) - 1 - j)) != 0 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

/// Redis's unsigned overflow check of `value + incr`: None when it fits,
/// else the wrapped or saturated result (None's caller writes nothing
/// under FAIL: `Some(None)`).
fn unsigned_overflow(value: u64, incr: i64, bits: u8, overflow: Overflow) -> Option<Option<u64>> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = value.wrapping_neg() as i64;
    let wrapped = || value.wrapping_add(incr as u64) & !(u64::MAX << bits);
    if value > max || (incr > 0 && incr > max_incr) {
        Some(match overflow {
            Overflow::Wrap => Some(wrapped()),
            Overflow::Sat => Some(max),
            Overflow::Fail => None,
        })
    } else if incr < 0 && incr < min_incr {
        Some(match overflow {
            Overflow::Wrap => Some(wrapped()),
            Overflow::Sat => Some(0),
            Overflow::Fail => None,
        })
    } else {
        None
    }
}

/// Redis's signed overflow check of `value + incr`, shaped as
/// [`unsigned_overflow`].
fn signed_overflow(value: i64, incr: i64, bits: u8, overflow: Overflow) -> Option<Option<i64>> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        Some(match overflow {
            Overflow::Wrap => Some(wrapped()),
            Overflow::Sat => Some(max),
            Overflow::Fail => None,
        })
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        Some(match overflow {
            Overflow::Wrap => Some(wrapped()),
            Overflow::Sat => Some(min),
            Overflow::Fail => None,
        })
    } else {
        None
    }
}

/// BITFIELD_RO, and BITFIELD with only GETs: each field's value, absent
/// keys and bits past the end reading as zeros.
pub fn field_get(db: &Db, now: u64, key: &Bytes, fields: &[Field]) -> OpResult {
    let s = get_string(db, key, now)?.map_or(&[][..], |s| &s[..]);
    Ok(Outcome::Array(
        fields.iter().map(|f| read_field(s, f)).collect(),
    ))
}

fn read_field(s: &[u8], f: &Field) -> Outcome {
    if f.kind.signed {
        Outcome::Int(get_signed(s, f.offset, f.kind.bits))
    } else {
        Outcome::Int(get_unsigned(s, f.offset, f.kind.bits) as i64)
    }
}

/// BITFIELD with a SET or INCRBY: the string is created or grown with
/// zero bytes to hold the furthest field written (even when every write
/// then fails on OVERFLOW FAIL, as in Redis), and the subcommands run in
/// order. Outcome: one answer per subcommand, nil for a write that
/// OVERFLOW FAIL stopped.
pub fn field_update(db: &mut Db, now: u64, key: &Bytes, fields: &[Field]) -> OpResult {
    let furthest = fields
        .iter()
        .filter(|f| f.action != FieldAction::Get)
        .map(|f| f.offset + u64::from(f.kind.bits) - 1)
        .max()
        .unwrap_or(0);
    let needed = (furthest / 8 + 1) as usize;
    let current = get_string(db, key, now)?;
    let mut changed = current.is_none_or(|s| s.len() < needed);
    let mut buf = BytesMut::from(current.map_or(&[][..], |s| &s[..]));
    if buf.len() < needed {
        buf.resize(needed, 0);
    }
    let mut answers = Vec::with_capacity(fields.len());
    for f in fields {
        let bits = f.kind.bits;
        let (incr, overflow, is_incr) = match f.action {
            FieldAction::Get => {
                answers.push(read_field(&buf, f));
                continue;
            }
            FieldAction::Set(v, o) => (v, o, false),
            FieldAction::IncrBy(v, o) => (v, o, true),
        };
        let written = if f.kind.signed {
            let old = get_signed(&buf, f.offset, bits);
            let (base, add) = if is_incr { (old, incr) } else { (incr, 0) };
            let new = match signed_overflow(base, add, bits, overflow) {
                None => base.wrapping_add(add),
                Some(Some(limited)) => limited,
                Some(None) => {
                    answers.push(Outcome::Nil);
                    continue;
                }
            };
            answers.push(Outcome::Int(if is_incr { new } else { old }));
            (old as u64, new as u64)
        } else {
            let old = get_unsigned(&buf, f.offset, bits);
            let (base, add) = if is_incr {
                (old, incr)
            } else {
                (incr as u64, 0)
            };
            let new = match unsigned_overflow(base, add, bits, overflow) {
                None => base.wrapping_add(add as u64),
                Some(Some(limited)) => limited,
                Some(None) => {
                    answers.push(Outcome::Nil);
                    continue;
                }
            };
            answers.push(Outcome::Int(if is_incr { new as i64 } else { old as i64 }));
            (old, new)
        };
        set_bits(&mut buf, f.offset, bits, written.1);
        changed |= written.0 != written.1;
    }
    if changed {
        db.insert_keep_ttl(key.clone(), Value::String(buf.freeze()), now);
    }
    Ok(Outcome::Array(answers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_follow_redis_ranges() {
        let r = |start, end, unit| {
            Some(Range {
                start,
                end: Some(end),
                unit,
            })
        };
        assert_eq!(bit_span(3, None), Some((0, 23)));
        assert_eq!(bit_span(3, r(1, 1, Unit::Byte)), Some((8, 15)));
        assert_eq!(bit_span(3, r(-1, -1, Unit::Byte)), Some((16, 23)));
        assert_eq!(bit_span(3, r(5, 30, Unit::Bit)), Some((5, 23)));
        assert_eq!(bit_span(3, r(2, 1, Unit::Byte)), None);
        assert_eq!(bit_span(0, None), None);
        assert_eq!(bit_span(3, r(-100, 0, Unit::Byte)), Some((0, 7)));
        assert_eq!(bit_span(3, r(-6, -7, Unit::Byte)), None);
    }
}
