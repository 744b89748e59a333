//! The ACL engine: users, their passwords and permissions, as replicated
//! state.
//!
//! **Users are replicated state.** ACL SETUSER, DELUSER and LOAD are writes
//! that go through the log ([`AclOp`]), so every node holds the same user
//! table and checks a client the same way wherever it is connected; the
//! table is in every snapshot. An ACL file (`--aclfile`, ACL LOAD, ACL SAVE)
//! is only a seed and an export ([`parse_acl_file`], [`Acl::to_acl_file`]);
//! [`AclOp::Seed`] loads one into a new cluster exactly once.
//!
//! **Passwords are hashed before the log.** A `>pass` rule would put the
//! password in clear into the Raft log, the WAL and every snapshot. The
//! node that receives ACL SETUSER (or reads an ACL file) calls
//! [`normalize_rules`] before proposing, which turns `>pass` into
//! `#<sha256>` and `<pass` into `!<sha256>`. Apply still accepts the clear
//! forms (hashing them there) so the engine is complete on its own, but
//! nothing the server proposes carries them.
//!
//! **The catalog trait keeps `state` free of the command table.** Whether
//! `+config|get` names a real subcommand or `+@read` a real category is
//! the command table's knowledge, which lives in `command/` above this
//! layer. Rules are checked against a [`Catalog`] on the node that proposes
//! them ([`validate`], [`Acl::validate_setuser`]); apply needs no catalog,
//! since every node runs the same table and the rules were checked before
//! they entered the log. Checking a command likewise takes its full name
//! and categories from the caller ([`Selector::allows_command`]).
//!
//! Semantics are Redis 7's (`src/acl.c`): new users start off, with no
//! password, no commands, keys or channels (`acl-pubsub-default
//! resetchannels`); a SETUSER applies all its rules or none; command rules
//! are kept as an ordered list that `+@all`/`-@all` reset and where a new
//! rule for a command replaces the earlier ones for it and its
//! subcommands, printed back as given (`+@all -debug +debug|digest`) — the
//! lossless form Redis 7.2 keeps (7.0 rebuilt the text from bitmaps); a
//! user may run a command when its root permissions or any one selector
//! allow the command with all its keys and channels. Deviations: first
//! arguments of commands without subcommands (`+select|0`) are refused
//! (see [`RuleError::FirstArg`]), `%R` without `~pattern` is a syntax
//! error, `sanitize-payload`/`skip-sanitize-payload` are accepted and
//! ignored (there is no RESTORE), and passwords are listed in hash order.

mod file;
mod rules;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::glob;
use super::Outcome;

pub use file::{parse_acl_file, parse_acl_file_with};
use rules::{apply_rules, has_spaces, Checks};
pub use rules::{normalize_rules, validate, AclError, Catalog, RuleError};

/// The name of the user every connection starts as.
pub const DEFAULT_USER: &str = "default";

/// The SHA-256 of a password as lower-case hex, as ACL rules and
/// ACL GETUSER show it.
pub fn hash_password(pass: &[u8]) -> String {
    let digest = Sha256::digest(pass);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789abcdef"[usize::from(byte & 0xf)]));
    }
    hex
}

/// The users to seed a new cluster with from `--requirepass`: `default`
/// as first made, with this password (hashed here) or, for an empty one,
/// `nopass`, as Redis's `requirepass` sets it.
pub fn requirepass_seed(pass: &[u8]) -> Vec<(String, Vec<String>)> {
    let password = if pass.is_empty() {
        "nopass".to_owned()
    } else {
        format!("#{}", hash_password(pass))
    };
    let rules = ["on", &password, "~*", "&*", "+@all"];
    vec![(
        DEFAULT_USER.to_owned(),
        rules.iter().map(|r| r.to_string()).collect(),
    )]
}

/// Compares two byte strings in time that depends on their length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// A write on the user table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AclOp {
    /// ACL SETUSER: creates the user if needed and applies `rules` in
    /// order, all or none. Outcome: Ok, or an [`AclError`] with the user
    /// unchanged. Rules should be [`normalize_rules`]d and [`validate`]d
    /// before proposing.
    SetUser { name: String, rules: Vec<String> },
    /// ACL DELUSER. Outcome: the number of users deleted; naming `default`
    /// is an error that deletes nothing.
    DelUser { names: Vec<String> },
    /// ACL LOAD: replaces every user at once, each built from a new user
    /// by its rules; `default` goes back to its first form unless the list
    /// defines it. All or nothing. Outcome: Ok.
    Load { users: Vec<(String, Vec<String>)> },
    /// Like [`AclOp::Load`], but only while the table was never changed
    /// (how `--aclfile`/`--requirepass` seed a new cluster once).
    /// Outcome: 1 if it applied, 0 if the table had been set already.
    Seed { users: Vec<(String, Vec<String>)> },
}

