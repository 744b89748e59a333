//! The Lua host: runs scripts for the state machine at apply time.
//!
//! `state` holds the replicated script cache and calls a
//! [`ScriptHost`](crate::state::scripts::ScriptHost) for each run; this
//! module is that host. It owns one Lua 5.1 interpreter (mlua, vendored),
//! compiles each script once per replica, and turns every `redis.call`
//! into the command table's op or query (`command::prepare`), applied to
//! the state at the entry's time, its reply converted back to Lua as
//! Redis 7.0 converts it.
//!
//! Everything a script can observe is the same on every replica: no `os`
//! or `io`; `math.random` is a PRNG seeded by the op (drawn by the node
//! that took the command); TIME answers the entry's time; random commands
//! get seeds derived from the op's; a runaway script is ended by an
//! instruction count (a VM hook), not by a clock. Writes a script made
//! before an error stay, as in Redis, identically everywhere.

mod call;
mod convert;
mod libs;
mod msgpack;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::resp::Reply;
use crate::state::scripts::{Access, Call, FunctionMeta, HostSlot, Library, Run, ScriptHost};
use crate::state::{OpResult, StateError};
use call::Dispatched;

/// Lua VM instructions one script may execute; a `while true do end`
/// ends here, on every replica at the same instruction, with
/// [`INSTRUCTION_LIMIT_ERROR`]. Every replica runs every script while it
/// applies, so this bounds how long the whole cluster stops: measured,
/// 100M instructions (about a second) let a few queued runaway scripts
/// stall every node past the election timeout and no leader could be
/// elected; 20M is a fraction of a second, far more than the scripts of
/// locks, rate limiters and queues need.
pub const INSTRUCTION_LIMIT: u64 = 20_000_000;
/// How often the counting hook runs, in instructions.
const HOOK_EVERY: u32 = 10_000;
/// Memory a script may allocate beyond what the interpreter held before
/// it started.
pub const MEMORY_LIMIT: usize = 256 * 1024 * 1024;
/// Heap growth between full collections. Replicas' heaps may differ by up
/// to this much when a run starts (their garbage differs with their
/// history), so a script within GC_SLACK of MEMORY_LIMIT may fail on one
/// replica and not another: 2% of the limit, for scripts no real use
/// comes near.
const GC_SLACK: usize = 4 * 1024 * 1024;

pub const INSTRUCTION_LIMIT_ERROR: &str =
    "ERR script killed: it ran past the instruction limit (a script runs inside one replicated step and cannot run for long)";

/// The Lua host to install in every state that applies log entries.
pub fn host() -> HostSlot {
    HostSlot::new(Arc::new(LuaHost::new()))
}

pub struct LuaHost {
    vm: Mutex<Option<Vm>>,
}

impl Default for LuaHost {
    fn default() -> Self {
        LuaHost::new()
    }
}

impl LuaHost {
    pub fn new() -> LuaHost {
        LuaHost {
            vm: Mutex::new(None),
        }
    }

    /// The interpreter, created on first use.
    fn vm(&self) -> Result<VmGuard<'_>, StateError> {
        let mut guard = self.vm.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(Vm::new().map_err(|e| script_error(format!("ERR {e}")))?);
        }
        Ok(VmGuard(guard))
    }
}

struct VmGuard<'a>(MutexGuard<'a, Option<Vm>>);

impl VmGuard<'_> {
    fn get(&mut self) -> &mut Vm {
        self.0.as_mut().expect("created by LuaHost::vm")
    }
}

impl ScriptHost for LuaHost {
    fn compile(&self, sha: &str, body: &Bytes) -> Result<(), StateError> {
        self.vm()?.get().compiled(sha, body).map(|_| ())
    }

