//! Connection commands. All are answered by the server from the
//! connection's own state; this file only declares them.

use super::{CommandSpec, Flag};

const CONN: &[Flag] = &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::Fast];

macro_rules! local {
    ($($row:tt)*) => { local_spec!(Connection, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    local!("ping", -1, &[Flag::Fast], "1.0.0", "[message]",
        "Returns the server's liveliness response."),
    local!("echo", 2, &[Flag::Fast], "1.0.0", "message", "Returns the given string."),
    local!("hello", -1, &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::Fast, Flag::NoAuth], "6.0.0",
        "[protover [AUTH username password] [SETNAME clientname]]",
        "Handshakes with the server: switches the protocol (2 or 3) and returns server information."),
    local!("auth", -2, &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::Fast, Flag::NoAuth], "1.0.0",
        "[username] password",
        "Authenticates the connection as an ACL user (the default user when no username is given)."),
    local!("quit", -1, &[Flag::NoScript, Flag::Loading, Flag::Stale, Flag::Fast, Flag::NoAuth], "1.0.0", "",
        "Closes the connection after replying OK."),
    local!("reset", 1, CONN, "6.2.0", "",
        "Resets the connection: protocol 2, no name, database 0, read mode linearizable."),
    local!("select", 2, &[Flag::Loading, Flag::Stale, Flag::Fast], "1.0.0", "index",
        "Changes the selected database (0 to 15)."),
    local!("client", -2, &[], "2.4.0", "subcommand [argument ...]",
        "A container for client connection commands.", CLIENT_SUBCOMMANDS),
];

const CLIENT_FLAGS: &[Flag] = &[Flag::NoScript, Flag::Loading, Flag::Stale];

const CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    local!(
        "client|kill",
        -3,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        "2.4.0",
        "ip:port | [ID client-id] [TYPE NORMAL|MASTER|SLAVE|REPLICA|PUBSUB] [USER username] [ADDR ip:port] [LADDR ip:port] [SKIPME yes|no]",
        "Closes client connections of this node."
    ),
    local!(
        "client|id",
        2,
        CLIENT_FLAGS,
        "5.0.0",
        "",
        "Returns the unique client ID of the connection."
    ),
    local!(
        "client|setname",
        3,
        CLIENT_FLAGS,
        "2.6.9",
        "connection-name",
        "Sets the connection name."
    ),
    local!(
        "client|getname",
        2,
        CLIENT_FLAGS,
        "2.6.9",
        "",
        "Returns the name of the connection."
    ),
    local!(
        "client|list",
        -2,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        "2.4.0",
        "[TYPE NORMAL | MASTER | REPLICA | PUBSUB] [ID client-id [client-id ...]]",
        "Lists open connections."
    ),
    local!(
        "client|info",
        2,
        CLIENT_FLAGS,
        "6.2.0",
        "",
        "Returns information about the connection."
    ),
    local!(
        "client|setinfo",
        4,
        CLIENT_FLAGS,
        "7.2.0",
        "LIB-NAME libname | LIB-VER libver",
        "Sets information specific to the client or connection."
    ),
    local!(
        "client|no-evict",
        3,
        CLIENT_FLAGS,
        "7.0.0",
        "ON | OFF",
        "ON keeps this connection from being closed by maxmemory-clients; OFF (the default) lets it be."
    ),
    local!(
        "client|no-touch",
        3,
        CLIENT_FLAGS,
        "7.2.0",
        "ON | OFF",
        "OFF is accepted; ON is refused: every read counts as an access for LRU/LFU eviction."
    ),
    local!(
        "client|reply",
        3,
        CLIENT_FLAGS,
        "3.2.0",
        "ON | OFF | SKIP",
        "Instructs the server whether to reply to commands: OFF silences every reply, SKIP the next command's; messages of subscriptions still arrive."
    ),
    local!(
        "client|pause",
        -3,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        "3.0.0",
        "timeout [WRITE | ALL]",
        "Holds back this node's clients for `timeout` milliseconds: every command (ALL, the default) or those that may write (WRITE). Expiry and eviction wait too while this node leads."
    ),
    local!(
        "client|unpause",
        2,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        "6.2.0",
        "",
        "Ends CLIENT PAUSE on this node."
    ),
    local!(
        "client|unblock",
        -3,
        &[Flag::Admin, Flag::NoScript, Flag::Loading, Flag::Stale],
        "5.0.0",
        "client-id [TIMEOUT | ERROR]",
        "Ends the wait of a client of this node blocked in a blocking command: it gets its timeout answer, or an UNBLOCKED error. The end goes through the log, so the client is either served or unblocked, never both. Returns 1 if the client was blocked."
    ),
    local!(
        "client|help",
        2,
        CLIENT_FLAGS,
        "5.0.0",
        "",
        "Returns helpful text about the different subcommands."
    ),
];
