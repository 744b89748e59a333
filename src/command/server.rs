//! Server commands answered by the server itself: INFO, CONFIG, COMMAND,
//! TIME, ROLE. This file declares them; `command::docs` renders the
//! introspection answers `COMMAND` gives from the table.

use super::{standard_reply, CommandSpec, Exec, Flag, Group, KeyPositions};

macro_rules! local {
    ($($row:tt)*) => { local_spec!(Server, $($row)*) };
}

const STALE: &[Flag] = &[Flag::Loading, Flag::Stale];
const ADMIN: &[Flag] = &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale];

pub const SPECS: &[CommandSpec] = &[
    local!(
        "info",
        -1,
        STALE,
        "1.0.0",
        "[section [section ...]]",
        "Returns information and statistics about the server, including a raft section."
    ),
    local!(
        "config",
        -2,
        &[],
        "2.0.0",
        "subcommand [argument ...]",
        "A container for server configuration commands.",
        CONFIG_SUBCOMMANDS
    ),
    local!(
        "command",
        -1,
        STALE,
        "2.8.13",
        "[subcommand [argument ...]]",
        "Returns detailed information about all commands.",
        COMMAND_SUBCOMMANDS
    ),
    local!(
        "wait",
        3,
        &[Flag::NoScript],
        "3.0.0",
        "numreplicas timeout",
        "Answers how many other voting members hold every write this node had applied when it was called, waiting up to timeout milliseconds (0: no limit) for numreplicas of them. An acknowledged write is on a majority already."
    ),
    local!(
        "waitaof",
        4,
        &[Flag::NoScript],
        "7.2.0",
        "numlocal numreplicas timeout",
        "As WAIT, answering [1, replicas]: every write is fsync'd to this node's log before it is acknowledged."
    ),
    local!(
        "monitor",
        1,
        ADMIN,
        "1.0.0",
        "",
        "Streams every command this node's clients send, as Redis prints them (the commands scripts call and admin commands are not shown)."
    ),
    local!(
        "lolwut",
        -1,
        &[Flag::ReadOnly, Flag::Fast],
        "5.0.0",
        "[VERSION version]",
        "Displays the concord version, with a small piece of generative art."
    ),
    local!(
        "time",
        1,
        &[Flag::Loading, Flag::Stale, Flag::Fast],
        "2.6.0",
        "",
        "Returns the server time."
    ),
    local!(
        "role",
        1,
        &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::Fast],
        "2.8.12",
        "",
        "Returns the replication role: master on the Raft leader, slave elsewhere."
    ),
    local!(
        "save",
        1,
        &[Flag::Admin, Flag::NoScript, Flag::NoMulti],
        "1.0.0",
        "",
        "Takes a snapshot of this node's state and compacts its log (RAFT.SNAPSHOT), then answers OK. Every write is already durable in the log: this only shortens a restart's replay."
    ),
    local!(
        "bgsave",
        -1,
        &[Flag::Admin, Flag::NoScript],
        "1.0.0",
        "[SCHEDULE]",
        "Starts a snapshot of this node's state in the background (see SAVE)."
    ),
    local!(
        "shutdown",
        -1,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale, Flag::NoMulti, Flag::AllowBusy],
        "1.0.0",
        "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]",
        "Stops this node cleanly: no new connections, replies in flight finished, the log flushed. SAVE takes a snapshot first. The connection closes without a reply, as in Redis. The rest of the cluster carries on (a leader's departure starts an election)."
    ),
    local!(
        "acl",
        -2,
        &[],
        "6.0.0",
        "subcommand [argument ...]",
        "A container for Access List Control commands. Users are replicated state: one ACL for the whole cluster.",
        ACL_SUBCOMMANDS
    ),
    local!(
        "slowlog",
        -2,
        &[],
        "2.2.12",
        "subcommand [argument ...]",
        "A container for slow log commands. A command's time includes its raft round (see docs/operations.md).",
        SLOWLOG_SUBCOMMANDS
    ),
    local!(
        "latency",
        -2,
        &[],
        "2.8.13",
        "subcommand [argument ...]",
        "A container for latency diagnostics commands.",
        LATENCY_SUBCOMMANDS
    ),
    CommandSpec {
        name: "debug",
        arity: -2,
        flags: &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        keys: KeyPositions::NONE,
        group: Group::Server,
        summary: "A container for debugging commands.",
        syntax: "subcommand [argument ...]",
        since: "1.0.0",
        exec: Exec::Local,
        subcommands: DEBUG_SUBCOMMANDS,
    },
];

const DEBUG_SUBCOMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "debug|digest",
    arity: 2,
    flags: &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
    keys: KeyPositions::NONE,
    group: Group::Server,
    summary: "Returns a digest of the keyspace (keys, values, deadlines): equal on replicas that applied the same log.",
    syntax: "",
    since: "1.0.0",
    exec: Exec::Read(parse_digest, standard_reply),
    subcommands: &[],
}];

fn parse_digest(_argv: &[bytes::Bytes]) -> Result<crate::state::Query, super::CommandError> {
    Ok(crate::state::Query::Digest)
}