    fn run(&self, state: Access<'_>, now: u64, call: Call<'_>) -> OpResult {
        let mut guard = self.vm()?;
        let vm = guard.get();
        let script = vm.compiled(call.sha, call.body)?;
        if call.run.read_only && !script.flags.compat && !script.flags.no_writes {
            return Err(script_error(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        let read_only = call.run.read_only || script.flags.no_writes;
        vm.run(state, now, &script, call, read_only)
    }

    fn reset(&self) {
        *self.vm.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn load_library(&self, code: &Bytes) -> Result<(String, Library), StateError> {
        self.vm()?.get().load_library(code)
    }

    fn call_function(
        &self,
        state: Access<'_>,
        now: u64,
        library: &Library,
        function: &str,
        run: &Run,
        caller: Option<&str>,
    ) -> OpResult {
        self.vm()?
            .get()
            .call_function(state, now, library, function, run, caller)
    }
}

pub(crate) fn script_error(text: impl Into<String>) -> StateError {
    StateError::Script(text.into().replace(['\r', '\n'], " "))
}

/// What a script's shebang line declares.
#[derive(Clone, Copy, Debug, Default)]
struct ScriptFlags {
    /// No shebang: Redis's compatibility mode (may write, no flags).
    compat: bool,
    no_writes: bool,
}

#[derive(Clone)]
struct Compiled {
    function: Function,
    flags: ScriptFlags,
}

/// Parses `#!lua flags=...` as Redis 7.0 does; answers the flags and how
/// many bytes the shebang line takes (its line feed is kept, so line
/// numbers stay the user's).
fn shebang(body: &[u8]) -> Result<(ScriptFlags, usize), StateError> {
    if !body.starts_with(b"#!") {
        return Ok((
            ScriptFlags {
                compat: true,
                no_writes: false,
            },
            0,
        ));
    }
    let end = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| script_error("ERR Invalid script shebang"))?;
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_whitespace();
    let engine = parts
        .next()
        .ok_or_else(|| script_error("ERR Invalid engine in script shebang"))?;
    if engine != "#!lua" {
        return Err(script_error(format!(
            "ERR Unexpected engine in script shebang: {engine}"
        )));
    }
    let mut flags = ScriptFlags::default();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(script_error(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" | "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => {
                    return Err(script_error(format!(
                        "ERR Unexpected flag in script shebang: {other}"
                    )))
                }
            }
        }
    }
    Ok((flags, end))
}

/// One interpreter with the sandbox loaded and the compiled scripts.
struct Vm {
    lua: Lua,
    /// The sandbox's internals: `env`, `globals`, `run`, `raised`.
    internal: Table,
    /// The sandbox's functions and tables, looked up once: `globals` is
    /// what scripts see as their globals (KEYS and ARGV are set there).
    globals: Table,
    run: Function,
    run_with: Function,
    compiled: HashMap<String, Compiled>,
    /// Loaded function libraries: name -> (code, functions).
    libraries: HashMap<String, (Bytes, HashMap<String, Function>)>,
    /// Instructions executed by the current run, in hook periods.
    budget: Arc<Budget>,
    /// The run `redis.call` and `redis.pcall` act on.
    current: Arc<call::CurrentRun>,
    /// The heap's size after the last full collection.
    collected_at: Cell<usize>,
}

#[derive(Default)]
struct Budget {
    /// Instructions (and instruction-equivalents of commands) so far.
    used: AtomicU64,
    exceeded: AtomicBool,
}

/// What one redis.call costs against [`INSTRUCTION_LIMIT`]: the command's
/// work happens outside the VM, where the hook cannot count it, so a loop
/// of cheap commands is bounded too.
const CALL_COST: u64 = 100;

impl Budget {
    /// Counts `n` instructions; past the limit, ends the script.
    fn charge(self: &Arc<Self>, lua: &Lua, n: u64) -> mlua::Result<VmState> {
        let used = self.used.fetch_add(n, Ordering::Relaxed) + n;
        if used > INSTRUCTION_LIMIT || self.exceeded.load(Ordering::Relaxed) {
            if !self.exceeded.swap(true, Ordering::Relaxed) {
                // From now on every instruction fails, so no pcall inside
                // the script can swallow the end.
                lua.set_hook(HookTriggers::new().every_nth_instruction(1), |_, _| {
                    Err(mlua::Error::runtime(INSTRUCTION_LIMIT_ERROR))
                });
            }
            return Err(mlua::Error::runtime(INSTRUCTION_LIMIT_ERROR));
        }
        Ok(VmState::Continue)
    }
}

impl Vm {
    /// Compiles a script or library body in the sandbox's environment;
    /// a syntax error answers `ERR <what>: <message>`, as Redis words it.
    fn load_chunk(&self, code: &[u8], name: &str, what: &str) -> Result<Function, StateError> {
        let env: Table = self
            .internal
            .get("env")
            .map_err(|e| script_error(format!("ERR {e}")))?;
        self.lua
            .load(code)
            .set_name(name)
            .set_environment(env)
            .into_function()
            .map_err(|e| {
                let text = match &e {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                script_error(format!("ERR {what}: {text}"))
            })
    }

    fn new() -> mlua::Result<Vm> {
        // The debug library is loaded for the sandbox's error handler
        // only (it keeps `debug.getinfo` as a local); scripts never see it.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::new(),
            )
        };
        libs::install(&lua)?;
        let internal = lua.create_table()?;
        lua.load(include_str!("sandbox.lua"))
            .set_name("=[concord]")
            .call::<()>(internal.clone())?;
        internal.raw_set(
            "raised",
            lua.create_function(|lua, ()| Ok(libs::take_raised(lua)))?,
        )?;
        let budget = Arc::new(Budget::default());
        let current = Arc::new(call::CurrentRun::default());
        let slot = current.clone();
        internal.raw_set(
            "stopped",
            lua.create_function(move |_, ()| {
                Ok(slot.with(|ctx| ctx.reached_write).unwrap_or(false))
            })?,
        )?;
        let redis: Table = lua.globals().get("redis")?;
        // C functions, not Lua wrappers: a wrapper would turn the script's
        // `return redis.call()` into a tail call and lose the line errors
        // name. redis.call raises what redis.pcall returns. A Rust callback
        // can only raise a string, so the text is kept (in the run's app
        // data) for the error handler to turn back into Redis's error table.
        let (slot, charge) = (current.clone(), budget.clone());
        let call = lua.create_function(move |lua, args: MultiValue| {
            charge.charge(lua, CALL_COST)?;
            let text = match slot.with(|ctx| ctx.dispatch(&args)) {
                None => return Err(mlua::Error::runtime(unbound("call"))),
                Some(Dispatched::ReachedWrite) => return Err(stop_run(lua)),
                Some(Dispatched::Done(Ok(Reply::Error(text)) | Err(text))) => text,
                Some(Dispatched::Done(Ok(reply))) => {
                    return convert::reply_to_lua(lua, reply, libs::resp3(lua))
                }
            };
            libs::set_raised(lua, text.clone());
            Err(mlua::Error::runtime(text))
        })?;
        let (slot, charge) = (current.clone(), budget.clone());
        let pcall = lua.create_function(move |lua, args: MultiValue| {
            charge.charge(lua, CALL_COST)?;
            match slot.with(|ctx| ctx.dispatch(&args)) {
                None => Err(mlua::Error::runtime(unbound("pcall"))),
                Some(Dispatched::ReachedWrite) => Err(stop_run(lua)),
                Some(Dispatched::Done(Ok(reply))) => {
                    convert::reply_to_lua(lua, reply, libs::resp3(lua))
                }
                Some(Dispatched::Done(Err(text))) => convert::error_table(lua, &text),
            }
        })?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        // Whether the script's user may run a command, as redis.call would
        // decide it (true for a user with every permission).
        let slot = current.clone();
        let acl_check = lua.create_function(move |_, args: MultiValue| {
            let invalid =
                || mlua::Error::runtime("Invalid command passed to redis.acl_check_cmd()");
            let argv = call::to_argv(&args).map_err(mlua::Error::runtime)?;
            let spec = argv
                .first()
                .and_then(|name| crate::command::lookup(name))
                .filter(|spec| spec.arity_ok(argv.len()))
                .and_then(|spec| crate::command::resolve_subcommand(spec, &argv).ok())
                .ok_or_else(invalid)?;
            Ok(slot
                .with(|ctx| ctx.acl_check(spec, &argv).is_ok())
                .unwrap_or(true))
        })?;
        redis.raw_set("acl_check_cmd", acl_check)?;
        Ok(Vm {
            globals: internal.get("globals")?,
            run: internal.get("run")?,
            run_with: internal.get("run_with")?,
            lua,
            internal,
            compiled: HashMap::new(),
            libraries: HashMap::new(),
            budget,
            current,
            collected_at: Cell::new(0),
        })
    }

    fn compiled(&mut self, sha: &str, body: &Bytes) -> Result<Compiled, StateError> {
        if let Some(c) = self.compiled.get(sha) {
            return Ok(c.clone());
        }
        let (flags, skip) = shebang(body)?;
        let function = self.load_chunk(
            &body[skip..],
            "@user_script",
            "Error compiling script (new function)",
        )?;
        let compiled = Compiled { function, flags };
        self.compiled.insert(sha.to_owned(), compiled.clone());
        Ok(compiled)
    }

    fn run(
        &mut self,
        state: Access<'_>,
        now: u64,
        script: &Compiled,
        call: Call<'_>,
        read_only: bool,
    ) -> OpResult {
        let fail = |e: mlua::Error| script_error(format!("ERR {e}"));
        let (keys, argv) = self.arguments(call.run).map_err(fail)?;
        self.globals.raw_set("KEYS", keys).map_err(fail)?;
        self.globals.raw_set("ARGV", argv).map_err(fail)?;
        let runner = self.run.clone();
        let target = Target {
            runner,
            args: MultiValue::from_iter([Value::Function(script.function.clone())]),
            label: call.sha,
        };
        self.execute(state, now, target, read_only, call.run.seed, call.caller)
    }

    /// KEYS and ARGV as Lua tables.
    fn arguments(&self, run: &Run) -> mlua::Result<(Table, Table)> {
        let lua = &self.lua;
        let strings = |items: &[Bytes]| {
            items
                .iter()
                .map(|k| lua.create_string(k))
                .collect::<mlua::Result<Vec<_>>>()
        };
        Ok((
            lua.create_sequence_from(strings(&run.keys)?)?,
            lua.create_sequence_from(strings(&run.args)?)?,
        ))
    }

    /// Limits what the code about to run may use: instructions, counted
    /// by a hook, and memory.
    fn arm_limits(&self) {
        let lua = &self.lua;
        self.budget.used.store(0, Ordering::Relaxed);
        self.budget.exceeded.store(false, Ordering::Relaxed);
        let budget = self.budget.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, _| budget.charge(lua, HOOK_EVERY as u64),
        );
        // A full collection before every run cost more than the scripts
        // themselves (redis-py's Lock extend: 21 µs a run with it); Lua's
        // incremental collector runs as scripts allocate, and a full one
        // runs only once the heap has grown by GC_SLACK.
        if lua.used_memory() > self.collected_at.get() + GC_SLACK {
            let _ = lua.gc_collect();
            self.collected_at.set(lua.used_memory());
        }
        let _ = lua.set_memory_limit(lua.used_memory() + MEMORY_LIMIT);
    }

