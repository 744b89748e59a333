//! The ACL rule language: applying `on`, `>pass`, `~keys`, `+@cat`,
//! `(selector)`… to a user, with Redis's error texts; checking command and
//! category names against a [`Catalog`]; hashing clear-text passwords out
//! of a rule list before it is proposed.

use serde::{Deserialize, Serialize};

use super::{hash_password, CommandRule, KeyPattern, Selector, User};

/// The command table as the ACL needs it, so `state` can check rule names
/// without importing `command`. Names arrive lower-cased.
pub trait Catalog {
    /// A command that can be called by itself or is a container (`get`,
    /// `config`).
    fn is_command(&self, name: &str) -> bool;
    /// `name` is a container command (`config`, `client`, `acl`).
    fn has_subcommands(&self, name: &str) -> bool;
    /// `sub` is a subcommand of the container `parent` (`config`, `get`).
    fn is_subcommand(&self, parent: &str, sub: &str) -> bool;
    /// A command category, without the `@` (`read`, `admin`).
    fn is_category(&self, name: &str) -> bool;
}

/// Why one rule was refused: the reason part of Redis's
/// `Error in ACL SETUSER modifier '<rule>': <reason>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RuleError {
    #[error("Syntax error")]
    Syntax,
    #[error("Unknown command or category name in ACL")]
    UnknownName,
    #[error(
        "Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not \
         have any effect. Try 'resetkeys' to start with an empty list of patterns"
    )]
    KeyAfterAll,
    #[error(
        "Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does \
         not have any effect. Try 'resetchannels' to start with an empty list of channels"
    )]
    ChannelAfterAll,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error(
        "The password hash must be exactly 64 characters and contain only lowercase hexadecimal \
         characters"
    )]
    BadHash,
    /// `+config|get|appendonly`.
    #[error("Allowing first-arg of a subcommand is not supported")]
    SubcommandFirstArg,
    /// `+select|0`: Redis still accepts a first argument of a command
    /// without subcommands (deprecated, "a misuse of ACL"); concord
    /// refuses it, since its checks look at command names only.
    #[error("Allowing first-arg of a command without subcommands is not supported")]
    FirstArg,
}

/// An ACL write or rule list refused. The text is the whole error reply,
/// as Redis words it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AclError {
    #[error("ERR Error in ACL SETUSER modifier '{rule}': {reason}")]
    Modifier { rule: String, reason: RuleError },
    #[error("ERR Unmatched parenthesis in acl selector starting at '{at}'.")]
    UnmatchedParenthesis { at: String },
    #[error("ERR Usernames can't contain spaces or null characters")]
    BadUsername,
    #[error("ERR The 'default' user cannot be removed")]
    DefaultUser,
    /// A user defined twice in one ACL LOAD or seed.
    #[error("ERR Duplicate user '{0}' found")]
    DuplicateUser(String),
    /// One user of an ACL LOAD or seed was refused; nothing was loaded.
    #[error("ERR Error in the ACL rules of user '{user}': {}", strip_code(error))]
    InUser { user: String, error: Box<AclError> },
}

fn strip_code(error: &AclError) -> String {
    let text = error.to_string();
    match text.strip_prefix("ERR ") {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

/// What applying rules may check beyond their syntax.
#[derive(Clone, Copy)]
pub(super) struct Checks<'a> {
    /// Command and category names are checked against it when given.
    pub catalog: Option<&'a dyn Catalog>,
    /// `<pass` and `!hash` must name a password the user has. Off when
    /// rules are validated against a fresh user rather than the real one.
    pub removals: bool,
}

impl Checks<'_> {
    /// What apply checks: syntax and the user's state. Names were checked
    /// on the node that proposed the rules.
    pub const APPLY: Checks<'static> = Checks {
        catalog: None,
        removals: true,
    };
}

/// True when a user name or pattern holds a space or a NUL, which Redis
/// refuses (C `isspace` or 0).
pub(super) fn has_spaces(s: &str) -> bool {
    s.bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0))
}