const SLOWLOG_SUBCOMMANDS: &[CommandSpec] = &[
    local!(
        "slowlog|get",
        -2,
        ADMIN_LOCAL,
        "2.2.12",
        "[count]",
        "Returns the slow log's entries, newest first (10 by default, -1 for all)."
    ),
    local!(
        "slowlog|len",
        2,
        ADMIN_LOCAL,
        "2.2.12",
        "",
        "Returns the number of entries in the slow log."
    ),
    local!(
        "slowlog|reset",
        2,
        ADMIN_LOCAL,
        "2.2.12",
        "",
        "Clears all entries from the slow log."
    ),
    local!(
        "slowlog|help",
        2,
        STALE,
        "6.2.0",
        "",
        "Show helpful text about the different subcommands."
    ),
];

const LATENCY_SUBCOMMANDS: &[CommandSpec] = &[
    local!("latency|latest", 2, ADMIN, "2.8.13", "",
        "Returns the latest latency samples for all events (command, fast-command, wal-fsync, snapshot)."),
    local!("latency|history", 3, ADMIN, "2.8.13", "event", "Returns timestamp-latency samples for an event."),
    local!("latency|reset", -2, ADMIN, "2.8.13", "[event [event ...]]",
        "Resets the latency data for one or more events."),
    local!("latency|graph", 3, ADMIN, "2.8.13", "event", "Returns a latency graph for an event."),
    local!("latency|doctor", 2, ADMIN, "2.8.13", "", "Returns a human-readable latency analysis report."),
    local!("latency|histogram", -2, ADMIN, "7.0.0", "[command [command ...]]",
        "Returns the cumulative distribution of latencies of a subset or all commands."),
    local!("latency|help", 2, STALE, "2.8.13", "", "Returns helpful text about the different subcommands."),
];

/// SLOWLOG reads and clears this node's log: admin, and fine in scripts.
const ADMIN_LOCAL: &[Flag] = &[Flag::Admin, Flag::Loading, Flag::Stale];

const CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    local!("config|get", -3, ADMIN, "2.0.0", "parameter [parameter ...]",
        "Returns the effective values of configuration parameters."),
    local!("config|set", -4, ADMIN, "2.0.0", "parameter value [parameter value ...]",
        "Sets configuration parameters at runtime. Redis tuning parameters that do not apply to concord are accepted and ignored."),
    local!("config|resetstat", 2, ADMIN, "2.0.0", "", "Resets the server's statistics."),
    local!("config|rewrite", 2, ADMIN, "2.8.0", "",
        "Accepted for compatibility: concord's configuration file is never rewritten."),
    local!("config|help", 2, STALE, "5.0.0", "", "Returns helpful text about the different subcommands."),
];

const ACL_INFO: &[Flag] = &[Flag::NoScript, Flag::Loading, Flag::Stale];

const ACL_SUBCOMMANDS: &[CommandSpec] = &[
    local!("acl|setuser", -3, ADMIN, "6.0.0", "username [rule [rule ...]]",
        "Creates or modifies a user, through the log: in force on every node once applied. Passwords are hashed (SHA-256) before they are proposed."),
    local!("acl|deluser", -3, ADMIN, "6.0.0", "username [username ...]",
        "Deletes users, through the log; their connections on every node are closed."),
    local!("acl|getuser", 3, ADMIN, "6.0.0", "username", "Lists the ACL rules of a user."),
    local!("acl|list", 2, ADMIN, "6.0.0", "", "Dumps the effective rules in ACL file format."),
    local!("acl|users", 2, ADMIN, "6.0.0", "", "Lists all ACL users."),
    local!("acl|whoami", 2, ACL_INFO, "6.0.0", "", "Returns the authenticated username of the current connection."),
    local!("acl|cat", -2, ACL_INFO, "6.0.0", "[category]",
        "Lists the ACL categories, or the commands inside a category (concord adds raft, lock, session, registry, ratelimit, breaker, queue)."),
    local!("acl|genpass", -2, ACL_INFO, "6.0.0", "[bits]",
        "Generates a pseudorandom, secure password that can be used to identify ACL users."),
    local!("acl|log", -2, ADMIN, "6.0.0", "[count | RESET]",
        "Lists this node's recent security events: refused commands, keys and channels, failed logins."),
    local!("acl|dryrun", -4, ADMIN, "7.0.0", "username command [arg [arg ...]]",
        "Simulates the execution of a command by a user, without executing the command."),
    local!("acl|load", 2, ADMIN, "6.0.0", "",
        "Replaces every user with those of the --aclfile, through the log."),
    local!("acl|save", 2, ADMIN, "6.0.0", "", "Writes the cluster's users to this node's --aclfile."),
    local!("acl|help", 2, ACL_INFO, "6.0.0", "", "Returns helpful text about the different subcommands."),
];

const COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    local!(
        "command|count",
        2,
        STALE,
        "2.8.13",
        "",
        "Returns a count of commands."
    ),
    local!(
        "command|info",
        -2,
        STALE,
        "2.8.13",
        "[command-name [command-name ...]]",
        "Returns information about one, multiple or all commands."
    ),
    local!(
        "command|docs",
        -2,
        STALE,
        "7.0.0",
        "[command-name [command-name ...]]",
        "Returns documentary information about one, multiple or all commands."
    ),
    local!(
        "command|list",
        -2,
        STALE,
        "7.0.0",
        "[FILTERBY MODULE module-name | ACLCAT category | PATTERN pattern]",
        "Returns a list of command names."
    ),
    local!(
        "command|getkeys",
        -3,
        STALE,
        "2.8.13",
        "command [arg [arg ...]]",
        "Extracts the key names from an arbitrary command."
    ),
    local!(
        "command|help",
        2,
        STALE,
        "5.0.0",
        "",
        "Returns helpful text about the different subcommands."
    ),
];
