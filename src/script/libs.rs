//! The libraries scripts get beside Lua's own: `redis.*` helpers, a
//! deterministic `math.random`, `cjson`, `cmsgpack` (in `msgpack`) and
//! `bit` (LuaBitOp).

use std::fmt::Write as _;

use mlua::{Lua, MultiValue, Table, Value, Variadic};

use crate::state::scripts::sha1hex;

/// Per-run settings the libraries read.
struct RunState {
    /// `math.random`'s state (splitmix64), seeded by the op.
    rng: u64,
    /// `redis.setresp(3)` was called.
    resp3: bool,
    /// The error text redis.call raised last, for the error handler.
    raised: Option<String>,
}

/// cjson's settings; like Redis, they last across runs of one VM.
struct JsonConfig {
    encode_max_depth: usize,
    decode_max_depth: usize,
    encode_invalid_numbers: bool,
}

pub(super) fn begin_run(lua: &Lua, seed: u64) {
    lua.set_app_data(RunState {
        rng: seed,
        resp3: false,
        raised: None,
    });
}

pub(super) fn set_raised(lua: &Lua, text: String) {
    if let Some(mut run) = lua.app_data_mut::<RunState>() {
        run.raised = Some(text);
    }
}

pub(super) fn take_raised(lua: &Lua) -> Option<String> {
    lua.app_data_mut::<RunState>()
        .and_then(|mut run| run.raised.take())
}

pub(super) fn resp3(lua: &Lua) -> bool {
    lua.app_data_ref::<RunState>().is_some_and(|r| r.resp3)
}

fn next_random(lua: &Lua) -> f64 {
    let Some(mut run) = lua.app_data_mut::<RunState>() else {
        return 0.0;
    };
    run.rng = run.rng.wrapping_add(1);
    let r = super::call::mix(run.rng, 0);
    (r >> 11) as f64 / (1u64 << 53) as f64
}

fn err_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    super::convert::error_table(lua, text)
}

pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_app_data(JsonConfig {
        encode_max_depth: 1000,
        decode_max_depth: 1000,
        encode_invalid_numbers: false,
    });
    let globals = lua.globals();
    globals.set("redis", redis_table(lua)?)?;
    let math: Table = globals.get("math")?;
    math.set(
        "random",
        lua.create_function(|lua, args: Variadic<f64>| {
            let r = next_random(lua);
            match args.as_slice() {
                [] => Ok(r),
                [m] if *m >= 1.0 => Ok((r * m.floor()).floor() + 1.0),
                [m, n] if m <= n => Ok((r * (n.floor() - m.floor() + 1.0)).floor() + m.floor()),
                [_] | [_, _] => Err(mlua::Error::runtime(
                    "bad argument #1 to 'random' (interval is empty)",
                )),
                _ => Err(mlua::Error::runtime("wrong number of arguments")),
            }
        })?,
    )?;
    math.set(
        "randomseed",
        lua.create_function(|lua, seed: f64| {
            if let Some(mut run) = lua.app_data_mut::<RunState>() {
                run.rng = seed as i64 as u64;
            }
            Ok(())
        })?,
    )?;
    globals.set("cjson", cjson_table(lua)?)?;
    globals.set("cmsgpack", super::msgpack::table(lua)?)?;
    globals.set("bit", bit_table(lua)?)?;
    Ok(())
}

