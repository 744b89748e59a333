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