    /// Lifts the limits; answers whether the instruction limit was hit.
    fn disarm_limits(&self) -> bool {
        self.lua.remove_hook();
        let _ = self.lua.set_memory_limit(0);
        self.budget.exceeded.load(Ordering::Relaxed)
    }

    /// Calls `target.runner(target.args...)` (the sandbox's protected
    /// runner) with redis.call/pcall bound to `state`, and converts what
    /// it answers.
    fn execute(
        &mut self,
        state: Access<'_>,
        now: u64,
        target: Target<'_>,
        read_only: bool,
        seed: u64,
        caller: Option<&str>,
    ) -> OpResult {
        // A read may not write, whatever the script declares.
        let read_only = read_only || matches!(state, Access::Read(..));
        let db = state.db();
        let lua = &self.lua;
        libs::begin_run(lua, seed);
        self.arm_limits();
        let mut ctx = call::Ctx {
            state,
            now,
            read_only,
            seed,
            calls: 0,
            reached_write: false,
            caller: caller.map(str::to_owned),
            db,
        };
        let label = target.label;
        let ran = {
            let _bound = self.current.bind(&mut ctx);
            target.runner.call::<(bool, Value)>(target.args)
        };
        let exceeded = self.disarm_limits();
        if ctx.reached_write {
            return Err(StateError::ScriptWrites);
        }
        let result = ran.map(|(ok, value)| {
            if ok {
                convert::lua_to_outcome(&value, libs::resp3(lua), 0)
            } else {
                Err(convert::run_error(&value, label))
            }
        });
        if exceeded {
            return Err(script_error(INSTRUCTION_LIMIT_ERROR));
        }
        match result {
            Ok(outcome) => outcome,
            Err(mlua::Error::MemoryError(_)) => Err(script_error(
                "ERR script killed: it ran past the memory limit for scripts",
            )),
            Err(e) => Err(script_error(format!(
                "ERR Error running script {label}, {e}"
            ))),
        }
    }

