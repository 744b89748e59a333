//! Lua <-> Redis conversions, as Redis 7.0 documents and does them.
//!
//! Command replies to Lua (RESP2 mode, the default): integers become
//! numbers, bulk strings strings, arrays tables, status `{ok=...}`, errors
//! `{err=...}`, nil `false`. With `redis.setresp(3)`: nil is `nil`, maps
//! `{map={...}}`, sets `{set={...}}`, doubles `{double=n}`, booleans
//! booleans. A script's return value to the client: numbers truncate to
//! integers, `true` is 1, `false` nil, tables are arrays up to the first
//! nil, `{ok=...}` a status, `{err=...}` an error. Tables are read raw:
//! metatables are never consulted.

use bytes::Bytes;
use mlua::{Lua, Table, Value};

use super::script_error;
use crate::resp::{format_double, Reply};
use crate::state::{OpResult, Outcome, StateError};

/// Nesting beyond this answers Redis's stack-limit error in its place.
const MAX_DEPTH: usize = 200;

pub(super) fn error_table(lua: &Lua, text: &str) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set("err", text)?;
    Ok(Value::Table(table))
}

fn single(lua: &Lua, field: &str, value: impl mlua::IntoLua) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set(field, value)?;
    Ok(Value::Table(table))
}

fn bulk(lua: &Lua, bytes: &[u8]) -> mlua::Result<Value> {
    Ok(Value::String(lua.create_string(bytes)?))
}

fn sequence(lua: &Lua, items: Vec<Reply>, resp3: bool) -> mlua::Result<Value> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.into_iter().enumerate() {
        table.raw_set(i + 1, reply_to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(table))
}

/// A command's reply as the script sees it.
pub(super) fn reply_to_lua(lua: &Lua, reply: Reply, resp3: bool) -> mlua::Result<Value> {
    match reply {
        Reply::Simple(s) => single(lua, "ok", s.as_ref()),
        Reply::Error(e) => error_table(lua, &e),
        Reply::Int(i) => Ok(Value::Number(i as f64)),
        Reply::Bulk(b) => bulk(lua, &b),
        Reply::Nil | Reply::NilArray if resp3 => Ok(Value::Nil),
        Reply::Nil | Reply::NilArray => Ok(Value::Boolean(false)),
        Reply::Array(items) | Reply::Push(items) | Reply::Frames(items) => {
            sequence(lua, items, resp3)
        }
        Reply::Set(items) if resp3 => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp3)?, true)?;
            }
            single(lua, "set", set)
        }
        Reply::Set(items) => sequence(lua, items, resp3),
        Reply::Map(pairs) | Reply::KeyedArrays(pairs) if resp3 => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(reply_to_lua(lua, k, resp3)?, reply_to_lua(lua, v, resp3)?)?;
            }
            single(lua, "map", map)
        }
        Reply::Pairs(pairs) if resp3 => sequence(
            lua,
            pairs
                .into_iter()
                .map(|(k, v)| Reply::Array(vec![k, v]))
                .collect(),
            resp3,
        ),
        Reply::Map(pairs) | Reply::Pairs(pairs) => sequence(
            lua,
            pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            resp3,
        ),
        // XREAD's streams: [key, entries] pairs in RESP2.
        Reply::KeyedArrays(pairs) => sequence(
            lua,
            pairs
                .into_iter()
                .map(|(k, v)| Reply::Array(vec![k, v]))
                .collect(),
            resp3,
        ),
        Reply::Double(d) if resp3 => single(lua, "double", d),
        Reply::Double(d) => bulk(lua, format_double(d).as_bytes()),
        Reply::HumanDouble(d) if resp3 => single(lua, "double", d),
        Reply::HumanDouble(d) => bulk(lua, crate::resp::format_human_double(d).as_bytes()),
        Reply::Bool(b) if resp3 => Ok(Value::Boolean(b)),
        Reply::Bool(b) => Ok(Value::Number(b as i64 as f64)),
        Reply::BigNumber(n) if resp3 => single(lua, "big_number", n),
        Reply::BigNumber(n) => bulk(lua, n.as_bytes()),
        Reply::Verbatim { format, text } if resp3 => {
            let inner = lua.create_table()?;
            inner.raw_set("format", lua.create_string(format)?)?;
            inner.raw_set("string", lua.create_string(&text)?)?;
            single(lua, "verbatim_string", inner)
        }
        Reply::Verbatim { text, .. } => bulk(lua, &text),
    }
}

