//! `cmsgpack`: MessagePack for scripts, with the four functions Redis's
//! bundled lua-cmsgpack offers (`pack`, `unpack`, `unpack_one`,
//! `unpack_limit`). Libraries lean on it: BullMQ, for one, packs a job's
//! options on the client and unpacks them in its scripts.
//!
//! The encoding makes the choices lua-cmsgpack makes, so a script that
//! builds bytes gets the bytes it would get from Redis:
//! - an integral number takes the smallest integer form that holds it;
//! - any other number is a float32 when that is exact, else a float64;
//! - a string is a fixstr below 32 bytes, else str8/16/32;
//! - a table whose keys are exactly 1..n (an empty one too) is an array;
//!   any other table is a map, in `next` order;
//! - a table nested 16 deep is packed as nil, which is how a table that
//!   refers to itself ends;
//! - functions and other values MessagePack has no form for are packed as
//!   nil.
//!
//! Decoding accepts what that encoder writes, plus every integer form and
//! fixmap/fixarray; bin and ext types are refused, as lua-cmsgpack
//! refuses them. Unlike lua-cmsgpack, decoding refuses data nested deeper
//! than [`MAX_DECODE_DEPTH`]: each level is a native call, and a script
//! could otherwise build a string deep enough to exhaust the thread's
//! stack.

use mlua::{Lua, MultiValue, Table, Value};

/// Tables nested this deep are packed as nil.
const MAX_PACK_NESTING: usize = 16;

/// Deepest nesting `unpack` accepts.
pub(super) const MAX_DECODE_DEPTH: usize = 1000;

/// How many values one `unpack` may return. Lua 5.1 lets a C function
/// return about 8,000 (LUAI_MAXCSTACK), but each string or table held
/// from Rust until it is returned is a reference in mlua's auxiliary
/// stack, which holds about as many for everything at once.
const MAX_RESULTS: usize = 4000;

