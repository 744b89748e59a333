-- Builds the environment scripts run in, once per interpreter, with the
-- full standard library still at hand. Returns the internals the host
-- uses: the script environment and the protected runner. The host puts
-- `redis.call` and `redis.pcall` in place for each run, and
-- `internal.raised` once.
--
-- As in Redis 7.0, scripts see read-only globals: reading a missing global
-- and assigning any global are errors, and the library tables (redis,
-- string, math, table, cjson, bit, ...) cannot be modified, so one script
-- cannot change what the next one sees.
local internal = ...
local getinfo = debug.getinfo
local G = _G
local error, type, tostring, rawget, rawset = error, type, tostring, rawget, rawset
local setmetatable, setfenv, loadstring, select = setmetatable, setfenv, loadstring, select
local string = string
local readonly = setmetatable({}, { __mode = "k" })

local function refuse()
  error("Attempt to modify a readonly table", 2)
end

local function protect(real)
  local proxy = {}
  local meta_view = setmetatable({}, { __index = {}, __newindex = refuse, __metatable = false })
  readonly[meta_view] = true
  setmetatable(proxy, { __index = real, __newindex = refuse, __metatable = meta_view })
  readonly[proxy] = true
  return proxy
end

local allowed = {}
for _, name in ipairs({ "assert", "error", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
  "select", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION", "gcinfo", "getmetatable" }) do
  allowed[name] = G[name]
end
for _, name in ipairs({ "string", "table", "math", "redis", "cjson", "bit", "cmsgpack", "struct" }) do
  if G[name] then
    allowed[name] = protect(G[name])
  end
end

local env = {}
allowed._G = env
allowed.rawset = function(t, k, v)
  if readonly[t] then
    error("Attempt to modify a readonly table", 0)
  end
  return rawset(t, k, v)
end
allowed.setmetatable = function(t, mt)
  if readonly[t] then
    error("Attempt to modify a readonly table", 0)
  end
  return setmetatable(t, mt)
end
allowed.loadstring = function(s, name)
  if type(s) == "string" and s:byte(1) == 27 then
    return nil, "binary code is not allowed"
  end
  local f, err = loadstring(s, name)
  if f then
    setfenv(f, env)
  end
  return f, err
end

-- What a library's top level sees while it loads, as Redis 7.0's library
-- API: only `redis`, with register_function, log, the log levels and the
-- version; reading anything else (math, redis.call, getmetatable...) is
-- the missing-global error. register_function stays in this table (a
-- function may keep it in an upvalue) but works only while a library
-- loads: the host puts the load's registration in `internal.register`.
local library_redis = {}
for _, name in ipairs({ "log", "LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING",
  "REDIS_VERSION", "REDIS_VERSION_NUM" }) do
  library_redis[name] = G.redis[name]
end
library_redis.register_function = function(...)
  local register = rawget(internal, "register")
  if register == nil then
    error("redis.register_function can only be called on FUNCTION LOAD command", 0)
  end
  return register(...)
end
local library_redis_view = setmetatable({}, { __index = {}, __newindex = refuse, __metatable = false })
readonly[library_redis_view] = true
local library_api = {
  redis = setmetatable({}, {
    __index = function(_, name)
      local value = library_redis[name]
      if value == nil then
        error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
      end
      return value
    end,
    __newindex = refuse,
    __metatable = library_redis_view,
  }),
}
readonly[library_api.redis] = true
local loading = false
internal.set_loading = function(on)
  loading = on
end

local env_meta_view = setmetatable({}, { __index = {}, __newindex = refuse, __metatable = false })
readonly[env_meta_view] = true
setmetatable(env, {
  __index = function(_, name)
    local value
    if loading then
      value = library_api[name]
    else
      value = allowed[name]
    end
    if value == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
    end
    return value
  end,
  __newindex = refuse,
  __metatable = env_meta_view,
})
readonly[env] = true

-- KEYS and ARGV change with every run; the host sets them in this table
-- (what scripts see as globals) directly.
internal.globals = allowed

-- Where an error happened: the first frame that is the script's own code
-- (not a C function, not this file), as Redis's error handler reports it.
local function handler(err)
  -- A read-first run stopped at a write: nobody reads its error.
  if internal.stopped() then
    return false
  end
  local level = 2
  local info = getinfo(level, "nSl")
  while info and (info.what == "C" or info.source == "=[concord]") do
    level = level + 1
    info = getinfo(level, "nSl")
  end
  -- redis.call raised a command's error: the host kept its text, since
  -- an error raised from the host cannot be a table.
  local raised = internal.raised()
  if raised and string.find(tostring(err), raised, 1, true) then
    err = { err = raised }
  elseif type(err) == "userdata" then
    -- An error a host function raised (cjson, cmsgpack, bit, ...): scripts
    -- cannot make userdata. Its text, without the host's wrapping, as Lua
    -- reports an error raised by a C function.
    local text = string.gsub(tostring(err), "^runtime error: ", "")
    text = string.gsub(text, "\nstack traceback:.*$", "")
    err = { err = "ERR " .. text }
  elseif type(err) ~= "table" then
    err = { err = "ERR " .. tostring(err) }
  end
  if info then
    err["source"] = info.source
    err["line"] = info.currentline
  end
  return err
end

internal.run = function(f)
  return xpcall(f, handler)
end

-- A function (FCALL) gets KEYS and ARGV as arguments.
internal.run_with = function(f, keys, argv)
  return xpcall(function()
    return f(keys, argv)
  end, handler)
end

internal.env = env
