//! Redis's DUMP payload: one value in RDB form, as DUMP answers it and
//! RESTORE takes it.
//!
//! A payload is the value's RDB type byte, the object, the RDB version
//! (2 bytes, little-endian) and a CRC64 (Jones, reflected, 8 bytes
//! little-endian) of everything before it. Payloads travel between concord
//! and Redis (migrations, backups made with DUMP, `redis-dump`-style
//! tools), so both directions speak Redis's own encodings:
//!
//! - **Decoding** reads whatever Redis 7.0 and 7.2 DUMP emits: the
//!   length and string encodings (integers, LZF), plain sets, hashes and
//!   sorted sets, intsets, listpacks (hash, sorted set, 7.2's set) and
//!   quicklist-2 lists, and the older list and sorted-set types. The
//!   payload is untrusted: every length is checked against the bytes left
//!   before anything is allocated, so a forged length cannot make the node
//!   reserve gigabytes, and every failure is one of Redis's two answers
//!   ([`RdbError`]), never a panic. Streams and module values are refused
//!   by name.
//! - **Encoding** emits RDB version 10, the newest Redis 7.0 restores, and
//!   the encodings 7.0 would choose for the value under its default limits
//!   (see [`super::keys::encoding`]), so a payload restores in 7.0 and in
//!   everything newer. Strings use Redis's integer encoding when they are
//!   canonical 32-bit integers; nothing is compressed.
//!
//! Decoding happens in the command layer, at parse time: RESTORE's op
//! carries the decoded [`RestoredValue`], so a bad payload never reaches
//! the log and every replica applies the same typed value. The module is
//! pure (no state, no IO) and does not know about keys or deadlines.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{ScanMap, Value};
use super::hashes::Hash;
use super::keys::{encoding, EncodingLimits};
use super::zsets::ZSet;

/// The RDB version DUMP writes: Redis 7.0's (it refuses newer payloads).
pub const RDB_VERSION: u16 = 10;

/// The newest RDB version RESTORE accepts: Redis 7.2's.
pub const MAX_RDB_VERSION: u16 = 11;

const TYPE_STRING: u8 = 0;
const TYPE_LIST: u8 = 1;
const TYPE_SET: u8 = 2;
const TYPE_ZSET: u8 = 3;
const TYPE_HASH: u8 = 4;
const TYPE_ZSET_2: u8 = 5;
const TYPE_SET_INTSET: u8 = 11;
const TYPE_HASH_LISTPACK: u8 = 16;
const TYPE_ZSET_LISTPACK: u8 = 17;
const TYPE_LIST_QUICKLIST_2: u8 = 18;
const TYPE_SET_LISTPACK: u8 = 20;

/// Quicklist node containers.
const CONTAINER_PLAIN: u64 = 1;
const CONTAINER_PACKED: u64 = 2;

/// Redis 7.0's `list-max-listpack-size -2`: a list node holds up to 8 KiB.
const LIST_NODE_BYTES: usize = 8 * 1024;

/// A value decoded from a payload: what RESTORE's op carries through the
/// log. Collections are never empty and hold no duplicates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RestoredValue {
    String(Bytes),
    /// Head first.
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
    Hash(Vec<(Bytes, Bytes)>),
    /// Scores are never NaN.
    ZSet(Vec<(f64, Bytes)>),
}

impl RestoredValue {
    /// The value as the keyspace stores it.
    pub fn into_value(self) -> Value {
        match self {
            RestoredValue::String(s) => Value::String(s),
            RestoredValue::List(items) => Value::List(Box::new(items.into_iter().collect())),
            RestoredValue::Set(members) => {
                let mut set = ScanMap::with_capacity(members.len());
                for member in members {
                    set.insert(Bytes::copy_from_slice(&member), ());
                }
                Value::Set(Box::new(set))
            }
            RestoredValue::Hash(pairs) => Value::Hash(Hash::from_pairs(pairs, true)),
            RestoredValue::ZSet(scored) => {
                let mut zset = ZSet::default();
                for (score, member) in scored {
                    zset.insert(Bytes::copy_from_slice(&member), score);
                }
                Value::ZSet(Box::new(zset))
            }
        }
    }
}

