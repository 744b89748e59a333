//! Lua scripts (EVAL, EVALSHA, SCRIPT): the replicated script cache and
//! the op that runs a script at apply time.
//!
//! A script is one log entry: every replica runs it at the same point of
//! the log, atomically, against the same state, so its effects are the
//! same everywhere. The state knows nothing of Lua: it holds the cache
//! (sha1 -> body, replicated and snapshotted, so EVALSHA works through any
//! node right after SCRIPT LOAD through another) and hands each run to a
//! [`ScriptHost`] installed by whoever applies log entries. The host owns
//! the interpreter and comes back through [`State::apply_nested`] and
//! [`State::read`] for each `redis.call`, at the entry's time.
//!
//! A state without a host (a bare unit test) answers every script op with
//! an error, identically, rather than panicking.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{OpResult, Outcome, State, StateError};

/// A script write: the unit that goes through the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScriptOp {
    /// EVAL / EVAL_RO: caches the body (as Redis does) and runs it.
    Eval { body: Bytes, run: Run },
    /// EVALSHA: runs a cached script; only the sha travels. (EVALSHA_RO
    /// and FCALL_RO are queries: [`ScriptQuery`].)
    EvalSha { sha: String, run: Run },
    /// SCRIPT LOAD: compiles and caches, answers the sha.
    Load(Bytes),
    /// SCRIPT FLUSH: empties the cache (and resets every replica's VM).
    Flush,
    /// FUNCTION LOAD [REPLACE]: runs a library's code, which registers
    /// its functions; answers the library's name.
    LoadLibrary { code: Bytes, replace: bool },
    /// FUNCTION DELETE.
    DeleteLibrary(Bytes),
    /// FUNCTION FLUSH.
    FlushLibraries,
    /// FCALL.
    FCall { function: Bytes, run: Run },
    /// FUNCTION RESTORE: the codes of a FUNCTION DUMP payload (decoded
    /// and checked by the command layer), loaded as FUNCTION LOAD would,
    /// then added to the libraries as `policy` says, all or nothing.
    RestoreLibraries {
        codes: Vec<Bytes>,
        policy: RestorePolicy,
    },
}

/// What FUNCTION RESTORE does with the libraries already loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestorePolicy {
    /// Keep them; a library of the same name refuses the restore.
    Append,
    /// Keep them, but the payload's library replaces one of its name.
    Replace,
    /// Delete them all first.
    Flush,
}

/// The arguments of one script run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub keys: Vec<Bytes>,
    pub args: Vec<Bytes>,
    /// EVAL_RO / EVALSHA_RO: write commands are refused.
    pub read_only: bool,
    /// Drawn by the node that took the command: seeds `math.random` and the
    /// random commands the script calls, the same on every replica.
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScriptQuery {
    /// SCRIPT EXISTS: 1/0 per sha.
    Exists(Vec<Bytes>),
    /// EVALSHA_RO: a cached script that cannot write, served like any
    /// read (after the connection's read barrier, on the node it reached)
    /// instead of going through the log. EVAL_RO stays an op: it caches
    /// its body, which must reach every replica.
    EvalSha { sha: String, run: Run },
    /// FCALL_RO, likewise.
    FCall { function: Bytes, run: Run },
    /// EVALSHA as clients send it, tried as a read first. Redis writes
    /// nothing to its AOF for a script run that writes nothing (a lock
    /// release by a non-owner, a check that fails), and such a run has
    /// nothing to replicate here either: it is served like EVALSHA_RO.
    /// A run that reaches a write command stops there and answers
    /// [`StateError::ScriptWrites`]; the node then submits
    /// [`ScriptOp::EvalSha`] ([`ScriptQuery::into_op`]), which runs again
    /// from the start at its place in the log.
    EvalShaFirst { sha: String, run: Run },
    /// FCALL as clients send it, tried as a read first in the same way:
    /// its op is [`ScriptOp::FCall`].
    FCallFirst { function: Bytes, run: Run },
    /// EVAL as clients send it, tried as a read first when its body is
    /// already in the cache: its op is [`ScriptOp::Eval`]. An EVAL whose
    /// body is not cached yet must put it in every replica's cache, so it
    /// answers [`StateError::ScriptWrites`] at once and goes through the
    /// log too. `sha` is the body's, taken by the connection.
    EvalFirst { sha: String, body: Bytes, run: Run },
    /// SCRIPT KILL: scripts run inside one apply step, so none is ever
    /// running when a client could ask.
    Kill,
    /// FUNCTION LIST.
    ListLibraries {
        pattern: Option<Bytes>,
        with_code: bool,
    },
    /// FUNCTION STATS.
    FunctionStats,
    /// FUNCTION DUMP: every library's code in Redis's payload.
    DumpLibraries,
}

