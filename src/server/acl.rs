//! Who a connection is, and what it may do: AUTH, the permission check
//! every command passes before it is proposed, relayed or answered, the
//! ACL command, and the ACL LOG.
//!
//! The users are replicated state (`state::acl`): the driver publishes the
//! table to [`crate::raft::NodeStatus`] whenever an entry changed it, so a
//! check here reads the table this node applied, never a copy that a
//! command on another node could leave stale. A connection keeps the user
//! it authenticated as and the generation of the table it last looked at;
//! when the table moves on, the next command looks again, and a connection
//! whose user was deleted or disabled is closed (as Redis closes them).
//!
//! The default user with every permission (`on nopass ~* &* +@all`, the
//! table of a new cluster) takes a path that checks nothing: a cluster
//! without ACL users pays one atomic load per command.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use super::connection::Conn;
use super::local::Local;
use super::Shared;
use crate::command::acl::{check_user, Refusal};
use crate::command::{self, acl as catalog, CommandSpec, Flag, NameHasher};
use crate::resp::Reply;
use crate::state::acl::{self as users, Acl, AclOp, AclQuery, User, DEFAULT_USER};
use crate::state::scripts::{ScriptOp, ScriptQuery};
use crate::state::{Op, Query};

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const DENIED: &str = "DENIED concord is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to concord you may adopt one of the following solutions: 1) Disable protected mode by sending the command 'CONFIG SET protected-mode no' from the loopback interface, but MAKE SURE concord is not reachable from the internet if you do so. 2) Restart the node with the '--protected-mode no' option. 3) Set up a password for the default user (--requirepass, CONFIG SET requirepass or ACL SETUSER default). NOTE: You only need to do one of the above things in order for the node to start accepting connections from the outside.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// The user behind a connection.
pub(super) struct Principal {
    pub name: String,
    /// `name`, shared with the fences of in-flight reads.
    shared_name: Arc<str>,
    pub authenticated: bool,
    /// The table generation `user` was read at.
    generation: u64,
    user: Option<Arc<User>>,
    /// The user may run anything on anything: no check at all.
    unrestricted: bool,
    /// For a user without selectors, the commands its rules allow: one
    /// lookup per command instead of a walk of its rules.
    commands: Option<CommandSet>,
    /// An AUTH waiting for its read barrier: the user it logged in as,
    /// once it did.
    pending: Option<Arc<Mutex<Option<String>>>>,
}

/// The commands each user's rules allow, per table generation, shared by
/// the connections of this node (computed once, not per connection).
#[derive(Default)]
pub struct CommandCache {
    users: Mutex<HashMap<String, (u64, CommandSet)>>,
}

/// The commands a user may run, by name, hashed with FNV-1a: the names
/// are the table's (nothing to defend against), and SipHash cost more
/// than the rest of the check.
type CommandSet = Arc<HashSet<&'static str, BuildHasherDefault<NameHasher>>>;

impl CommandCache {
    fn commands(&self, name: &str, generation: u64, user: &User) -> CommandSet {
        let mut users = self.users.lock().expect("acl cache");
        if let Some((g, set)) = users.get(name) {
            if *g == generation {
                return set.clone();
            }
        }
        let set: CommandSet = Arc::new(
            catalog::every_command()
                .filter(|spec| {
                    user.root
                        .allows_command(spec.name, &catalog::categories_of(spec))
                })
                .map(|spec| spec.name)
                .collect(),
        );
        users.insert(name.to_owned(), (generation, set.clone()));
        set
    }
}

impl Principal {
    /// A new connection: the default user, authenticated if it needs no
    /// password and this node was not started with `--requirepass`.
    pub fn new(shared: &Shared) -> Principal {
        let table = shared.node.status().acl();
        let default = table.user(DEFAULT_USER);
        let authenticated =
            shared.requirepass().is_none() && default.is_some_and(|u| u.enabled && u.nopass);
        let mut p = Principal {
            name: DEFAULT_USER.to_owned(),
            shared_name: Arc::from(DEFAULT_USER),
            authenticated,
            generation: 0,
            user: None,
            unrestricted: false,
            commands: None,
            pending: None,
        };
        p.load(&table, shared);
        p
    }

