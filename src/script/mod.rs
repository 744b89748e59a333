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

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::resp::Reply;
use crate::state::scripts::{Call, HostSlot, ScriptHost};
use crate::state::{OpResult, State, StateError};

/// Lua VM instructions one script may execute. A few hundred million
/// is a few seconds at most; a `while true do end` ends here, on every
/// replica at the same instruction, with [`INSTRUCTION_LIMIT_ERROR`].
pub const INSTRUCTION_LIMIT: u64 = 100_000_000;
/// How often the counting hook runs, in instructions.
const HOOK_EVERY: u32 = 10_000;
/// Memory a script may allocate beyond what the interpreter held before
/// it started.
pub const MEMORY_LIMIT: usize = 256 * 1024 * 1024;

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

    fn run(&self, state: &mut State, now: u64, call: Call<'_>) -> OpResult {
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
    /// The sandbox's internals: `env`, `run`, `set_args`, `raised`.
    internal: Table,
    compiled: HashMap<String, Compiled>,
    /// Instructions executed by the current run, in hook periods.
    budget: Arc<Budget>,
}

#[derive(Default)]
struct Budget {
    periods: AtomicU64,
    exceeded: AtomicBool,
}

impl Vm {
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
        Ok(Vm {
            lua,
            internal,
            compiled: HashMap::new(),
            budget: Arc::new(Budget::default()),
        })
    }

    fn compiled(&mut self, sha: &str, body: &Bytes) -> Result<Compiled, StateError> {
        if let Some(c) = self.compiled.get(sha) {
            return Ok(c.clone());
        }
        let (flags, skip) = shebang(body)?;
        let env: Table = self
            .internal
            .get("env")
            .map_err(|e| script_error(format!("ERR {e}")))?;
        let function = self
            .lua
            .load(&body[skip..])
            .set_name("@user_script")
            .set_environment(env)
            .into_function()
            .map_err(|e| {
                let text = match &e {
                    mlua::Error::SyntaxError { message, .. } => message.clone(),
                    other => other.to_string(),
                };
                script_error(format!("ERR Error compiling script (new function): {text}"))
            })?;
        let compiled = Compiled { function, flags };
        self.compiled.insert(sha.to_owned(), compiled.clone());
        Ok(compiled)
    }

    fn run(
        &mut self,
        state: &mut State,
        now: u64,
        script: &Compiled,
        call: Call<'_>,
        read_only: bool,
    ) -> OpResult {
        let lua = &self.lua;
        let fail = |e: mlua::Error| script_error(format!("ERR {e}"));
        libs::begin_run(lua, call.run.seed);
        let keys = lua
            .create_sequence_from(
                call.run
                    .keys
                    .iter()
                    .map(|k| lua.create_string(k))
                    .collect::<mlua::Result<Vec<_>>>()
                    .map_err(fail)?,
            )
            .map_err(fail)?;
        let argv = lua
            .create_sequence_from(
                call.run
                    .args
                    .iter()
                    .map(|a| lua.create_string(a))
                    .collect::<mlua::Result<Vec<_>>>()
                    .map_err(fail)?,
            )
            .map_err(fail)?;
        let set_args: Function = self.internal.get("set_args").map_err(fail)?;
        set_args.call::<()>((keys, argv)).map_err(fail)?;
        let runner: Function = self.internal.get("run").map_err(fail)?;

        self.budget.periods.store(0, Ordering::Relaxed);
        self.budget.exceeded.store(false, Ordering::Relaxed);
        let budget = self.budget.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, _| {
                if budget.exceeded.load(Ordering::Relaxed) {
                    return Err(mlua::Error::runtime(INSTRUCTION_LIMIT_ERROR));
                }
                let periods = budget.periods.fetch_add(1, Ordering::Relaxed) + 1;
                if periods * HOOK_EVERY as u64 > INSTRUCTION_LIMIT {
                    budget.exceeded.store(true, Ordering::Relaxed);
                    // From now on every instruction fails, so no pcall
                    // inside the script can swallow the end.
                    let again = budget.clone();
                    lua.set_hook(HookTriggers::new().every_nth_instruction(1), move |_, _| {
                        again.exceeded.store(true, Ordering::Relaxed);
                        Err(mlua::Error::runtime(INSTRUCTION_LIMIT_ERROR))
                    });
                    return Err(mlua::Error::runtime(INSTRUCTION_LIMIT_ERROR));
                }
                Ok(VmState::Continue)
            },
        );
        let _ = lua.gc_collect();
        let _ = lua.set_memory_limit(lua.used_memory() + MEMORY_LIMIT);

        let ctx = RefCell::new(call::Ctx {
            state,
            now,
            read_only,
            seed: call.run.seed,
            calls: 0,
        });
        let raised: RefCell<Option<String>> = RefCell::new(None);
        let internal = &self.internal;
        let sha = call.sha;
        let result = lua.scope(|scope| {
            let redis: Table = lua.globals().get("redis")?;
            // redis.call raises what redis.pcall returns. A Rust callback
            // can only raise a string, so the text is kept for the error
            // handler to turn back into Redis's error table.
            let call = scope.create_function(|lua, args: MultiValue| {
                let text = match ctx.borrow_mut().dispatch(&args) {
                    Ok(Reply::Error(text)) | Err(text) => text,
                    Ok(reply) => return convert::reply_to_lua(lua, reply, libs::resp3(lua)),
                };
                *raised.borrow_mut() = Some(text.clone());
                Err(mlua::Error::runtime(text))
            })?;
            let pcall = scope.create_function(|lua, args: MultiValue| {
                match ctx.borrow_mut().dispatch(&args) {
                    Ok(reply) => convert::reply_to_lua(lua, reply, libs::resp3(lua)),
                    Err(text) => convert::error_table(lua, &text),
                }
            })?;
            let take_raised = scope.create_function(|_, ()| Ok(raised.borrow_mut().take()))?;
            redis.raw_set("call", call)?;
            redis.raw_set("pcall", pcall)?;
            internal.raw_set("raised", take_raised)?;
            let (ok, value): (bool, Value) = runner.call(script.function.clone())?;
            if ok {
                Ok(convert::lua_to_outcome(&value, libs::resp3(lua), 0))
            } else {
                Ok(Err(convert::run_error(&value, sha)))
            }
        });
        lua.remove_hook();
        let _ = lua.set_memory_limit(0);
        if self.budget.exceeded.load(Ordering::Relaxed) {
            return Err(script_error(INSTRUCTION_LIMIT_ERROR));
        }
        match result {
            Ok(outcome) => outcome,
            Err(mlua::Error::MemoryError(_)) => Err(script_error(
                "ERR script killed: it ran past the memory limit for scripts",
            )),
            Err(e) => Err(script_error(format!("ERR Error running script {sha}, {e}"))),
        }
    }
}

#[cfg(test)]
mod tests;
