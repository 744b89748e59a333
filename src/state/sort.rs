//! SORT and SORT_RO: the elements of a list, set or sorted set, ordered by
//! their own value or by keys they name, optionally replaced by the values
//! of other keys (GET) and stored as a list (STORE).
//!
//! Without STORE, SORT is a read and runs on whichever node serves it; with
//! STORE it is an op, and every replica sorts the same elements itself while
//! applying it. Both must answer the same wherever they run, so the order
//! depends on nothing but the state: ties in a numeric sort fall back to the
//! elements' bytes (as in Redis), the sort is stable, and a set sorted BY a
//! constant pattern (no sort asked for) comes back in byte order. Redis
//! does the last only in scripts and with STORE, and elsewhere returns its
//! hash table's order, which no client can rely on anyway.
//!
//! Patterns follow Redis: `#` is the element itself; otherwise the first
//! `*` is replaced by the element, and a `->field` after it reads that field
//! of a hash instead of a string. A key that is missing or of another type
//! reads as nothing: weight 0 in a numeric sort, first in an ALPHA sort,
//! nil in the output (an empty string in a stored list).

use std::cmp::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::{OpResult, Outcome, StateError};

/// What SORT was asked to do, minus STORE's destination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sort {
    pub key: Bytes,
    /// BY's pattern. One without `*` means "do not sort".
    pub by: Option<Bytes>,
    /// LIMIT's offset and count; a negative count means "to the end".
    pub limit: Option<(i64, i64)>,
    /// GET's patterns, in order; the output holds one value per pattern
    /// per element.
    pub get: Vec<Bytes>,
    pub desc: bool,
    pub alpha: bool,
}

/// SORT without STORE: the sorted elements, or what GET found for them.
pub fn read(db: &Db, now: u64, sort: &Sort) -> OpResult {
    let output = run(db, now, sort)?;
    Ok(Outcome::Array(
        output.into_iter().map(Outcome::bulk_or_nil).collect(),
    ))
}

/// SORT ... STORE: replaces `destination` with the output as a list (nils
/// become empty strings), or deletes it when the output is empty. Outcome:
/// the length of the output.
pub fn store(db: &mut Db, now: u64, sort: &Sort, destination: &Bytes) -> OpResult {
    let output = run(db, now, sort)?;
    let len = output.len() as i64;
    if output.is_empty() {
        db.purge_if_expired(destination, now);
        db.remove(destination);
    } else {
        let list = output.into_iter().map(Option::unwrap_or_default).collect();
        db.insert(destination.clone(), Value::List(Box::new(list)), None);
    }
    Ok(Outcome::Int(len))
}

/// One element on its way through the sort: what it is compared by.
struct Item {
    element: Bytes,
    score: f64,
    /// The BY value of an ALPHA sort by pattern; None for a missing key.
    by: Option<Bytes>,
}

fn run(db: &Db, now: u64, sort: &Sort) -> Result<Vec<Option<Bytes>>, StateError> {
    let value = match db.get(&sort.key, now) {
        None => None,
        Some(entry) => match &entry.value {
            v @ (Value::List(_) | Value::Set(_) | Value::ZSet(_)) => Some(v),
            _ => return Err(StateError::WrongType),
        },
    };
    let mut by = sort.by.as_ref();
    let mut alpha = sort.alpha;
    let mut dont_sort = by.is_some_and(|p| !p.contains(&b'*'));
    if dont_sort && matches!(value, Some(Value::Set(_))) {
        // A set has no order of its own to keep: use the bytes'.
        dont_sort = false;
        alpha = true;
        by = None;
    }
    let elements: Vec<Bytes> = match value {
        None => Vec::new(),
        Some(Value::List(list)) => list.iter().cloned().collect(),
        Some(Value::Set(set)) => set.keys().cloned().collect(),
        Some(Value::ZSet(zset)) => zset.iter().map(|(m, _)| m.clone()).collect(),
        Some(_) => unreachable!("checked above"),
    };
    let (start, end) = window(sort.limit, elements.len());
    let chosen: Vec<Bytes> = if dont_sort {
        // Lists and sorted sets keep their own order, read from the tail
        // for DESC.
        let mut elements = elements;
        if sort.desc {
            elements.reverse();
        }
        elements
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect()
    } else {
        let mut items = Vec::with_capacity(elements.len());
        for element in elements {
            let weight = match by {
                Some(pattern) => lookup(db, now, pattern, &element),
                None => Some(element.clone()),
            };
            let mut item = Item {
                element,
                score: 0.0,
                by: None,
            };
            if alpha {
                if by.is_some() {
                    item.by = weight;
                }
            } else if let Some(weight) = weight {
                item.score = strtod(&weight).ok_or(StateError::SortNotDouble)?;
            }
            items.push(item);
        }
        items.sort_by(|a, b| {
            let order = compare(a, b, alpha, by.is_some());
            if sort.desc {
                order.reverse()
            } else {
                order
            }
        });
        items
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .map(|item| item.element)
            .collect()
    };
    if sort.get.is_empty() {
        return Ok(chosen.into_iter().map(Some).collect());
    }
    let mut output = Vec::with_capacity(chosen.len() * sort.get.len());
    for element in &chosen {
        for pattern in &sort.get {
            output.push(lookup(db, now, pattern, element));
        }
    }
    Ok(output)
}