    fn load(&mut self, table: &Acl, shared: &Shared) {
        self.generation = table.generation;
        self.user = table.user(&self.name).cloned().map(Arc::new);
        self.unrestricted = self.user.as_deref().is_some_and(unrestricted);
        self.commands = match self.user.as_deref() {
            Some(user) if !self.unrestricted && user.selectors.is_empty() => Some(
                shared
                    .acl_commands
                    .commands(&self.name, table.generation, user),
            ),
            _ => None,
        };
    }

    /// Looks at the table again if it changed; false when this
    /// connection's user no longer may be connected.
    fn refresh(&mut self, shared: &Shared) -> bool {
        let status = shared.node.status();
        if status.acl_generation() != self.generation {
            self.load(&status.acl(), shared);
            if self.authenticated && !self.user.as_ref().is_some_and(|u| u.enabled) {
                return false;
            }
        }
        true
    }

    /// An AUTH is waiting for its barrier: nothing after it may be parsed.
    pub fn awaiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes in the login of an AUTH that waited for its barrier.
    fn settle(&mut self, id: u64, shared: &Shared) {
        let Some(slot) = self.pending.take() else {
            return;
        };
        let name = slot.lock().expect("login slot").take();
        if let Some(name) = name {
            self.login(&name, &shared.node.status().acl(), shared);
            super::local::set_client(shared, id, |c| c.user = name.clone());
        }
    }

    /// Whether the user's permissions are checked at all.
    pub fn restricted(&self) -> bool {
        !self.unrestricted
    }

    /// A script op of a restricted user carries the user, so the commands
    /// the script calls are checked as the entry applies.
    pub fn wrap_op(&self, op: Op) -> Op {
        match op {
            Op::Script(
                ScriptOp::Eval { .. } | ScriptOp::EvalSha { .. } | ScriptOp::FCall { .. },
            ) if self.restricted() => Op::AsUser {
                user: self.name.clone(),
                op: Box::new(op),
            },
            other => other,
        }
    }

    /// [`Principal::wrap_op`] for the read-only scripts (EVALSHA_RO,
    /// FCALL_RO).
    pub fn wrap_query(&self, query: Query) -> Query {
        match query {
            Query::Script(ScriptQuery::EvalSha { .. } | ScriptQuery::FCall { .. })
                if self.restricted() =>
            {
                Query::AsUser {
                    user: self.name.clone(),
                    query: Box::new(query),
                }
            }
            other => other,
        }
    }

    pub fn fence(&self) -> Fence {
        Fence {
            user: self.authenticated.then(|| self.shared_name.clone()),
            generation: self.generation,
        }
    }

    fn login(&mut self, name: &str, table: &Acl, shared: &Shared) {
        self.name = name.to_owned();
        self.shared_name = Arc::from(name);
        self.authenticated = true;
        self.load(table, shared);
    }
}

/// What a read's answer is checked against once its barrier passed: the
/// user and the table generation the command was let through at.
pub(super) struct Fence {
    user: Option<Arc<str>>,
    generation: u64,
}

impl Fence {
    /// True when the table moved on and the user is gone or disabled.
    pub fn revoked(&self, shared: &Shared) -> bool {
        let Some(user) = &self.user else {
            return false;
        };
        let status = shared.node.status();
        status.acl_generation() != self.generation
            && !status.acl().user(user).is_some_and(|u| u.enabled)
    }
}

fn unrestricted(user: &User) -> bool {
    let s = &user.root;
    s.all_commands && s.commands.is_empty() && s.allkeys && s.allchannels
}

pub(super) use crate::command::acl::resolve;