fn redis_table(lua: &Lua) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    for (name, level) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.set(name, level)?;
    }
    // REDIS_VERSION_NUM is 0x00MMmmpp, as Redis's.
    let version: Vec<i64> = crate::REDIS_VERSION
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    let number = version.iter().take(3).fold(0, |n, part| (n << 8) | part);
    redis.set("REDIS_VERSION", crate::REDIS_VERSION)?;
    redis.set("REDIS_VERSION_NUM", number)?;
    for (name, flag) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.set(name, flag)?;
    }
    redis.set(
        "sha1hex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let [Value::String(s)] = args.as_slice() else {
                let number = match args.as_slice() {
                    [Value::Number(n)] => Some(super::call::format_g17(*n)),
                    [Value::Integer(i)] => Some(i.to_string()),
                    _ => None,
                };
                return match number {
                    Some(n) => Ok(sha1hex(n.as_bytes())),
                    None => Err(mlua::Error::runtime("wrong number of arguments")),
                };
            };
            let _ = lua;
            Ok(sha1hex(&s.as_bytes()))
        })?,
    )?;
    let single = |field: &'static str, error: bool| {
        lua.create_function(move |lua, args: Variadic<Value>| {
            let [Value::String(s)] = args.as_slice() else {
                return err_table(lua, "ERR wrong number or type of arguments");
            };
            let table = lua.create_table()?;
            if error {
                let text = s.to_string_lossy();
                let text = text.strip_prefix('-').unwrap_or(&text);
                let full = match text.split_once(' ') {
                    Some((code, msg)) => format!("{code} {}", msg.trim_end_matches(['\r', '\n'])),
                    None => format!("ERR {text}"),
                };
                table.raw_set(field, full)?;
            } else {
                table.raw_set(field, s.clone())?;
            }
            Ok(Value::Table(table))
        })
    };
    redis.set("error_reply", single("err", true)?)?;
    redis.set("status_reply", single("ok", false)?)?;
    redis.set(
        "log",
        lua.create_function(|_, args: MultiValue| {
            let mut args = args.into_iter();
            let (Some(level), Some(first)) = (args.next(), args.next()) else {
                return Err(mlua::Error::runtime(
                    "redis.log() requires two arguments or more.",
                ));
            };
            let level = match level {
                Value::Integer(i) => i,
                Value::Number(n) => n as i64,
                _ => {
                    return Err(mlua::Error::runtime(
                        "First argument must be a number (log level).",
                    ))
                }
            };
            let mut line = String::new();
            for value in std::iter::once(first).chain(args) {
                if !line.is_empty() {
                    line.push(' ');
                }
                match value {
                    Value::String(s) => line.push_str(&s.to_string_lossy()),
                    Value::Integer(i) => line.push_str(&i.to_string()),
                    Value::Number(n) => line.push_str(&n.to_string()),
                    _ => {}
                }
            }
            match level {
                0 | 1 => tracing::debug!(target: "concord::script", "{line}"),
                2 => tracing::info!(target: "concord::script", "{line}"),
                3 => tracing::warn!(target: "concord::script", "{line}"),
                _ => return Err(mlua::Error::runtime("Invalid debug level.")),
            }
            Ok(())
        })?,
    )?;
    redis.set(
        "setresp",
        lua.create_function(|lua, args: Variadic<Value>| {
            let version = match args.as_slice() {
                [Value::Integer(i)] => *i,
                [Value::Number(n)] => *n as i64,
                [_] => 0,
                _ => {
                    return Err(mlua::Error::runtime(
                        "redis.setresp() requires one argument.",
                    ))
                }
            };
            if version != 2 && version != 3 {
                return Err(mlua::Error::runtime("RESP version must be 2 or 3."));
            }
            if let Some(mut run) = lua.app_data_mut::<RunState>() {
                run.resp3 = version == 3;
            }
            Ok(())
        })?,
    )?;
    // Effects replication is the only mode since Redis 7: these remain for
    // scripts written for older versions.
    redis.set("set_repl", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    redis.set(
        "replicate_commands",
        lua.create_function(|_, _: MultiValue| Ok(true))?,
    )?;
    redis.set(
        "breakpoint",
        lua.create_function(|_, _: MultiValue| Ok(false))?,
    )?;
    redis.set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    Ok(redis)
}

