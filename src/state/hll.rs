//! HyperLogLog as Redis keeps it: the same hash, registers, encodings and
//! estimator, so that PFCOUNT answers what Redis answers for the same
//! elements and an HLL string moves between the two byte for byte (GET,
//! SET, DUMP/RESTORE).
//!
//! An HLL is a string value: a 16-byte header (`HYLL`, the encoding, three
//! unused bytes, and an 8-byte little-endian cached cardinality whose top
//! bit says the cache is stale) followed by 16384 six-bit registers. The
//! registers are kept either **dense** (12288 bytes, packed six bits
//! each) or **sparse**, a run-length code that Redis chose for small
//! counts:
//!
//! - `00xxxxxx` ZERO: xxxxxx+1 registers at zero (1..64);
//! - `01xxxxxx yyyyyyyy` XZERO: 14 bits + 1 registers at zero (up to 16384);
//! - `1vvvvvxx` VAL: xx+1 registers (1..4) at vvvvv+1 (1..32).
//!
//! A sparse HLL turns dense when a register needs more than 32 or the
//! string would grow past `hll-sparse-max-bytes`. Every step of that
//! (where a run splits, when neighbouring runs merge) follows Redis's
//! `hyperloglog.c`, because the bytes are visible to clients: GET of the
//! same PFADDs must be the same string on every replica and on Redis.
//!
//! Bad input is a string anyone can SET. Every walk over the opcodes is
//! bounds-checked and ends in [`HllError::Corrupted`] (Redis's INVALIDOBJ)
//! rather than a panic; a byte read past the end reads as 0, the
//! terminator Redis's strings carry.
//!
//! Unlike Redis, PFCOUNT does not write the cardinality it computes back
//! into the header: here it is a read, served by any node without a trip
//! through the log. A cache that is valid (an HLL restored from Redis) is
//! still used.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::Db;
use super::strings::get_string;
use super::{OpResult, Outcome, StateError, Value};

/// Bits of the hash that choose the register.
const P: u32 = 14;
pub const REGISTERS: usize = 1 << P;
/// Bits of the hash left for the run of zeros.
const Q: u32 = 64 - P;
const REGISTER_MAX: u8 = 63;
pub const HEADER: usize = 16;
pub const DENSE_SIZE: usize = HEADER + (REGISTERS * 6).div_ceil(8);
const SPARSE: u8 = 1;
const DENSE: u8 = 0;
const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
/// Redis's default `hll-sparse-max-bytes`.
pub const SPARSE_MAX_BYTES: usize = 3000;
/// The seed Redis hashes elements with.
const SEED: u64 = 0xadc8_3b19;
/// 1 / (2 ln 2): the estimator's constant for an unbounded number of
/// registers.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum HllError {
    /// Not an HLL at all: wrong magic, encoding or length.
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    NotHll,
    /// An HLL header over registers that do not add up.
    #[error("INVALIDOBJ Corrupted HLL object detected")]
    Corrupted,
    /// PFDEBUG of an absent key.
    #[error("ERR The specified key does not exist")]
    NoKey,
    /// PFDEBUG DECODE of a dense HLL.
    #[error("ERR HLL encoding is not sparse")]
    NotSparse,
}

