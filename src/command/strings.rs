//! Strings and counters: parsing and replies. Semantics live in
//! `state::strings`.

use bytes::Bytes;

use super::{
    is, ok_as_int_reply, standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions,
    Parsed,
};
use crate::state::bits::{BitOperation, Field, FieldAction, FieldType, Overflow, Range, Unit};
use crate::state::strings::{
    parse_i64, Condition, Deadline, GetExDeadline, LcsForm, StringOp, StringQuery,
};
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom];
const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WF_NOOOM: &[Flag] = &[Flag::Write, Flag::Fast];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(String, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("get", 2, RF, KeyPositions::FIRST, "1.0.0", "key",
        "Returns the string value of a key.",
        Exec::Read(parse_get, standard_reply)),
    spec!("set", -3, W, KeyPositions::FIRST, "1.0.0",
        "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]",
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        Exec::Write(parse_set, standard_reply)),
    spec!("setnx", 3, WF, KeyPositions::FIRST, "1.0.0", "key value",
        "Set the string value of a key only when the key doesn't exist.",
        Exec::Write(parse_setnx, ok_as_int_reply)),
    spec!("setex", 4, W, KeyPositions::FIRST, "2.0.0", "key seconds value",
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        Exec::Write(parse_setex, standard_reply)),
    spec!("psetex", 4, W, KeyPositions::FIRST, "2.6.0", "key milliseconds value",
        "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        Exec::Write(parse_psetex, standard_reply)),
    spec!("getset", 3, WF, KeyPositions::FIRST, "1.0.0", "key value",
        "Returns the previous string value of a key after setting it to a new value.",
        Exec::Write(parse_getset, standard_reply)),
    spec!("getdel", 2, WF_NOOOM, KeyPositions::FIRST, "6.2.0", "key",
        "Returns the string value of a key after deleting the key.",
        Exec::Write(parse_getdel, standard_reply)),
    spec!("getex", -2, WF_NOOOM, KeyPositions::FIRST, "6.2.0",
        "key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]",
        "Returns the string value of a key after setting its expiration time.",
        Exec::Write(parse_getex, standard_reply)),
    spec!("mget", -2, RF, KeyPositions::ALL, "1.0.0", "key [key ...]",
        "Atomically returns the string values of one or more keys.",
        Exec::Read(parse_mget, standard_reply)),
    spec!("mset", -3, W, KeyPositions::PAIRS, "1.0.1", "key value [key value ...]",
        "Atomically creates or modifies the string values of one or more keys.",
        Exec::Write(parse_mset, standard_reply)),
    spec!("msetnx", -3, W, KeyPositions::PAIRS, "1.0.1", "key value [key value ...]",
        "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        Exec::Write(parse_msetnx, standard_reply)),
    spec!("append", 3, WF, KeyPositions::FIRST, "2.0.0", "key value",
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        Exec::Write(parse_append, standard_reply)),
    spec!("strlen", 2, RF, KeyPositions::FIRST, "2.2.0", "key",
        "Returns the length of a string value.",
        Exec::Read(parse_strlen, standard_reply)),
    spec!("getrange", 4, R, KeyPositions::FIRST, "2.4.0", "key start end",
        "Returns a substring of the string stored at a key.",
        Exec::Read(parse_getrange, standard_reply)),
    spec!("setrange", 4, W, KeyPositions::FIRST, "2.2.0", "key offset value",
        "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        Exec::Write(parse_setrange, standard_reply)),
    spec!("incr", 2, WF, KeyPositions::FIRST, "1.0.0", "key",
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        Exec::Write(parse_incr, standard_reply)),
    spec!("incrby", 3, WF, KeyPositions::FIRST, "1.0.0", "key increment",
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        Exec::Write(parse_incrby, standard_reply)),
    spec!("incrbyfloat", 3, WF, KeyPositions::FIRST, "2.6.0", "key increment",
        "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        Exec::Write(parse_incrbyfloat, standard_reply)),
    spec!("decr", 2, WF, KeyPositions::FIRST, "1.0.0", "key",
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        Exec::Write(parse_decr, standard_reply)),
    spec!("decrby", 3, WF, KeyPositions::FIRST, "1.0.0", "key decrement",
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        Exec::Write(parse_decrby, standard_reply)),
    spec!("setbit", 4, W, KeyPositions::FIRST, "2.2.0", "key offset value",
        "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.",
        Exec::Write(parse_setbit, standard_reply)),
    spec!("getbit", 3, RF, KeyPositions::FIRST, "2.2.0", "key offset",
        "Returns a bit value by offset.",
        Exec::Read(parse_getbit, standard_reply)),
    spec!("substr", 4, R, KeyPositions::FIRST, "1.0.0", "key start end",
        "Returns a substring from a string value (GETRANGE's old name).",
        Exec::Read(parse_getrange, standard_reply)),
    spec!("bitcount", -2, R, KeyPositions::FIRST, "2.6.0", "key [start end [BYTE|BIT]]",
        "Counts the number of set bits (population counting) in a string.",
        Exec::Read(parse_bitcount, standard_reply)),
    spec!("bitpos", -3, R, KeyPositions::FIRST, "2.8.7", "key bit [start [end [BYTE|BIT]]]",
        "Finds the first set (1) or clear (0) bit in a string.",
        Exec::Read(parse_bitpos, standard_reply)),
    spec!("bitop", -4, W, KeyPositions::range(2, -1, 1), "2.6.0", "AND|OR|XOR|NOT destkey key [key ...]",
        "Performs bitwise operations on multiple strings, and stores the result.",
        Exec::Write(parse_bitop, standard_reply)),
    spec!("bitfield", -2, W, KeyPositions::FIRST, "3.2.0",
        "key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL] SET encoding offset value | [OVERFLOW WRAP | SAT | FAIL] INCRBY encoding offset increment ...]",
        "Performs arbitrary bitfield integer operations on strings. With GET subcommands only, it is a read.",
        Exec::Either(parse_bitfield, standard_reply)),
    spec!("bitfield_ro", -2, RF, KeyPositions::FIRST, "6.0.0", "key [GET encoding offset ...]",
        "Performs arbitrary read-only bitfield integer operations on strings.",
        Exec::Read(parse_bitfield_ro, standard_reply)),
    spec!("lcs", -3, R, KeyPositions::FIRST_TWO, "7.0.0",
        "key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]",
        "Finds the longest common substring.",
        Exec::Read(parse_lcs, standard_reply)),
];

/// A bit offset: below 2^32, the bits of the longest string.
fn bit_offset(arg: &[u8]) -> Result<u64, CommandError> {
    parse_i64(arg)
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n < (crate::state::MAX_STRING_LEN as u64) * 8)
        .ok_or_else(|| {
            CommandError::InvalidArgument("bit offset is not an integer or out of range".into())
        })
}

fn parse_setbit(argv: &[Bytes]) -> Result<Op, CommandError> {
    let offset = bit_offset(&argv[2])?;
    let bit = match &argv[3][..] {
        b"0" => false,
        b"1" => true,
        _ => {
            return Err(CommandError::InvalidArgument(
                "bit is not an integer or out of range".into(),
            ))
        }
    };
    write(StringOp::SetBit {
        key: argv[1].clone(),
        offset,
        bit,
    })
}

fn parse_getbit(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StringQuery::GetBit {
        key: argv[1].clone(),
        offset: bit_offset(&argv[2])?,
    })
}

/// `start end [BYTE|BIT]` of BITCOUNT, `[start [end [BYTE|BIT]]]` of
/// BITPOS (`end_optional`).
fn bit_range(args: &[Bytes], end_optional: bool) -> Result<Option<Range>, CommandError> {
    let int = |a: &Bytes| parse_i64(a).ok_or(CommandError::NotInteger);
    let unit = |a: Option<&Bytes>| match a {
        None => Ok(Unit::Byte),
        Some(a) if is(a, "BYTE") => Ok(Unit::Byte),
        Some(a) if is(a, "BIT") => Ok(Unit::Bit),
        Some(_) => Err(CommandError::Syntax),
    };
    match args {
        [] => Ok(None),
        [start] if end_optional => Ok(Some(Range {
            start: int(start)?,
            end: None,
            unit: Unit::Byte,
        })),
        [start, end] | [start, end, _] => Ok(Some(Range {
            start: int(start)?,
            end: Some(int(end)?),
            unit: unit(args.get(2))?,
        })),
        _ => Err(CommandError::Syntax),
    }
}

fn parse_bitcount(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StringQuery::BitCount {
        key: argv[1].clone(),
        range: bit_range(&argv[2..], false)?,
    })
}

fn parse_bitpos(argv: &[Bytes]) -> Result<Query, CommandError> {
    let bit = match &argv[2][..] {
        b"0" => false,
        b"1" => true,
        _ if parse_i64(&argv[2]).is_none() => return Err(CommandError::NotInteger),
        _ => {
            return Err(CommandError::InvalidArgument(
                "The bit argument must be 1 or 0.".into(),
            ))
        }
    };
    read(StringQuery::BitPos {
        key: argv[1].clone(),
        bit,
        range: bit_range(&argv[3..], true)?,
    })
}

/// BITFIELD's subcommands, checked as Redis checks them: the type, then
/// the offset (`#n` counts fields of the type), then the value.
fn bitfield_fields(argv: &[Bytes]) -> Result<Vec<Field>, CommandError> {
    let mut fields = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < argv.len() {
        let remaining = argv.len() - j - 1;
        let sub = &argv[j];
        let action = if is(sub, "GET") && remaining >= 2 {
            None
        } else if (is(sub, "SET") || is(sub, "INCRBY")) && remaining >= 3 {
            Some(is(sub, "SET"))
        } else if is(sub, "OVERFLOW") && remaining >= 1 {
            let kind = &argv[j + 1];
            overflow = if is(kind, "WRAP") {
                Overflow::Wrap
            } else if is(kind, "SAT") {
                Overflow::Sat
            } else if is(kind, "FAIL") {
                Overflow::Fail
            } else {
                return Err(CommandError::InvalidArgument(
                    "Invalid OVERFLOW type specified".into(),
                ));
            };
            j += 2;
            continue;
        } else {
            return Err(CommandError::Syntax);
        };
        let kind = field_type(&argv[j + 1])?;
        let offset = field_offset(&argv[j + 2], kind.bits)?;
        let action = match action {
            None => FieldAction::Get,
            Some(set) => {
                let value = parse_i64(&argv[j + 3]).ok_or(CommandError::NotInteger)?;
                if set {
                    FieldAction::Set(value, overflow)
                } else {
                    FieldAction::IncrBy(value, overflow)
                }
            }
        };
        fields.push(Field {
            kind,
            offset,
            action,
        });
        j += if action == FieldAction::Get { 3 } else { 4 };
    }
    Ok(fields)
}

fn field_type(arg: &[u8]) -> Result<FieldType, CommandError> {
    let bad = || {
        CommandError::InvalidArgument(
            "Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is."
                .into(),
        )
    };
    let signed = match arg.first() {
        Some(b'i' | b'I') => true,
        Some(b'u' | b'U') => false,
        _ => return Err(bad()),
    };
    let bits = parse_i64(&arg[1..]).ok_or_else(bad)?;
    let max = if signed { 64 } else { 63 };
    if !(1..=max).contains(&bits) {
        return Err(bad());
    }
    Ok(FieldType {
        signed,
        bits: bits as u8,
    })
}

fn field_offset(arg: &[u8], bits: u8) -> Result<u64, CommandError> {
    let bad =
        || CommandError::InvalidArgument("bit offset is not an integer or out of range".into());
    let (text, per_field) = match arg.strip_prefix(b"#") {
        Some(rest) => (rest, true),
        None => (arg, false),
    };
    let mut offset = parse_i64(text).ok_or_else(bad)?;
    if per_field {
        offset = offset.checked_mul(i64::from(bits)).ok_or_else(bad)?;
    }
    u64::try_from(offset)
        .ok()
        .filter(|o| (o >> 3) < crate::state::MAX_STRING_LEN as u64)
        .ok_or_else(bad)
}

fn parse_bitfield(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    let fields = bitfield_fields(argv)?;
    let key = argv[1].clone();
    Ok(if fields.iter().all(|f| f.action == FieldAction::Get) {
        Parsed::Read(Query::String(StringQuery::BitField { key, fields }))
    } else {
        Parsed::Write(Op::String(StringOp::BitField { key, fields }))
    })
}

fn parse_bitfield_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    let fields = bitfield_fields(argv)?;
    if fields.iter().any(|f| f.action != FieldAction::Get) {
        return Err(CommandError::InvalidArgument(
            "BITFIELD_RO only supports the GET subcommand".into(),
        ));
    }
    read(StringQuery::BitField {
        key: argv[1].clone(),
        fields,
    })
}