/// Why a payload was refused: Redis's two answers, and concord's for the
/// types it cannot hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    /// Too short, an RDB version newer than [`MAX_RDB_VERSION`], or a
    /// checksum that does not match.
    #[error("ERR DUMP payload version or checksum are wrong")]
    VersionOrChecksum,
    /// The checksum matched but the object is malformed.
    #[error("ERR Bad data format")]
    BadFormat,
    /// A well-formed payload of a type concord does not store.
    #[error("ERR Bad data format: concord cannot restore {0} values")]
    Unsupported(&'static str),
}

/// DUMP of a value concord cannot encode yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CannotDump(pub &'static str);

// ---------------------------------------------------------------- CRC64

/// Redis's CRC-64 (Jones polynomial, reflected, initial value 0, no final
/// xor), one table lookup per byte.
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &byte in data {
        crc = CRC64_TABLE[((crc ^ u64::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// The Jones polynomial 0xad93d23594c935a9, bit-reflected.
const CRC64_REFLECTED_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const CRC64_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CRC64_REFLECTED_POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

// ---------------------------------------------------------------- decoding

/// Decodes a DUMP payload, as RESTORE does: footer first (version, then
/// checksum), then the object.
pub fn decode(payload: &[u8]) -> Result<RestoredValue, RdbError> {
    let body = verify_footer(payload)?;
    let mut reader = Reader::new(body);
    let kind = reader.byte()?;
    reader.object(kind)
}

/// Redis's `verifyDumpPayload`: at least the 10-byte footer, an RDB
/// version no newer than [`MAX_RDB_VERSION`], and a matching CRC64.
/// Answers what comes before the footer.
fn verify_footer(payload: &[u8]) -> Result<&[u8], RdbError> {
    if payload.len() < 10 {
        return Err(RdbError::VersionOrChecksum);
    }
    let (body, footer) = payload.split_at(payload.len() - 10);
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > MAX_RDB_VERSION {
        return Err(RdbError::VersionOrChecksum);
    }
    let (covered, crc) = payload.split_at(payload.len() - 8);
    let expected = u64::from_le_bytes(crc.try_into().expect("8 bytes"));
    if crc64(0, covered) != expected {
        return Err(RdbError::VersionOrChecksum);
    }
    Ok(body)
}

// ---------------------------------------------------------------- functions

/// The opcode before each library in FUNCTION DUMP's payload (and in an
/// RDB file): its code follows as one string.
const OPCODE_FUNCTION2: u8 = 245;

/// The opcode of Redis 7.0-rc1 and rc2: name, engine, an optional
/// description, then the code without its shebang line.
const OPCODE_FUNCTION: u8 = 246;

/// Why FUNCTION RESTORE refused a payload before loading any library:
/// Redis 7.0's texts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FunctionPayloadError {
    #[error("ERR DUMP payload version or checksum are wrong")]
    VersionOrChecksum,
    #[error("ERR given type is not a function")]
    NotAFunction,
    /// A string that runs past the payload's end (Redis's
    /// `rdbFunctionLoad` failures, one text for each field it reads).
    #[error("ERR Failed loading {0}")]
    Truncated(&'static str),
}

/// FUNCTION DUMP's payload (Redis's `functionDumpCommand`): for each
/// library its opcode and code, then the RDB version and the CRC64.
pub fn encode_functions<'a>(codes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(OPCODE_FUNCTION2);
        put_string(&mut out, code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library codes of a FUNCTION DUMP payload, in payload order
/// (Redis's `functionRestoreCommand` up to loading them): the footer is
/// checked first, then every entry must be a function opcode and its
/// strings must be whole. An rc-format entry comes back as the code
/// Redis rebuilds from it (`#!<engine> name=<name>\n<code>`). Whether
/// each code loads is for the script host to say.
pub fn decode_functions(payload: &[u8]) -> Result<Vec<Bytes>, FunctionPayloadError> {
    verify_footer(payload).map_err(|_| FunctionPayloadError::VersionOrChecksum)?;
    // As Redis, entries are read until at most the footer is left, and a
    // string may run into the footer (it is then part of the code, which
    // will not load).
    let mut reader = Reader::new(payload);
    let mut codes = Vec::new();
    while reader.remaining() > 10 {
        let kind = reader.byte().expect("a byte remains");
        let truncated = FunctionPayloadError::Truncated;
        match kind {
            OPCODE_FUNCTION2 => {
                codes.push(reader.string().map_err(|_| truncated("library payload"))?);
            }
            OPCODE_FUNCTION => {
                let name = reader.string().map_err(|_| truncated("library name"))?;
                let engine = reader.string().map_err(|_| truncated("engine name"))?;
                let has_description = reader
                    .len()
                    .map_err(|_| truncated("library description indicator"))?;
                if has_description != 0 {
                    reader
                        .string()
                        .map_err(|_| truncated("library description"))?;
                }
                let blob = reader.string().map_err(|_| truncated("library blob"))?;
                let mut code = Vec::with_capacity(engine.len() + name.len() + blob.len() + 9);
                code.extend_from_slice(b"#!");
                code.extend_from_slice(&engine);
                code.extend_from_slice(b" name=");
                code.extend_from_slice(&name);
                code.push(b'\n');
                code.extend_from_slice(&blob);
                codes.push(Bytes::from(code));
            }
            _ => return Err(FunctionPayloadError::NotAFunction),
        }
    }
    Ok(codes)
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// What an RDB length field holds: a length, or the tag of a special
/// string encoding.
enum Len {
    Plain(u64),
    Encoded(u8),
}

const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, RdbError> {
        let b = *self.buf.get(self.pos).ok_or(RdbError::BadFormat)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], RdbError> {
        if n > self.remaining() as u64 {
            return Err(RdbError::BadFormat);
        }
        let n = n as usize;
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RdbError> {
        Ok(self.take(N as u64)?.try_into().expect("N bytes"))
    }

    /// Redis's `rdbLoadLenByRef`.
    fn len_or_encoding(&mut self) -> Result<Len, RdbError> {
        let first = self.byte()?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(self.array()?))),
                0x81 => Len::Plain(u64::from_be_bytes(self.array()?)),
                _ => return Err(RdbError::BadFormat),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn len(&mut self) -> Result<u64, RdbError> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(_) => Err(RdbError::BadFormat),
        }
    }

    /// A count of elements that each take at least one byte: more than
    /// the bytes left is a lie, refused before anything is allocated.
    fn count(&mut self) -> Result<usize, RdbError> {
        let n = self.len()?;
        if n == 0 || n > self.remaining() as u64 {
            return Err(RdbError::BadFormat);
        }
        Ok(n as usize)
    }

    /// Redis's `rdbGenericLoadStringObject`.
    fn string(&mut self) -> Result<Bytes, RdbError> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Ok(Bytes::copy_from_slice(self.take(n)?)),
            Len::Encoded(ENC_INT8) => Ok(int_bytes(i64::from(self.byte()? as i8))),
            Len::Encoded(ENC_INT16) => Ok(int_bytes(i64::from(i16::from_le_bytes(self.array()?)))),
            Len::Encoded(ENC_INT32) => Ok(int_bytes(i64::from(i32::from_le_bytes(self.array()?)))),
            Len::Encoded(ENC_LZF) => {
                let compressed = self.len()?;
                let len = self.len()?;
                let input = self.take(compressed)?;
                Ok(Bytes::from(lzf_decompress(input, len)?))
            }
            Len::Encoded(_) => Err(RdbError::BadFormat),
        }
    }

    /// Redis's `rdbLoadObject` for the types concord stores.
    fn object(&mut self, kind: u8) -> Result<RestoredValue, RdbError> {
        match kind {
            TYPE_STRING => Ok(RestoredValue::String(self.string()?)),
            TYPE_LIST => {
                let n = self.count()?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(self.string()?);
                }
                Ok(RestoredValue::List(list))
            }
            TYPE_SET => {
                let n = self.count()?;
                let mut set = Members::with_capacity(n);
                for _ in 0..n {
                    set.push(self.string()?)?;
                }
                Ok(RestoredValue::Set(set.into_vec()))
            }
            TYPE_ZSET | TYPE_ZSET_2 => {
                let n = self.count()?;
                let mut members = Members::with_capacity(n);
                let mut scores = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(self.string()?)?;
                    let score = if kind == TYPE_ZSET_2 {
                        f64::from_le_bytes(self.array()?)
                    } else {
                        self.ascii_double()?
                    };
                    if score.is_nan() {
                        return Err(RdbError::BadFormat);
                    }
                    scores.push(score);
                }
                Ok(RestoredValue::ZSet(
                    scores.into_iter().zip(members.into_vec()).collect(),
                ))
            }
            TYPE_HASH => {
                let n = self.count()?;
                let mut fields = Members::with_capacity(n);
                let mut values = Vec::with_capacity(n);
                for _ in 0..n {
                    fields.push(self.string()?)?;
                    values.push(self.string()?);
                }
                Ok(RestoredValue::Hash(
                    fields.into_vec().into_iter().zip(values).collect(),
                ))
            }
            TYPE_SET_INTSET => {
                let blob = self.string()?;
                Ok(RestoredValue::Set(intset_decode(&blob)?))
            }
            TYPE_SET_LISTPACK => {
                let blob = self.string()?;
                let mut set = Members::with_capacity(0);
                for member in listpack_decode(&blob)? {
                    set.push(member)?;
                }
                non_empty(set.into_vec()).map(RestoredValue::Set)
            }
            TYPE_HASH_LISTPACK => {
                let blob = self.string()?;
                let (fields, values) = pairs(listpack_decode(&blob)?)?;
                Ok(RestoredValue::Hash(
                    fields.into_iter().zip(values).collect(),
                ))
            }
            TYPE_ZSET_LISTPACK => {
                let blob = self.string()?;
                let (members, scores) = pairs(listpack_decode(&blob)?)?;
                let scores = scores
                    .iter()
                    .map(|s| parse_score(s))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(RestoredValue::ZSet(
                    scores.into_iter().zip(members).collect(),
                ))
            }
            TYPE_LIST_QUICKLIST_2 => {
                let nodes = self.count()?;
                let mut list = Vec::new();
                for _ in 0..nodes {
                    let container = self.len()?;
                    let blob = self.string()?;
                    match container {
                        CONTAINER_PLAIN => list.push(blob),
                        // An empty node is skipped, as Redis does.
                        CONTAINER_PACKED => list.extend(listpack_decode(&blob)?),
                        _ => return Err(RdbError::BadFormat),
                    }
                }
                non_empty(list).map(RestoredValue::List)
            }
            6 | 7 => Err(RdbError::Unsupported("module")),
            9 | 13 => Err(RdbError::Unsupported("zipmap or ziplist hash")),
            10 | 14 => Err(RdbError::Unsupported("ziplist list")),
            12 => Err(RdbError::Unsupported("ziplist sorted set")),
            15 | 19 | 21 => Err(RdbError::Unsupported("stream")),
            _ => Err(RdbError::BadFormat),
        }
    }

    /// The old sorted-set score: a length byte (253 NaN, 254 +inf,
    /// 255 -inf) and that many ASCII bytes.
    fn ascii_double(&mut self) -> Result<f64, RdbError> {
        match self.byte()? {
            253 => Ok(f64::NAN),
            254 => Ok(f64::INFINITY),
            255 => Ok(f64::NEG_INFINITY),
            n => {
                let text = self.take(u64::from(n))?;
                parse_score(text)
            }
        }
    }
}