    /// Runs a library's code with the library API as its globals (Redis
    /// 7.0's: `redis.register_function`, `redis.log` and the version) and
    /// keeps the functions it registered.
    fn load_library(&mut self, code: &Bytes) -> Result<(String, Library), StateError> {
        let (name, skip) = library_name(code)?;
        let chunk = self.load_chunk(&code[skip..], "@user_function", "Error compiling function")?;
        let registered: RefCell<Vec<(String, Function, FunctionMeta)>> = RefCell::new(Vec::new());
        let lua = &self.lua;
        libs::begin_run(lua, 0);
        self.arm_limits();
        let internal = &self.internal;
        let result = lua.scope(|scope| {
            let register = scope.create_function(|_, args: MultiValue| {
                let entry = registration(&args).map_err(mlua::Error::runtime)?;
                let mut all = registered.borrow_mut();
                if all.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(&entry.0)) {
                    return Err(mlua::Error::runtime(
                        "Function already exists in the library",
                    ));
                }
                all.push(entry);
                Ok(())
            })?;
            // The top level sees the library API only (see sandbox.lua).
            let set_loading: Function = internal.raw_get("set_loading")?;
            internal.raw_set("register", register)?;
            set_loading.call::<()>(true)?;
            let result = chunk.call::<()>(());
            set_loading.call::<()>(false)?;
            internal.raw_set("register", Value::Nil)?;
            result
        });
        let exceeded = self.disarm_limits();
        if exceeded {
            // Redis stops a load after 500 ms with this text; the
            // instruction limit stands in for the clock here.
            return Err(script_error(
                "ERR Error registering functions: ERR FUNCTION LOAD timeout",
            ));
        }
        result.map_err(|e| {
            script_error(format!(
                "ERR Error registering functions: ERR {}",
                load_error_text(&e)
            ))
        })?;
        let registered = registered.into_inner();
        if registered.is_empty() {
            return Err(script_error("ERR No functions registered"));
        }
        let library = Library {
            code: code.clone(),
            functions: registered
                .iter()
                .map(|(n, _, meta)| (n.clone(), meta.clone()))
                .collect(),
        };
        let functions = registered
            .into_iter()
            .map(|(n, f, _)| (n, f))
            .collect::<HashMap<_, _>>();
        self.libraries
            .insert(name.clone(), (code.clone(), functions));
        Ok((name, library))
    }

    fn call_function(
        &mut self,
        state: Access<'_>,
        now: u64,
        library: &Library,
        function: &str,
        run: &Run,
        caller: Option<&str>,
    ) -> OpResult {
        let (name, _) = library_name(&library.code)?;
        let loaded = self
            .libraries
            .get(&name)
            .is_some_and(|(code, _)| *code == library.code);
        if !loaded {
            self.load_library(&library.code)?;
        }
        let callback = self
            .libraries
            .get(&name)
            .and_then(|(_, functions)| functions.get(function))
            .cloned()
            .ok_or_else(|| script_error("ERR Function not found"))?;
        let no_writes = library
            .functions
            .get(function)
            .is_some_and(FunctionMeta::no_writes);
        if run.read_only && !no_writes {
            return Err(script_error(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
        let fail = |e: mlua::Error| script_error(format!("ERR {e}"));
        let (keys, argv) = self.arguments(run).map_err(fail)?;
        let runner = self.run_with.clone();
        let target = Target {
            runner,
            args: MultiValue::from_iter([
                Value::Function(callback),
                Value::Table(keys),
                Value::Table(argv),
            ]),
            label: function,
        };
        self.execute(
            state,
            now,
            target,
            run.read_only || no_writes,
            run.seed,
            caller,
        )
    }
}

/// What a library's code raised while it loaded, as Redis words it: the
/// message alone, without mlua's "runtime error: " and traceback.
fn load_error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => load_error_text(cause),
        mlua::Error::RuntimeError(message) => message
            .split("\nstack traceback:")
            .next()
            .unwrap_or(message)
            .to_owned(),
        other => other.to_string(),
    }
}