fn parse_bitop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let op = match &argv[1] {
        a if is(a, "AND") => BitOperation::And,
        a if is(a, "OR") => BitOperation::Or,
        a if is(a, "XOR") => BitOperation::Xor,
        a if is(a, "NOT") => BitOperation::Not,
        _ => return Err(CommandError::Syntax),
    };
    let keys = argv[3..].to_vec();
    if op == BitOperation::Not && keys.len() != 1 {
        return Err(CommandError::InvalidArgument(
            "BITOP NOT must be called with a single source key.".into(),
        ));
    }
    write(StringOp::BitOp {
        op,
        dest: argv[2].clone(),
        keys,
    })
}

/// LCS's options, as Redis reads them: LEN and IDX exclude each other; a
/// negative MINMATCHLEN is 0.
fn parse_lcs(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (mut len, mut idx, mut with_len, mut min_len) = (false, false, false, 0u64);
    let mut options = argv[3..].iter();
    while let Some(option) = options.next() {
        if is(option, "IDX") {
            idx = true;
        } else if is(option, "LEN") {
            len = true;
        } else if is(option, "WITHMATCHLEN") {
            with_len = true;
        } else if is(option, "MINMATCHLEN") {
            let value = options.next().ok_or(CommandError::Syntax)?;
            min_len = parse_i64(value).ok_or(CommandError::NotInteger)?.max(0) as u64;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if len && idx {
        return Err(CommandError::InvalidArgument(
            "If you want both the length and indexes, please just use IDX.".into(),
        ));
    }
    let form = if idx {
        LcsForm::Idx { with_len, min_len }
    } else if len {
        LcsForm::Len
    } else {
        LcsForm::Text
    };
    read(StringQuery::Lcs {
        a: argv[1].clone(),
        b: argv[2].clone(),
        form,
    })
}

fn write(op: StringOp) -> Result<Op, CommandError> {
    Ok(Op::String(op))
}

fn read(query: StringQuery) -> Result<Query, CommandError> {
    Ok(Query::String(query))
}

fn parse_get(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StringQuery::Get {
        key: argv[1].clone(),
    })
}

/// The expiry options shared by SET and GETEX, after the option keyword.
/// `unit_ms` is 1000 for seconds, 1 for milliseconds.
fn expiry_value(args: &mut Args, unit_ms: u64, command: &'static str) -> Result<u64, CommandError> {
    let v = args.i64()?;
    if v <= 0 {
        return Err(CommandError::InvalidExpireTime(command));
    }
    (v as u64)
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or(CommandError::InvalidExpireTime(command))
}

/// An expiry option of SET and GETEX.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpiryKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

impl ExpiryKind {
    fn from_word(word: &[u8]) -> Option<ExpiryKind> {
        [
            ("EX", ExpiryKind::Ex),
            ("PX", ExpiryKind::Px),
            ("EXAT", ExpiryKind::ExAt),
            ("PXAT", ExpiryKind::PxAt),
        ]
        .into_iter()
        .find(|(name, _)| is(word, name))
        .map(|(_, kind)| kind)
    }

    /// Checks the option's value, after every option was read (as Redis
    /// does: `SET k v EX 0 BAD` is a syntax error, not an expire error).
    fn deadline(self, value: Bytes, command: &'static str) -> Result<Deadline, CommandError> {
        let argv = [Bytes::new(), value];
        let mut args = Args::new(&argv);
        Ok(match self {
            ExpiryKind::Ex => Deadline::After(expiry_value(&mut args, 1000, command)?),
            ExpiryKind::Px => Deadline::After(expiry_value(&mut args, 1, command)?),
            ExpiryKind::ExAt => Deadline::At(expiry_value(&mut args, 1000, command)?),
            ExpiryKind::PxAt => Deadline::At(expiry_value(&mut args, 1, command)?),
        })
    }
}

/// Reads an expiry option (`word` and the value after it) if `word` is one
/// and Redis accepts it here: a value follows, no KEEPTTL/PERSIST (`other`)
/// was given, and no expiry of another kind was (a repeat of the same kind
/// is allowed; the last value wins).
fn expiry_option(
    word: &[u8],
    args: &mut Args,
    other: bool,
    expiry: &mut Option<(ExpiryKind, Bytes)>,
) -> Result<bool, CommandError> {
    let Some(kind) = ExpiryKind::from_word(word) else {
        return Ok(false);
    };
    let compatible = expiry.as_ref().is_none_or(|(given, _)| *given == kind);
    if args.is_empty() || other || !compatible {
        return Ok(false);
    }
    *expiry = Some((kind, args.bytes()?));
    Ok(true)
}

/// SET's options with Redis's rules: NX and XX exclude each other, KEEPTTL
/// and the expiry options exclude each other, and repeats are allowed.
fn parse_set(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let value = args.bytes()?;
    let mut condition = Condition::Always;
    let mut get = false;
    let mut keep_ttl = false;
    let mut expiry = None;
    while !args.is_empty() {
        let word = args.bytes()?;
        if is(&word, "NX") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if is(&word, "XX") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if is(&word, "GET") {
            get = true;
        } else if is(&word, "KEEPTTL") && expiry.is_none() {
            keep_ttl = true;
        } else if !expiry_option(&word, &mut args, keep_ttl, &mut expiry)? {
            return Err(CommandError::Syntax);
        }
    }
    let deadline = match expiry {
        Some((kind, value)) => kind.deadline(value, "set")?,
        None if keep_ttl => Deadline::Keep,
        None => Deadline::None,
    };
    write(StringOp::Set {
        key,
        value,
        condition,
        get,
        deadline,
    })
}

fn parse_setnx(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::Set {
        key: argv[1].clone(),
        value: argv[2].clone(),
        condition: Condition::IfAbsent,
        get: false,
        deadline: Deadline::None,
    })
}

