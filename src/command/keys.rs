//! Keys and expiry: parsing and replies. Semantics live in `state::keys`.

use bytes::Bytes;

use super::{
    is, standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions, Parsed,
};
use crate::state::keys::{ExpireFlags, KeyOp, KeyQuery, ObjectField, RestoredAccess, TtlForm};
use crate::state::rdb;
use crate::state::sort::Sort;
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write];
const WF: &[Flag] = &[Flag::Write, Flag::Fast];
const W_OOM: &[Flag] = &[Flag::Write, Flag::DenyOom];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, Group::$group:ident, $($rest:tt)*) => {
        command_spec!($group, $name, $arity, $flags, $keys, $($rest)*)
    };
    ($($row:tt)*) => { command_spec!(Generic, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("del", -2, W, KeyPositions::ALL, "1.0.0", "key [key ...]",
        "Deletes one or more keys.",
        Exec::Write(parse_del, standard_reply)),
    spec!("unlink", -2, WF, KeyPositions::ALL, "4.0.0", "key [key ...]",
        "Deletes one or more keys (the same as DEL: nothing is freed in the background).",
        Exec::Write(parse_del, standard_reply)),
    spec!("exists", -2, RF, KeyPositions::ALL, "1.0.0", "key [key ...]",
        "Determines whether one or more keys exist.",
        Exec::Read(parse_exists, standard_reply)),
    spec!("touch", -2, RF, KeyPositions::ALL, "3.2.1", "key [key ...]",
        "Returns the number of existing keys out of those specified, recording an access of each on the answering node.",
        Exec::Read(parse_exists, standard_reply)),
    spec!("type", 2, RF, KeyPositions::FIRST, "1.0.0", "key",
        "Determines the type of value stored at a key.",
        Exec::Read(parse_type, standard_reply)),
    spec!("keys", 2, R, KeyPositions::NONE, "1.0.0", "pattern",
        "Returns all key names that match a pattern.",
        Exec::Read(parse_keys, standard_reply)),
    spec!("scan", -2, R, KeyPositions::NONE, "2.8.0",
        "cursor [MATCH pattern] [COUNT count] [TYPE type]",
        "Iterates over the key names in the database. The cursor is the same on every node.",
        Exec::Read(parse_scan, standard_reply)),
    spec!("rename", 3, W, KeyPositions::FIRST_TWO, "1.0.0", "key newkey",
        "Renames a key and overwrites the destination.",
        Exec::Write(parse_rename, standard_reply)),
    spec!("renamenx", 3, WF, KeyPositions::FIRST_TWO, "1.0.0", "key newkey",
        "Renames a key only when the target key name doesn't exist.",
        Exec::Write(parse_renamenx, standard_reply)),
    spec!("copy", -3, W_OOM, KeyPositions::FIRST_TWO, "6.2.0",
        "source destination [DB destination-db] [REPLACE]",
        "Copies the value of a key to a new key, in this database or another.",
        Exec::Write(parse_copy, standard_reply)),
    spec!("move", 3, WF, KeyPositions::FIRST, "1.0.0", "key db",
        "Moves a key to another database.",
        Exec::Write(parse_move, standard_reply)),
    spec!("expire", -3, WF, KeyPositions::FIRST, "1.0.0", "key seconds [NX | XX | GT | LT]",
        "Sets the expiration time of a key in seconds.",
        Exec::Write(parse_expire, standard_reply)),
    spec!("pexpire", -3, WF, KeyPositions::FIRST, "2.6.0", "key milliseconds [NX | XX | GT | LT]",
        "Sets the expiration time of a key in milliseconds.",
        Exec::Write(parse_pexpire, standard_reply)),
    spec!("expireat", -3, WF, KeyPositions::FIRST, "1.2.0",
        "key unix-time-seconds [NX | XX | GT | LT]",
        "Sets the expiration time of a key to a Unix timestamp.",
        Exec::Write(parse_expireat, standard_reply)),
    spec!("pexpireat", -3, WF, KeyPositions::FIRST, "2.6.0",
        "key unix-time-milliseconds [NX | XX | GT | LT]",
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        Exec::Write(parse_pexpireat, standard_reply)),
    spec!("ttl", 2, RF, KeyPositions::FIRST, "1.0.0", "key",
        "Returns the expiration time in seconds of a key.",
        Exec::Read(parse_ttl, standard_reply)),
    spec!("pttl", 2, RF, KeyPositions::FIRST, "2.6.0", "key",
        "Returns the expiration time in milliseconds of a key.",
        Exec::Read(parse_pttl, standard_reply)),
    spec!("expiretime", 2, RF, KeyPositions::FIRST, "7.0.0", "key",
        "Returns the expiration time of a key as a Unix timestamp.",
        Exec::Read(parse_expiretime, standard_reply)),
    spec!("pexpiretime", 2, RF, KeyPositions::FIRST, "7.0.0", "key",
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        Exec::Read(parse_pexpiretime, standard_reply)),
    spec!("persist", 2, WF, KeyPositions::FIRST, "2.2.0", "key",
        "Removes the expiration time of a key.",
        Exec::Write(parse_persist, standard_reply)),
    spec!("randomkey", 1, R, KeyPositions::NONE, "1.0.0", "",
        "Returns a random key name from the database.",
        Exec::Read(parse_randomkey, standard_reply)),
    spec!("dbsize", 1, RF, KeyPositions::NONE, Group::Server, "1.0.0", "",
        "Returns the number of keys in the database.",
        Exec::Read(parse_dbsize, standard_reply)),
    spec!("flushdb", -1, W, KeyPositions::NONE, Group::Server, "1.0.0", "[ASYNC | SYNC]",
        "Removes all keys from the current database.",
        Exec::Write(parse_flushdb, standard_reply)),
    spec!("flushall", -1, W, KeyPositions::NONE, Group::Server, "1.0.0", "[ASYNC | SYNC]",
        "Removes all keys from all databases.",
        Exec::Write(parse_flushall, standard_reply)),
    spec!("swapdb", 3, WF, KeyPositions::NONE, Group::Server, "4.0.0", "index1 index2",
        "Swaps two databases. Clients blocked on keys of either are served from what their database holds now.",
        Exec::Write(parse_swapdb, standard_reply)),
    spec!("sort", -2, W_OOM, KeyPositions::FIRST, "1.0.0",
        "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]",
        "Sorts the elements of a list, set or sorted set, by their values or by the keys a pattern names, and returns them or stores them as a list. Without STORE it is a read. A set sorted BY a constant comes back in byte order.",
        Exec::Either(parse_sort, standard_reply)),
    spec!("sort_ro", -2, R, KeyPositions::FIRST, "7.0.0",
        "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA]",
        "Returns the sorted elements of a list, set or sorted set, as SORT without STORE.",
        Exec::Read(parse_sort_ro, standard_reply)),
    spec!("dump", 2, R, KeyPositions::FIRST, "2.6.0", "key",
        "Returns the value stored at a key in Redis's DUMP format (RDB version 10, which Redis 7.0 and later restore). Streams cannot be dumped yet.",
        Exec::Read(parse_dump, standard_reply)),
    spec!("restore", -4, W_OOM, KeyPositions::FIRST, "2.6.0",
        "key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]",
        "Creates a key from a DUMP payload of concord or of Redis up to 7.2 (strings, lists, sets, hashes and sorted sets; not streams or module values). The payload is checked and decoded before the write is replicated.",
        Exec::Either(parse_restore, standard_reply)),
    spec!("object", -2, &[], KeyPositions::NONE, "2.2.3", "subcommand [argument ...]",
        "A container for object introspection commands.",
        Exec::Local, OBJECT_SUBCOMMANDS),
    spec!("memory", -2, &[], KeyPositions::NONE, Group::Server, "4.0.0", "subcommand [argument ...]",
        "A container for memory diagnostics commands.",
        Exec::Local, MEMORY_SUBCOMMANDS),
];

/// The key of `OBJECT <sub> key` and `MEMORY USAGE key`.
const SUB_KEY: KeyPositions = KeyPositions::range(2, 2, 1);

const OBJECT_SUBCOMMANDS: &[CommandSpec] = &[
    spec!("object|encoding", 3, R, SUB_KEY, "2.2.3", "key",
        "Returns the internal encoding Redis would use for the value under the configured size limits (listpack, hashtable, intset, skiplist, quicklist, int, embstr, raw).",
        Exec::Local),
    spec!("object|refcount", 3, R, SUB_KEY, "2.2.3", "key",
        "Returns the reference count Redis would report: 2147483647 for the shared integers 0-9999, else 1.",
        Exec::Read(parse_object_refcount, standard_reply)),
    spec!("object|idletime", 3, R, SUB_KEY, "2.2.3", "key",
        "Returns the seconds since the key was last read or written, as the answering node recorded it (the leader's records decide LRU eviction).",
        Exec::Local),
    spec!("object|freq", 3, R, SUB_KEY, "4.0.0", "key",
        "Returns the logarithmic access counter under an LFU maxmemory-policy, as the answering node recorded it (the leader's records decide LFU eviction).",
        Exec::Local),
    spec!("object|help", 2, &[Flag::Loading, Flag::Stale], KeyPositions::NONE, "6.2.0", "",
        "Returns helpful text about the different subcommands.",
        Exec::Local),
];

const MEMORY_SUBCOMMANDS: &[CommandSpec] =
    &[
        spec!("memory|usage", -3, R, SUB_KEY, Group::Server, "4.0.0", "key [SAMPLES count]",
        "Estimates the bytes a key and its value take in memory: deterministic, the same on every replica, the figure maxmemory counts.",
        Exec::Read(parse_memory_usage, standard_reply)),
        spec!(
            "memory|help",
            2,
            &[Flag::Loading, Flag::Stale],
            KeyPositions::NONE,
            Group::Server,
            "4.0.0",
            "",
            "Returns helpful text about the different subcommands.",
            Exec::Local
        ),
    ];

fn parse_object_refcount(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Object {
        key: argv[2].clone(),
        field: ObjectField::RefCount,
    })
}

