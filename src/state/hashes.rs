//! Hashes (stub: filled in by the hashes family).
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::{OpResult, Outcome, StateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HashOp {
    HSet {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HashQuery {
    HGet { key: Bytes, field: Bytes },
}

pub fn apply(db: &mut Db, now: u64, op: &HashOp) -> OpResult {
    match op {
        HashOp::HSet { key, pairs } => {
            let mut map = match db.get(key, now).map(|e| &e.value) {
                None => super::db::ScanMap::new(),
                Some(Value::Hash(h)) => h.clone(),
                Some(_) => return Err(StateError::WrongType),
            };
            let added = pairs
                .iter()
                .filter(|(f, v)| map.insert(f.clone(), v.clone()).is_none())
                .count();
            db.insert_keep_ttl(key.clone(), Value::Hash(map), now);
            Ok(Outcome::Int(added as i64))
        }
    }
}

pub fn read(db: &Db, now: u64, query: &HashQuery) -> OpResult {
    match query {
        HashQuery::HGet { key, field } => match db.get(key, now).map(|e| &e.value) {
            None => Ok(Outcome::Nil),
            Some(Value::Hash(h)) => Ok(Outcome::bulk_or_nil(h.get(field).cloned())),
            Some(_) => Err(StateError::WrongType),
        },
    }
}