/// A read of the user table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AclQuery {
    /// ACL GETUSER: a map (flags, passwords, commands, keys, channels,
    /// selectors), or Nil.
    GetUser(String),
    /// ACL LIST: `user <name> <rules>` lines, by name.
    List,
    /// ACL USERS: the names, sorted.
    Users,
}

/// One command rule: `+get`, `-config|set`, `+@read` (name stored
/// lower-case, a category with its `@`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRule {
    pub allow: bool,
    pub name: String,
}

impl CommandRule {
    /// True when the rule speaks about the command `full_name`, in
    /// `categories`: a category rule when the command is in it, a command
    /// rule for the command itself, or for its container.
    pub fn matches(&self, full_name: &str, categories: &[&str]) -> bool {
        if let Some(category) = self.name.strip_prefix('@') {
            return categories.iter().any(|c| c.eq_ignore_ascii_case(category));
        }
        let (name, full) = (self.name.as_bytes(), full_name.as_bytes());
        full.len() >= name.len()
            && full[..name.len()].eq_ignore_ascii_case(name)
            && (full.len() == name.len() || full[name.len()] == b'|')
    }
}

/// A key pattern with the access it grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPattern {
    pub pattern: String,
    pub read: bool,
    pub write: bool,
}

impl KeyPattern {
    /// `~p`, `%R~p` or `%W~p`, as Redis prints it.
    fn describe(&self) -> String {
        let prefix = match (self.read, self.write) {
            (true, false) => "%R~",
            (false, true) => "%W~",
            _ => "~",
        };
        format!("{prefix}{}", self.pattern)
    }
}

/// A set of permissions: the user's own (its root selector) or one of its
/// `(...)` selectors. The default is what a new selector grants: nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The rule list starts from `+@all` (true) or `-@all`.
    pub all_commands: bool,
    /// Command and category rules after that start, in order.
    pub commands: Vec<CommandRule>,
    /// `allkeys` / `~*`: every key, read and write.
    pub allkeys: bool,
    pub keys: Vec<KeyPattern>,
    /// `allchannels` / `&*`.
    pub allchannels: bool,
    pub channels: Vec<String>,
}

impl Selector {
    /// Every command, key and channel (`~* &* +@all`).
    fn everything() -> Selector {
        Selector {
            all_commands: true,
            allkeys: true,
            allchannels: true,
            ..Selector::default()
        }
    }

    /// May the command `full_name` (`get`, or `config|get` for a
    /// subcommand) run, given its categories (for a subcommand, its own
    /// and its container's)? The last rule that speaks about it decides;
    /// with none, the `+@all`/`-@all` start does.
    pub fn allows_command(&self, full_name: &str, categories: &[&str]) -> bool {
        self.commands
            .iter()
            .rev()
            .find(|rule| rule.matches(full_name, categories))
            .map_or(self.all_commands, |rule| rule.allow)
    }

    /// May `key` be read (`read`) and/or written (`write`)? A read needs a
    /// `~` or `%R~` pattern that matches, a write a `~` or `%W~` one.
    pub fn allows_key(&self, key: &[u8], read: bool, write: bool) -> bool {
        self.allkeys
            || self.keys.iter().any(|p| {
                (!read || p.read) && (!write || p.write) && glob::matches(p.pattern.as_bytes(), key)
            })
    }

    /// May `channel` be used? A channel name (PUBLISH, SUBSCRIBE) matches
    /// the patterns as globs; a pattern (`literal`, PSUBSCRIBE's argument)
    /// must equal one of them, as Redis requires.
    pub fn allows_channel(&self, channel: &[u8], literal: bool) -> bool {
        self.allchannels
            || self.channels.iter().any(|p| {
                if literal {
                    p.as_bytes() == channel
                } else {
                    glob::matches(p.as_bytes(), channel)
                }
            })
    }

    /// May every key be accessed this way? `allkeys`, or a pattern that
    /// is exactly `*` with the access asked (Redis's unrestricted key
    /// access, which SORT's BY and GET need).
    pub fn allows_all_keys(&self, read: bool, write: bool) -> bool {
        self.allkeys
            || self
                .keys
                .iter()
                .any(|p| p.pattern == "*" && (!read || p.read) && (!write || p.write))
    }

