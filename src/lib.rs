//! concord: a Raft-replicated coordination server that speaks the Redis protocol.
//!
//! The layers and the one direction of dependency (see `DESIGN.md` in the shared
//! design folder and `docs/architecture.md`):
//!
//! ```text
//! server ──► command ──► state          (deterministic, no IO)
//!    │          │
//!    └──► raft (node driver) ──► storage (WAL, snapshots)
//!                 └──► transport (peer links)
//! resp: framing only, used by server.   error, config, tls: leaves.
//! ```

/// The Redis version concord reports (INFO's `redis_version`, Lua's
/// `redis.REDIS_VERSION`): client libraries gate features on it.
pub const REDIS_VERSION: &str = "7.2.4";

pub mod alloc;
pub mod command;
pub mod config;
pub mod ctl;
pub mod dev;
pub mod metrics;
pub mod raft;
pub mod resp;
pub mod script;
pub mod server;
pub mod state;
pub mod storage;
pub mod tls;
pub mod transport;