/// Joins the arguments of a selector given in pieces (`(~a` `+get)`) into
/// one rule, as Redis does; a selector left open is an error naming the
/// argument that opened it.
pub(super) fn merge_selectors<S: AsRef<str>>(rules: &[S]) -> Result<Vec<String>, AclError> {
    let mut merged = Vec::with_capacity(rules.len());
    let mut open: Option<(usize, String)> = None;
    for (i, rule) in rules.iter().enumerate() {
        let rule = rule.as_ref();
        match &mut open {
            None if rule.starts_with('(') && !rule.ends_with(')') => {
                open = Some((i, rule.to_owned()));
            }
            None => merged.push(rule.to_owned()),
            Some((_, selector)) => {
                selector.push(' ');
                selector.push_str(rule);
                if rule.ends_with(')') {
                    merged.push(std::mem::take(selector));
                    open = None;
                }
            }
        }
    }
    match open {
        Some((i, _)) => Err(AclError::UnmatchedParenthesis {
            at: rules[i].as_ref().to_owned(),
        }),
        None => Ok(merged),
    }
}

/// Applies `rules` to `user` in order, stopping at the first error (the
/// caller works on a copy, so a refused list changes nothing).
pub(super) fn apply_rules<S: AsRef<str>>(
    user: &mut User,
    rules: &[S],
    checks: Checks<'_>,
) -> Result<(), AclError> {
    for rule in merge_selectors(rules)? {
        user.set(&rule, checks)
            .map_err(|reason| AclError::Modifier { rule, reason })?;
    }
    Ok(())
}

/// Checks a rule list before it is proposed: syntax, hash formats,
/// selectors, and every command and category name against `catalog`.
/// Errors that depend on the user's current state (removing a password it
/// lacks, a key pattern after its `allkeys`) are left to apply; see
/// [`super::Acl::validate_setuser`] to check against a user table too.
pub fn validate(rules: &[String], catalog: &dyn Catalog) -> Result<(), AclError> {
    let checks = Checks {
        catalog: Some(catalog),
        removals: false,
    };
    apply_rules(&mut User::new(), rules, checks)
}

/// Turns every clear-text password of a rule list into its hash: `>pass`
/// becomes `#<sha256>`, `<pass` becomes `!<sha256>`, also inside selectors
/// (where they are errors, but must not reach the log in clear either).
/// The node that takes ACL SETUSER calls this before proposing, so a
/// password never reaches the replicated log or a snapshot. Rules are
/// bytes because passwords are binary-safe; anything else is taken as
/// UTF-8 (lossily).
pub fn normalize_rules<R: AsRef<[u8]>>(rules: &[R]) -> Vec<String> {
    let mut out = Vec::with_capacity(rules.len());
    let mut open = false;
    for rule in rules {
        let rule = rule.as_ref();
        let starts_selector = rule.first() == Some(&b'(');
        let ends_selector = rule.last() == Some(&b')');
        if open || starts_selector {
            out.push(normalize_selector(rule));
            if open && ends_selector {
                open = false;
            } else if !open && !ends_selector {
                open = true;
            }
        } else {
            out.push(normalize_rule(rule));
        }
    }
    out
}

/// One rule outside a selector.
fn normalize_rule(rule: &[u8]) -> String {
    match rule.split_first() {
        Some((b'>', pass)) => format!("#{}", hash_password(pass)),
        Some((b'<', pass)) => format!("!{}", hash_password(pass)),
        _ => String::from_utf8_lossy(rule).into_owned(),
    }
}

/// A piece of a selector: each word that is a password rule is hashed.
fn normalize_selector(piece: &[u8]) -> String {
    let words: Vec<&[u8]> = piece
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let is_password = |w: &&[u8]| {
        let core = trim_parens(w).1;
        matches!(core.first(), Some(b'>' | b'<'))
    };
    if !words.iter().any(is_password) {
        return String::from_utf8_lossy(piece).into_owned();
    }
    let words: Vec<String> = words
        .into_iter()
        .map(|w| {
            let (open, core, close) = trim_parens(w);
            format!(
                "{}{}{}",
                String::from_utf8_lossy(open),
                normalize_rule(core),
                String::from_utf8_lossy(close)
            )
        })
        .collect();
    words.join(" ")
}

/// Splits a word into its leading `(`s, its core and its trailing `)`s.
fn trim_parens(word: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let start = word.iter().take_while(|&&b| b == b'(').count();
    let rest = &word[start..];
    let end = rest.len() - rest.iter().rev().take_while(|&&b| b == b')').count();
    (&word[..start], &rest[..end], &rest[end..])
}

