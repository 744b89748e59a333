//! Geo commands: parsing and replies. Semantics live in `state::geo`.
//!
//! A geo index is a sorted set, so GEOADD is a ZADD whose scores are the
//! points' geohashes, and the searches' STORE forms are sorted-set writes.
//!
//! Redis reads the search commands' arguments one by one after it has
//! looked the key up: a key of another type is WRONGTYPE whatever the
//! arguments, and some arguments (a member, GEORADIUSBYMEMBER's radius)
//! are only looked at when the key exists. So the parse here never fails
//! for a search: it records what Redis checks, in its order, as
//! [`Check`]s that the state runs after its type check.
//!
//! GEORADIUS and GEORADIUSBYMEMBER are reads unless they STORE; Redis
//! flags them as writes (as it does SORT), and so does the table.

use bytes::Bytes;

use super::{is, outcome_reply, standard_reply, CommandError, CommandSpec, Exec, Flag, Parsed};
use super::{KeyPositions, Reply};
use crate::state::geo::{self, Check, GeoQuery, GeoSearch, Order, Origin, Search, Shape, StoreTo};
use crate::state::strings::{parse_f64, parse_i64};
use crate::state::zsets::{AddOptions, ZSetOp, ZSetQuery};
use crate::state::{Op, OpResult, Outcome, Query};

const W_OOM: &[Flag] = &[Flag::Write, Flag::DenyOom];
const R: &[Flag] = &[Flag::ReadOnly];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $($rest:tt)*) => {
        command_spec!(Geo, $name, $arity, $flags, $keys, $($rest)*)
    };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("geoadd", -5, W_OOM, KeyPositions::FIRST, "3.2.0",
        "key [NX | XX] [CH] longitude latitude member [longitude latitude member ...]",
        "Adds one or more members to a geospatial index (a sorted set scored by 52-bit geohashes). The key is created if it doesn't exist.",
        Exec::Write(parse_geoadd, standard_reply)),
    spec!("geodist", -4, R, KeyPositions::FIRST, "3.2.0", "key member1 member2 [M | KM | FT | MI]",
        "Returns the distance between two members of a geospatial index, with 4 decimals.",
        Exec::Read(parse_geodist, geo_reply)),
    spec!("geohash", -2, R, KeyPositions::FIRST, "3.2.0", "key [member [member ...]]",
        "Returns members from a geospatial index as 11-character geohash strings.",
        Exec::Read(parse_geohash, geo_reply)),
    spec!("geopos", -2, R, KeyPositions::FIRST, "3.2.0", "key [member [member ...]]",
        "Returns the longitude and latitude of members from a geospatial index.",
        Exec::Read(parse_geopos, geo_reply)),
    spec!("georadius", -6, W_OOM, KeyPositions::FIRST, "3.2.0",
        "key longitude latitude radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]",
        "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result. Without STORE it is a read.",
        Exec::Either(parse_georadius, geo_reply)),
    spec!("georadiusbymember", -5, W_OOM, KeyPositions::FIRST, "3.2.0",
        "key member radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]",
        "Queries a geospatial index for members within a distance from a member, optionally stores the result. Without STORE it is a read.",
        Exec::Either(parse_georadiusbymember, geo_reply)),
    spec!("georadius_ro", -6, R, KeyPositions::FIRST, "3.2.10",
        "key longitude latitude radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]",
        "Returns members from a geospatial index that are within a distance from a coordinate.",
        Exec::Read(parse_georadius_ro, geo_reply)),
    spec!("georadiusbymember_ro", -5, R, KeyPositions::FIRST, "3.2.10",
        "key member radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]",
        "Returns members from a geospatial index that are within a distance from a member.",
        Exec::Read(parse_georadiusbymember_ro, geo_reply)),
    spec!("geosearch", -7, R, KeyPositions::FIRST, "6.2.0",
        "key <FROMMEMBER member | FROMLONLAT longitude latitude> <BYRADIUS radius <M | KM | FT | MI> | BYBOX width height <M | KM | FT | MI>> [ASC | DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]",
        "Queries a geospatial index for members inside an area of a box or a circle.",
        Exec::Read(parse_geosearch, geo_reply)),
    spec!("geosearchstore", -8, W_OOM, KeyPositions::FIRST_TWO, "6.2.0",
        "destination source <FROMMEMBER member | FROMLONLAT longitude latitude> <BYRADIUS radius <M | KM | FT | MI> | BYBOX width height <M | KM | FT | MI>> [ASC | DESC] [COUNT count [ANY]] [STOREDIST]",
        "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.",
        Exec::Write(parse_geosearchstore, standard_reply)),
];