    /// The command, then every key, then every channel, as Redis checks
    /// one selector: the first refusal is the answer.
    fn check(
        &self,
        full_name: &str,
        categories: &[&str],
        keys: &[(&[u8], bool, bool)],
        channels: &[(&[u8], bool)],
    ) -> Result<(), Denied> {
        if !self.allows_command(full_name, categories) {
            return Err(Denied::Command);
        }
        if let Some(i) = keys
            .iter()
            .position(|&(key, read, write)| !self.allows_key(key, read, write))
        {
            return Err(Denied::Key(i));
        }
        if let Some(i) = channels
            .iter()
            .position(|&(channel, literal)| !self.allows_channel(channel, literal))
        {
            return Err(Denied::Channel(i));
        }
        Ok(())
    }

    /// ACL GETUSER's `commands`: `+@all`/`-@all` and the rules.
    pub fn describe_commands(&self) -> String {
        let mut out = String::from(if self.all_commands { "+@all" } else { "-@all" });
        for rule in &self.commands {
            out.push(' ');
            out.push(if rule.allow { '+' } else { '-' });
            out.push_str(&rule.name);
        }
        out
    }

    /// ACL GETUSER's `keys`: `~*`, or the patterns (empty for none).
    pub fn describe_keys(&self) -> String {
        if self.allkeys {
            return "~*".to_owned();
        }
        let patterns: Vec<String> = self.keys.iter().map(KeyPattern::describe).collect();
        patterns.join(" ")
    }

    /// ACL GETUSER's `channels`: `&*`, or the patterns (empty for none).
    pub fn describe_channels(&self) -> String {
        if self.allchannels {
            return "&*".to_owned();
        }
        let patterns: Vec<String> = self.channels.iter().map(|c| format!("&{c}")).collect();
        patterns.join(" ")
    }

    /// The selector as ACL LIST prints it: keys, channels (after
    /// `resetchannels` unless all), commands.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        if self.allkeys {
            out.push_str("~* ");
        } else {
            for pattern in &self.keys {
                out.push_str(&pattern.describe());
                out.push(' ');
            }
        }
        if self.allchannels {
            out.push_str("&* ");
        } else {
            out.push_str("resetchannels ");
            for channel in &self.channels {
                out.push('&');
                out.push_str(channel);
                out.push(' ');
            }
        }
        out.push_str(&self.describe_commands());
        out
    }

    /// ACL GETUSER's description of a selector.
    fn reply_fields(&self) -> Vec<(Outcome, Outcome)> {
        vec![
            (bulk("commands"), bulk(self.describe_commands())),
            (bulk("keys"), bulk(self.describe_keys())),
            (bulk("channels"), bulk(self.describe_channels())),
        ]
    }
}

/// Why a user may not run a command: the first of the checks that failed
/// for the error text (`-NOPERM ...`) and ACL LOG. Indexes are into the
/// `keys` and `channels` given to [`User::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

/// A user: whether it may log in, how, and what it may do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// `on` / `off`: a disabled user cannot authenticate (connections
    /// already authenticated as it keep working).
    pub enabled: bool,
    /// Any password works.
    pub nopass: bool,
    /// SHA-256 of each password, lower-case hex.
    pub passwords: BTreeSet<String>,
    /// The permissions given outside parentheses.
    pub root: Selector,
    /// `(...)` selectors, in the order added.
    pub selectors: Vec<Selector>,
}

impl Default for User {
    fn default() -> Self {
        User::new()
    }
}

impl User {
    /// A user as ACL SETUSER first creates it: `off resetpass resetkeys
    /// resetchannels -@all`.
    pub fn new() -> User {
        User {
            enabled: false,
            nopass: false,
            passwords: BTreeSet::new(),
            root: Selector::default(),
            selectors: Vec::new(),
        }
    }