/// LIMIT as Redis clamps it: the half-open range `[start, end)` of the
/// sorted elements to output.
fn window(limit: Option<(i64, i64)>, len: usize) -> (usize, usize) {
    let Some((offset, count)) = limit else {
        return (0, len);
    };
    let start = offset.clamp(0, len as i64) as usize;
    let end = if count < 0 {
        len
    } else {
        (start as i64).saturating_add(count).min(len as i64) as usize
    };
    (start, end)
}

fn compare(a: &Item, b: &Item, alpha: bool, by_pattern: bool) -> Ordering {
    if !alpha {
        return a
            .score
            .partial_cmp(&b.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.element.cmp(&b.element));
    }
    if by_pattern {
        // A missing weight sorts first.
        return a.by.cmp(&b.by);
    }
    a.element.cmp(&b.element)
}

/// The value a pattern names for `element` (see the module docs).
fn lookup(db: &Db, now: u64, pattern: &Bytes, element: &Bytes) -> Option<Bytes> {
    if pattern.as_ref() == b"#" {
        return Some(element.clone());
    }
    let star = pattern.iter().position(|&c| c == b'*')?;
    let rest = &pattern[star + 1..];
    let (postfix, field) = match rest.windows(2).position(|w| w == b"->") {
        Some(arrow) if arrow + 2 < rest.len() => (&rest[..arrow], Some(&rest[arrow + 2..])),
        _ => (rest, None),
    };
    let key = Bytes::from([&pattern[..star], element.as_ref(), postfix].concat());
    let entry = db.get(&key, now)?;
    match (&entry.value, field) {
        (Value::String(s), None) => Some(s.clone()),
        (Value::Hash(h), Some(field)) => h.get_bytes(&Bytes::copy_from_slice(field)),
        _ => None,
    }
}

/// A weight as C's `strtod` reads it, where Redis's SORT refuses what it
/// could not read whole: leading blanks are skipped, an empty text is 0,
/// and NaN or a value out of a double's range (ERANGE) is refused.
fn strtod(text: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if text.is_empty() {
        return Some(0.0);
    }
    let value: f64 = text.parse().ok()?;
    let spelled_infinite = text.to_ascii_lowercase().contains("inf");
    let overflow = value.is_infinite() && !spelled_infinite;
    let digits_nonzero = text
        .split(['e', 'E'])
        .next()
        .is_some_and(|mantissa| mantissa.bytes().any(|c| c.is_ascii_digit() && c != b'0'));
    let underflow = digits_nonzero && value.abs() < f64::MIN_POSITIVE;
    (!value.is_nan() && !overflow && !underflow).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_read_as_strtod_reads_them() {
        assert_eq!(strtod(b""), Some(0.0));
        assert_eq!(strtod(b"  1.5"), Some(1.5));
        assert_eq!(strtod(b"-3"), Some(-3.0));
        assert_eq!(strtod(b"1e3"), Some(1000.0));
        assert_eq!(strtod(b"inf"), Some(f64::INFINITY));
        assert_eq!(strtod(b"-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(strtod(b"0e10"), Some(0.0));
        assert_eq!(strtod(b"1.5 "), None);
        assert_eq!(strtod(b"abc"), None);
        assert_eq!(strtod(b"nan"), None);
        assert_eq!(strtod(b"1e400"), None);
        assert_eq!(strtod(b"1e-400"), None);
    }

    #[test]
    fn limit_is_clamped_as_redis_clamps_it() {
        assert_eq!(window(None, 5), (0, 5));
        assert_eq!(window(Some((1, 2)), 5), (1, 3));
        assert_eq!(window(Some((-3, 2)), 5), (0, 2));
        assert_eq!(window(Some((2, -1)), 5), (2, 5));
        assert_eq!(window(Some((7, 2)), 5), (5, 5));
        assert_eq!(window(Some((3, i64::MAX)), 5), (3, 5));
        assert_eq!(window(Some((0, 0)), 5), (0, 0));
    }
}