/// Members in payload order, refusing a repeated one (Redis refuses
/// duplicate set members, hash fields and sorted-set members).
struct Members {
    order: Vec<Bytes>,
    seen: std::collections::HashSet<Bytes>,
}

impl Members {
    fn with_capacity(n: usize) -> Self {
        Members {
            order: Vec::with_capacity(n),
            seen: std::collections::HashSet::with_capacity(n),
        }
    }

    fn push(&mut self, member: Bytes) -> Result<(), RdbError> {
        if !self.seen.insert(member.clone()) {
            return Err(RdbError::BadFormat);
        }
        self.order.push(member);
        Ok(())
    }

    fn into_vec(self) -> Vec<Bytes> {
        self.order
    }
}

fn non_empty<T>(items: Vec<T>) -> Result<Vec<T>, RdbError> {
    if items.is_empty() {
        Err(RdbError::BadFormat)
    } else {
        Ok(items)
    }
}

/// Splits a listpack of key, value, key, value... into distinct keys and
/// their values; an odd or empty listpack is malformed.
fn pairs(items: Vec<Bytes>) -> Result<(Vec<Bytes>, Vec<Bytes>), RdbError> {
    if items.is_empty() || !items.len().is_multiple_of(2) {
        return Err(RdbError::BadFormat);
    }
    let mut keys = Members::with_capacity(items.len() / 2);
    let mut values = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        keys.push(k)?;
        values.push(v);
    }
    Ok((keys.into_vec(), values))
}

