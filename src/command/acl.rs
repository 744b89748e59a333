//! What the ACL needs to know about every command: its categories, the
//! access it makes to its keys, and the channels it names.
//!
//! Redis declares ACL categories per command in its JSON files and adds
//! the ones that follow from flags (`write`, `read`, `admin`, `fast` or
//! `slow`, `blocking`, `pubsub`). concord derives them the same way from
//! the one table: the family gives the data-type category, the flags the
//! rest, and a short list names the commands Redis calls dangerous without
//! flagging them admin. Nothing is declared twice.

use bytes::Bytes;

use super::{all, lookup, resolve_subcommand, CommandSpec, Exec, Flag, Group};
use crate::state::acl::{Denied, User};

/// Every category, Redis 7.0's then concord's own families.
pub const CATEGORIES: &[&str] = &[
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
    // concord: membership and snapshots, and the coordination primitives.
    "raft",
    "lock",
    "session",
    "registry",
    "ratelimit",
    "breaker",
    "queue",
];

/// Commands Redis marks `@dangerous` although they are not `admin`.
const DANGEROUS: &[&str] = &[
    "flushall",
    "flushdb",
    "keys",
    "sort",
    "sort_ro",
    "info",
    "role",
    "lastsave",
    "monitor",
    "swapdb",
    "migrate",
    "restore",
    "client|list",
    "client|kill",
    "client|unblock",
    "client|no-evict",
];

/// Server-family commands that act on the keyspace.
const KEYSPACE: &[&str] = &["flushall", "flushdb", "dbsize", "swapdb"];

fn family_category(group: Group) -> Option<&'static str> {
    Some(match group {
        Group::String => "string",
        Group::Generic => "keyspace",
        Group::Hash => "hash",
        Group::Set => "set",
        Group::List => "list",
        Group::SortedSet => "sortedset",
        Group::Stream => "stream",
        Group::HyperLogLog => "hyperloglog",
        Group::Geo => "geo",
        Group::PubSub => "pubsub",
        Group::Transactions => "transaction",
        Group::Scripting => "scripting",
        Group::Connection => "connection",
        Group::Cluster => "raft",
        Group::Lock => "lock",
        Group::Session => "session",
        Group::Registry => "registry",
        Group::RateLimit => "ratelimit",
        Group::Breaker => "breaker",
        Group::Queue => "queue",
        Group::Server => return None,
    })
}

/// The ACL categories of a command or subcommand (without the `@`).
/// String commands that Redis files under @bitmap.
const BITMAP: &[&str] = &[
    "setbit",
    "getbit",
    "bitcount",
    "bitpos",
    "bitop",
    "bitfield",
    "bitfield_ro",
];

pub fn categories(spec: &CommandSpec) -> Vec<&'static str> {
    let mut cats = Vec::with_capacity(5);
    let name = spec.name;
    let parent = name.split('|').next().unwrap_or(name);
    if BITMAP.contains(&name) {
        cats.push("bitmap");
    } else if let Some(family) = family_category(spec.group) {
        cats.push(family);
    } else if KEYSPACE.contains(&name) {
        cats.push("keyspace");
    }
    if spec.has(Flag::Write) {
        cats.push("write");
    } else if spec.has(Flag::ReadOnly) || matches!(spec.exec, Exec::Read(..)) {
        cats.push("read");
    }
    if spec.has(Flag::PubSub) && !cats.contains(&"pubsub") {
        cats.push("pubsub");
    }
    if spec.has(Flag::Admin) {
        cats.push("admin");
    }
    if spec.has(Flag::Admin)
        || DANGEROUS.contains(&name)
        || (DANGEROUS.contains(&parent) && parent != name)
    {
        cats.push("dangerous");
    }
    if spec.has(Flag::Blocking) {
        cats.push("blocking");
    }
    cats.push(if spec.has(Flag::Fast) { "fast" } else { "slow" });
    cats
}

pub fn is_category(name: &str) -> bool {
    name == "all" || CATEGORIES.contains(&name)
}

/// Every command and subcommand, as the ACL names them (`config|get`).
pub fn every_command() -> impl Iterator<Item = &'static CommandSpec> {
    all().flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
}

/// The commands in a category, for `ACL CAT <category>`.
pub fn commands_in(category: &str) -> Vec<&'static str> {
    every_command()
        .filter(|s| categories(s).contains(&category))
        .map(|s| s.name)
        .collect()
}

/// How a command's keys are checked.
pub enum KeyClass {
    /// Every key with the same access: (reads the value, writes).
    Uniform(bool, bool),
    /// Keys of different roles (SORT, COPY) or no keys at all (shard
    /// channels): see [`key_checks`].
    Special,
}