/// The error of a `redis.call`/`redis.pcall` made outside a script run:
/// at a library's top level while it loads (Redis 7.0 refuses that too,
/// in other words: `call` is not in the loading library's globals).
fn unbound(name: &str) -> String {
    format!(
        "redis.{name} is not available while a library loads; call it from a registered function"
    )
}

/// Ends a read-first run that reached a write (its answer is moot; the op
/// will run from the log). The error unwinds to the sandbox's handler,
/// which returns at once; a script that catches it with pcall gets a few
/// more instructions (every redis.call now fails) before a hook ends it
/// too. The hook does not fire on every instruction because the handler
/// has to run: each error from Rust costs a Lua traceback, and an error in
/// the handler a second one.
fn stop_run(lua: &Lua) -> mlua::Error {
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(STOPPED_GRACE),
        |_, _| Err(mlua::Error::runtime(call::REACHED_WRITE)),
    );
    mlua::Error::runtime(call::REACHED_WRITE)
}

/// Instructions a stopped read-first run may still execute (its error
/// handler's, or a pcall loop's) before it is ended.
const STOPPED_GRACE: u32 = 1_000;

/// What to call and how errors name it.
struct Target<'a> {
    runner: Function,
    args: MultiValue,
    label: &'a str,
}

/// `#!lua name=<library>`: the library's name and the shebang's length.
fn library_name(code: &[u8]) -> Result<(String, usize), StateError> {
    if !code.starts_with(b"#!") {
        return Err(script_error("ERR Missing library metadata"));
    }
    let end = code.iter().position(|&b| b == b'\n').unwrap_or(code.len());
    let line = String::from_utf8_lossy(&code[..end]);
    let mut parts = line.split_whitespace();
    let engine = parts.next().unwrap_or("#!");
    // Engines are looked up without regard to case, as Redis does.
    if !engine.eq_ignore_ascii_case("#!lua") {
        return Err(script_error(format!(
            "ERR Engine '{}' not found",
            engine.trim_start_matches("#!")
        )));
    }
    let mut name = None;
    for part in parts {
        // Redis splits the line as it splits arguments: quotes group, and
        // are not part of the value.
        let part = part.replace('"', "");
        if part
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("name="))
        {
            if name.is_some() {
                return Err(script_error(
                    "ERR Invalid metadata value, name argument was given multiple times",
                ));
            }
            name = Some(part[5..].to_owned());
        } else {
            return Err(script_error(format!(
                "ERR Invalid metadata value given: {part}"
            )));
        }
    }
    let name = name.ok_or_else(|| script_error("ERR Library name was not given"))?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(script_error(
            "ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long",
        ));
    }
    Ok((name, end))
}