/// A password hash as Redis accepts it: 64 lower-case hex digits.
fn check_hash(hash: &str) -> Result<(), RuleError> {
    let valid = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if valid {
        Ok(())
    } else {
        Err(RuleError::BadHash)
    }
}

impl User {
    /// Applies one (merged) rule, as Redis's `ACLSetUser`.
    pub(super) fn set(&mut self, op: &str, checks: Checks<'_>) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word);
        if op.is_empty() {
            // An empty rule does nothing, as in Redis.
        } else if is("on") {
            self.enabled = true;
        } else if is("off") {
            self.enabled = false;
        } else if is("sanitize-payload") || is("skip-sanitize-payload") {
            // RESTORE payload sanitizing: concord has no RESTORE, so these
            // are accepted (a Redis ACL file may carry them) and ignored.
        } else if is("nopass") {
            self.nopass = true;
            self.passwords.clear();
        } else if is("resetpass") {
            self.nopass = false;
            self.passwords.clear();
        } else if let Some(pass) = op.strip_prefix('>') {
            self.passwords.insert(hash_password(pass.as_bytes()));
            self.nopass = false;
        } else if let Some(hash) = op.strip_prefix('#') {
            check_hash(hash)?;
            self.passwords.insert(hash.to_owned());
            self.nopass = false;
        } else if op.starts_with('<') || op.starts_with('!') {
            let hash = match op.strip_prefix('<') {
                Some(pass) => hash_password(pass.as_bytes()),
                None => {
                    let hash = &op[1..];
                    check_hash(hash)?;
                    hash.to_owned()
                }
            };
            if !self.passwords.remove(&hash) && checks.removals {
                return Err(RuleError::NoSuchPassword);
            }
        } else if op.len() >= 2 && op.starts_with('(') && op.ends_with(')') {
            let mut selector = Selector::default();
            for word in op[1..op.len() - 1].split_ascii_whitespace() {
                selector.set(word, checks)?;
            }
            self.selectors.push(selector);
        } else if is("clearselectors") {
            self.selectors.clear();
        } else if is("reset") {
            // resetpass resetkeys resetchannels off clearselectors -@all:
            // the user as ACL SETUSER first makes it.
            *self = User::new();
        } else {
            self.root.set(op, checks)?;
        }
        Ok(())
    }
}

impl Selector {
    /// Applies one rule about commands, keys or channels, as Redis's
    /// `ACLSetSelector`.
    pub(super) fn set(&mut self, op: &str, checks: Checks<'_>) -> Result<(), RuleError> {
        let is = |word: &str| op.eq_ignore_ascii_case(word);
        if is("allkeys") || op == "~*" {
            self.allkeys = true;
            self.keys.clear();
        } else if is("resetkeys") {
            self.allkeys = false;
            self.keys.clear();
        } else if is("allchannels") || op == "&*" {
            self.allchannels = true;
            self.channels.clear();
        } else if is("resetchannels") {
            self.allchannels = false;
            self.channels.clear();
        } else if is("allcommands") || is("+@all") {
            self.all_commands = true;
            self.commands.clear();
        } else if is("nocommands") || is("-@all") {
            self.all_commands = false;
            self.commands.clear();
        } else if op.starts_with('~') || op.starts_with('%') {
            self.add_key_pattern(op)?;
        } else if let Some(pattern) = op.strip_prefix('&') {
            if self.allchannels {
                return Err(RuleError::ChannelAfterAll);
            }
            if has_spaces(pattern) {
                return Err(RuleError::Syntax);
            }
            if !self.channels.iter().any(|c| c == pattern) {
                self.channels.push(pattern.to_owned());
            }
        } else if let Some(category) = op.strip_prefix("+@").or_else(|| op.strip_prefix("-@")) {
            let category = category.to_ascii_lowercase();
            let known = match checks.catalog {
                Some(catalog) => catalog.is_category(&category),
                None => !category.is_empty(),
            };
            if !known {
                return Err(RuleError::UnknownName);
            }
            self.update_rules(format!("@{category}"), op.starts_with('+'));
        } else if let Some(name) = op.strip_prefix('+') {
            let name = name.to_ascii_lowercase();
            check_allowed_name(&name, checks.catalog)?;
            self.update_rules(name, true);
        } else if let Some(name) = op.strip_prefix('-') {
            let name = name.to_ascii_lowercase();
            check_denied_name(&name, checks.catalog)?;
            self.update_rules(name, false);
        } else {
            return Err(RuleError::Syntax);
        }
        Ok(())
    }