/// Coordinates as Redis prints them (17 decimals, trailing zeros cut),
/// everything else as usual.
fn geo_reply(name: &'static str, result: OpResult) -> Reply {
    fn human(outcome: Outcome) -> Reply {
        match outcome {
            Outcome::Double(d) => Reply::HumanDouble(d),
            Outcome::Array(items) => Reply::Array(items.into_iter().map(human).collect()),
            other => outcome_reply(other),
        }
    }
    match result {
        Ok(outcome) => human(outcome),
        other => standard_reply(name, other),
    }
}

fn invalid(text: &str) -> CommandError {
    CommandError::InvalidArgument(text.to_owned())
}

/// A double as Redis's `getDoubleFromObject` reads it: besides what
/// [`parse_f64`] refuses, a finite number too large or too small for a
/// double (strtod's ERANGE) is refused, not read as infinity or zero.
fn geo_f64(arg: &[u8]) -> Option<f64> {
    let value = parse_f64(arg)?;
    let text = std::str::from_utf8(arg).ok()?.to_ascii_lowercase();
    let mantissa = text.split('e').next().unwrap_or("");
    if value.is_infinite() && !mantissa.contains("inf") {
        return None;
    }
    if value == 0.0 && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return None;
    }
    Some(value)
}

fn float_or(arg: &[u8], error: CommandError) -> Result<f64, CommandError> {
    geo_f64(arg).ok_or(error)
}

/// A longitude/latitude pair within Redis's bounds.
fn lon_lat(lon: &[u8], lat: &[u8]) -> Result<(f64, f64), CommandError> {
    let lon = float_or(lon, CommandError::NotFloat)?;
    let lat = float_or(lat, CommandError::NotFloat)?;
    if !geo::valid(lon, lat) {
        return Err(CommandError::InvalidArgument(format!(
            "invalid longitude,latitude pair {lon:.6},{lat:.6}"
        )));
    }
    Ok((lon, lat))
}

/// Metres per unit.
fn unit(arg: &[u8]) -> Result<f64, CommandError> {
    if is(arg, "m") {
        Ok(1.0)
    } else if is(arg, "km") {
        Ok(1000.0)
    } else if is(arg, "ft") {
        Ok(0.3048)
    } else if is(arg, "mi") {
        Ok(1609.34)
    } else {
        Err(invalid(
            "unsupported unit provided. please use M, KM, FT, MI",
        ))
    }
}

/// `radius unit`: the radius and metres per unit.
fn radius(args: &[Bytes]) -> Result<(f64, f64), CommandError> {
    let r = float_or(&args[0], invalid("need numeric radius"))?;
    if r < 0.0 {
        return Err(invalid("radius cannot be negative"));
    }
    Ok((r, unit(&args[1])?))
}

/// `width height unit`.
fn bounding_box(args: &[Bytes]) -> Result<(Shape, f64), CommandError> {
    let width = float_or(&args[0], invalid("need numeric width"))?;
    let height = float_or(&args[1], invalid("need numeric height"))?;
    if height < 0.0 || width < 0.0 {
        return Err(invalid("height or width cannot be negative"));
    }
    Ok((Shape::Box { width, height }, unit(&args[2])?))
}