    /// The `default` user of a new server: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        User {
            enabled: true,
            nopass: true,
            root: Selector::everything(),
            ..User::new()
        }
    }

    /// Does `pass` log this user in? It must be enabled, and `nopass` or
    /// the password's hash among its passwords (compared in constant time).
    pub fn authenticates(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hash = hash_password(pass);
        // Every stored hash is compared, so the time says nothing of which.
        self.passwords.iter().fold(false, |found, stored| {
            constant_time_eq(stored.as_bytes(), hash.as_bytes()) | found
        })
    }

    /// May this user run the command `full_name` (in `categories`) on
    /// `keys` (each with whether it is read and/or written) and `channels`
    /// (each with whether it is a PSUBSCRIBE pattern)? Its root
    /// permissions or any one selector must allow all of it. When none
    /// does, the refusal reported is Redis's pick: a channel over a key
    /// over the command, and the later argument of the same kind.
    pub fn check(
        &self,
        full_name: &str,
        categories: &[&str],
        keys: &[(&[u8], bool, bool)],
        channels: &[(&[u8], bool)],
    ) -> Result<(), Denied> {
        let rank = |denied: &Denied| match *denied {
            Denied::Command => (0, 0),
            Denied::Key(i) => (1, i),
            Denied::Channel(i) => (2, i),
        };
        let mut worst = Denied::Command;
        for selector in std::iter::once(&self.root).chain(&self.selectors) {
            match selector.check(full_name, categories, keys, channels) {
                Ok(()) => return Ok(()),
                Err(denied) if rank(&denied) > rank(&worst) => worst = denied,
                Err(_) => {}
            }
        }
        Err(worst)
    }

    /// Like [`User::check`], but the selector that allows the command must
    /// also allow every key with this access ([`Selector::allows_all_keys`]):
    /// Redis's check for SORT ... BY/GET, which read keys named by patterns.
    pub fn check_with_all_keys(
        &self,
        full_name: &str,
        categories: &[&str],
        keys: &[(&[u8], bool, bool)],
        channels: &[(&[u8], bool)],
        read: bool,
        write: bool,
    ) -> bool {
        std::iter::once(&self.root).chain(&self.selectors).any(|s| {
            s.check(full_name, categories, keys, channels).is_ok() && s.allows_all_keys(read, write)
        })
    }

    /// Any selector allows the command itself (keys and channels aside).
    pub fn allows_command(&self, full_name: &str, categories: &[&str]) -> bool {
        std::iter::once(&self.root)
            .chain(&self.selectors)
            .any(|s| s.allows_command(full_name, categories))
    }

    /// Any selector allows `key` with this access (ACL's key check alone).
    pub fn allows_key(&self, key: &[u8], read: bool, write: bool) -> bool {
        std::iter::once(&self.root)
            .chain(&self.selectors)
            .any(|s| s.allows_key(key, read, write))
    }

    /// Any selector allows `channel` (ACL's channel check alone).
    pub fn allows_channel(&self, channel: &[u8], literal: bool) -> bool {
        std::iter::once(&self.root)
            .chain(&self.selectors)
            .any(|s| s.allows_channel(channel, literal))
    }

    /// ACL GETUSER's `flags`.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut flags = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            flags.push("nopass");
        }
        flags
    }

    /// The user's rules as ACL LIST prints them after `user <name> `.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for flag in self.flags() {
            out.push_str(flag);
            out.push(' ');
        }
        for hash in &self.passwords {
            out.push('#');
            out.push_str(hash);
            out.push(' ');
        }
        out.push_str(&self.root.describe());
        for selector in &self.selectors {
            out.push_str(" (");
            out.push_str(&selector.describe());
            out.push(')');
        }
        out
    }

    /// The ACL GETUSER reply.
    fn reply(&self) -> Outcome {
        let mut fields = vec![
            (
                bulk("flags"),
                Outcome::Set(self.flags().into_iter().map(bulk).collect()),
            ),
            (
                bulk("passwords"),
                Outcome::Array(self.passwords.iter().map(|h| bulk(h.as_str())).collect()),
            ),
        ];
        fields.extend(self.root.reply_fields());
        fields.push((
            bulk("selectors"),
            Outcome::Array(
                self.selectors
                    .iter()
                    .map(|s| Outcome::Map(s.reply_fields()))
                    .collect(),
            ),
        ));
        Outcome::Map(fields)
    }
}

fn bulk(text: impl Into<String>) -> Outcome {
    Outcome::Bulk(Bytes::from(text.into()))
}

/// The user table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// Every user by name; `default` is always there.
    pub users: BTreeMap<String, User>,
    /// Bumped by every change, so a server holding a compiled copy of a
    /// user can tell it is stale. Replicated, like the rest.
    pub generation: u64,
    /// The table was changed or seeded at least once: [`AclOp::Seed`] no
    /// longer applies.
    pub seeded: bool,
}