pub(super) fn table(lua: &Lua) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.set(
        "pack",
        lua.create_function(|lua, values: MultiValue| {
            if values.is_empty() {
                return Err(mlua::Error::runtime(
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for value in values.iter() {
                encode(value, &mut out, 0)?;
            }
            lua.create_string(out)
        })?,
    )?;
    cmsgpack.set(
        "unpack",
        lua.create_function(|lua, data: mlua::String| unpack(lua, &data.as_bytes(), 0, 0))?,
    )?;
    cmsgpack.set(
        "unpack_one",
        lua.create_function(|lua, (data, offset): (mlua::String, Option<i64>)| {
            unpack(lua, &data.as_bytes(), 1, offset.unwrap_or(0))
        })?,
    )?;
    cmsgpack.set(
        "unpack_limit",
        lua.create_function(
            |lua, (data, limit, offset): (mlua::String, i64, Option<i64>)| {
                unpack(lua, &data.as_bytes(), limit, offset.unwrap_or(0))
            },
        )?,
    )?;
    Ok(cmsgpack)
}

fn encode(value: &Value, out: &mut Vec<u8>, level: usize) -> mlua::Result<()> {
    match value {
        Value::Boolean(true) => out.push(0xc3),
        Value::Boolean(false) => out.push(0xc2),
        Value::Integer(i) => encode_int(*i, out),
        Value::Number(n) => match as_int64(*n) {
            Some(i) => encode_int(i, out),
            None => encode_float(*n, out),
        },
        Value::String(s) => encode_str(&s.as_bytes(), out),
        Value::Table(t) if level < MAX_PACK_NESTING => encode_table(t, out, level)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

/// `n` as an int64 when it is one exactly (and finite, and in range).
fn as_int64(n: f64) -> Option<i64> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    (n.is_finite() && n.fract() == 0.0 && (-TWO_63..TWO_63).contains(&n)).then_some(n as i64)
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        match n {
            0..=0x7f => out.push(n as u8),
            0x80..=0xff => out.extend_from_slice(&[0xcc, n as u8]),
            0x100..=0xffff => {
                out.push(0xcd);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(0xce);
                out.extend_from_slice(&(n as u32).to_be_bytes());
            }
            _ => {
                out.push(0xcf);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_float(n: f64, out: &mut Vec<u8>) {
    let narrow = n as f32;
    if f64::from(narrow) == n {
        out.push(0xca);
        out.extend_from_slice(&narrow.to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// Walks the table without keeping its entries: every value held from
/// Rust is a reference in mlua's auxiliary stack, which holds about 8,000,
/// and a table may have many more entries than that.
fn encode_table(table: &Table, out: &mut Vec<u8>, level: usize) -> mlua::Result<()> {
    let (len, array) = shape(table)?;
    if array {
        encode_header(len, 0x90, [0xdc, 0xdd], out);
        for i in 1..=len {
            encode(&table.raw_get::<Value>(i)?, out, level + 1)?;
        }
    } else {
        encode_header(len, 0x80, [0xde, 0xdf], out);
        for pair in table.pairs::<Value, Value>() {
            let (key, value) = pair?;
            encode(&key, out, level + 1)?;
            encode(&value, out, level + 1)?;
        }
    }
    Ok(())
}

/// How many entries the table has, and whether its keys are exactly 1..n:
/// all positive integers, as many as the largest (keys are distinct). No
/// keys at all counts as an array.
fn shape(table: &Table) -> mlua::Result<(usize, bool)> {
    let mut len = 0usize;
    let mut max = 0.0f64;
    let mut array = true;
    for pair in table.pairs::<Value, Value>() {
        let (key, _) = pair?;
        len += 1;
        let n = match key {
            Value::Integer(i) => i as f64,
            Value::Number(n) => n,
            _ => f64::NAN,
        };
        if n > 0.0 && n.fract() == 0.0 {
            max = max.max(n);
        } else {
            array = false;
        }
    }
    Ok((len, array && max == len as f64))
}

/// An array or map header: the fix form below 16 entries, else 16 or 32
/// bits.
fn encode_header(len: usize, fix: u8, [wide16, wide32]: [u8; 2], out: &mut Vec<u8>) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(wide16);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(wide32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// lua-cmsgpack's `unpack_full`: `limit` values from `offset` (both 0:
/// every value, without the offset in front); otherwise the offset after
/// the last value decoded (-1 at the end of the data) and the values.
fn unpack(lua: &Lua, data: &[u8], limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    if offset < 0 || limit < 0 {
        return Err(mlua::Error::runtime(format!(
            "Invalid request to unpack with offset of {offset} and limit of {}.",
            data.len()
        )));
    }
    if offset as u64 > data.len() as u64 {
        return Err(mlua::Error::runtime(format!(
            "Start offset {offset} greater than input length {}.",
            data.len()
        )));
    }
    let all = limit == 0 && offset == 0;
    let limit = if all { usize::MAX } else { limit as usize };
    let mut cursor = Cursor {
        data,
        at: offset as usize,
    };
    let mut values = Vec::new();
    while cursor.at < data.len() && values.len() < limit {
        if values.len() >= MAX_RESULTS {
            return Err(mlua::Error::runtime(
                "too many return values at once; use unpack_one or unpack_limit instead.",
            ));
        }
        values.push(decode(lua, &mut cursor, 0)?);
    }
    if !all {
        let next = if cursor.at == data.len() {
            -1
        } else {
            cursor.at as i64
        };
        values.insert(0, Value::Integer(next));
    }
    Ok(MultiValue::from_iter(values))
}

struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> mlua::Result<&'a [u8]> {
        if self.data.len() - self.at < n {
            return Err(mlua::Error::runtime("Missing bytes in input."));
        }
        let bytes = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    fn byte(&mut self) -> mlua::Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> mlua::Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    /// A length of `N` bytes, big-endian.
    fn len<const N: usize>(&mut self) -> mlua::Result<usize> {
        Ok(self
            .array::<N>()?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
    }

    fn left(&self) -> usize {
        self.data.len() - self.at
    }
}

fn decode(lua: &Lua, c: &mut Cursor<'_>, depth: usize) -> mlua::Result<Value> {
    let number = |n: f64| Ok(Value::Number(n));
    let tag = c.byte()?;
    match tag {
        0x00..=0x7f => number(f64::from(tag)),
        0xe0..=0xff => number(f64::from(tag as i8)),
        0xa0..=0xbf => string(lua, c, usize::from(tag & 0x1f)),
        0x90..=0x9f => array(lua, c, usize::from(tag & 0x0f), depth),
        0x80..=0x8f => map(lua, c, usize::from(tag & 0x0f), depth),
        0xc0 => Ok(Value::Nil),
        0xc2 => Ok(Value::Boolean(false)),
        0xc3 => Ok(Value::Boolean(true)),
        0xca => number(f64::from(f32::from_be_bytes(c.array()?))),
        0xcb => number(f64::from_be_bytes(c.array()?)),
        0xcc => number(f64::from(c.byte()?)),
        0xcd => number(f64::from(u16::from_be_bytes(c.array()?))),
        0xce => number(f64::from(u32::from_be_bytes(c.array()?))),
        0xcf => number(u64::from_be_bytes(c.array()?) as f64),
        0xd0 => number(f64::from(c.byte()? as i8)),
        0xd1 => number(f64::from(i16::from_be_bytes(c.array()?))),
        0xd2 => number(f64::from(i32::from_be_bytes(c.array()?))),
        0xd3 => number(i64::from_be_bytes(c.array()?) as f64),
        0xd9 => {
            let len = c.len::<1>()?;
            string(lua, c, len)
        }
        0xda => {
            let len = c.len::<2>()?;
            string(lua, c, len)
        }
        0xdb => {
            let len = c.len::<4>()?;
            string(lua, c, len)
        }
        0xdc => {
            let len = c.len::<2>()?;
            array(lua, c, len, depth)
        }
        0xdd => {
            let len = c.len::<4>()?;
            array(lua, c, len, depth)
        }
        0xde => {
            let len = c.len::<2>()?;
            map(lua, c, len, depth)
        }
        0xdf => {
            let len = c.len::<4>()?;
            map(lua, c, len, depth)
        }
        _ => Err(mlua::Error::runtime("Bad data format in input.")),
    }
}

fn string(lua: &Lua, c: &mut Cursor<'_>, len: usize) -> mlua::Result<Value> {
    Ok(Value::String(lua.create_string(c.take(len)?)?))
}

/// A new table for `len` entries of at least `per_entry` bytes each: a
/// declared length the data cannot hold is missing bytes, found before
/// anything is allocated for it.
fn new_table(
    lua: &Lua,
    c: &Cursor<'_>,
    len: usize,
    per_entry: usize,
    depth: usize,
) -> mlua::Result<Table> {
    if depth >= MAX_DECODE_DEPTH {
        return Err(mlua::Error::runtime(format!(
            "MessagePack data nested deeper than {MAX_DECODE_DEPTH} levels."
        )));
    }
    if len.saturating_mul(per_entry) > c.left() {
        return Err(mlua::Error::runtime("Missing bytes in input."));
    }
    lua.create_table_with_capacity(
        if per_entry == 1 { len } else { 0 },
        if per_entry == 2 { len } else { 0 },
    )
}

fn array(lua: &Lua, c: &mut Cursor<'_>, len: usize, depth: usize) -> mlua::Result<Value> {
    let table = new_table(lua, c, len, 1, depth)?;
    for i in 1..=len {
        let value = decode(lua, c, depth + 1)?;
        table.raw_set(i, value)?;
    }
    Ok(Value::Table(table))
}

fn map(lua: &Lua, c: &mut Cursor<'_>, len: usize, depth: usize) -> mlua::Result<Value> {
    let table = new_table(lua, c, len, 2, depth)?;
    for _ in 0..len {
        let key = decode(lua, c, depth + 1)?;
        let value = decode(lua, c, depth + 1)?;
        table.raw_set(key, value)?;
    }
    Ok(Value::Table(table))
}