/// The check before a command goes anywhere: authentication, then the
/// user's permissions. Unknown commands and bad arity pass here, to get
/// their own errors from the table. A refused command inside MULTI
/// fails the transaction, as in Redis.
pub(super) fn gate(
    conn: &mut Conn,
    argv: &[Bytes],
    shared: &Shared,
) -> Result<Option<&'static CommandSpec>, Reply> {
    conn.principal.settle(conn.id, shared);
    if !conn.principal.refresh(shared) {
        conn.closing = true;
        return Err(Reply::error(NOAUTH));
    }
    if conn.principal.authenticated && conn.principal.unrestricted {
        return Ok(None);
    }
    let Some(spec) = resolve(argv) else {
        return Ok(None);
    };
    if !conn.principal.authenticated {
        return if spec.has(Flag::NoAuth) {
            Ok(Some(spec))
        } else {
            Err(Reply::error(NOAUTH))
        };
    }
    if conn.principal.user.is_none() {
        conn.closing = true;
        return Err(Reply::error(NOAUTH));
    }
    if spec.has(Flag::NoAuth) && matches!(spec.name, "auth" | "hello" | "quit") {
        return Ok(Some(spec));
    }
    let principal = &conn.principal;
    let user = principal.user.as_deref().expect("checked above");
    let checked = match &principal.commands {
        Some(commands) => check_root(user, commands, spec, argv),
        None => check_user(user, spec, argv),
    };
    match checked {
        Ok(()) => Ok(Some(spec)),
        Err(refusal) => {
            let in_multi = conn.tx.is_some();
            if let Some(tx) = conn.tx.as_mut() {
                if !matches!(spec.name, "exec" | "discard" | "multi" | "watch") {
                    tx.failed = true;
                }
            }
            shared.acl_log.record(
                log_max(shared),
                &refusal,
                if in_multi { "multi" } else { "toplevel" },
                &conn.principal.name,
                client_info(shared, conn.id),
            );
            Err(Reply::error(refusal.text()))
        }
    }
}

/// [`check_user`] for a user without selectors, with the commands its
/// rules allow already known: the same answer, without walking the rules.
fn check_root(
    user: &User,
    commands: &HashSet<&'static str, BuildHasherDefault<NameHasher>>,
    spec: &'static command::CommandSpec,
    argv: &[Bytes],
) -> Result<(), Refusal> {
    if !commands.contains(spec.name) {
        return Err(Refusal {
            reason: "command",
            object: spec.name.to_owned(),
        });
    }
    let root = &user.root;
    if !root.allkeys {
        let refused = match catalog::key_class(spec, argv) {
            // The common case, without collecting the keys.
            catalog::KeyClass::Uniform(read, write) => spec
                .keys
                .iter(argv)
                .find(|k| !root.allows_key(k, read, write))
                .map(|k| &k[..]),
            catalog::KeyClass::Special => catalog::key_checks(spec, argv)
                .into_iter()
                .find(|(k, read, write)| !root.allows_key(k, *read, *write))
                .map(|(k, _, _)| k),
        };
        if let Some(key) = refused {
            return Err(Refusal {
                reason: "key",
                object: String::from_utf8_lossy(key).into_owned(),
            });
        }
        if catalog::sort_reads_patterns(spec, argv) && !root.allows_all_keys(true, false) {
            return Err(Refusal {
                reason: "sort",
                object: spec.name.to_owned(),
            });
        }
    }
    if !root.allchannels {
        if let Some((channel, _)) = catalog::channels(spec, argv)
            .into_iter()
            .find(|(c, literal)| !root.allows_channel(c, *literal))
        {
            return Err(Refusal {
                reason: "channel",
                object: String::from_utf8_lossy(channel).into_owned(),
            });
        }
    }
    if let command::Exec::Wrap { inner_at, .. } = spec.exec {
        let inner = &argv[inner_at.min(argv.len())..];
        if let Some(inner_spec) = resolve(inner) {
            check_root(user, commands, inner_spec, inner)?;
        }
    }
    Ok(())
}

fn client_info(shared: &Shared, id: u64) -> String {
    let clients = shared.clients.lock().expect("clients lock");
    clients
        .get(&id)
        .map(|c| super::local::client_line(c, Instant::now()))
        .unwrap_or_default()
}