fn setex_with(argv: &[Bytes], unit_ms: u64, command: &'static str) -> Result<Op, CommandError> {
    let mut args = Args::new(&argv[..3]);
    let key = args.bytes()?;
    let ms = expiry_value(&mut args, unit_ms, command)?;
    write(StringOp::Set {
        key,
        value: argv[3].clone(),
        condition: Condition::Always,
        get: false,
        deadline: Deadline::After(ms),
    })
}

fn parse_setex(argv: &[Bytes]) -> Result<Op, CommandError> {
    setex_with(argv, 1000, "setex")
}

fn parse_psetex(argv: &[Bytes]) -> Result<Op, CommandError> {
    setex_with(argv, 1, "psetex")
}

fn parse_getset(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::Set {
        key: argv[1].clone(),
        value: argv[2].clone(),
        condition: Condition::Always,
        get: true,
        deadline: Deadline::None,
    })
}

fn parse_getdel(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::GetDel {
        key: argv[1].clone(),
    })
}

fn parse_getex(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let mut persist = false;
    let mut expiry = None;
    while !args.is_empty() {
        let word = args.bytes()?;
        if is(&word, "PERSIST") && expiry.is_none() {
            persist = true;
        } else if !expiry_option(&word, &mut args, persist, &mut expiry)? {
            return Err(CommandError::Syntax);
        }
    }
    let deadline = match expiry {
        Some((kind, value)) => GetExDeadline::Set(kind.deadline(value, "getex")?),
        None if persist => GetExDeadline::Persist,
        None => GetExDeadline::Unchanged,
    };
    write(StringOp::GetEx { key, deadline })
}