fn raw_string(table: &Table, field: &str) -> Option<Bytes> {
    match table.raw_get::<Value>(field) {
        Ok(Value::String(s)) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        _ => None,
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace(['\r', '\n'], " ")
}

/// A script's return value as the reply to its caller.
pub(super) fn lua_to_outcome(value: &Value, resp3: bool, depth: usize) -> OpResult {
    Ok(match value {
        Value::String(s) => Outcome::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(true) => Outcome::Int(1),
        Value::Boolean(false) if resp3 => Outcome::Int(0),
        Value::Integer(i) => Outcome::Int(*i),
        Value::Number(n) => Outcome::Int(*n as i64),
        Value::Table(table) => return table_to_outcome(table, resp3, depth),
        _ => Outcome::Nil,
    })
}

fn table_to_outcome(table: &Table, resp3: bool, depth: usize) -> OpResult {
    if depth >= MAX_DEPTH {
        return Err(script_error("ERR reached lua stack limit"));
    }
    if let Some(err) = raw_string(table, "err") {
        return Err(StateError::Script(text(&err)));
    }
    if let Some(ok) = raw_string(table, "ok") {
        return Ok(Outcome::Status(text(&ok)));
    }
    match table.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => return Ok(Outcome::Double(d)),
        Ok(Value::Integer(i)) => return Ok(Outcome::Double(i as f64)),
        _ => {}
    }
    if let Some(big) = raw_string(table, "big_number") {
        return Ok(Outcome::Bulk(big));
    }
    if let Ok(Value::Table(verbatim)) = table.raw_get::<Value>("verbatim_string") {
        if let Some(s) = raw_string(&verbatim, "string") {
            return Ok(Outcome::Bulk(s));
        }
    }
    if let Ok(Value::Table(map)) = table.raw_get::<Value>("map") {
        let mut pairs = Vec::new();
        for pair in map.pairs::<Value, Value>() {
            let (k, v) = pair.map_err(|e| script_error(format!("ERR {e}")))?;
            pairs.push((
                element(lua_to_outcome(&k, resp3, depth + 1)),
                element(lua_to_outcome(&v, resp3, depth + 1)),
            ));
        }
        return Ok(Outcome::Map(pairs));
    }
    if let Ok(Value::Table(set)) = table.raw_get::<Value>("set") {
        let mut members = Vec::new();
        for pair in set.pairs::<Value, Value>() {
            let (k, _) = pair.map_err(|e| script_error(format!("ERR {e}")))?;
            members.push(element(lua_to_outcome(&k, resp3, depth + 1)));
        }
        return Ok(Outcome::Set(members));
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(value) => {
                let item = element(lua_to_outcome(&value, resp3, depth + 1));
                let stop = matches!(&item, Outcome::Error(StateError::Script(e)) if e == "ERR reached lua stack limit");
                items.push(item);
                if stop {
                    break;
                }
            }
        }
    }
    Ok(Outcome::Array(items))
}

/// An element of an array: errors stay in place.
fn element(result: OpResult) -> Outcome {
    result.unwrap_or_else(Outcome::Error)
}

/// The error a failed run answers: the error table's text, with where in
/// the script it happened, as Redis 7.0 words it.
pub(super) fn run_error(value: &Value, sha: &str) -> StateError {
    match value {
        Value::Table(table) => {
            let msg = raw_string(table, "err")
                .map(|m| text(&m))
                .unwrap_or_default();
            let source = raw_string(table, "source");
            let line = match table.raw_get::<Value>("line") {
                Ok(Value::Integer(i)) => Some(i.to_string()),
                Ok(Value::Number(n)) => Some((n as i64).to_string()),
                _ => None,
            };
            match (source, line) {
                (Some(source), Some(line)) => {
                    StateError::Script(format!("{msg} script: {sha}, on {}:{line}.", text(&source)))
                }
                _ => StateError::Script(msg),
            }
        }
        Value::String(s) if s.as_bytes().starts_with(b"not enough memory") => {
            script_error("ERR script killed: it ran past the memory limit for scripts")
        }
        Value::String(s) => script_error(format!(
            "ERR Error running script {sha}, {}",
            text(&s.as_bytes())
        )),
        _ => script_error(format!("ERR Error running script {sha}, execution failure")),
    }
}