fn cjson_table(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.set("null", Value::NULL)?;
    cjson.set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let (depth, invalid) = lua.app_data_ref::<JsonConfig>().map_or((1000, false), |c| {
                (c.encode_max_depth, c.encode_invalid_numbers)
            });
            let mut out = String::new();
            encode_json(&value, &mut out, 0, depth, invalid).map_err(mlua::Error::runtime)?;
            lua.create_string(out)
        })?,
    )?;
    cjson.set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let depth = lua
                .app_data_ref::<JsonConfig>()
                .map_or(1000, |c| c.decode_max_depth);
            let parsed: serde_json::Value =
                serde_json::from_slice(&text.as_bytes()).map_err(|e| {
                    mlua::Error::runtime(format!("Expected value but found invalid token: {e}"))
                })?;
            decode_json(lua, &parsed, 1, depth)
        })?,
    )?;
    cjson.set(
        "encode_max_depth",
        lua.create_function(|lua, n: Option<usize>| {
            let mut c = lua
                .app_data_mut::<JsonConfig>()
                .ok_or_else(|| mlua::Error::runtime("no config"))?;
            if let Some(n) = n {
                c.encode_max_depth = n;
            }
            Ok(c.encode_max_depth)
        })?,
    )?;
    cjson.set(
        "decode_max_depth",
        lua.create_function(|lua, n: Option<usize>| {
            let mut c = lua
                .app_data_mut::<JsonConfig>()
                .ok_or_else(|| mlua::Error::runtime("no config"))?;
            if let Some(n) = n {
                c.decode_max_depth = n;
            }
            Ok(c.decode_max_depth)
        })?,
    )?;
    cjson.set(
        "encode_invalid_numbers",
        lua.create_function(|lua, on: Option<Value>| {
            let mut c = lua
                .app_data_mut::<JsonConfig>()
                .ok_or_else(|| mlua::Error::runtime("no config"))?;
            if let Some(on) = on {
                c.encode_invalid_numbers = !matches!(on, Value::Boolean(false) | Value::Nil)
                    && !matches!(&on, Value::String(s) if s.as_bytes().as_ref() == b"off");
            }
            Ok(c.encode_invalid_numbers)
        })?,
    )?;
    for name in [
        "encode_keep_buffer",
        "encode_number_precision",
        "encode_sparse_array",
        "decode_invalid_numbers",
    ] {
        cjson.set(name, lua.create_function(|_, args: MultiValue| Ok(args))?)?;
    }
    Ok(cjson)
}

fn json_string(s: &[u8], out: &mut String) {
    out.push('"');
    for ch in String::from_utf8_lossy(s).chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_number(n: f64, out: &mut String, invalid: bool) -> Result<(), String> {
    if !n.is_finite() {
        if !invalid {
            return Err("Cannot serialise number: must not be NaN or Infinity".into());
        }
        out.push_str(if n.is_nan() {
            "nan"
        } else if n > 0.0 {
            "inf"
        } else {
            "-inf"
        });
        return Ok(());
    }
    if n.fract() == 0.0 && n.abs() < 1e15 {
        let _ = write!(out, "{}", n as i64);
    } else {
        let _ = write!(out, "{n}");
    }
    Ok(())
}

fn encode_json(
    value: &Value,
    out: &mut String,
    depth: usize,
    max: usize,
    invalid: bool,
) -> Result<(), String> {
    match value {
        Value::Nil => out.push_str("null"),
        Value::LightUserData(p) if p.0.is_null() => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Number(n) => json_number(*n, out, invalid)?,
        Value::String(s) => json_string(&s.as_bytes(), out),
        Value::Table(table) => {
            if depth + 1 > max {
                return Err(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                ));
            }
            // Two walks, keeping no entries: each value held from Rust is
            // a reference in mlua's auxiliary stack (about 8,000 in all).
            let mut count = 0usize;
            let mut max_index = 0usize;
            let mut is_array = true;
            for pair in table.pairs::<Value, Value>() {
                let (key, _) = pair.map_err(|e| e.to_string())?;
                count += 1;
                match key {
                    Value::Integer(i) if i >= 1 => max_index = max_index.max(i as usize),
                    Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => {
                        max_index = max_index.max(n as usize)
                    }
                    _ => is_array = false,
                }
            }
            if is_array && count > 0 {
                if max_index > count * 2 && max_index > 10 {
                    return Err("Cannot serialise table: excessively sparse array".into());
                }
                out.push('[');
                for i in 1..=max_index {
                    if i > 1 {
                        out.push(',');
                    }
                    let v: Value = table.raw_get(i).map_err(|e| e.to_string())?;
                    encode_json(&v, out, depth + 1, max, invalid)?;
                }
                out.push(']');
            } else {
                out.push('{');
                for (i, pair) in table.pairs::<Value, Value>().enumerate() {
                    let (k, v) = pair.map_err(|e| e.to_string())?;
                    if i > 0 {
                        out.push(',');
                    }
                    match k {
                        Value::String(s) => json_string(&s.as_bytes(), out),
                        Value::Integer(_) | Value::Number(_) => {
                            let mut key = String::new();
                            encode_json(&k, &mut key, depth, max, invalid)?;
                            json_string(key.as_bytes(), out);
                        }
                        _ => {
                            return Err(
                                "Cannot serialise table: table key must be a number or string"
                                    .into(),
                            )
                        }
                    }
                    out.push(':');
                    encode_json(&v, out, depth + 1, max, invalid)?;
                }
                out.push('}');
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ))
        }
    }
    Ok(())
}