    /// `~pattern`, `%R~pattern`, `%W~pattern`, `%RW~pattern`.
    fn add_key_pattern(&mut self, op: &str) -> Result<(), RuleError> {
        if self.allkeys {
            return Err(RuleError::KeyAfterAll);
        }
        let (read, write, pattern) = match op.strip_prefix('%') {
            None => (true, true, &op[1..]),
            Some(spec) => {
                // Flags, each at most once, then `~` and the pattern.
                let (flags, pattern) = spec.split_once('~').ok_or(RuleError::Syntax)?;
                let (mut read, mut write) = (false, false);
                for flag in flags.bytes() {
                    match flag.to_ascii_uppercase() {
                        b'R' if !read => read = true,
                        b'W' if !write => write = true,
                        _ => return Err(RuleError::Syntax),
                    }
                }
                if !read && !write {
                    return Err(RuleError::Syntax);
                }
                (read, write, pattern)
            }
        };
        if has_spaces(pattern) {
            return Err(RuleError::Syntax);
        }
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            // The same pattern again widens its permissions.
            Some(existing) => {
                existing.read |= read;
                existing.write |= write;
            }
            None => self.keys.push(KeyPattern {
                pattern: pattern.to_owned(),
                read,
                write,
            }),
        }
        Ok(())
    }

    /// Appends `+name`/`-name`, first dropping earlier rules for the same
    /// name, and for its subcommands when `name` is a whole command
    /// (Redis 7.2's lossless rule list: `+@all -get +get` keeps `+get`).
    fn update_rules(&mut self, name: String, allow: bool) {
        self.commands.retain(|rule| {
            let same = rule.name == name;
            let sub = rule.name.len() > name.len()
                && rule.name.starts_with(&name)
                && rule.name.as_bytes()[name.len()] == b'|';
            !(same || sub)
        });
        self.commands.push(CommandRule { allow, name });
    }
}

/// `+name`: a command, a container, or `container|subcommand`.
fn check_allowed_name(name: &str, catalog: Option<&dyn Catalog>) -> Result<(), RuleError> {
    let Some((parent, sub)) = name.rsplit_once('|') else {
        return match catalog {
            Some(catalog) if !catalog.is_command(name) => Err(RuleError::UnknownName),
            _ if name.is_empty() => Err(RuleError::UnknownName),
            _ => Ok(()),
        };
    };
    let Some(catalog) = catalog else {
        // Without the table only what no table could accept is refused.
        if parent.is_empty() || parent.contains('|') {
            return Err(RuleError::UnknownName);
        }
        return if sub.is_empty() {
            Err(RuleError::Syntax)
        } else {
            Ok(())
        };
    };
    if let Some((container, first)) = parent.split_once('|') {
        // `+container|sub|arg`: a first argument of a subcommand.
        let is_sub = !first.contains('|')
            && catalog.has_subcommands(container)
            && catalog.is_subcommand(container, first);
        return Err(if is_sub {
            RuleError::SubcommandFirstArg
        } else {
            RuleError::UnknownName
        });
    }
    if !catalog.is_command(parent) {
        return Err(RuleError::UnknownName);
    }
    if sub.is_empty() {
        return Err(RuleError::Syntax);
    }
    if !catalog.has_subcommands(parent) {
        return Err(RuleError::FirstArg);
    }
    if !catalog.is_subcommand(parent, sub) {
        return Err(RuleError::UnknownName);
    }
    Ok(())
}

/// `-name`: a command, a container, or one of its subcommands.
fn check_denied_name(name: &str, catalog: Option<&dyn Catalog>) -> Result<(), RuleError> {
    let parts: Vec<&str> = name.split('|').collect();
    let known = match (catalog, parts.as_slice()) {
        (_, [""]) => false,
        (_, [_, _, _, ..]) => false,
        (None, _) => true,
        (Some(catalog), [command]) => catalog.is_command(command),
        (Some(catalog), [parent, sub]) => {
            catalog.has_subcommands(parent) && catalog.is_subcommand(parent, sub)
        }
        (Some(_), []) => false,
    };
    if known {
        Ok(())
    } else {
        Err(RuleError::UnknownName)
    }
}