fn parse_geoadd(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut options = AddOptions::default();
    let mut at = 2;
    while let Some(arg) = argv.get(at) {
        if is(arg, "NX") {
            options.nx = true;
        } else if is(arg, "XX") {
            options.xx = true;
        } else if is(arg, "CH") {
            options.ch = true;
        } else {
            break;
        }
        at += 1;
    }
    let rest = &argv[at..];
    if !rest.len().is_multiple_of(3) || (options.nx && options.xx) || rest.is_empty() {
        return Err(CommandError::Syntax);
    }
    let pairs = rest
        .chunks_exact(3)
        .map(|t| {
            let (lon, lat) = lon_lat(&t[0], &t[1])?;
            let score = geo::score_of(lon, lat).ok_or(CommandError::Syntax)?;
            Ok((score, t[2].clone()))
        })
        .collect::<Result<_, CommandError>>()?;
    Ok(Op::ZSet(ZSetOp::Add {
        key: argv[1].clone(),
        pairs,
        options,
    }))
}

fn query(q: GeoQuery) -> Result<Query, CommandError> {
    Ok(Query::ZSet(ZSetQuery::Geo(q)))
}

fn parse_geodist(argv: &[Bytes]) -> Result<Query, CommandError> {
    let unit = match argv.len() {
        4 => 1.0,
        5 => unit(&argv[4])?,
        _ => return Err(CommandError::Syntax),
    };
    query(GeoQuery::Dist {
        key: argv[1].clone(),
        from: argv[2].clone(),
        to: argv[3].clone(),
        unit,
    })
}