/// A score written as text (`strtod`): NaN is refused.
fn parse_score(text: &[u8]) -> Result<f64, RdbError> {
    let score: f64 = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RdbError::BadFormat)?;
    if score.is_nan() {
        return Err(RdbError::BadFormat);
    }
    Ok(score)
}

fn int_bytes(n: i64) -> Bytes {
    Bytes::from(n.to_string())
}

/// liblzf's `lzf_decompress`, checked: the output must be exactly `len`
/// bytes, and no back reference may point before the start.
pub fn lzf_decompress(input: &[u8], len: u64) -> Result<Vec<u8>, RdbError> {
    // Each input byte expands to at most ~88 bytes (a 3-byte back
    // reference copies 264): a larger claimed length is a lie.
    if len == 0 || len > (input.len() as u64).saturating_mul(88) {
        return Err(RdbError::BadFormat);
    }
    let len = len as usize;
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            if out.len() + run > len || ip + run > input.len() {
                return Err(RdbError::BadFormat);
            }
            out.extend_from_slice(&input[ip..ip + run]);
            ip += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += usize::from(*input.get(ip).ok_or(RdbError::BadFormat)?);
                ip += 1;
            }
            let low = usize::from(*input.get(ip).ok_or(RdbError::BadFormat)?);
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            run += 2;
            if back > out.len() || out.len() + run > len {
                return Err(RdbError::BadFormat);
            }
            let from = out.len() - back;
            // Byte by byte: the source may overlap what is being written.
            for i in 0..run {
                let b = out[from + i];
                out.push(b);
            }
        }
    }
    if out.len() != len {
        return Err(RdbError::BadFormat);
    }
    Ok(out)
}