/// MEMORY USAGE key [SAMPLES count]: how many elements of a collection
/// are looked at (5 by default, as Redis; 0 for all of them).
fn parse_memory_usage(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(&argv[2..]);
    let mut samples = 5;
    while !args.is_empty() {
        let option = args.bytes()?;
        if !is(&option, "SAMPLES") {
            return Err(CommandError::Syntax);
        }
        if args.is_empty() {
            return Err(CommandError::Syntax);
        }
        samples = args.i64()?.clamp(0, i64::from(u32::MAX)) as usize;
    }
    read(KeyQuery::MemoryUsage {
        key: argv[2].clone(),
        samples,
    })
}

fn write(op: KeyOp) -> Result<Op, CommandError> {
    Ok(Op::Key(op))
}

fn read(query: KeyQuery) -> Result<Query, CommandError> {
    Ok(Query::Key(query))
}

fn parse_del(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(KeyOp::Del {
        keys: argv[1..].to_vec(),
    })
}

fn parse_exists(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Exists {
        keys: argv[1..].to_vec(),
    })
}

fn parse_type(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Type {
        key: argv[1].clone(),
    })
}

fn parse_keys(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Keys {
        pattern: argv[1].clone(),
    })
}

/// A SCAN cursor as Redis reads it (`strtoul`): decimal digits after an
/// optional sign, no leading space, the empty string is 0, a negative
/// number wraps, and a value past `u64::MAX` is an error.
pub(super) fn parse_cursor(arg: &[u8]) -> Result<u64, CommandError> {
    let invalid = || CommandError::InvalidArgument("invalid cursor".to_owned());
    if arg.is_empty() {
        return Ok(0);
    }
    let (negative, digits) = match arg {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let value = digits.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    let value = value.ok_or_else(invalid)?;
    Ok(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// The options after a SCAN-style cursor.
pub(super) struct ScanOptions {
    pub pattern: Option<Bytes>,
    pub count: usize,
    pub type_name: Option<Bytes>,
    pub novalues: bool,
}

/// `for_hash` selects HSCAN's options (NOVALUES) over SCAN's (TYPE).
pub(super) fn parse_scan_options(
    args: &mut Args,
    for_hash: bool,
) -> Result<ScanOptions, CommandError> {
    let mut options = ScanOptions {
        pattern: None,
        count: 10,
        type_name: None,
        novalues: false,
    };
    while !args.is_empty() {
        let word = args.bytes()?;
        let has_value = args.remaining() >= 1;
        if is(&word, "COUNT") && has_value {
            let count = args.i64()?;
            if count < 1 {
                return Err(CommandError::Syntax);
            }
            options.count = usize::try_from(count).unwrap_or(usize::MAX);
        } else if is(&word, "MATCH") && has_value {
            let pattern = args.bytes()?;
            // "*" matches everything: the same as no pattern.
            options.pattern = (pattern.as_ref() != b"*").then_some(pattern);
        } else if is(&word, "TYPE") && has_value && !for_hash {
            options.type_name = Some(args.bytes()?);
        } else if is(&word, "NOVALUES") && for_hash {
            options.novalues = true;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(options)
}

fn parse_scan(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let cursor = parse_cursor(&args.bytes()?)?;
    let options = parse_scan_options(&mut args, false)?;
    read(KeyQuery::Scan {
        cursor,
        pattern: options.pattern,
        count: options.count,
        type_name: options.type_name,
    })
}

fn parse_rename(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(KeyOp::Rename {
        from: argv[1].clone(),
        to: argv[2].clone(),
        nx: false,
    })
}

fn parse_renamenx(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(KeyOp::Rename {
        from: argv[1].clone(),
        to: argv[2].clone(),
        nx: true,
    })
}

fn parse_sort(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    let (sort, destination) = sort_options(argv, true)?;
    Ok(match destination {
        Some(destination) => Parsed::Write(Op::Key(KeyOp::SortStore { sort, destination })),
        None => Parsed::Read(Query::Key(KeyQuery::Sort(sort))),
    })
}

fn parse_sort_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Sort(sort_options(argv, false)?.0))
}

/// SORT's options in any order, as Redis reads them: the last ASC/DESC,
/// LIMIT and STORE win, GETs add up. STORE is a syntax error for SORT_RO.
fn sort_options(argv: &[Bytes], may_store: bool) -> Result<(Sort, Option<Bytes>), CommandError> {
    let mut args = Args::new(argv);
    let mut sort = Sort {
        key: args.bytes()?,
        by: None,
        limit: None,
        get: Vec::new(),
        desc: false,
        alpha: false,
    };
    let mut destination = None;
    while !args.is_empty() {
        let word = args.bytes()?;
        let left = args.remaining();
        if is(&word, "ASC") {
            sort.desc = false;
        } else if is(&word, "DESC") {
            sort.desc = true;
        } else if is(&word, "ALPHA") {
            sort.alpha = true;
        } else if is(&word, "LIMIT") && left >= 2 {
            sort.limit = Some((args.i64()?, args.i64()?));
        } else if is(&word, "STORE") && may_store && left >= 1 {
            destination = Some(args.bytes()?);
        } else if is(&word, "BY") && left >= 1 {
            sort.by = Some(args.bytes()?);
        } else if is(&word, "GET") && left >= 1 {
            sort.get.push(args.bytes()?);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok((sort, destination))
}

fn parse_copy(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let from = args.bytes()?;
    let to = args.bytes()?;
    let mut replace = false;
    let mut db = None;
    while !args.is_empty() {
        let word = args.bytes()?;
        if is(&word, "REPLACE") {
            replace = true;
        } else if is(&word, "DB") && !args.is_empty() {
            let index = args.i64()?;
            if index < i64::from(i32::MIN) || index > i64::from(i32::MAX) {
                return Err(CommandError::InvalidArgument(format!(
                    "value is out of range, value must between {} and {}",
                    i32::MIN,
                    i32::MAX
                )));
            }
            db = Some(database(index)?);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    // Into another database the same name is another key: the state,
    // which knows the current database, refuses a copy onto itself.
    if let Some(db) = db {
        return write(KeyOp::CopyToDb {
            from,
            to,
            db,
            replace,
        });
    }
    if from == to {
        return Err(CommandError::InvalidArgument(
            "source and destination objects are the same".to_owned(),
        ));
    }
    write(KeyOp::Copy { from, to, replace })
}

/// A database index that SELECT, MOVE, COPY and SWAPDB accept.
pub fn database(index: i64) -> Result<u32, CommandError> {
    u32::try_from(index)
        .ok()
        .filter(|db| *db < crate::state::DATABASES)
        .ok_or_else(|| CommandError::InvalidArgument("DB index is out of range".to_owned()))
}

fn parse_move(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let db = database(args.i64()?)?;
    write(KeyOp::Move { key, db })
}

fn parse_swapdb(argv: &[Bytes]) -> Result<Op, CommandError> {
    let index = |arg: &Bytes, which: &str| {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| CommandError::InvalidArgument(format!("invalid {which} DB index")))
    };
    let a = index(&argv[1], "first")?;
    let b = index(&argv[2], "second")?;
    let (a, b) = (database(a)?, database(b)?);
    write(KeyOp::SwapDb { a, b })
}

/// The EXPIRE family: options are checked first, then the time, as Redis
/// does. `unit_ms` is 1000 for seconds; `relative` adds the entry's time.
fn expire_with(
    argv: &[Bytes],
    unit_ms: i64,
    relative: bool,
    command: &'static str,
) -> Result<Op, CommandError> {
    let mut flags = ExpireFlags::default();
    for opt in &argv[3..] {
        if is(opt, "NX") {
            flags.nx = true;
        } else if is(opt, "XX") {
            flags.xx = true;
        } else if is(opt, "GT") {
            flags.gt = true;
        } else if is(opt, "LT") {
            flags.lt = true;
        } else {
            return Err(CommandError::InvalidArgument(format!(
                "Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if flags.nx && (flags.xx || flags.gt || flags.lt) {
        return Err(CommandError::InvalidArgument(
            "NX and XX, GT or LT options at the same time are not compatible".to_owned(),
        ));
    }
    if flags.gt && flags.lt {
        return Err(CommandError::InvalidArgument(
            "GT and LT options at the same time are not compatible".to_owned(),
        ));
    }
    let mut args = Args::new(&argv[..3]);
    let key = args.bytes()?;
    let when = args
        .i64()?
        .checked_mul(unit_ms)
        .ok_or(CommandError::InvalidExpireTime(command))?;
    write(KeyOp::Expire {
        key,
        when,
        relative,
        flags,
    })
}

fn parse_expire(argv: &[Bytes]) -> Result<Op, CommandError> {
    expire_with(argv, 1000, true, "expire")
}

fn parse_pexpire(argv: &[Bytes]) -> Result<Op, CommandError> {
    expire_with(argv, 1, true, "pexpire")
}

fn parse_expireat(argv: &[Bytes]) -> Result<Op, CommandError> {
    expire_with(argv, 1000, false, "expireat")
}

fn parse_pexpireat(argv: &[Bytes]) -> Result<Op, CommandError> {
    expire_with(argv, 1, false, "pexpireat")
}

fn ttl_with(argv: &[Bytes], ms: bool, absolute: bool) -> Result<Query, CommandError> {
    read(KeyQuery::Ttl {
        key: argv[1].clone(),
        form: TtlForm { ms, absolute },
    })
}

fn parse_ttl(argv: &[Bytes]) -> Result<Query, CommandError> {
    ttl_with(argv, false, false)
}

fn parse_pttl(argv: &[Bytes]) -> Result<Query, CommandError> {
    ttl_with(argv, true, false)
}

fn parse_expiretime(argv: &[Bytes]) -> Result<Query, CommandError> {
    ttl_with(argv, false, true)
}

fn parse_pexpiretime(argv: &[Bytes]) -> Result<Query, CommandError> {
    ttl_with(argv, true, true)
}

fn parse_persist(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(KeyOp::Persist {
        key: argv[1].clone(),
    })
}

/// The seed is drawn here: the state only expands it, so it stays
/// deterministic while each RANDOMKEY gets a fresh pick.
fn parse_randomkey(_argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::RandomKey {
        seed: rand::random(),
    })
}

fn parse_dump(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::Dump {
        key: argv[1].clone(),
    })
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], read
/// in Redis's order: the options (IDLETIME and FREQ exclude each other),
/// then whether the key exists (BUSYKEY without REPLACE), then the TTL,
/// then the payload, decoded here. A bad TTL or payload never reaches the
/// log: the command becomes a read that answers BUSYKEY if the key exists
/// (and no REPLACE), else the TTL's or the payload's error.
fn parse_restore(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    let mut replace = false;
    let mut absttl = false;
    let mut access = RestoredAccess::Fresh;
    let mut options = Args::new(&argv[3..]);
    while !options.is_empty() {
        let word = options.bytes()?;
        let has_value = !options.is_empty();
        if is(&word, "REPLACE") {
            replace = true;
        } else if is(&word, "ABSTTL") {
            absttl = true;
        } else if is(&word, "IDLETIME") && has_value && !matches!(access, RestoredAccess::Freq(_)) {
            let idle = options.i64()?;
            if idle < 0 {
                return Err(CommandError::InvalidArgument(
                    "Invalid IDLETIME value, must be >= 0".to_owned(),
                ));
            }
            access = RestoredAccess::IdleSeconds(idle as u64);
        } else if is(&word, "FREQ")
            && has_value
            && !matches!(access, RestoredAccess::IdleSeconds(_))
        {
            let freq = options.i64()?;
            let freq = u8::try_from(freq).map_err(|_| {
                CommandError::InvalidArgument(
                    "Invalid FREQ value, must be >= 0 and <= 255".to_owned(),
                )
            })?;
            access = RestoredAccess::Freq(freq);
        } else {
            return Err(CommandError::Syntax);
        }
    }
    let key = argv[1].clone();
    let decoded = restore_ttl(&argv[2]).and_then(|ttl_ms| Ok((ttl_ms, rdb::decode(&argv[3])?)));
    Ok(match decoded {
        Ok((ttl_ms, value)) => Parsed::Write(Op::Key(KeyOp::Restore {
            key,
            value,
            ttl_ms,
            absttl,
            replace,
            access,
        })),
        Err(error) => Parsed::Read(Query::Key(KeyQuery::RestoreRefused {
            key,
            replace,
            error: error.to_string(),
        })),
    })
}

fn restore_ttl(arg: &Bytes) -> Result<i64, CommandError> {
    let ttl_ms = crate::state::strings::parse_i64(arg).ok_or(CommandError::NotInteger)?;
    if ttl_ms < 0 {
        return Err(CommandError::InvalidArgument(
            "Invalid TTL value, must be >= 0".to_owned(),
        ));
    }
    Ok(ttl_ms)
}

fn parse_dbsize(_argv: &[Bytes]) -> Result<Query, CommandError> {
    read(KeyQuery::DbSize)
}

fn parse_flushdb(argv: &[Bytes]) -> Result<Op, CommandError> {
    flush_mode(argv)?;
    write(KeyOp::FlushDb)
}

fn parse_flushall(argv: &[Bytes]) -> Result<Op, CommandError> {
    flush_mode(argv)?;
    write(KeyOp::FlushAll)
}

/// ASYNC or SYNC: both free at once (values are dropped as the op applies).
fn flush_mode(argv: &[Bytes]) -> Result<(), CommandError> {
    match argv {
        [_] => Ok(()),
        [_, mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Ok(()),
        _ => Err(CommandError::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_like_strtoul() {
        let ok = |s: &str| parse_cursor(s.as_bytes()).ok();
        assert_eq!(ok("0"), Some(0));
        assert_eq!(ok(""), Some(0));
        assert_eq!(ok("007"), Some(7));
        assert_eq!(ok("+5"), Some(5));
        assert_eq!(ok("-1"), Some(u64::MAX));
        assert_eq!(ok("18446744073709551615"), Some(u64::MAX));
        for bad in ["18446744073709551616", " 1", "1 ", "abc", "1x", "+", "-"] {
            assert_eq!(ok(bad), None, "{bad:?}");
        }
    }
}