impl ScriptQuery {
    /// The op a read-first EVALSHA becomes once its run reached a write.
    pub fn into_op(self) -> Option<ScriptOp> {
        match self {
            ScriptQuery::EvalShaFirst { sha, run } => Some(ScriptOp::EvalSha { sha, run }),
            ScriptQuery::FCallFirst { function, run } => Some(ScriptOp::FCall { function, run }),
            ScriptQuery::EvalFirst { body, run, .. } => Some(ScriptOp::Eval { body, run }),
            _ => None,
        }
    }
}

/// The replicated cache of script bodies, by lower-case hex sha1.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptCache {
    bodies: BTreeMap<String, Bytes>,
    /// Function libraries (FUNCTION LOAD), by name.
    libraries: BTreeMap<String, Library>,
}

/// A loaded function library: its code and what it registered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Library {
    pub code: Bytes,
    /// Function name -> what its registration declared.
    pub functions: BTreeMap<String, FunctionMeta>,
}

/// What `redis.register_function` declared besides the callback: FUNCTION
/// LIST reports it, FCALL_RO checks `no-writes`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionMeta {
    pub description: Option<Bytes>,
    /// Flag names in Redis's order (no-writes, allow-oom, allow-stale,
    /// no-cluster, allow-cross-slot-keys), each once.
    pub flags: Vec<String>,
}

impl FunctionMeta {
    pub fn no_writes(&self) -> bool {
        self.flags.iter().any(|f| f == "no-writes")
    }
}

/// The script cache as snapshot formats up to 7 hold it: a library kept
/// only each function's `no-writes`. Such libraries list without their
/// descriptions and other flags until they are loaded again.
#[derive(Deserialize, Serialize)]
pub(super) struct ScriptCacheV1 {
    bodies: BTreeMap<String, Bytes>,
    libraries: BTreeMap<String, LibraryV1>,
}

#[derive(Deserialize, Serialize)]
struct LibraryV1 {
    code: Bytes,
    functions: BTreeMap<String, bool>,
}

impl From<ScriptCacheV1> for ScriptCache {
    fn from(old: ScriptCacheV1) -> ScriptCache {
        let libraries = old
            .libraries
            .into_iter()
            .map(|(name, lib)| {
                let functions = lib
                    .functions
                    .into_iter()
                    .map(|(f, no_writes)| {
                        let flags = if no_writes {
                            vec!["no-writes".to_owned()]
                        } else {
                            Vec::new()
                        };
                        (
                            f,
                            FunctionMeta {
                                description: None,
                                flags,
                            },
                        )
                    })
                    .collect();
                (
                    name,
                    Library {
                        code: lib.code,
                        functions,
                    },
                )
            })
            .collect();
        ScriptCache {
            bodies: old.bodies,
            libraries,
        }
    }
}