fn decode_json(
    lua: &Lua,
    value: &serde_json::Value,
    depth: usize,
    max: usize,
) -> mlua::Result<Value> {
    use serde_json::Value as J;
    let nested = |depth: usize| {
        if depth > max {
            Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({depth})"
            )))
        } else {
            Ok(())
        }
    };
    Ok(match value {
        J::Null => Value::NULL,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => Value::Number(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            nested(depth)?;
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, decode_json(lua, item, depth + 1, max)?)?;
            }
            Value::Table(table)
        }
        J::Object(map) => {
            nested(depth)?;
            let table = lua.create_table()?;
            for (k, v) in map {
                table.raw_set(k.as_str(), decode_json(lua, v, depth + 1, max)?)?;
            }
            Value::Table(table)
        }
    })
}

/// LuaBitOp's normalisation: the number modulo 2^32 as a signed 32-bit int.
fn tobit(n: f64) -> i32 {
    (n.rem_euclid(4294967296.0).round() as u64 as u32) as i32
}

fn bit_table(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    bit.set("tobit", lua.create_function(|_, n: f64| Ok(tobit(n)))?)?;
    bit.set("bnot", lua.create_function(|_, n: f64| Ok(!tobit(n)))?)?;
    let fold = |op: fn(i32, i32) -> i32| {
        lua.create_function(move |_, args: Variadic<f64>| {
            let mut it = args.iter();
            let first = it.next().ok_or_else(|| {
                mlua::Error::runtime("bad argument #1 (number expected, got no value)")
            })?;
            Ok(it.fold(tobit(*first), |acc, n| op(acc, tobit(*n))))
        })
    };
    bit.set("band", fold(|a, b| a & b)?)?;
    bit.set("bor", fold(|a, b| a | b)?)?;
    bit.set("bxor", fold(|a, b| a ^ b)?)?;
    let shift = |op: fn(i32, u32) -> i32| {
        lua.create_function(move |_, (n, by): (f64, f64)| Ok(op(tobit(n), tobit(by) as u32 & 31)))
    };
    bit.set("lshift", shift(|a, s| ((a as u32) << s) as i32)?)?;
    bit.set("rshift", shift(|a, s| ((a as u32) >> s) as i32)?)?;
    bit.set("arshift", shift(|a, s| a >> s)?)?;
    bit.set("rol", shift(|a, s| (a as u32).rotate_left(s) as i32)?)?;
    bit.set("ror", shift(|a, s| (a as u32).rotate_right(s) as i32)?)?;
    bit.set(
        "bswap",
        lua.create_function(|_, n: f64| Ok(tobit(n).swap_bytes()))?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(|_, (n, digits): (f64, Option<f64>)| {
            let digits = digits.map_or(8, |d| d as i64);
            let upper = digits < 0;
            let width = digits.unsigned_abs().clamp(1, 8) as usize;
            let value = tobit(n) as u32 as u64;
            let masked = if width >= 8 {
                value
            } else {
                value & ((1u64 << (width * 4)) - 1)
            };
            Ok(if upper {
                format!("{masked:0width$X}")
            } else {
                format!("{masked:0width$x}")
            })
        })?,
    )?;
    Ok(bit)
}