/// The arguments of redis.register_function: `(name, callback)` or
/// `{function_name=..., callback=..., flags={...}, description=...}`.
fn registration(args: &MultiValue) -> Result<(String, Function, FunctionMeta), String> {
    let (name, callback, meta) = match args.iter().collect::<Vec<_>>().as_slice() {
        // As Redis's `lua_isstring`, a number is a name too.
        [name @ (Value::String(_) | Value::Integer(_) | Value::Number(_)), callback] => {
            let name = match name {
                Value::String(s) => s.to_string_lossy(),
                Value::Integer(n) => n.to_string(),
                // Lua's tostring: integral numbers without a fraction (any
                // other spelling has a '.' or 'e', which no name may hold).
                Value::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
                Value::Number(n) => format!("{n}"),
                _ => unreachable!("matched above"),
            };
            let Value::Function(f) = callback else {
                return Err("second argument to redis.register_function must be a function".into());
            };
            (name, f.clone(), FunctionMeta::default())
        }
        [_, _] => return Err("first argument to redis.register_function must be a string".into()),
        [Value::Table(t)] => {
            let (mut name, mut callback, mut meta) = (None, None, FunctionMeta::default());
            for pair in t.clone().pairs::<Value, Value>() {
                let (key, value) = pair.map_err(|e| e.to_string())?;
                let Value::String(key) = key else {
                    return Err(
                        "named argument key given to redis.register_function is not a string"
                            .into(),
                    );
                };
                match key.to_string_lossy().to_ascii_lowercase().as_str() {
                    "function_name" => match value {
                        Value::String(n) => name = Some(n.to_string_lossy()),
                        _ => {
                            return Err("function_name argument given to redis.register_function must be a string".into())
                        }
                    },
                    "description" => match value {
                        Value::String(d) => {
                            meta.description = Some(Bytes::copy_from_slice(&d.as_bytes()))
                        }
                        _ => {
                            return Err("description argument given to redis.register_function must be a string".into())
                        }
                    },
                    "callback" => match value {
                        Value::Function(f) => callback = Some(f),
                        _ => {
                            return Err("callback argument given to redis.register_function must be a function".into())
                        }
                    },
                    "flags" => match value {
                        Value::Table(flags) => meta.flags = function_flags(&flags)?,
                        _ => {
                            return Err("flags argument to redis.register_function must be a table representing function flags".into())
                        }
                    },
                    _ => return Err("unknown argument given to redis.register_function".into()),
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let callback = callback.ok_or("redis.register_function must get a callback argument")?;
            (name, callback, meta)
        }
        [_] => return Err("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).".into()),
        _ => return Err("wrong number of arguments to redis.register_function".into()),
    };
    // Redis checks a function's name as it checks a library's.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    Ok((name, callback, meta))
}

/// The flags a function may declare, in the order Redis lists them.
const FUNCTION_FLAGS: &[&str] = &[
    "no-writes",
    "allow-oom",
    "allow-stale",
    "no-cluster",
    "allow-cross-slot-keys",
];

fn function_flags(flags: &Table) -> Result<Vec<String>, String> {
    let mut given = Vec::new();
    for flag in flags.clone().sequence_values::<mlua::String>() {
        let flag = flag.map_err(|_| "unknown flag given".to_owned())?;
        // Matched without regard to case, as Redis does.
        let flag = flag.to_string_lossy();
        let Some(known) = FUNCTION_FLAGS
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&flag))
        else {
            return Err("unknown flag given".to_owned());
        };
        given.push((*known).to_owned());
    }
    Ok(FUNCTION_FLAGS
        .iter()
        .filter(|f| given.iter().any(|g| g == *f))
        .map(|f| (*f).to_owned())
        .collect())
}

#[cfg(test)]
mod tests;