#[cfg(test)]
impl From<&ScriptCache> for ScriptCacheV1 {
    fn from(new: &ScriptCache) -> ScriptCacheV1 {
        ScriptCacheV1 {
            bodies: new.bodies.clone(),
            libraries: new
                .libraries
                .iter()
                .map(|(name, lib)| {
                    let functions = lib
                        .functions
                        .iter()
                        .map(|(f, meta)| (f.clone(), meta.no_writes()))
                        .collect();
                    (
                        name.clone(),
                        LibraryV1 {
                            code: lib.code.clone(),
                            functions,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl ScriptCache {
    pub fn get(&self, sha: &str) -> Option<&Bytes> {
        self.bodies.get(sha)
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Bytes)> {
        self.bodies.iter()
    }
}

/// One script to run: its identity, body and arguments.
pub struct Call<'a> {
    pub sha: &'a str,
    pub body: &'a Bytes,
    pub run: &'a Run,
    /// The restricted ACL user the script runs for: each command it calls
    /// must be allowed to that user. None: anything may be called.
    pub caller: Option<&'a str>,
}

/// The state a script runs against: an entry being applied, which the
/// script may change, or a read, which it may not (its run is read-only).
/// A read names the database it runs in (a write runs in the state's
/// current one).
pub enum Access<'a> {
    Write(&'a mut State),
    Read(&'a State, u32),
    /// A read standing in for an op that may write: a write command ends
    /// the run with [`StateError::ScriptWrites`] instead of refusing it.
    ReadFirst(&'a State, u32),
}

impl Access<'_> {
    pub fn state(&self) -> &State {
        match self {
            Access::Write(state) => state,
            Access::Read(state, _) | Access::ReadFirst(state, _) => state,
        }
    }

    /// The database the script starts in.
    pub fn db(&self) -> u32 {
        match self {
            Access::Write(state) => state.current_db(),
            Access::Read(_, db) | Access::ReadFirst(_, db) => *db,
        }
    }

    /// None for a read.
    pub fn state_mut(&mut self) -> Option<&mut State> {
        match self {
            Access::Write(state) => Some(state),
            Access::Read(..) | Access::ReadFirst(..) => None,
        }
    }
}

/// Runs scripts for the state at apply time. Implementations must be
/// deterministic: the same calls against the same state give the same
/// outcome and the same writes on every replica.
pub trait ScriptHost: Send + Sync {
    /// Checks that `body` compiles (and remembers the compiled form).
    fn compile(&self, sha: &str, body: &Bytes) -> Result<(), StateError>;
    /// Runs a compiled-or-not script against `state` at `now`.
    fn run(&self, state: Access<'_>, now: u64, call: Call<'_>) -> OpResult;
    /// SCRIPT FLUSH: forget compiled scripts and start a fresh interpreter.
    fn reset(&self);
    /// Runs a library's code (FUNCTION LOAD): its name and functions.
    fn load_library(&self, code: &Bytes) -> Result<(String, Library), StateError>;
    /// Runs `function` of `library` (FCALL).
    fn call_function(
        &self,
        state: Access<'_>,
        now: u64,
        library: &Library,
        function: &str,
        run: &Run,
        caller: Option<&str>,
    ) -> OpResult;
}

/// The state's handle on its host: not replicated, not compared, not
/// serialized; cloned states share it.
#[derive(Clone, Default)]
pub struct HostSlot(Option<Arc<dyn ScriptHost>>);

impl HostSlot {
    pub fn new(host: Arc<dyn ScriptHost>) -> HostSlot {
        HostSlot(Some(host))
    }

    fn get(&self) -> Result<Arc<dyn ScriptHost>, StateError> {
        self.0.clone().ok_or(StateError::NoScriptHost)
    }
}

impl PartialEq for HostSlot {
    fn eq(&self, _: &HostSlot) -> bool {
        true
    }
}

impl fmt::Debug for HostSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "HostSlot(installed)"
        } else {
            "HostSlot(none)"
        })
    }
}

/// The lower-case hex sha1 of `body`, as Redis names scripts.
pub fn sha1hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

pub(super) fn apply(state: &mut State, now: u64, op: &ScriptOp) -> OpResult {
    match op {
        ScriptOp::Load(body) => {
            let sha = cache(state, body)?;
            Ok(Outcome::Bulk(Bytes::from(sha)))
        }
        ScriptOp::Flush => {
            state.scripts.bodies.clear();
            if let Ok(host) = state.script_host.get() {
                host.reset();
            }
            Ok(Outcome::Ok)
        }
        ScriptOp::Eval { body, run } => {
            let sha = cache(state, body)?;
            let caller = state.caller.clone();
            run_cached(Access::Write(state), now, &sha, run, caller.as_deref())
        }
        ScriptOp::EvalSha { sha, run } => {
            let caller = state.caller.clone();
            run_cached(Access::Write(state), now, sha, run, caller.as_deref())
        }
        ScriptOp::LoadLibrary { code, replace } => {
            let (name, library) = state.script_host.get()?.load_library(code)?;
            if !replace && state.scripts.libraries.contains_key(&name) {
                return Err(StateError::Script(format!(
                    "ERR Library '{name}' already exists"
                )));
            }
            for function in library.functions.keys() {
                let taken = state.scripts.libraries.iter().any(|(other, lib)| {
                    *other != name
                        && lib
                            .functions
                            .keys()
                            .any(|f| f.eq_ignore_ascii_case(function))
                });
                if taken {
                    return Err(StateError::Script(format!(
                        "ERR Function {function} already exists"
                    )));
                }
            }
            state.scripts.libraries.insert(name.clone(), library);
            Ok(Outcome::Bulk(Bytes::from(name)))
        }
        ScriptOp::DeleteLibrary(name) => {
            let name = String::from_utf8_lossy(name);
            match state.scripts.libraries.remove(name.as_ref()) {
                Some(_) => Ok(Outcome::Ok),
                None => Err(StateError::Script("ERR Library not found".into())),
            }
        }
        ScriptOp::FlushLibraries => {
            state.scripts.libraries.clear();
            Ok(Outcome::Ok)
        }
        ScriptOp::RestoreLibraries { codes, policy } => {
            state.scripts.libraries = restored_libraries(state, codes, *policy)?;
            Ok(Outcome::Ok)
        }
        ScriptOp::FCall { function, run } => {
            let (function, library) = library_of(state, function)?;
            let host = state.script_host.get()?;
            let caller = state.caller.clone();
            host.call_function(
                Access::Write(state),
                now,
                &library,
                &function,
                run,
                caller.as_deref(),
            )
        }
    }
}

/// The libraries after FUNCTION RESTORE of `codes` (Redis's
/// `functionRestoreCommand`): each code is loaded as FUNCTION LOAD does,
/// into a set of its own, which must hold no library or function twice;
/// then that set replaces everything (FLUSH) or joins what is loaded
/// (`libraryJoin`): a library already loaded refuses the whole restore
/// (APPEND) or is replaced (REPLACE), and a function the remaining
/// libraries already have refuses it. Nothing changes on a refusal.
fn restored_libraries(
    state: &State,
    codes: &[Bytes],
    policy: RestorePolicy,
) -> Result<BTreeMap<String, Library>, StateError> {
    let host = if codes.is_empty() {
        None
    } else {
        Some(state.script_host.get()?)
    };
    let mut restored: BTreeMap<String, Library> = BTreeMap::new();
    for code in codes {
        let host = host.as_ref().expect("a host for a code");
        let (name, library) = host.load_library(code)?;
        if restored.contains_key(&name) {
            return Err(StateError::Script(format!(
                "ERR Library '{name}' already exists"
            )));
        }
        if let Some(function) = first_taken(&restored, &library) {
            return Err(StateError::Script(format!(
                "ERR Function {function} already exists"
            )));
        }
        restored.insert(name, library);
    }
    if policy == RestorePolicy::Flush {
        return Ok(restored);
    }
    let mut joined = state.scripts.libraries.clone();
    for name in restored.keys() {
        if joined.contains_key(name) {
            if policy == RestorePolicy::Append {
                return Err(StateError::Script(format!(
                    "ERR Library {name} already exists"
                )));
            }
            joined.remove(name);
        }
    }
    for library in restored.values() {
        if let Some(function) = first_taken(&joined, library) {
            return Err(StateError::Script(format!(
                "ERR Function {function} already exists"
            )));
        }
    }
    joined.extend(restored);
    Ok(joined)
}

/// The first function of `library` that one of `libraries` has already
/// registered (names match without regard to case).
fn first_taken<'a>(libraries: &BTreeMap<String, Library>, library: &'a Library) -> Option<&'a str> {
    library
        .functions
        .keys()
        .find(|function| {
            libraries.values().any(|lib| {
                lib.functions
                    .keys()
                    .any(|f| f.eq_ignore_ascii_case(function))
            })
        })
        .map(String::as_str)
}

/// FCALL's library: the one that registered `function`, and the name it
/// registered it under (names match without regard to case, as Redis's).
fn library_of(state: &State, function: &[u8]) -> Result<(String, Library), StateError> {
    let function = String::from_utf8_lossy(function);
    state
        .scripts
        .libraries
        .values()
        .find_map(|lib| {
            lib.functions
                .keys()
                .find(|name| name.eq_ignore_ascii_case(&function))
                .map(|name| (name.clone(), lib.clone()))
        })
        .ok_or_else(|| StateError::Script("ERR Function not found".into()))
}

/// Compiles `body` unless cached, caches it, and answers its sha.
fn cache(state: &mut State, body: &Bytes) -> Result<String, StateError> {
    let sha = sha1hex(body);
    if !state.scripts.bodies.contains_key(&sha) {
        state.script_host.get()?.compile(&sha, body)?;
        // A copy: the op's body is a slice of the buffer it came in.
        state
            .scripts
            .bodies
            .insert(sha.clone(), Bytes::copy_from_slice(body));
    }
    Ok(sha)
}

fn run_cached(
    access: Access<'_>,
    now: u64,
    sha: &str,
    run: &Run,
    caller: Option<&str>,
) -> OpResult {
    let state = access.state();
    let body = state
        .scripts
        .bodies
        .get(sha)
        .cloned()
        .ok_or(StateError::NoScript)?;
    let host = state.script_host.get()?;
    host.run(
        access,
        now,
        Call {
            sha,
            body: &body,
            run,
            caller,
        },
    )
}

pub(super) fn read(
    state: &State,
    db: u32,
    now: u64,
    query: &ScriptQuery,
    caller: Option<&str>,
) -> OpResult {
    match query {
        ScriptQuery::EvalSha { sha, run } => {
            run_cached(Access::Read(state, db), now, sha, run, caller)
        }
        ScriptQuery::EvalShaFirst { sha, run } => {
            run_cached(Access::ReadFirst(state, db), now, sha, run, caller)
        }
        ScriptQuery::EvalFirst { sha, run, .. } => {
            if !state.scripts.bodies.contains_key(sha) {
                return Err(StateError::ScriptWrites);
            }
            run_cached(Access::ReadFirst(state, db), now, sha, run, caller)
        }
        ScriptQuery::FCall { function, run } => {
            let (function, library) = library_of(state, function)?;
            let host = state.script_host.get()?;
            host.call_function(
                Access::Read(state, db),
                now,
                &library,
                &function,
                run,
                caller,
            )
        }
        ScriptQuery::FCallFirst { function, run } => {
            let (function, library) = library_of(state, function)?;
            let host = state.script_host.get()?;
            host.call_function(
                Access::ReadFirst(state, db),
                now,
                &library,
                &function,
                run,
                caller,
            )
        }
        ScriptQuery::Exists(shas) => Ok(Outcome::Array(
            shas.iter()
                .map(|sha| {
                    let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                    Outcome::bool(state.scripts.bodies.contains_key(&sha))
                })
                .collect(),
        )),
        ScriptQuery::Kill => Err(StateError::NotBusy),
        ScriptQuery::ListLibraries { pattern, with_code } => {
            Ok(list_libraries(state, pattern.as_deref(), *with_code))
        }
        ScriptQuery::DumpLibraries => Ok(Outcome::Bulk(Bytes::from(super::rdb::encode_functions(
            state
                .scripts
                .libraries
                .values()
                .map(|lib| lib.code.as_ref()),
        )))),
        ScriptQuery::FunctionStats => {
            let libraries = &state.scripts.libraries;
            let functions: usize = libraries.values().map(|l| l.functions.len()).sum();
            let count = |n: usize| Outcome::Int(n as i64);
            let lua = Outcome::Map(vec![
                (bulk("libraries_count"), count(libraries.len())),
                (bulk("functions_count"), count(functions)),
            ]);
            Ok(Outcome::Map(vec![
                // A script never runs long enough here to be seen running:
                // every replica runs it within one entry's apply.
                (bulk("running_script"), Outcome::Nil),
                (bulk("engines"), Outcome::Map(vec![(bulk("LUA"), lua)])),
            ]))
        }
    }
}

fn bulk(s: &str) -> Outcome {
    Outcome::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]: libraries by name,
/// the pattern matched without regard to case, as Redis does.
fn list_libraries(state: &State, pattern: Option<&[u8]>, with_code: bool) -> Outcome {
    let lower = pattern.map(|p| p.to_ascii_lowercase());
    let libraries = state
        .scripts
        .libraries
        .iter()
        .filter(|(name, _)| {
            lower
                .as_deref()
                .is_none_or(|p| super::glob::matches(p, name.to_ascii_lowercase().as_bytes()))
        })
        .map(|(name, lib)| {
            let functions = lib
                .functions
                .iter()
                .map(|(f, meta)| {
                    Outcome::Map(vec![
                        (bulk("name"), bulk(f)),
                        (
                            bulk("description"),
                            Outcome::bulk_or_nil(meta.description.clone()),
                        ),
                        (
                            bulk("flags"),
                            Outcome::Set(meta.flags.iter().map(|f| bulk(f)).collect()),
                        ),
                    ])
                })
                .collect();
            let mut fields = vec![
                (bulk("library_name"), bulk(name)),
                (bulk("engine"), bulk("LUA")),
                (bulk("functions"), Outcome::Array(functions)),
            ];
            if with_code {
                fields.push((bulk("library_code"), Outcome::Bulk(lib.code.clone())));
            }
            Outcome::Map(fields)
        })
        .collect();
    Outcome::Array(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Op, Query};

    fn eval(body: &str) -> Op {
        Op::Script(ScriptOp::Eval {
            body: Bytes::from(body.to_owned()),
            run: Run {
                keys: vec![],
                args: vec![],
                read_only: false,
                seed: 0,
            },
        })
    }

    #[test]
    fn without_a_host_scripts_answer_an_error() {
        let mut state = State::new();
        let result = state.apply(1, 0, &eval("return 1"));
        assert_eq!(result, Err(StateError::NoScriptHost));
        assert!(state.scripts.is_empty());
        let sha = Op::Script(ScriptOp::EvalSha {
            sha: sha1hex(b"return 1"),
            run: Run {
                keys: vec![],
                args: vec![],
                read_only: false,
                seed: 0,
            },
        });
        assert_eq!(state.apply(2, 0, &sha), Err(StateError::NoScript));
        assert_eq!(
            state.apply(3, 0, &Op::Script(ScriptOp::Flush)),
            Ok(Outcome::Ok)
        );
    }

    fn read_first(sha: &str, keys: &[&str], args: &[&str]) -> Query {
        let bytes = |items: &[&str]| items.iter().map(|i| Bytes::from(i.to_string())).collect();
        Query::Script(ScriptQuery::EvalShaFirst {
            sha: sha.to_owned(),
            run: Run {
                keys: bytes(keys),
                args: bytes(args),
                read_only: false,
                seed: 0,
            },
        })
    }

    #[test]
    fn a_read_first_run_answers_what_it_read_or_stops_at_its_first_write() {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        let release = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;
        let swallow = "pcall(redis.call, 'set', KEYS[1], 'x') return redis.call('get', KEYS[1])";
        let flagged = "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'x')";
        let mut index = 0;
        let mut apply = |state: &mut State, op: Op| {
            index += 1;
            state.apply(index, 0, &op)
        };
        for body in [release, swallow, flagged] {
            let load = Op::Script(ScriptOp::Load(Bytes::from(body.to_owned())));
            apply(&mut state, load).expect("loads");
        }
        apply(&mut state, eval("redis.call('set', 'lock', 'mine')")).expect("sets");
        let (release, swallow, flagged) = (
            sha1hex(release.as_bytes()),
            sha1hex(swallow.as_bytes()),
            sha1hex(flagged.as_bytes()),
        );
        let before = state.clone();
        // Not the owner: read, answered, nothing changed.
        let not_owner = read_first(&release, &["lock"], &["theirs"]);
        assert_eq!(state.read(&not_owner, 0), Ok(Outcome::Int(0)));
        // The owner: the run reaches DEL and stops; the op is EVALSHA.
        let owner = read_first(&release, &["lock"], &["mine"]);
        assert_eq!(state.read(&owner, 0), Err(StateError::ScriptWrites));
        let op = owner.into_op().expect("an op");
        assert!(matches!(&op, Op::Script(ScriptOp::EvalSha { sha, .. }) if *sha == release));
        // A write the script catches with pcall still sends it to the log.
        let caught = read_first(&swallow, &["k"], &[]);
        assert_eq!(state.read(&caught, 0), Err(StateError::ScriptWrites));
        // A no-writes script's write is its own error, as it would be at
        // apply time; an unknown sha is NOSCRIPT.
        let refused = state.read(&read_first(&flagged, &["k"], &[]), 0);
        assert!(
            matches!(refused, Err(StateError::Script(text)) if text.contains("not allowed from read-only scripts"))
        );
        assert_eq!(
            state.read(&read_first(&"0".repeat(40), &[], &[]), 0),
            Err(StateError::NoScript)
        );
        assert_eq!(state, before);
        // Applied from the log, the op does what the run stopped short of.
        assert_eq!(apply(&mut state, op), Ok(Outcome::Int(1)));
        assert_eq!(state.read(&not_owner, 0), Ok(Outcome::Int(0)));
        assert!(state.db().get(&Bytes::from("lock"), 0).is_none());
    }

    #[test]
    fn a_read_first_fcall_answers_what_it_read_or_stops_at_its_first_write() {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        let code = "#!lua name=locks\nredis.register_function('release', function(KEYS, ARGV) if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0 end)";
        let load = Op::Script(ScriptOp::LoadLibrary {
            code: Bytes::from(code),
            replace: false,
        });
        assert_eq!(
            state.apply(1, 0, &load),
            Ok(Outcome::Bulk(Bytes::from("locks")))
        );
        state
            .apply(2, 0, &eval("redis.call('set', 'lock', 'mine')"))
            .expect("sets");
        let release = |token: &str| {
            Query::Script(ScriptQuery::FCallFirst {
                function: Bytes::from("release"),
                run: Run {
                    keys: vec![Bytes::from("lock")],
                    args: vec![Bytes::from(token.to_owned())],
                    read_only: false,
                    seed: 0,
                },
            })
        };
        let before = state.clone();
        assert_eq!(state.read(&release("theirs"), 0), Ok(Outcome::Int(0)));
        let owner = release("mine");
        assert_eq!(state.read(&owner, 0), Err(StateError::ScriptWrites));
        assert_eq!(state, before);
        let op = owner.into_op().expect("an op");
        assert!(matches!(&op, Op::Script(ScriptOp::FCall { .. })));
        assert_eq!(state.apply(3, 0, &op), Ok(Outcome::Int(1)));
        assert!(state.db().get(&Bytes::from("lock"), 0).is_none());
    }

    #[test]
    fn a_read_first_eval_needs_its_body_cached_and_stops_at_its_first_write() {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        let check = "return redis.call('get', KEYS[1])";
        let set = "return redis.call('set', KEYS[1], ARGV[1])";
        let eval_first = |body: &str, arg: &str| {
            Query::Script(ScriptQuery::EvalFirst {
                sha: sha1hex(body.as_bytes()),
                body: Bytes::from(body.to_owned()),
                run: Run {
                    keys: vec![Bytes::from("k")],
                    args: vec![Bytes::from(arg.to_owned())],
                    read_only: false,
                    seed: 0,
                },
            })
        };
        // Not cached yet: it must go through the log to cache its body,
        // and the op it becomes is the EVAL itself.
        let first = eval_first(check, "");
        assert_eq!(state.read(&first, 0), Err(StateError::ScriptWrites));
        let op = first.clone().into_op().expect("an op");
        assert!(matches!(&op, Op::Script(ScriptOp::Eval { body, .. }) if body == check));
        assert_eq!(state.apply(1, 0, &op), Ok(Outcome::Nil));
        // Cached: a run that only reads is answered as a read.
        state
            .apply(2, 0, &eval("redis.call('set', 'k', 'v')"))
            .expect("sets");
        let before = state.clone();
        assert_eq!(state.read(&first, 0), Ok(Outcome::Bulk(Bytes::from("v"))));
        // A cached body that writes stops at the write, state untouched.
        assert_eq!(
            state.apply(3, 0, &eval_first(set, "x").into_op().expect("op")),
            Ok(Outcome::Status("OK".into()))
        );
        let before_write = state.clone();
        assert_eq!(
            state.read(&eval_first(set, "y"), 0),
            Err(StateError::ScriptWrites)
        );
        assert_eq!(state, before_write);
        assert_ne!(state, before);
    }

    #[test]
    fn the_cache_survives_a_snapshot_and_older_formats_restore_empty() {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        assert_eq!(state.apply(1, 0, &eval("return 1")), Ok(Outcome::Int(1)));
        let bytes = state.encode_snapshot();
        assert_eq!(bytes[0], crate::state::snapshot::SNAPSHOT_FORMAT);
        let restored = State::decode_snapshot(&bytes).expect("decodes");
        assert_eq!(restored, state);
        assert_eq!(restored.scripts().len(), 1);
        assert!(restored.scripts().get(&sha1hex(b"return 1")).is_some());
        // Format 2 is format 3 without the trailing cache.
        let cache_len = postcard::to_stdvec(state.scripts()).unwrap().len();
        let mut old = bytes[..bytes.len() - cache_len].to_vec();
        old[0] = 2;
        let restored = State::decode_snapshot(&old).expect("format 2 decodes");
        assert!(restored.scripts().is_empty());
        assert_eq!(restored.db(), state.db());
    }

    #[test]
    fn function_restore_is_all_or_nothing_and_dump_round_trips() {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        let mut index = 0;
        let mut apply = |state: &mut State, op: ScriptOp| {
            index += 1;
            state.apply(index, 0, &Op::Script(op))
        };
        let lib = |name: &str, functions: &[&str]| {
            let mut code = format!("#!lua name={name}\n");
            for f in functions {
                code +=
                    &format!("redis.register_function('{f}', function() return '{name}' end)\n");
            }
            Bytes::from(code)
        };
        let load = |code: Bytes| ScriptOp::LoadLibrary {
            code,
            replace: false,
        };
        apply(&mut state, load(lib("one", &["a", "b"]))).unwrap();
        apply(&mut state, load(lib("two", &["c"]))).unwrap();
        let dump = |state: &State| match state.read(&Query::Script(ScriptQuery::DumpLibraries), 0) {
            Ok(Outcome::Bulk(payload)) => payload,
            other => panic!("{other:?}"),
        };
        let payload = dump(&state);
        let codes = super::super::rdb::decode_functions(&payload).unwrap();
        assert_eq!(codes, vec![lib("one", &["a", "b"]), lib("two", &["c"])]);
        let restore = |codes: Vec<Bytes>, policy| ScriptOp::RestoreLibraries { codes, policy };
        let text = |r: OpResult| match r {
            Err(StateError::Script(text)) => text,
            other => panic!("{other:?}"),
        };

        // APPEND: a library of the same name refuses it, nothing changes.
        let before = state.scripts.clone();
        let clash = vec![lib("three", &["d"]), lib("one", &["e"])];
        assert_eq!(
            text(apply(
                &mut state,
                restore(clash.clone(), RestorePolicy::Append)
            )),
            "ERR Library one already exists"
        );
        assert_eq!(state.scripts, before);
        // REPLACE: it replaces that library, but a function another
        // library has still refuses the whole restore.
        let taken = vec![lib("three", &["d"]), lib("one", &["C"])];
        assert_eq!(
            text(apply(&mut state, restore(taken, RestorePolicy::Replace))),
            "ERR Function C already exists"
        );
        assert_eq!(state.scripts, before);
        assert_eq!(
            apply(&mut state, restore(clash, RestorePolicy::Replace)),
            Ok(Outcome::Ok)
        );
        let names: Vec<_> = state.scripts.libraries.keys().cloned().collect();
        assert_eq!(names, ["one", "three", "two"]);
        assert!(state.scripts.libraries["one"].functions.contains_key("e"));
        // Within the payload, a library or function twice is refused,
        // even with FLUSH, and a code that does not load too.
        let before = state.scripts.clone();
        for (codes, error) in [
            (
                vec![lib("x", &["x1"]), lib("x", &["x2"])],
                "ERR Library 'x' already exists",
            ),
            (
                vec![lib("x", &["f"]), lib("y", &["F"])],
                "ERR Function F already exists",
            ),
            (
                vec![lib("x", &["x1"]), Bytes::from("#!lua name=z\nlocal y = 1")],
                "ERR No functions registered",
            ),
        ] {
            assert_eq!(
                text(apply(&mut state, restore(codes, RestorePolicy::Flush))),
                error
            );
            assert_eq!(state.scripts, before);
        }
        // FLUSH: the payload's libraries and nothing else.
        assert_eq!(
            apply(&mut state, restore(codes.clone(), RestorePolicy::Flush)),
            Ok(Outcome::Ok)
        );
        assert_eq!(dump(&state), payload);
        let fcall = Op::Script(ScriptOp::FCall {
            function: Bytes::from("c"),
            run: Run {
                keys: vec![],
                args: vec![],
                read_only: false,
                seed: 0,
            },
        });
        assert_eq!(
            state.apply(100, 0, &fcall),
            Ok(Outcome::Bulk(Bytes::from("two")))
        );
        // An empty payload: FLUSH empties, APPEND keeps.
        assert_eq!(
            apply(&mut state, restore(vec![], RestorePolicy::Append)),
            Ok(Outcome::Ok)
        );
        assert_eq!(dump(&state), payload);
        assert_eq!(
            apply(&mut state, restore(vec![], RestorePolicy::Flush)),
            Ok(Outcome::Ok)
        );
        assert!(state.scripts.libraries.is_empty());
    }

    #[test]
    fn sha1hex_is_redis_naming() {
        assert_eq!(sha1hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1hex(b"Pizza & Mandolino"),
            "74822d82031af7493c20eefa13bd07ec4fada82f"
        );
    }
}