fn parse_geohash(argv: &[Bytes]) -> Result<Query, CommandError> {
    query(GeoQuery::Hash {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_geopos(argv: &[Bytes]) -> Result<Query, CommandError> {
    query(GeoQuery::Pos {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

/// Which search command, as Redis's `georadiusGeneric` flags say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// GEORADIUS(_RO): `key lon lat radius unit`.
    Coords,
    /// GEORADIUSBYMEMBER(_RO): `key member radius unit`.
    Member,
    /// GEOSEARCH: `key` then FROM* and BY*.
    Search,
    /// GEOSEARCHSTORE: `dest key` then FROM* and BY*.
    SearchStore,
}

/// What the arguments say so far.
struct Reading {
    checks: Vec<Check>,
    origin: Option<Origin>,
    shape: Option<(Shape, f64)>,
    /// GEORADIUSBYMEMBER's radius was bad (an error only for a present key).
    radius_failed: bool,
    order: Order,
    count: u64,
    any: bool,
    with_dist: bool,
    with_hash: bool,
    with_coord: bool,
    store: Option<Bytes>,
    store_dist: bool,
}

impl Reading {
    /// Redis's argument loop and the checks after it; the first error
    /// ends it (the caller records it).
    fn read(&mut self, argv: &[Bytes], kind: Kind, may_store: bool) -> Result<(), CommandError> {
        let base = match kind {
            Kind::Coords => {
                let (lon, lat) = lon_lat(&argv[2], &argv[3])?;
                self.origin = Some(Origin::LonLat(lon, lat));
                let (r, unit) = radius(&argv[4..6])?;
                self.shape = Some((Shape::Radius(r), unit));
                6
            }
            Kind::Member => {
                self.checks.push(Check::Member(argv[2].clone()));
                self.origin = Some(Origin::Member(argv[2].clone()));
                match radius(&argv[3..5]) {
                    Ok((r, unit)) => self.shape = Some((Shape::Radius(r), unit)),
                    Err(err) => {
                        self.checks.push(Check::FailIfKey(err.to_string()));
                        self.radius_failed = true;
                    }
                }
                5
            }
            Kind::Search => 2,
            Kind::SearchStore => {
                self.store = Some(argv[1].clone());
                3
            }
        };
        let geosearch = matches!(kind, Kind::Search | Kind::SearchStore);
        let (mut from_member, mut from_lonlat, mut by_radius, mut by_box) =
            (false, false, false, false);
        let args = &argv[base.min(argv.len())..];
        let remaining = args.len();
        let mut i = 0;
        while i < remaining {
            let arg = &args[i];
            if is(arg, "withdist") {
                self.with_dist = true;
            } else if is(arg, "withhash") {
                self.with_hash = true;
            } else if is(arg, "withcoord") {
                self.with_coord = true;
            } else if is(arg, "any") {
                self.any = true;
            } else if is(arg, "asc") {
                self.order = Order::Asc;
            } else if is(arg, "desc") {
                self.order = Order::Desc;
            } else if is(arg, "count") && i + 1 < remaining {
                let count = parse_i64(&args[i + 1]).ok_or(CommandError::NotInteger)?;
                if count <= 0 {
                    return Err(invalid("COUNT must be > 0"));
                }
                self.count = count as u64;
                i += 1;
            } else if (is(arg, "store") || is(arg, "storedist"))
                && i + 1 < remaining
                && may_store
                && !geosearch
            {
                self.store = Some(args[i + 1].clone());
                self.store_dist = is(arg, "storedist");
                i += 1;
            } else if is(arg, "storedist") && kind == Kind::SearchStore {
                self.store_dist = true;
            } else if is(arg, "frommember") && i + 1 < remaining && geosearch && !from_lonlat {
                self.checks.push(Check::Member(args[i + 1].clone()));
                self.origin = Some(Origin::Member(args[i + 1].clone()));
                from_member = true;
                i += 1;
            } else if is(arg, "fromlonlat") && i + 2 < remaining && geosearch && !from_member {
                let (lon, lat) = lon_lat(&args[i + 1], &args[i + 2])?;
                self.origin = Some(Origin::LonLat(lon, lat));
                from_lonlat = true;
                i += 2;
            } else if is(arg, "byradius") && i + 2 < remaining && geosearch && !by_box {
                let (r, unit) = radius(&args[i + 1..i + 3])?;
                self.shape = Some((Shape::Radius(r), unit));
                by_radius = true;
                i += 2;
            } else if is(arg, "bybox") && i + 3 < remaining && geosearch && !by_radius {
                self.shape = Some(bounding_box(&args[i + 1..i + 4])?);
                by_box = true;
                i += 3;
            } else {
                return Err(CommandError::Syntax);
            }
            i += 1;
        }
        if self.store.is_some() && (self.with_dist || self.with_hash || self.with_coord) {
            let what = if kind == Kind::SearchStore {
                "GEOSEARCHSTORE"
            } else {
                "STORE option in GEORADIUS"
            };
            return Err(CommandError::InvalidArgument(format!(
                "{what} is not compatible with WITHDIST, WITHHASH and WITHCOORD options"
            )));
        }
        let name = String::from_utf8_lossy(&argv[0]);
        if geosearch && !(from_member || from_lonlat) {
            return Err(CommandError::InvalidArgument(format!(
                "exactly one of FROMMEMBER or FROMLONLAT can be specified for {name}"
            )));
        }
        if geosearch && !(by_radius || by_box) {
            return Err(CommandError::InvalidArgument(format!(
                "exactly one of BYRADIUS and BYBOX can be specified for {name}"
            )));
        }
        if self.any && self.count == 0 {
            return Err(invalid("the ANY argument requires COUNT argument"));
        }
        Ok(())
    }
}

/// A search command's arguments as the state runs them, and where its
/// results go (None: answered to the client).
fn search_args(argv: &[Bytes], kind: Kind, may_store: bool) -> (GeoSearch, Option<StoreTo>) {
    let mut reading = Reading {
        checks: Vec::new(),
        origin: None,
        shape: None,
        radius_failed: false,
        order: Order::Unsorted,
        count: 0,
        any: false,
        with_dist: false,
        with_hash: false,
        with_coord: false,
        store: None,
        store_dist: false,
    };
    let key_at = if kind == Kind::SearchStore { 2 } else { 1 };
    let failed = match reading.read(argv, kind, may_store) {
        Ok(()) => false,
        Err(err) => {
            reading.checks.push(Check::Fail(err.to_string()));
            true
        }
    };
    let search = match (
        failed || reading.radius_failed,
        reading.origin,
        reading.shape,
    ) {
        (false, Some(origin), Some((shape, unit))) => Some(Search {
            origin,
            shape,
            unit,
            order: reading.order,
            count: reading.count,
            any: reading.any,
            with_dist: reading.with_dist,
            with_hash: reading.with_hash,
            with_coord: reading.with_coord,
        }),
        _ => None,
    };
    let store = reading.store.filter(|_| !failed).map(|dest| StoreTo {
        dest,
        dist: reading.store_dist,
        geosearch: kind == Kind::SearchStore,
    });
    let gs = GeoSearch {
        key: argv[key_at].clone(),
        checks: reading.checks,
        search,
    };
    (gs, store)
}

/// GEORADIUS and GEORADIUSBYMEMBER: a write with STORE, else a read.
fn either(argv: &[Bytes], kind: Kind) -> Result<Parsed, CommandError> {
    Ok(match search_args(argv, kind, true) {
        (search, Some(to)) => Parsed::Write(Op::ZSet(ZSetOp::GeoStore { search, to })),
        (search, None) => Parsed::Read(Query::ZSet(ZSetQuery::Geo(GeoQuery::Search(search)))),
    })
}

fn read_only(argv: &[Bytes], kind: Kind) -> Result<Query, CommandError> {
    query(GeoQuery::Search(search_args(argv, kind, false).0))
}

fn parse_georadius(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    either(argv, Kind::Coords)
}

fn parse_georadiusbymember(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    either(argv, Kind::Member)
}

fn parse_georadius_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    read_only(argv, Kind::Coords)
}

fn parse_georadiusbymember_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    read_only(argv, Kind::Member)
}

fn parse_geosearch(argv: &[Bytes]) -> Result<Query, CommandError> {
    read_only(argv, Kind::Search)
}

/// Always a write: the destination is replaced (or deleted) even when the
/// source is missing. With a bad argument the op only answers the error.
fn parse_geosearchstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (search, to) = search_args(argv, Kind::SearchStore, true);
    let to = to.unwrap_or_else(|| StoreTo {
        dest: argv[1].clone(),
        dist: false,
        geosearch: true,
    });
    Ok(Op::ZSet(ZSetOp::GeoStore { search, to }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{acl::key_checks, prepare, Request};

    fn argv(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    #[test]
    fn georadius_is_a_read_unless_it_stores() {
        let read = prepare(&argv("GEORADIUS k 1 2 3 km WITHDIST")).unwrap();
        assert!(matches!(read, Request::Read(..)));
        let write = prepare(&argv("GEORADIUSBYMEMBER k m 3 km STOREDIST d")).unwrap();
        assert!(matches!(write, Request::Write(..)));
        // A bad argument is answered, never refused before the key's type
        // is known: the op only carries the error.
        let bad = prepare(&argv("GEOSEARCHSTORE d k FROMLONLAT 1 2 BYRADIUS -1 km")).unwrap();
        let Request::Write(Op::ZSet(ZSetOp::GeoStore { search, .. }), ..) = bad else {
            panic!("a store op");
        };
        assert_eq!(
            search.checks,
            [Check::Fail("ERR radius cannot be negative".into())]
        );
        assert!(search.search.is_none());
    }

    #[test]
    fn the_acl_sees_the_source_read_and_the_destination_written() {
        let spec = |name: &str| super::super::lookup(name.as_bytes()).unwrap();
        let line = argv("GEORADIUS src 1 2 3 km STORE dst");
        assert_eq!(
            key_checks(spec("georadius"), &line),
            [(&b"src"[..], true, false), (&b"dst"[..], false, true)]
        );
        let line = argv("GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 m");
        assert_eq!(
            key_checks(spec("geosearchstore"), &line),
            [(&b"dst"[..], false, true), (&b"src"[..], true, false)]
        );
        let line = argv("GEORADIUSBYMEMBER src STORE 3 km");
        assert_eq!(
            key_checks(spec("georadiusbymember"), &line),
            [(&b"src"[..], true, false)]
        );
    }
}