/// The class of `spec`'s keys. Commands that look at a key's existence,
/// type, size or metadata but never its value need only a matching pattern
/// (Redis's key specs have no ACCESS flag for them); write commands that
/// also read the value they replace or return need read and write.
pub fn key_class(spec: &CommandSpec, argv: &[Bytes]) -> KeyClass {
    match spec.name {
        "spublish" | "ssubscribe" | "sunsubscribe" | "sort" | "sort_ro" | "copy" | "georadius"
        | "georadiusbymember" | "geosearchstore" => KeyClass::Special,
        "exists" | "touch" | "type" | "strlen" | "hlen" | "llen" | "scard" | "zcard" | "xlen"
        | "hexists" | "hstrlen" | "sismember" | "smismember" | "memory|usage"
        | "object|encoding" | "object|freq" | "object|idletime" | "object|refcount" => {
            KeyClass::Uniform(false, false)
        }
        "getset" | "getdel" | "getex" | "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall"
        | "fcall_ro" => KeyClass::Uniform(true, true),
        "set" if argv.iter().skip(3).any(|a| crate::command::is(a, "GET")) => {
            KeyClass::Uniform(true, true)
        }
        _ if spec.has(Flag::Write) => KeyClass::Uniform(false, true),
        _ => KeyClass::Uniform(true, false),
    }
}

/// The keys a command names, each with whether it reads (the value) and
/// whether it writes: what the ACL's key patterns must admit. A read
/// command reads its keys, a write command writes them; the commands above
/// and a few with keys of different roles (SORT's STORE, COPY's source and
/// destination, SET ... GET) are spelled out.
pub fn key_checks<'a>(spec: &CommandSpec, argv: &'a [Bytes]) -> Vec<(&'a [u8], bool, bool)> {
    match spec.name {
        // Shard channels, not keys (checked as channels).
        "spublish" | "ssubscribe" | "sunsubscribe" => return Vec::new(),
        "sort" | "sort_ro" => {
            let mut keys: Vec<(&[u8], bool, bool)> = argv
                .get(1)
                .map(|k| (&k[..], true, false))
                .into_iter()
                .collect();
            if let Some(at) = argv.iter().position(|a| crate::command::is(a, "STORE")) {
                keys.extend(argv.get(at + 1).map(|k| (&k[..], false, true)));
            }
            return keys;
        }
        // The source is read; STORE / STOREDIST name a key written.
        "georadius" | "georadiusbymember" => {
            let mut keys: Vec<(&[u8], bool, bool)> = argv
                .get(1)
                .map(|k| (&k[..], true, false))
                .into_iter()
                .collect();
            // Options start after `key lon lat radius unit` (`key member
            // radius unit`), where Redis's key spec looks for them.
            let options_at = if spec.name == "georadius" { 6 } else { 5 };
            let stores = argv.windows(2).skip(options_at).filter(|w| {
                crate::command::is(&w[0], "STORE") || crate::command::is(&w[0], "STOREDIST")
            });
            keys.extend(stores.map(|w| (&w[1][..], false, true)));
            return keys;
        }
        "geosearchstore" => {
            return argv
                .get(1)
                .map(|k| (&k[..], false, true))
                .into_iter()
                .chain(argv.get(2).map(|k| (&k[..], true, false)))
                .collect()
        }
        "copy" => {
            return argv
                .get(1)
                .map(|k| (&k[..], true, false))
                .into_iter()
                .chain(argv.get(2).map(|k| (&k[..], false, true)))
                .collect()
        }
        _ => {}
    }
    let KeyClass::Uniform(read, write) = key_class(spec, argv) else {
        return Vec::new();
    };
    spec.keys
        .iter(argv)
        .map(|k| (&k[..], read, write))
        .collect()
}

/// SORT's BY and GET read keys named by patterns: Redis allows them only to
/// a user who may read every key.
pub fn sort_reads_patterns(spec: &CommandSpec, argv: &[Bytes]) -> bool {
    matches!(spec.name, "sort" | "sort_ro")
        && argv.windows(2).skip(2).any(|w| {
            (crate::command::is(&w[0], "BY") || crate::command::is(&w[0], "GET"))
                && !(crate::command::is(&w[0], "GET") && &w[1][..] == b"#")
                && !(crate::command::is(&w[0], "BY") && crate::command::is(&w[1], "nosort"))
        })
}

/// The channels a command names, each with whether it is a pattern to be
/// allowed literally (PSUBSCRIBE) rather than a channel to match.
pub fn channels<'a>(spec: &CommandSpec, argv: &'a [Bytes]) -> Vec<(&'a Bytes, bool)> {
    match spec.name {
        "publish" | "spublish" => argv.get(1).map(|c| (c, false)).into_iter().collect(),
        "sunsubscribe" => Vec::new(),
        "subscribe" | "ssubscribe" => argv.iter().skip(1).map(|c| (c, false)).collect(),
        "psubscribe" => argv.iter().skip(1).map(|c| (c, true)).collect(),
        _ => Vec::new(),
    }
}