/// AUTH and HELLO's AUTH: logs the connection in as `user`, or says why
/// not. A failure is written to the ACL LOG.
pub(super) fn auth(conn: &mut Conn, user: Option<&[u8]>, pass: &[u8], shared: &Shared) -> Local {
    let table = shared.node.status().acl();
    let name = String::from_utf8_lossy(user.unwrap_or(DEFAULT_USER.as_bytes())).into_owned();
    let requirepass = shared.requirepass();
    if user.is_none() && table.user(DEFAULT_USER).is_some_and(|u| u.nopass) && requirepass.is_none()
    {
        return Local::Now(Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ));
    }
    if authenticates(&table, requirepass.as_deref(), &name, pass) {
        conn.principal.login(&name, &table, shared);
        super::local::set_client(shared, conn.id, |c| c.user = name.clone());
        return Local::Now(Reply::ok());
    }
    let client = client_info(shared, conn.id);
    if shared.node.status().role() == crate::raft::Role::Leader {
        shared
            .acl_log
            .record(log_max(shared), &auth_refusal(), "toplevel", &name, client);
        return Local::Now(Reply::error(WRONGPASS));
    }
    // A follower may not have applied a user just made through another
    // node: wait for a read barrier (every change committed before this
    // AUTH) and look again. The connection parses nothing more until this
    // answers; the login takes effect at its next command.
    let slot = Arc::new(Mutex::new(None));
    conn.principal.pending = Some(slot.clone());
    let node = shared.node.clone();
    let log = shared.acl_log.clone();
    let max = log_max(shared);
    let pass = pass.to_vec();
    Local::Later(Box::pin(async move {
        let barrier = node.read(
            Query::Acl(AclQuery::Users),
            crate::raft::ReadMode::Linearizable,
        );
        if let Err(e) = crate::raft::answer(barrier).await {
            return Reply::error(e.to_string());
        }
        let table = node.status().acl();
        if authenticates(&table, requirepass.as_deref(), &name, &pass) {
            *slot.lock().expect("login slot") = Some(name);
            Reply::ok()
        } else {
            log.record(max, &auth_refusal(), "toplevel", &name, client);
            Reply::error(WRONGPASS)
        }
    }))
}

/// ACL LOG entries kept (`acllog-max-len`).
fn log_max(shared: &Shared) -> usize {
    shared.param_u64("acllog-max-len", 128) as usize
}

fn auth_refusal() -> Refusal {
    Refusal {
        reason: "auth",
        object: "AUTH".into(),
    }
}

/// Whether `pass` logs `name` in. A node started with --requirepass asks
/// for that password too while the cluster's default user has none.
fn authenticates(table: &Acl, requirepass: Option<&str>, name: &str, pass: &[u8]) -> bool {
    match table.authenticate(name, pass) {
        Some(u) if name == DEFAULT_USER && u.nopass => {
            requirepass.is_none_or(|p| p.as_bytes() == pass)
        }
        Some(_) => true,
        None => false,
    }
}

/// The command table as the ACL rules may name it.
pub(super) struct TableCatalog;