/// An intset: encoding (2, 4 or 8 bytes per integer), count, then the
/// integers little-endian, strictly ascending.
fn intset_decode(blob: &[u8]) -> Result<Vec<Bytes>, RdbError> {
    if blob.len() < 8 {
        return Err(RdbError::BadFormat);
    }
    let width = u32::from_le_bytes(blob[0..4].try_into().expect("4 bytes")) as usize;
    let count = u32::from_le_bytes(blob[4..8].try_into().expect("4 bytes")) as u64;
    if !matches!(width, 2 | 4 | 8) || count == 0 || 8 + count * width as u64 != blob.len() as u64 {
        return Err(RdbError::BadFormat);
    }
    let mut members = Vec::with_capacity(count as usize);
    let mut last: Option<i64> = None;
    for chunk in blob[8..].chunks_exact(width) {
        let n = match width {
            2 => i64::from(i16::from_le_bytes(chunk.try_into().expect("2 bytes"))),
            4 => i64::from(i32::from_le_bytes(chunk.try_into().expect("4 bytes"))),
            _ => i64::from_le_bytes(chunk.try_into().expect("8 bytes")),
        };
        if last.is_some_and(|l| l >= n) {
            return Err(RdbError::BadFormat);
        }
        last = Some(n);
        members.push(int_bytes(n));
    }
    Ok(members)
}

