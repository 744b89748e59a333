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

use super::{all, CommandSpec, Exec, Flag, Group};

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
pub fn categories(spec: &CommandSpec) -> Vec<&'static str> {
    let mut cats = Vec::with_capacity(5);
    let name = spec.name;
    let parent = name.split('|').next().unwrap_or(name);
    if let Some(family) = family_category(spec.group) {
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

/// How a command uses its keys: (reads, writes). A write command needs
/// write permission on every key it names, a read command read permission.
pub fn key_access(spec: &CommandSpec) -> (bool, bool) {
    if spec.has(Flag::Write) {
        (false, true)
    } else {
        (true, false)
    }
}

/// The channels a command names, each with whether it is a pattern to be
/// allowed literally (PSUBSCRIBE) rather than a channel to match.
pub fn channels<'a>(spec: &CommandSpec, argv: &'a [Bytes]) -> Vec<(&'a Bytes, bool)> {
    match spec.name {
        "publish" | "spublish" => argv.get(1).map(|c| (c, false)).into_iter().collect(),
        "subscribe" | "ssubscribe" => argv.iter().skip(1).map(|c| (c, false)).collect(),
        "psubscribe" => argv.iter().skip(1).map(|c| (c, true)).collect(),
        _ => Vec::new(),
    }
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