/// The categories a rule may name for `spec`: its own, and for a
/// subcommand its container's too.
pub fn categories_of(spec: &CommandSpec) -> Vec<&'static str> {
    let mut cats = categories(spec);
    if let Some((parent, _)) = spec.name.split_once('|') {
        if let Some(parent) = lookup(parent.as_bytes()) {
            for c in categories(parent) {
                if !cats.contains(&c) {
                    cats.push(c);
                }
            }
        }
    }
    cats
}

/// What the check found wrong, for the reply and the ACL LOG.
pub struct Refusal {
    pub reason: &'static str,
    pub object: String,
}

impl Refusal {
    pub fn text(&self) -> String {
        match self.reason {
            "command" => format!(
                "NOPERM this user has no permissions to run the '{}' command",
                self.object
            ),
            "key" => "NOPERM this user has no permissions to access one of the keys used as arguments".into(),
            "sort" => "ERR BY/GET option of SORT denied due to insufficient ACL permissions.".into(),
            _ => "NOPERM this user has no permissions to access one of the channels used as arguments".into(),
        }
    }
}

/// Checks `user` may run `argv` (whose spec is `spec`), the command a
/// wrapper such as LOCK.GUARD wraps included.
pub fn check_user(user: &User, spec: &'static CommandSpec, argv: &[Bytes]) -> Result<(), Refusal> {
    let keys = key_checks(spec, argv);
    let channels: Vec<(&[u8], bool)> = channels(spec, argv)
        .into_iter()
        .map(|(c, literal)| (&c[..], literal))
        .collect();
    user.check(spec.name, &categories_of(spec), &keys, &channels)
        .map_err(|denied| match denied {
            Denied::Command => Refusal {
                reason: "command",
                object: spec.name.to_owned(),
            },
            Denied::Key(i) => Refusal {
                reason: "key",
                object: String::from_utf8_lossy(keys[i].0).into_owned(),
            },
            Denied::Channel(i) => Refusal {
                reason: "channel",
                object: String::from_utf8_lossy(channels[i].0).into_owned(),
            },
        })?;
    if sort_reads_patterns(spec, argv)
        && !std::iter::once(&user.root)
            .chain(&user.selectors)
            .any(|s| s.allows_all_keys(true, false))
    {
        return Err(Refusal {
            reason: "sort",
            object: spec.name.to_owned(),
        });
    }
    if let Exec::Wrap { inner_at, .. } = spec.exec {
        let inner = &argv[inner_at.min(argv.len())..];
        if let Some(inner_spec) = resolve(inner) {
            check_user(user, inner_spec, inner)?;
        }
    }
    Ok(())
}

/// The (sub)command spec of `argv`, if it names one with a valid arity.
pub fn resolve(argv: &[Bytes]) -> Option<&'static CommandSpec> {
    let spec = lookup(argv.first()?)?;
    if !spec.arity_ok(argv.len()) {
        return None;
    }
    resolve_subcommand(spec, argv).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn cats(name: &str) -> Vec<&'static str> {
        let (parent, sub) = name.split_once('|').unwrap_or((name, ""));
        let spec = lookup(parent.as_bytes()).unwrap();
        let spec = if sub.is_empty() {
            spec
        } else {
            spec.subcommand(sub.as_bytes()).unwrap()
        };
        categories(spec)
    }

    #[test]
    fn categories_follow_redis_for_the_usual_commands() {
        assert_eq!(cats("get"), ["string", "read", "fast"]);
        assert_eq!(cats("set"), ["string", "write", "slow"]);
        assert!(cats("flushall").contains(&"dangerous"));
        assert!(cats("flushall").contains(&"keyspace"));
        assert!(cats("keys").contains(&"dangerous"));
        assert!(cats("blpop").contains(&"blocking"));
        assert!(cats("publish").contains(&"pubsub"));
        for admin in [
            "shutdown",
            "config|set",
            "debug",
            "raft.member",
            "raft.transfer",
        ] {
            let c = cats(admin);
            assert!(
                c.contains(&"admin") && c.contains(&"dangerous"),
                "{admin}: {c:?}"
            );
        }
    }

    #[test]
    fn every_command_has_a_speed_and_known_categories() {
        for spec in every_command() {
            let c = categories(spec);
            assert!(c.contains(&"fast") ^ c.contains(&"slow"), "{}", spec.name);
            for cat in c {
                assert!(is_category(cat), "{}: {cat}", spec.name);
            }
        }
        for family in [
            "lock",
            "session",
            "registry",
            "ratelimit",
            "breaker",
            "queue",
            "raft",
        ] {
            assert!(!commands_in(family).is_empty(), "@{family} is empty");
        }
    }
}
