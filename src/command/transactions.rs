//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! The connection queues commands between MULTI and EXEC and the server
//! sends them as one log entry (see `state::transactions`); this file only
//! declares them.

use super::{CommandSpec, Flag, KeyPositions};

const TX: &[Flag] = &[
    Flag::NoScript,
    Flag::Loading,
    Flag::Stale,
    Flag::Fast,
    Flag::AllowBusy,
];

macro_rules! local {
    ($($row:tt)*) => { local_spec!(Transactions, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    local!("multi", 1, TX, "1.2.0", "",
        "Starts a transaction: the commands that follow are queued until EXEC."),
    local!("exec", 1, &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::AllowBusy], "1.2.0", "",
        "Runs the queued commands as one log entry, unless a watched key changed; then answers nil."),
    local!("discard", 1, TX, "2.0.0", "",
        "Drops the queued commands and forgets the watched keys."),
    command_spec!(Transactions, "watch", -2, TX, KeyPositions::ALL, "2.2.0", "key [key ...]",
        "Watches keys: EXEC aborts if any of them changes, through any node, before it applies.",
        super::Exec::Local),
    local!("unwatch", 1, TX, "2.2.0", "",
        "Forgets the watched keys."),
];