fn parse_mget(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StringQuery::MGet {
        keys: argv[1..].to_vec(),
    })
}

fn pairs(argv: &[Bytes], command: &str) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if argv.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity(command.to_owned()));
    }
    Ok(argv[1..]
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}

fn parse_mset(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::MSet {
        pairs: pairs(argv, "mset")?,
    })
}

fn parse_msetnx(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::MSetNx {
        pairs: pairs(argv, "msetnx")?,
    })
}

fn parse_append(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StringOp::Append {
        key: argv[1].clone(),
        value: argv[2].clone(),
    })
}

fn parse_strlen(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StringQuery::StrLen {
        key: argv[1].clone(),
    })
}

fn parse_getrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let start = args.i64()?;
    let end = args.i64()?;
    read(StringQuery::GetRange { key, start, end })
}

fn parse_setrange(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let offset = args.i64()?;
    if offset < 0 {
        return Err(CommandError::OffsetOutOfRange);
    }
    write(StringOp::SetRange {
        key,
        offset: offset as u64,
        value: argv[3].clone(),
    })
}

fn incr_by(argv: &[Bytes], delta: i64) -> Result<Op, CommandError> {
    write(StringOp::IncrBy {
        key: argv[1].clone(),
        delta,
    })
}

fn parse_incr(argv: &[Bytes]) -> Result<Op, CommandError> {
    incr_by(argv, 1)
}

fn parse_decr(argv: &[Bytes]) -> Result<Op, CommandError> {
    incr_by(argv, -1)
}

fn parse_incrby(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    args.bytes()?;
    incr_by(argv, args.i64()?)
}

fn parse_decrby(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    args.bytes()?;
    let delta = args.i64()?;
    // DECRBY of i64::MIN cannot be negated: Redis reports the overflow.
    let delta = delta
        .checked_neg()
        .ok_or_else(|| CommandError::InvalidArgument("decrement would overflow".to_owned()))?;
    incr_by(argv, delta)
}

fn parse_incrbyfloat(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let delta = args.f64()?;
    if !delta.is_finite() {
        return Err(CommandError::InvalidArgument(
            "increment would produce NaN or Infinity".to_owned(),
        ));
    }
    write(StringOp::IncrByFloat { key, delta })
}