/// MurmurHash64A, as Redis uses it (little-endian words).
pub fn murmur64a(data: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (data.len() as u64).wrapping_mul(M);
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut k = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u64::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in, and the length of the run of zeros
/// (plus one) that the rest of its hash starts with.
fn pattern(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A new, empty HLL: sparse, one XZERO covering every register, cache
/// valid at zero.
pub fn empty() -> Vec<u8> {
    let mut hll = Vec::with_capacity(HEADER + 2);
    hll.extend_from_slice(b"HYLL");
    hll.push(SPARSE);
    hll.extend_from_slice(&[0; 11]);
    let len = REGISTERS - 1;
    hll.push((len >> 8) as u8 | 0x40);
    hll.push((len & 0xff) as u8);
    hll
}

/// Redis's check before it treats a string as an HLL.
pub fn check(hll: &[u8]) -> Result<(), HllError> {
    if hll.len() < HEADER || &hll[..4] != b"HYLL" || hll[4] > SPARSE {
        return Err(HllError::NotHll);
    }
    if hll[4] == DENSE && hll.len() != DENSE_SIZE {
        return Err(HllError::NotHll);
    }
    Ok(())
}

pub fn is_sparse(hll: &[u8]) -> bool {
    hll[4] == SPARSE
}

fn invalidate_cache(hll: &mut [u8]) {
    hll[15] |= 0x80;
}

/// The cached cardinality, when the cache is valid.
fn cached(hll: &[u8]) -> Option<u64> {
    (hll[15] & 0x80 == 0).then(|| u64::from_le_bytes(hll[8..16].try_into().expect("eight bytes")))
}

/// Dense registers: register i is six bits starting at bit 6i, least
/// significant bits first.
fn dense_get(registers: &[u8], i: usize) -> u8 {
    let byte = i * 6 / 8;
    let shift = (i * 6) & 7;
    let b0 = u16::from(registers[byte]);
    let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
    (((b0 >> shift) | (b1 << (8 - shift))) & u16::from(REGISTER_MAX)) as u8
}

fn dense_set(registers: &mut [u8], i: usize, value: u8) {
    let byte = i * 6 / 8;
    let shift = (i * 6) & 7;
    let v = u16::from(value);
    let m = u16::from(REGISTER_MAX);
    registers[byte] &= !((m << shift) as u8);
    registers[byte] |= (v << shift) as u8;
    if let Some(next) = registers.get_mut(byte + 1) {
        *next &= !((m >> (8 - shift)) as u8);
        *next |= (v >> (8 - shift)) as u8;
    }
}

/// One sparse opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opcode {
    Zero(usize),
    XZero(usize),
    Val(u8, usize),
}

impl Opcode {
    fn at(bytes: &[u8], p: usize) -> Opcode {
        let b = bytes[p];
        if b & 0xc0 == 0 {
            Opcode::Zero(usize::from(b & 0x3f) + 1)
        } else if b & 0xc0 == 0x40 {
            let low = bytes.get(p + 1).copied().unwrap_or(0);
            Opcode::XZero(((usize::from(b & 0x3f) << 8) | usize::from(low)) + 1)
        } else {
            Opcode::Val(((b >> 2) & 0x1f) + 1, usize::from(b & 0x3) + 1)
        }
    }

    fn span(self) -> usize {
        match self {
            Opcode::Zero(n) | Opcode::XZero(n) | Opcode::Val(_, n) => n,
        }
    }

    fn width(self) -> usize {
        if matches!(self, Opcode::XZero(_)) {
            2
        } else {
            1
        }
    }

    /// Appends this opcode's bytes; zero runs pick ZERO or XZERO by length.
    fn push(self, out: &mut Vec<u8>) {
        match self {
            Opcode::Zero(n) | Opcode::XZero(n) if n > ZERO_MAX_LEN => {
                out.push(((n - 1) >> 8) as u8 | 0x40);
                out.push(((n - 1) & 0xff) as u8);
            }
            Opcode::Zero(n) | Opcode::XZero(n) => out.push((n - 1) as u8),
            Opcode::Val(v, n) => out.push(val_byte(v, n)),
        }
    }
}

fn val_byte(value: u8, len: usize) -> u8 {
    0x80 | ((value - 1) << 2) | (len - 1) as u8
}

/// Calls `f(first register, opcode)` for each opcode of a sparse HLL;
/// answers the number of registers covered.
fn walk(hll: &[u8], mut f: impl FnMut(usize, Opcode) -> bool) -> usize {
    let mut p = HEADER;
    let mut index = 0;
    while p < hll.len() {
        let op = Opcode::at(hll, p);
        if !f(index, op) {
            break;
        }
        index += op.span();
        p += op.width();
    }
    index
}

/// Rewrites a sparse HLL as dense. Fails if the opcodes do not cover
/// exactly the 16384 registers.
pub fn to_dense(hll: &mut Vec<u8>) -> Result<(), HllError> {
    if hll[4] == DENSE {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HEADER].copy_from_slice(&hll[..HEADER]);
    dense[4] = DENSE;
    let registers = &mut dense[HEADER..];
    let covered = walk(hll, |first, op| match op {
        Opcode::Val(value, len) => {
            if first + len > REGISTERS {
                return false;
            }
            for i in first..first + len {
                dense_set(registers, i, value);
            }
            true
        }
        _ => true,
    });
    // A VAL overflowing the registers stops the walk short of the end;
    // zero runs past it leave more than REGISTERS counted.
    if covered != REGISTERS {
        return Err(HllError::Corrupted);
    }
    *hll = dense;
    Ok(())
}

/// Sets register `index` to `count` if that raises it. Answers whether it
/// did.
fn set(hll: &mut Vec<u8>, index: usize, count: u8, sparse_max: usize) -> Result<bool, HllError> {
    match hll[4] {
        DENSE => {
            let registers = &mut hll[HEADER..];
            if dense_get(registers, index) < count {
                dense_set(registers, index, count);
                Ok(true)
            } else {
                Ok(false)
            }
        }
        SPARSE => sparse_set(hll, index, count, sparse_max),
        _ => Err(HllError::Corrupted),
    }
}

fn promote(hll: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, HllError> {
    to_dense(hll)?;
    let registers = &mut hll[HEADER..];
    // A register needing the dense form is always raised by it.
    if dense_get(registers, index) < count {
        dense_set(registers, index, count);
    }
    Ok(true)
}

/// Redis's `hllSparseSet`: find the opcode covering `index`, leave it if
/// it already holds as much, else split it into at most three opcodes and
/// merge equal neighbouring VALs.
fn sparse_set(
    hll: &mut Vec<u8>,
    index: usize,
    count: u8,
    sparse_max: usize,
) -> Result<bool, HllError> {
    if count > VAL_MAX_VALUE {
        return promote(hll, index, count);
    }
    // Step 1: the opcode at `p` covers registers first..first+span.
    let end = hll.len();
    let mut p = HEADER;
    let mut first = 0;
    let mut prev = None;
    let mut op = None;
    while p < end {
        let here = Opcode::at(hll, p);
        if index < first + here.span() {
            op = Some(here);
            break;
        }
        prev = Some(p);
        p += here.width();
        first += here.span();
    }
    let Some(op) = op else {
        return Err(HllError::Corrupted);
    };
    if p + op.width() > end {
        // An XZERO cut in half by the end of the string.
        return Err(HllError::Corrupted);
    }
    let span = op.span();
    // Step 2: the trivial cases, updated in place.
    let in_place = match op {
        Opcode::Val(value, _) if value >= count => return Ok(false),
        Opcode::Val(_, 1) | Opcode::Zero(1) => true,
        _ => false,
    };
    if in_place {
        hll[p] = val_byte(count, 1);
    } else {
        // Step 3: split the run around the register.
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        let around = |len| match op {
            Opcode::Val(value, _) => Opcode::Val(value, len),
            _ => Opcode::Zero(len),
        };
        if index != first {
            around(index - first).push(&mut seq);
        }
        Opcode::Val(count, 1).push(&mut seq);
        if index != last {
            around(last - index).push(&mut seq);
        }
        let old = op.width();
        if seq.len() > old && hll.len() + seq.len() - old > sparse_max {
            return promote(hll, index, count);
        }
        hll.splice(p..p + old, seq);
    }
    // Step 4: merge adjacent VALs of one value, scanning up to five
    // opcodes from the one before the change.
    let mut p = prev.unwrap_or(HEADER);
    let mut scan = 5;
    while p < hll.len() && scan > 0 {
        scan -= 1;
        match Opcode::at(hll, p) {
            Opcode::XZero(_) => p += 2,
            Opcode::Zero(_) => p += 1,
            Opcode::Val(v1, l1) => {
                if p + 1 < hll.len() {
                    if let Opcode::Val(v2, l2) = Opcode::at(hll, p + 1) {
                        if v1 == v2 && l1 + l2 <= VAL_MAX_LEN {
                            hll[p + 1] = val_byte(v1, l1 + l2);
                            hll.remove(p);
                            // Try the merged run with its right neighbour.
                            continue;
                        }
                    }
                }
                p += 1;
            }
        }
    }
    Ok(true)
}

/// Adds one element. Answers whether a register changed.
pub fn add(hll: &mut Vec<u8>, element: &[u8], sparse_max: usize) -> Result<bool, HllError> {
    let (index, count) = pattern(element);
    set(hll, index, count, sparse_max)
}

/// PFADD's effect on an existing HLL (already [`check`]ed): answers
/// whether it changed, the cache invalidated if so.
pub fn add_all(
    hll: &mut Vec<u8>,
    elements: &[impl AsRef<[u8]>],
    sparse_max: usize,
) -> Result<bool, HllError> {
    let mut updated = false;
    for element in elements {
        updated |= add(hll, element.as_ref(), sparse_max)?;
    }
    if updated {
        invalidate_cache(hll);
    }
    Ok(updated)
}

/// Raises `max[i]` to this HLL's register i, for every i.
pub fn merge_into(max: &mut [u8; REGISTERS], hll: &[u8]) -> Result<(), HllError> {
    if hll[4] == DENSE {
        let registers = &hll[HEADER..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(registers, i));
        }
        return Ok(());
    }
    let covered = walk(hll, |first, op| match op {
        Opcode::Val(value, len) => {
            if first + len > REGISTERS {
                return false;
            }
            for m in &mut max[first..first + len] {
                *m = (*m).max(value);
            }
            true
        }
        _ => true,
    });
    if covered != REGISTERS {
        return Err(HllError::Corrupted);
    }
    Ok(())
}

/// Writes `max` into `hll` (PFMERGE's destination), turning it dense
/// first if `dense`.
pub fn store_max(
    hll: &mut Vec<u8>,
    max: &[u8; REGISTERS],
    dense: bool,
    sparse_max: usize,
) -> Result<(), HllError> {
    if dense {
        to_dense(hll)?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m != 0 {
            set(hll, i, m, sparse_max)?;
        }
    }
    invalidate_cache(hll);
    Ok(())
}

/// Ertl's estimator over the histogram of register values, as Redis 5+
/// computes it ("New cardinality estimation algorithms for HyperLogLog
/// sketches", arXiv:1702.01284).
fn estimate(histogram: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histogram[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let before = z;
        z += x * y;
        y += y;
        if before == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let before = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
        if before == z {
            return z / 3.0;
        }
    }
}

fn histogram(hll: &[u8]) -> Result<[u32; 64], HllError> {
    let mut histogram = [0u32; 64];
    if hll[4] == DENSE {
        let registers = &hll[HEADER..];
        for i in 0..REGISTERS {
            histogram[usize::from(dense_get(registers, i))] += 1;
        }
        return Ok(histogram);
    }
    let covered = walk(hll, |_, op| {
        match op {
            Opcode::Zero(n) | Opcode::XZero(n) => {
                histogram[0] = histogram[0].wrapping_add(n as u32)
            }
            Opcode::Val(v, n) => {
                let slot = &mut histogram[usize::from(v)];
                *slot = slot.wrapping_add(n as u32);
            }
        }
        true
    });
    if covered != REGISTERS {
        return Err(HllError::Corrupted);
    }
    Ok(histogram)
}

/// PFCOUNT of one HLL: the cached cardinality if valid, else computed.
pub fn count(hll: &[u8]) -> Result<u64, HllError> {
    if let Some(cached) = cached(hll) {
        return Ok(cached);
    }
    Ok(estimate(&histogram(hll)?))
}

/// PFCOUNT of several: the cardinality of the union of merged registers.
pub fn count_registers(max: &[u8; REGISTERS]) -> u64 {
    let mut histogram = [0u32; 64];
    for &r in max {
        histogram[usize::from(r)] += 1;
    }
    estimate(&histogram)
}

/// PFDEBUG GETREG's registers of a dense HLL.
pub fn registers(hll: &[u8]) -> Vec<u8> {
    let registers = &hll[HEADER..];
    (0..REGISTERS).map(|i| dense_get(registers, i)).collect()
}

/// PFDEBUG DECODE: the sparse opcodes as Redis prints them.
pub fn decode(hll: &[u8]) -> String {
    let mut out = Vec::new();
    walk(hll, |_, op| {
        out.push(match op {
            Opcode::Zero(n) => format!("z:{n}"),
            Opcode::XZero(n) => format!("Z:{n}"),
            Opcode::Val(v, n) => format!("v:{v},{n}"),
        });
        true
    });
    out.join(" ")
}

/// PFSELFTEST: the checks Redis runs on its own implementation. Register
/// packing first (random values written and read back), then the
/// estimate: ten million elements added to a dense and a sparse HLL side
/// by side, which must agree, stay sparse while small, and stay within
/// six standard errors at every power of ten. `seed` varies the elements.
pub fn self_test(seed: u64) -> Result<(), String> {
    let mut rng = seed | 1;
    let mut next = move || {
        // xorshift64*: any fixed generator does for a self-test.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut registers = vec![0u8; DENSE_SIZE - HEADER];
    let mut expected = vec![0u8; REGISTERS];
    for _ in 0..1000 {
        for (i, e) in expected.iter_mut().enumerate() {
            let value = (next() & u64::from(REGISTER_MAX)) as u8;
            *e = value;
            dense_set(&mut registers, i, value);
        }
        for (i, &e) in expected.iter().enumerate() {
            if dense_get(&registers, i) != e {
                return Err(format!("TESTFAILED Register error at index {i}"));
            }
        }
    }
    let mut dense = empty();
    to_dense(&mut dense).map_err(|e| e.to_string())?;
    let mut sparse = empty();
    let relative = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint: u64 = 1;
    let base = next();
    for j in 1..=10_000_000u64 {
        let element = (j ^ base).to_le_bytes();
        add(&mut dense, &element, SPARSE_MAX_BYTES).map_err(|e| e.to_string())?;
        add(&mut sparse, &element, SPARSE_MAX_BYTES).map_err(|e| e.to_string())?;
        if j != checkpoint {
            continue;
        }
        if (j as usize) < SPARSE_MAX_BYTES / 2 && !is_sparse(&sparse) {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let card = estimate(&histogram(&dense).map_err(|e| e.to_string())?);
        let card_sparse = estimate(&histogram(&sparse).map_err(|e| e.to_string())?);
        if card != card_sparse {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let mut max_error = (relative * 6.0 * checkpoint as f64).ceil() as u64;
        if j == 10 {
            max_error = 1;
        }
        let error = checkpoint.abs_diff(card);
        if error > max_error {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{error}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

/// The HLL at `key` as a working copy: None when absent, WRONGTYPE for
/// another type or a string that is not an HLL.
fn load(db: &Db, key: &Bytes, now: u64) -> Result<Option<Vec<u8>>, StateError> {
    let Some(s) = get_string(db, key, now)? else {
        return Ok(None);
    };
    check(s)?;
    Ok(Some(s.to_vec()))
}

/// PFADD key [element ...]. Outcome: 1 if the key was created or a
/// register changed, else 0. An element that meets a corrupt HLL stops
/// the command with INVALIDOBJ, the value left as it was.
pub fn pfadd(db: &mut Db, now: u64, key: &Bytes, elements: &[Bytes]) -> OpResult {
    let (mut hll, created) = match load(db, key, now)? {
        Some(hll) => (hll, false),
        None => (empty(), true),
    };
    let mut updated = add_all(&mut hll, elements, SPARSE_MAX_BYTES)?;
    if created {
        invalidate_cache(&mut hll);
        updated = true;
    }
    if updated {
        db.insert_keep_ttl(key.clone(), Value::String(Bytes::from(hll)), now);
    }
    Ok(Outcome::Int(i64::from(updated)))
}

/// PFMERGE dest [source ...]: dest (itself a source) becomes the union.
/// It turns dense if any source is dense. Outcome: OK.
pub fn pfmerge(db: &mut Db, now: u64, dest: &Bytes, sources: &[Bytes]) -> OpResult {
    let mut max = Box::new([0u8; REGISTERS]);
    let hll = load(db, dest, now)?;
    let mut dense = hll.as_deref().is_some_and(|h| !is_sparse(h));
    if let Some(h) = &hll {
        merge_into(&mut max, h)?;
    }
    for key in sources {
        if let Some(s) = get_string(db, key, now)? {
            check(s)?;
            dense |= !is_sparse(s);
            merge_into(&mut max, s)?;
        }
    }
    let mut hll = hll.unwrap_or_else(empty);
    store_max(&mut hll, &max, dense, SPARSE_MAX_BYTES)?;
    db.insert_keep_ttl(dest.clone(), Value::String(Bytes::from(hll)), now);
    Ok(Outcome::Ok)
}

/// PFDEBUG GETREG (`registers`) or TODENSE: both leave the HLL dense.
/// Outcome: the 16384 registers, or 1 if it was converted.
pub fn pfdebug_dense(db: &mut Db, now: u64, key: &Bytes, registers_wanted: bool) -> OpResult {
    let mut hll = load(db, key, now)?.ok_or(HllError::NoKey)?;
    let converted = is_sparse(&hll);
    if converted {
        to_dense(&mut hll)?;
    }
    let outcome = if registers_wanted {
        Outcome::Array(
            registers(&hll)
                .into_iter()
                .map(|r| Outcome::Int(i64::from(r)))
                .collect(),
        )
    } else {
        Outcome::Int(i64::from(converted))
    };
    if converted {
        db.insert_keep_ttl(key.clone(), Value::String(Bytes::from(hll)), now);
    }
    Ok(outcome)
}

/// PFDEBUG DECODE (`decode`) or ENCODING.
pub fn pfdebug_read(db: &Db, now: u64, key: &Bytes, decode_wanted: bool) -> OpResult {
    let s = get_string(db, key, now)?.ok_or(HllError::NoKey)?;
    check(s)?;
    if !decode_wanted {
        let name = if is_sparse(s) { "sparse" } else { "dense" };
        return Ok(Outcome::Status(name.into()));
    }
    if !is_sparse(s) {
        return Err(HllError::NotSparse.into());
    }
    Ok(Outcome::Bulk(Bytes::from(decode(s))))
}

/// PFCOUNT key [key ...]: one key's estimate (or its valid cache), or the
/// union's.
pub fn pfcount(db: &Db, now: u64, keys: &[Bytes]) -> OpResult {
    if let [key] = keys {
        let Some(s) = get_string(db, key, now)? else {
            return Ok(Outcome::Int(0));
        };
        check(s)?;
        return Ok(Outcome::Int(count(s)? as i64));
    }
    let mut max = Box::new([0u8; REGISTERS]);
    for key in keys {
        if let Some(s) = get_string(db, key, now)? {
            check(s)?;
            merge_into(&mut max, s)?;
        }
    }
    Ok(Outcome::Int(count_registers(&max) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_prefix(bytes: &[u8]) -> String {
        // The goldens below were taken as sha256 prefixes from a Redis
        // 7.0 server; sha2 is already a dependency of the peer handshake.
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    fn loaded(n: usize) -> Vec<u8> {
        let mut hll = empty();
        for i in 0..n {
            let element = format!("el{i}");
            if add(&mut hll, element.as_bytes(), SPARSE_MAX_BYTES).unwrap() {
                invalidate_cache(&mut hll);
            }
        }
        hll
    }

    #[test]
    fn the_bytes_and_counts_are_redis_s() {
        // n, length, sha256 prefix of GET after n PFADDs of el0..el(n-1),
        // then PFCOUNT: from redis-server 7.0.
        let golden = [
            (3, 27, "28a52f879b87cbbe", 3),
            (10, 47, "025d64e94af7d1d4", 10),
            (100, 282, "31cd19592309c2cb", 100),
            (1000, 1916, "68e4ad14fa14524f", 1005),
            (3000, 12304, "3337625a4c7771e7", 2994),
            (5000, 12304, "8e42f8cea2626592", 5041),
            (20000, 12304, "e6b92cc6957f7349", 20020),
        ];
        for (n, len, digest, card) in golden {
            let hll = loaded(n);
            assert_eq!(hll.len(), len, "length after {n}");
            assert_eq!(sha256_prefix(&hll), digest, "bytes after {n}");
            assert_eq!(count(&hll).unwrap(), card, "count after {n}");
        }
    }

    #[test]
    fn empty_and_single_values_are_redis_s() {
        assert_eq!(
            empty(),
            b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x7f\xff"
        );
        let mut hll = empty();
        assert!(add_all(&mut hll, &[b""], SPARSE_MAX_BYTES).unwrap());
        assert_eq!(
            hll,
            b"HYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80W1\x84h\xcc"
        );
        assert_eq!(count(&hll).unwrap(), 1);
    }

    #[test]
    fn merges_count_the_union() {
        let mut x = empty();
        let mut y = empty();
        let xs: Vec<String> = (0..500).map(|i| format!("a{i}")).collect();
        let ys: Vec<String> = (250..900).map(|i| format!("a{i}")).collect();
        add_all(&mut x, &xs, SPARSE_MAX_BYTES).unwrap();
        add_all(&mut y, &ys, SPARSE_MAX_BYTES).unwrap();
        assert_eq!(count(&x).unwrap(), 496);
        assert_eq!(count(&y).unwrap(), 642);
        let mut max = [0u8; REGISTERS];
        merge_into(&mut max, &x).unwrap();
        merge_into(&mut max, &y).unwrap();
        assert_eq!(count_registers(&max), 895);
        let mut z = empty();
        store_max(&mut z, &max, false, SPARSE_MAX_BYTES).unwrap();
        assert_eq!(sha256_prefix(&z), "92e4463dfbdd4435");
        assert_eq!(count(&z).unwrap(), 895);
    }

    #[test]
    fn sparse_and_dense_agree_register_by_register() {
        let sparse = loaded(1000);
        assert!(is_sparse(&sparse));
        let mut dense = sparse.clone();
        to_dense(&mut dense).unwrap();
        let mut from_sparse = [0u8; REGISTERS];
        merge_into(&mut from_sparse, &sparse).unwrap();
        assert_eq!(registers(&dense), from_sparse.to_vec());
        assert_eq!(count(&sparse).unwrap(), count(&dense).unwrap());
    }

    #[test]
    fn corrupt_values_are_refused_not_panicked_on() {
        let mut hll = loaded(3);
        hll.extend_from_slice(b"hello");
        assert_eq!(count(&hll), Err(HllError::Corrupted));
        let mut magic = loaded(3);
        magic[..4].copy_from_slice(b"0123");
        assert_eq!(check(&magic), Err(HllError::NotHll));
        let mut dense = loaded(5000);
        dense.pop();
        assert_eq!(check(&dense), Err(HllError::NotHll));
        // Every truncation and every single-byte change of a sparse HLL
        // is either refused or handled.
        let good = loaded(200);
        for cut in HEADER..good.len() {
            let mut bad = good[..cut].to_vec();
            let _ = count(&bad);
            let _ = add_all(&mut bad, &[b"x", b"y"], SPARSE_MAX_BYTES);
        }
        for at in HEADER..good.len() {
            for byte in [0x00, 0x3f, 0x40, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = byte;
                let _ = count(&bad);
                let mut max = [0u8; REGISTERS];
                let _ = merge_into(&mut max, &bad);
                let _ = to_dense(&mut bad.clone());
                let _ = add_all(&mut bad, &[b"x", b"y", b"z"], SPARSE_MAX_BYTES);
            }
        }
    }

    #[test]
    fn the_self_test_passes() {
        // Register packing only: the ten-million-element part runs in the
        // PFSELFTEST command, not here.
        let mut registers = vec![0u8; DENSE_SIZE - HEADER];
        for i in 0..REGISTERS {
            dense_set(&mut registers, i, (i % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&registers, i), (i % 64) as u8);
        }
    }

    #[test]
    fn a_lower_sparse_limit_promotes_sooner() {
        let mut hll = empty();
        let elements: Vec<String> = (0..100).map(|i| format!("el{i}")).collect();
        add_all(&mut hll, &elements, 100).unwrap();
        assert!(!is_sparse(&hll));
        assert_eq!(count(&hll).unwrap(), 100);
    }
}