/// The entries of a listpack: total bytes (u32 LE), entry count (u16 LE,
/// 65535 when unknown), the entries, and 0xFF. Integers come back as
/// their decimal text.
pub fn listpack_decode(blob: &[u8]) -> Result<Vec<Bytes>, RdbError> {
    if blob.len() < 7 {
        return Err(RdbError::BadFormat);
    }
    let total = u32::from_le_bytes(blob[0..4].try_into().expect("4 bytes")) as usize;
    let declared = u16::from_le_bytes([blob[4], blob[5]]);
    if total != blob.len() || blob[total - 1] != 0xff {
        return Err(RdbError::BadFormat);
    }
    let end = total - 1;
    let mut pos = 6;
    let mut items = Vec::new();
    while pos < end {
        let start = pos;
        let first = blob[pos];
        let need = |n: usize| {
            if start + n > end {
                Err(RdbError::BadFormat)
            } else {
                Ok(&blob[start..start + n])
            }
        };
        let signed = |bytes: &[u8], bits: u32| -> i64 {
            let mut raw = 0u64;
            for (i, b) in bytes.iter().enumerate() {
                raw |= u64::from(*b) << (8 * i);
            }
            ((raw << (64 - bits)) as i64) >> (64 - bits)
        };
        let (item, size) = if first & 0x80 == 0 {
            (int_bytes(i64::from(first & 0x7f)), 1)
        } else if first & 0xc0 == 0x80 {
            let n = usize::from(first & 0x3f);
            let raw = need(1 + n)?;
            (Bytes::copy_from_slice(&raw[1..]), 1 + n)
        } else if first & 0xe0 == 0xc0 {
            let raw = need(2)?;
            let value = (u64::from(raw[0] & 0x1f) << 8) | u64::from(raw[1]);
            (int_bytes(((value << 51) as i64) >> 51), 2)
        } else if first & 0xf0 == 0xe0 {
            let head = need(2)?;
            let n = (usize::from(head[0] & 0x0f) << 8) | usize::from(head[1]);
            let raw = need(2 + n)?;
            (Bytes::copy_from_slice(&raw[2..]), 2 + n)
        } else {
            match first {
                0xf0 => {
                    let head = need(5)?;
                    let n = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
                    let raw = need(5usize.checked_add(n).ok_or(RdbError::BadFormat)?)?;
                    (Bytes::copy_from_slice(&raw[5..]), 5 + n)
                }
                0xf1 => (int_bytes(signed(&need(3)?[1..], 16)), 3),
                0xf2 => (int_bytes(signed(&need(4)?[1..], 24)), 4),
                0xf3 => (int_bytes(signed(&need(5)?[1..], 32)), 5),
                0xf4 => (int_bytes(signed(&need(9)?[1..], 64)), 9),
                _ => return Err(RdbError::BadFormat),
            }
        };
        pos += size;
        let backlen = backlen_bytes(size);
        if pos + backlen.len() > end || blob[pos..pos + backlen.len()] != backlen[..] {
            return Err(RdbError::BadFormat);
        }
        pos += backlen.len();
        items.push(item);
    }
    if declared != u16::MAX && usize::from(declared) != items.len() {
        return Err(RdbError::BadFormat);
    }
    Ok(items)
}

