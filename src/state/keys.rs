//! Keys and expiry (stub: filled in by the keys family).
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::Db;
use super::{OpResult, Outcome};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyOp {
    Del { keys: Vec<Bytes> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyQuery {
    Exists { keys: Vec<Bytes> },
}

pub fn apply(db: &mut Db, now: u64, op: &KeyOp) -> OpResult {
    match op {
        KeyOp::Del { keys } => Ok(Outcome::Int(
            keys.iter()
                .filter(|k| {
                    db.purge_if_expired(k, now);
                    db.remove(k).is_some()
                })
                .count() as i64,
        )),
    }
}

pub fn read(db: &Db, now: u64, query: &KeyQuery) -> OpResult {
    match query {
        KeyQuery::Exists { keys } => Ok(Outcome::Int(
            keys.iter().filter(|k| db.get(k, now).is_some()).count() as i64,
        )),
    }
}