impl Default for Acl {
    fn default() -> Self {
        Acl {
            users: BTreeMap::from([(DEFAULT_USER.to_owned(), User::default_user())]),
            generation: 0,
            seeded: false,
        }
    }
}

impl Acl {
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The user `name` if `pass` logs it in (AUTH, HELLO AUTH).
    pub fn authenticate(&self, name: &str, pass: &[u8]) -> Option<&User> {
        self.users.get(name).filter(|u| u.authenticates(pass))
    }

    /// Applies one write. An error leaves the table as it was.
    pub fn apply(&mut self, op: &AclOp) -> Result<Outcome, AclError> {
        match op {
            AclOp::SetUser { name, rules } => {
                let user = self.try_setuser(name, rules, Checks::APPLY)?;
                self.users.insert(name.clone(), user);
                self.changed();
                Ok(Outcome::Ok)
            }
            AclOp::DelUser { names } => {
                if names.iter().any(|n| n == DEFAULT_USER) {
                    return Err(AclError::DefaultUser);
                }
                let deleted = names
                    .iter()
                    .filter(|n| self.users.remove(n.as_str()).is_some())
                    .count();
                if deleted > 0 {
                    self.changed();
                }
                Ok(Outcome::Int(deleted as i64))
            }
            AclOp::Load { users } => {
                self.users = build_users(users, Checks::APPLY)?;
                self.changed();
                Ok(Outcome::Ok)
            }
            AclOp::Seed { users } => {
                if self.seeded {
                    return Ok(Outcome::Int(0));
                }
                self.users = build_users(users, Checks::APPLY)?;
                self.changed();
                Ok(Outcome::Int(1))
            }
        }
    }

    fn changed(&mut self) {
        self.generation += 1;
        self.seeded = true;
    }

    /// The user ACL SETUSER `name` `rules` would leave.
    fn try_setuser(
        &self,
        name: &str,
        rules: &[String],
        checks: Checks<'_>,
    ) -> Result<User, AclError> {
        if has_spaces(name) {
            return Err(AclError::BadUsername);
        }
        let mut user = self.users.get(name).cloned().unwrap_or_default();
        apply_rules(&mut user, rules, checks)?;
        Ok(user)
    }

    /// Checks ACL SETUSER `name` `rules` against this table and `catalog`
    /// without changing anything: the error the write would meet, names
    /// included, in Redis's order. The node proposing a SETUSER calls it
    /// on its copy of the table; apply checks the state again.
    pub fn validate_setuser(
        &self,
        name: &str,
        rules: &[String],
        catalog: &dyn Catalog,
    ) -> Result<(), AclError> {
        let checks = Checks {
            catalog: Some(catalog),
            removals: true,
        };
        self.try_setuser(name, rules, checks).map(|_| ())
    }

    /// Answers a read.
    pub fn read(&self, query: &AclQuery) -> Outcome {
        match query {
            AclQuery::GetUser(name) => self.users.get(name).map_or(Outcome::Nil, User::reply),
            AclQuery::List => Outcome::Array(self.list().into_iter().map(bulk).collect()),
            AclQuery::Users => {
                Outcome::Array(self.users.keys().map(|n| bulk(n.as_str())).collect())
            }
        }
    }

    /// ACL LIST: one `user <name> <rules>` line per user, by name.
    pub fn list(&self) -> Vec<String> {
        self.users
            .iter()
            .map(|(name, user)| format!("user {name} {}", user.describe()))
            .collect()
    }

    /// The table as an ACL file (ACL SAVE): the ACL LIST lines.
    pub fn to_acl_file(&self) -> String {
        let mut out = String::new();
        for line in self.list() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// The users of an ACL LOAD or seed, each built from a new user; `default`
/// in its first form unless defined.
fn build_users(
    users: &[(String, Vec<String>)],
    checks: Checks<'_>,
) -> Result<BTreeMap<String, User>, AclError> {
    let mut table = BTreeMap::new();
    for (name, rules) in users {
        if has_spaces(name) {
            return Err(AclError::BadUsername);
        }
        if table.contains_key(name) {
            return Err(AclError::DuplicateUser(name.clone()));
        }
        let mut user = User::new();
        apply_rules(&mut user, rules, checks).map_err(|error| AclError::InUser {
            user: name.clone(),
            error: Box::new(error),
        })?;
        table.insert(name.clone(), user);
    }
    table
        .entry(DEFAULT_USER.to_owned())
        .or_insert_with(User::default_user);
    Ok(table)
}

#[cfg(test)]
mod tests;