/// Listpack's back length: an entry's size, 7 bits a byte, written so it
/// reads from the end (the high-order byte first, every byte but the last
/// flagged 128).
fn backlen_bytes(size: usize) -> Vec<u8> {
    let size = size as u64;
    match size {
        0..=127 => vec![size as u8],
        128..=16382 => vec![(size >> 7) as u8, (size & 127) as u8 | 128],
        16383..=2097150 => vec![
            (size >> 14) as u8,
            ((size >> 7) & 127) as u8 | 128,
            (size & 127) as u8 | 128,
        ],
        2097151..=268435454 => vec![
            (size >> 21) as u8,
            ((size >> 14) & 127) as u8 | 128,
            ((size >> 7) & 127) as u8 | 128,
            (size & 127) as u8 | 128,
        ],
        _ => vec![
            (size >> 28) as u8,
            ((size >> 21) & 127) as u8 | 128,
            ((size >> 14) & 127) as u8 | 128,
            ((size >> 7) & 127) as u8 | 128,
            (size & 127) as u8 | 128,
        ],
    }
}

// ---------------------------------------------------------------- encoding

/// DUMP's payload for `value`, as Redis 7.0 would write it.
pub fn encode(value: &Value) -> Result<Vec<u8>, CannotDump> {
    let mut out = Vec::new();
    let limits = EncodingLimits::default();
    match value {
        Value::String(s) => {
            out.push(TYPE_STRING);
            put_string(&mut out, s);
        }
        Value::List(list) => {
            out.push(TYPE_LIST_QUICKLIST_2);
            let mut nodes: Vec<Vec<u8>> = Vec::new();
            let mut node = Listpack::new();
            for element in list.iter() {
                if !node.is_empty() && node.bytes() + element.len() + 11 > LIST_NODE_BYTES {
                    nodes.push(std::mem::replace(&mut node, Listpack::new()).finish());
                }
                node.push(element);
            }
            if !node.is_empty() {
                nodes.push(node.finish());
            }
            put_len(&mut out, nodes.len() as u64);
            for node in nodes {
                put_len(&mut out, CONTAINER_PACKED);
                put_string(&mut out, &node);
            }
        }
        Value::Hash(hash) => {
            if encoding(value, &limits) == "listpack" {
                out.push(TYPE_HASH_LISTPACK);
                let mut lp = Listpack::new();
                for (f, v) in hash.iter() {
                    lp.push(f);
                    lp.push(v);
                }
                put_string(&mut out, &lp.finish());
            } else {
                out.push(TYPE_HASH);
                put_len(&mut out, hash.len() as u64);
                for (f, v) in hash.iter() {
                    put_string(&mut out, f);
                    put_string(&mut out, v);
                }
            }
        }
        Value::Set(set) => {
            if encoding(value, &limits) == "intset" {
                out.push(TYPE_SET_INTSET);
                let mut ints: Vec<i64> = set
                    .keys()
                    .map(|m| canonical_int(m).expect("an intset holds integers"))
                    .collect();
                ints.sort_unstable();
                let width: usize = if ints.iter().all(|&n| i16::try_from(n).is_ok()) {
                    2
                } else if ints.iter().all(|&n| i32::try_from(n).is_ok()) {
                    4
                } else {
                    8
                };
                let mut blob = Vec::with_capacity(8 + width * ints.len());
                blob.extend_from_slice(&(width as u32).to_le_bytes());
                blob.extend_from_slice(&(ints.len() as u32).to_le_bytes());
                for n in ints {
                    blob.extend_from_slice(&n.to_le_bytes()[..width]);
                }
                put_string(&mut out, &blob);
            } else {
                out.push(TYPE_SET);
                put_len(&mut out, set.len() as u64);
                for member in set.keys() {
                    put_string(&mut out, member);
                }
            }
        }
        Value::ZSet(zset) => {
            if encoding(value, &limits) == "listpack" {
                out.push(TYPE_ZSET_LISTPACK);
                let mut lp = Listpack::new();
                for (member, score) in zset.iter() {
                    lp.push(member);
                    lp.push(score_text(score).as_bytes());
                }
                put_string(&mut out, &lp.finish());
            } else {
                out.push(TYPE_ZSET_2);
                put_len(&mut out, zset.len() as u64);
                // Highest first, as Redis writes a skiplist (its loader
                // then inserts each at the head).
                for (member, score) in zset.iter().rev() {
                    put_string(&mut out, member);
                    out.extend_from_slice(&score.to_le_bytes());
                }
            }
        }
        Value::Stream(_) => return Err(CannotDump("stream")),
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A score as a listpack holds it: integers as such, others in the
/// shortest text that reads back the same.
fn score_text(score: f64) -> String {
    if score.is_infinite() {
        return if score > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if score.fract() == 0.0 && score.abs() < 1e17 && !(score == 0.0 && score.is_sign_negative()) {
        return format!("{}", score as i64);
    }
    let plain = format!("{score}");
    if plain.len() <= 24 {
        plain
    } else {
        format!("{score:e}")
    }
}

/// The integer `s` spells canonically (Redis's `string2ll` round trip).
fn canonical_int(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let n: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (n.to_string().as_bytes() == s).then_some(n)
}

/// Redis's `rdbSaveLen`.
fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 64 {
        out.push(n as u8);
    } else if n < 16384 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Redis's `rdbSaveRawString` without compression: a canonical integer
/// of 32 bits as such, anything else as its bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.len() <= 11 {
        if let Some(n) = canonical_int(s) {
            if let Ok(n) = i8::try_from(n) {
                out.extend_from_slice(&[0xc0 | ENC_INT8, n as u8]);
                return;
            }
            if let Ok(n) = i16::try_from(n) {
                out.push(0xc0 | ENC_INT16);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
            if let Ok(n) = i32::try_from(n) {
                out.push(0xc0 | ENC_INT32);
                out.extend_from_slice(&n.to_le_bytes());
                return;
            }
        }
    }
    put_len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A listpack being written: entries as Redis's `lpAppend` encodes them.
struct Listpack {
    buf: Vec<u8>,
    count: usize,
}

impl Listpack {
    fn new() -> Self {
        Listpack {
            buf: vec![0; 6],
            count: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    fn push(&mut self, item: &[u8]) {
        let start = self.buf.len();
        match canonical_int(item) {
            Some(n) if (0..=127).contains(&n) => self.buf.push(n as u8),
            Some(n) if (-4096..=4095).contains(&n) => {
                let u = (n as u64) & 0x1fff;
                self.buf.push(0xc0 | (u >> 8) as u8);
                self.buf.push(u as u8);
            }
            Some(n) if i16::try_from(n).is_ok() => {
                self.buf.push(0xf1);
                self.buf.extend_from_slice(&(n as i16).to_le_bytes());
            }
            Some(n) if (-(1 << 23)..(1 << 23)).contains(&n) => {
                self.buf.push(0xf2);
                self.buf.extend_from_slice(&(n as i32).to_le_bytes()[..3]);
            }
            Some(n) if i32::try_from(n).is_ok() => {
                self.buf.push(0xf3);
                self.buf.extend_from_slice(&(n as i32).to_le_bytes());
            }
            Some(n) => {
                self.buf.push(0xf4);
                self.buf.extend_from_slice(&n.to_le_bytes());
            }
            None if item.len() < 64 => {
                self.buf.push(0x80 | item.len() as u8);
                self.buf.extend_from_slice(item);
            }
            None if item.len() < 4096 => {
                self.buf.push(0xe0 | (item.len() >> 8) as u8);
                self.buf.push(item.len() as u8);
                self.buf.extend_from_slice(item);
            }
            None => {
                self.buf.push(0xf0);
                self.buf
                    .extend_from_slice(&(item.len() as u32).to_le_bytes());
                self.buf.extend_from_slice(item);
            }
        }
        let size = self.buf.len() - start;
        self.buf.extend_from_slice(&backlen_bytes(size));
        self.count += 1;
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.push(0xff);
        let total = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&total.to_le_bytes());
        let count = u16::try_from(self.count).unwrap_or(u16::MAX);
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests;