impl users::Catalog for TableCatalog {
    fn is_command(&self, name: &str) -> bool {
        command::lookup(name.as_bytes()).is_some()
    }
    fn has_subcommands(&self, name: &str) -> bool {
        command::lookup(name.as_bytes()).is_some_and(|s| !s.subcommands.is_empty())
    }
    fn is_subcommand(&self, parent: &str, sub: &str) -> bool {
        command::lookup(parent.as_bytes()).is_some_and(|s| s.subcommand(sub.as_bytes()).is_some())
    }
    fn is_category(&self, name: &str) -> bool {
        catalog::is_category(name)
    }
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ACL SETUSER`: checked here against this node's table and the command
/// table, passwords hashed, then proposed.
fn setuser(argv: &[Bytes], shared: &Shared) -> Local {
    let name = text(&argv[2]);
    let rules = users::normalize_rules(&argv[3..]);
    let table = shared.node.status().acl();
    if let Err(e) = table.validate_setuser(&name, &rules, &TableCatalog) {
        return Local::Now(Reply::error(e.to_string()));
    }
    applied_here(
        shared,
        Op::Acl(AclOp::SetUser { name, rules }),
        "acl|setuser",
    )
}

/// Proposes an ACL change and answers once this node applied it too: a
/// follower relays the write and hears the leader's answer before its own
/// log caught up, and the client's next command here must already see
/// the change. A read barrier after the answer covers it.
pub(super) fn applied_here(shared: &Shared, op: Op, name: &'static str) -> Local {
    let node = shared.node.clone();
    let rx = node.write(op);
    Local::Later(Box::pin(async move {
        let answer = crate::raft::answer(rx).await;
        if matches!(answer, Ok(Ok(_))) && node.status().role() != crate::raft::Role::Leader {
            let barrier = node.read(
                Query::Acl(AclQuery::Users),
                crate::raft::ReadMode::Linearizable,
            );
            if let Err(e) = crate::raft::answer(barrier).await {
                return Reply::error(e.to_string());
            }
        }
        match answer {
            Ok(result) => command::standard_reply(name, result),
            Err(e) => Reply::error(e.to_string()),
        }
    }))
}

/// The ACL command's subcommands.
pub(super) fn execute(conn: &mut Conn, name: &str, argv: &[Bytes], shared: &Shared) -> Local {
    let read = |q: AclQuery| Local::Wait(shared.node.read(Query::Acl(q), conn.read_mode));
    match name {
        "acl|setuser" => setuser(argv, shared),
        "acl|deluser" => applied_here(
            shared,
            Op::Acl(AclOp::DelUser {
                names: argv[2..].iter().map(text).collect(),
            }),
            "acl|deluser",
        ),
        "acl|getuser" => read(AclQuery::GetUser(text(&argv[2]))),
        "acl|list" => read(AclQuery::List),
        "acl|users" => read(AclQuery::Users),
        "acl|whoami" => Local::Now(Reply::Bulk(Bytes::from(conn.principal.name.clone()))),
        "acl|cat" => Local::Now(cat(argv)),
        "acl|genpass" => Local::Now(genpass(argv.get(2))),
        "acl|log" => Local::Now(log(argv.get(2), shared)),
        "acl|dryrun" => Local::Now(dryrun(argv, shared)),
        "acl|load" => load(shared),
        "acl|save" => save(shared),
        _ => Local::Now(help()),
    }
}

fn cat(argv: &[Bytes]) -> Reply {
    if argv.len() > 3 {
        return Reply::error(
            "ERR unknown subcommand or wrong number of arguments for 'CAT'. Try ACL HELP.",
        );
    }
    match argv.get(2) {
        None => Reply::Array(
            catalog::CATEGORIES
                .iter()
                .map(|c| Reply::bulk(*c))
                .collect(),
        ),
        Some(given) => {
            let c = text(given).to_ascii_lowercase();
            if !catalog::is_category(&c) || c == "all" {
                return Reply::error(format!("ERR Unknown category '{}'", text(given)));
            }
            Reply::Array(
                catalog::commands_in(&c)
                    .into_iter()
                    .map(Reply::bulk)
                    .collect(),
            )
        }
    }
}

fn genpass(bits: Option<&Bytes>) -> Reply {
    let bits = match bits.map(|b| text(b).parse::<i64>()) {
        None => 256,
        Some(Ok(n)) if (1..=4096).contains(&n) => n as usize,
        Some(_) => {
            return Reply::error(
                "ERR ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096",
            )
        }
    };
    let bytes: Vec<u8> = (0..bits.div_ceil(8))
        .map(|_| rand::random::<u8>())
        .collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Reply::Bulk(Bytes::from(hex[..bits.div_ceil(4)].to_owned()))
}

fn dryrun(argv: &[Bytes], shared: &Shared) -> Reply {
    let name = text(&argv[2]);
    let table = shared.node.status().acl();
    let Some(user) = table.user(&name) else {
        return Reply::error(format!("ERR User '{name}' not found"));
    };
    let cmd = &argv[3..];
    let Some(spec) = command::lookup(&cmd[0]) else {
        return Reply::error(format!("ERR Command '{}' not found", text(&cmd[0])));
    };
    if !spec.arity_ok(cmd.len()) {
        return Reply::error(format!(
            "ERR wrong number of arguments for '{}' command",
            spec.name
        ));
    }
    let spec = match command::resolve_subcommand(spec, cmd) {
        Ok(s) => s,
        Err(e) => return Reply::error(e.to_string()),
    };
    match check_user(user, spec, cmd) {
        Ok(()) => Reply::ok(),
        Err(r) => Reply::Bulk(Bytes::from(format!(
            "This user has no permissions to {}",
            match r.reason {
                "command" => format!("run the '{}' command", r.object),
                "key" => format!("access the '{}' key", r.object),
                _ => format!("access the '{}' channel", r.object),
            }
        ))),
    }
}

/// ACL LOAD: the file's users replace the cluster's, through the log.
fn load(shared: &Shared) -> Local {
    let Some(path) = shared.config.aclfile.clone() else {
        return Local::Now(Reply::error(
            "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
        ));
    };
    let parsed = std::fs::read_to_string(&path)
        .map_err(|e| {
            format!(
                "ERR Error loading ACLs, opening file '{}': {e}",
                path.display()
            )
        })
        .and_then(|t| {
            users::parse_acl_file_with(&t, &path.display().to_string(), Some(&TableCatalog))
                .map_err(|e| format!("ERR {e}"))
        });
    match parsed {
        Ok(list) => {
            let list = list
                .into_iter()
                .map(|(n, r)| (n, users::normalize_rules(&r)))
                .collect();
            applied_here(shared, Op::Acl(AclOp::Load { users: list }), "acl|load")
        }
        Err(e) => Local::Now(Reply::error(e)),
    }
}

/// ACL SAVE: this node's table written to the ACL file (temp file, fsync,
/// rename), after a read barrier so that it is the cluster's latest.
fn save(shared: &Shared) -> Local {
    let Some(path) = shared.config.aclfile.clone() else {
        return Local::Now(Reply::error(
            "ERR This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
        ));
    };
    let node = shared.node.clone();
    Local::Later(Box::pin(async move {
        let rx = node.read(
            Query::Acl(AclQuery::Users),
            crate::raft::ReadMode::Linearizable,
        );
        if let Err(e) = crate::raft::answer(rx).await {
            return Reply::error(e.to_string());
        }
        let text = node.status().acl().to_acl_file();
        match write_file(&path, text.as_bytes()) {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::error(format!("ERR There was an error trying to save the ACLs. Please check the server logs for more information ({e})")),
        }
    }))
}

fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

pub(super) fn help() -> Reply {
    super::local::help(&[
        "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
    ])
}

/// CONFIG SET requirepass: the default user's only password, or none
/// (`nopass`) for the empty string, as in Redis.
pub(super) fn requirepass_op(pass: &str) -> Op {
    let rules = if pass.is_empty() {
        vec!["nopass".to_owned()]
    } else {
        vec![
            "resetpass".to_owned(),
            format!("#{}", users::hash_password(pass.as_bytes())),
        ]
    };
    Op::Acl(AclOp::SetUser {
        name: DEFAULT_USER.to_owned(),
        rules,
    })
}

/// The seed of a new cluster's users: the ACL file's, and the default
/// user's password from `--requirepass`. None when neither is given.
pub fn seed(config: &crate::config::Config) -> Result<Option<AclOp>, String> {
    let mut list = match &config.aclfile {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--aclfile {}: {e}", path.display()))?;
            users::parse_acl_file_with(&text, &path.display().to_string(), Some(&TableCatalog))
                .map_err(|e| format!("--aclfile: {e}"))?
        }
        None => Vec::new(),
    };
    if let Some(pass) = &config.requirepass {
        let hashed = format!("#{}", users::hash_password(pass.as_bytes()));
        match list.iter_mut().find(|(n, _)| n == DEFAULT_USER) {
            Some((_, rules)) => rules.extend(["resetpass".to_owned(), hashed]),
            None => list.push((
                DEFAULT_USER.to_owned(),
                ["on", "~*", "&*", "+@all"]
                    .into_iter()
                    .map(String::from)
                    .chain([hashed])
                    .collect(),
            )),
        }
    }
    if config.aclfile.is_none() && config.requirepass.is_none() {
        return Ok(None);
    }
    let users = list
        .into_iter()
        .map(|(n, r)| (n, users::normalize_rules(&r)))
        .collect();
    Ok(Some(AclOp::Seed { users }))
}

/// One ACL LOG entry.
struct LogEntry {
    count: u64,
    reason: &'static str,
    context: &'static str,
    object: String,
    username: String,
    created: Instant,
    updated: Instant,
    client_info: String,
    entry_id: u64,
}

/// The ACL LOG of this node: refusals and failed logins, newest first,
/// at most `MAX` entries; a refusal like a recent one counts there.
#[derive(Default)]
pub struct AclLog {
    entries: Mutex<(VecDeque<LogEntry>, u64)>,
}

impl AclLog {
    /// Entries this close in time and alike are one entry counted twice.
    const GROUP_SECS: u64 = 60;

    fn record(
        &self,
        max: usize,
        refusal: &Refusal,
        context: &'static str,
        username: &str,
        client_info: String,
    ) {
        let now = Instant::now();
        let mut guard = self.entries.lock().expect("acl log");
        let (entries, next_id) = &mut *guard;
        if let Some(e) = entries.iter_mut().find(|e| {
            e.reason == refusal.reason
                && e.context == context
                && e.object == refusal.object
                && e.username == username
                && now.duration_since(e.updated).as_secs() < Self::GROUP_SECS
        }) {
            e.count += 1;
            e.updated = now;
            e.client_info = client_info;
            return;
        }
        entries.push_front(LogEntry {
            count: 1,
            reason: refusal.reason,
            context,
            object: refusal.object.clone(),
            username: username.to_owned(),
            created: now,
            updated: now,
            client_info,
            entry_id: *next_id,
        });
        *next_id += 1;
        entries.truncate(max);
    }
}

fn log(arg: Option<&Bytes>, shared: &Shared) -> Reply {
    let mut guard = shared.acl_log.entries.lock().expect("acl log");
    let count = match arg {
        None => usize::MAX,
        Some(a) if command::is(a, "RESET") => {
            guard.0.clear();
            return Reply::ok();
        }
        Some(a) => match text(a).parse::<i64>() {
            Ok(n) if n >= 0 => n as usize,
            _ => return Reply::error("ERR value is out of range, must be positive"),
        },
    };
    let now = Instant::now();
    let entries = guard
        .0
        .iter()
        .take(count)
        .map(|e| {
            let age = now.duration_since(e.created).as_secs_f64();
            let field = |k: &'static str, v: Reply| (Reply::bulk(k), v);
            Reply::Map(vec![
                field("count", Reply::Int(e.count as i64)),
                field("reason", Reply::bulk(e.reason)),
                field("context", Reply::bulk(e.context)),
                field("object", Reply::bulk(e.object.clone())),
                field("username", Reply::bulk(e.username.clone())),
                field("age-seconds", Reply::Double(age)),
                field("client-info", Reply::bulk(e.client_info.clone())),
                field("entry-id", Reply::Int(e.entry_id as i64)),
                field(
                    "timestamp-created",
                    Reply::Int(millis_ago(e.created, now) as i64),
                ),
                field(
                    "timestamp-last-updated",
                    Reply::Int(millis_ago(e.updated, now) as i64),
                ),
            ])
        })
        .collect();
    Reply::Array(entries)
}

/// Wall-clock milliseconds of an instant in the past.
fn millis_ago(at: Instant, now: Instant) -> u128 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    wall.saturating_sub(now.duration_since(at)).as_millis()
}

/// Closes the connections of users deleted or disabled, on every change
/// of the table, as Redis does: a connection must not outlive the
/// permission to open it.
pub async fn close_revoked(shared: Arc<Shared>) {
    let mut changes = shared.node.status().acl_changes();
    while changes.changed().await.is_ok() {
        let table = shared.node.status().acl();
        let killed = super::local::kill_clients(&shared, |c| {
            !table.user(&c.user).is_some_and(|u| u.enabled)
        });
        if killed > 0 {
            tracing::info!(
                connections = killed,
                "closed connections of users deleted or disabled"
            );
        }
    }
}

/// Proposes the seed of the user table (`--aclfile`, `--requirepass`)
/// once a leader is known; it applies only to a table never changed, so
/// every node of a new cluster may propose it and the first one wins.
pub async fn propose_seed(shared: Arc<Shared>, op: AclOp) {
    loop {
        match crate::raft::answer(shared.node.write(Op::Acl(op.clone()))).await {
            Ok(Ok(crate::state::Outcome::Int(1))) => {
                tracing::info!("seeded the cluster's users from --aclfile/--requirepass");
                return;
            }
            Ok(Ok(_)) => {
                tracing::info!("the cluster's users were set before: --aclfile/--requirepass seed nothing (change users with ACL SETUSER, ACL LOAD or CONFIG SET requirepass)");
                return;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the --aclfile/--requirepass seed was refused");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "seeding users: no leader yet, trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}
