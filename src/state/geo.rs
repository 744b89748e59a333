//! Geo commands: points kept as sorted-set members, as Redis keeps them.
//!
//! A geo index IS a sorted set (TYPE says zset, ZRANGE and ZREM work on
//! it): each member's score is a 52-bit geohash, the longitude's and the
//! latitude's 26-bit cell numbers interleaved bit by bit (latitude in the
//! even bits). Nearby points share a prefix, so every point of one cell
//! of any coarser level is one contiguous score range, and a search is a
//! handful of ordinary score-range walks. GEOADD is a ZADD with computed
//! scores, and stores are ordinary sorted sets.
//!
//! Everything here answers as Redis 7.0 does, digit for digit, so the
//! arithmetic follows Redis's, operation by operation, in `f64` and the
//! platform's libm (as Redis's C does):
//!
//! - the cells cover longitude -180..180 and latitude -85.05112878..
//!   85.05112878 (the Web Mercator square); a coordinate is turned into a
//!   cell number by scaling its offset in the range to `2^26` and
//!   truncating, and a score is decoded to the centre of its cell;
//! - a search centred at a point picks the cell level from the radius
//!   (or the box's half-diagonal), one coarser when the centre cell and its
//!   neighbours would not cover the search's bounding box, then walks the
//!   centre cell and its eight neighbours (skipping those the bounding box
//!   cannot reach, and a neighbour equal to the one walked just before),
//!   keeping the points whose haversine distance on a sphere of radius
//!   6372797.560856 m is within the radius (or, for a box, whose north-south
//!   and east-west distances are within half its height and width);
//! - results come in walk order unless sorted by distance: a stable sort
//!   (glibc's qsort is a merge sort at these sizes), or, when COUNT cuts
//!   the result short, the partial quicksort Redis uses then, which leaves
//!   points at equal distances in its own order;
//! - GEOHASH re-encodes the decoded point on the standard -90..90 latitude
//!   range, so its strings are ordinary geohashes.
//!
//! Redis reads some arguments only after it has looked at the key (the
//! member of GEORADIUSBYMEMBER, FROMMEMBER's member, and the radius of
//! GEORADIUSBYMEMBER, which a missing key never reaches). The command layer
//! records those steps as [`Check`]s, in Redis's order, so the state gives
//! the same error (or none) as Redis for every mix of bad arguments and key
//! states.

use std::cmp::Ordering;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::zsets::{ScoreRange, ZSet};
use super::{OpResult, Outcome, StateError};

pub const LON_MIN: f64 = -180.0;
pub const LON_MAX: f64 = 180.0;
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
/// Bits per coordinate in a score: 26 each, 52 in all.
pub const STEP_MAX: u8 = 26;
/// The sphere distances are measured on (Redis's value, in metres).
pub const EARTH_RADIUS: f64 = 6372797.560856;
/// Half the Web Mercator world's width, in metres: where the step estimate
/// starts.
const MERCATOR_MAX: f64 = 20037726.37;
const DEG_TO_RAD: f64 = std::f64::consts::PI / 180.0;

fn deg_rad(deg: f64) -> f64 {
    deg * DEG_TO_RAD
}

fn rad_deg(rad: f64) -> f64 {
    rad / DEG_TO_RAD
}

/// A closed coordinate interval.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    min: f64,
    max: f64,
}

const LON_SPAN: Span = Span {
    min: LON_MIN,
    max: LON_MAX,
};
const LAT_SPAN: Span = Span {
    min: LAT_MIN,
    max: LAT_MAX,
};
/// The latitude range of standard geohash strings.
const STANDARD_LAT_SPAN: Span = Span {
    min: -90.0,
    max: 90.0,
};

/// One geohash cell: `step` bits of each coordinate, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub bits: u64,
    pub step: u8,
}

/// A cell's extent.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Area {
    lon: Span,
    lat: Span,
}

/// The low 32 bits of `x` moved to the even bit positions.
fn spread(x: u32) -> u64 {
    let mut x = u64::from(x);
    x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
    x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x << 2)) & 0x3333_3333_3333_3333;
    (x | (x << 1)) & 0x5555_5555_5555_5555
}

/// The even bits of `x` packed into 32 bits: the inverse of [`spread`].
fn squash(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
    x = (x | (x >> 4)) & 0x00FF_00FF_00FF_00FF;
    x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF;
    ((x | (x >> 16)) & 0x0000_0000_FFFF_FFFF) as u32
}

/// Latitude cell number in the even bits, longitude in the odd.
fn interleave(lat: u32, lon: u32) -> u64 {
    spread(lat) | (spread(lon) << 1)
}

/// (latitude, longitude) cell numbers of interleaved bits.
fn deinterleave(bits: u64) -> (u32, u32) {
    (squash(bits), squash(bits >> 1))
}

/// True when Redis accepts the pair as a point.
pub fn valid(lon: f64, lat: f64) -> bool {
    (LON_MIN..=LON_MAX).contains(&lon) && (LAT_MIN..=LAT_MAX).contains(&lat)
}

/// The cell of `step` bits per coordinate holding the point, over the
/// given ranges; None outside Redis's bounds or the ranges.
fn encode_in(lon_span: Span, lat_span: Span, lon: f64, lat: f64, step: u8) -> Option<Cell> {
    if step == 0 || step > 32 || !valid(lon, lat) {
        return None;
    }
    if lat < lat_span.min || lat > lat_span.max || lon < lon_span.min || lon > lon_span.max {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (lat - lat_span.min) / (lat_span.max - lat_span.min) * scale;
    let lon_offset = (lon - lon_span.min) / (lon_span.max - lon_span.min) * scale;
    Some(Cell {
        bits: interleave(lat_offset as u32, lon_offset as u32),
        step,
    })
}

fn encode(lon: f64, lat: f64, step: u8) -> Option<Cell> {
    encode_in(LON_SPAN, LAT_SPAN, lon, lat, step)
}

/// A cell's bits shifted to the 52-bit score scale.
fn align52(cell: Cell) -> u64 {
    cell.bits << (52 - u32::from(cell.step) * 2)
}

/// The score of a valid point (GEOADD); None outside Redis's bounds.
pub fn score_of(lon: f64, lat: f64) -> Option<f64> {
    encode(lon, lat, STEP_MAX).map(|cell| align52(cell) as f64)
}

fn area_in(lon_span: Span, lat_span: Span, cell: Cell) -> Area {
    let (lat_n, lon_n) = deinterleave(cell.bits);
    let cells = (1u64 << cell.step) as f64;
    let lat_scale = lat_span.max - lat_span.min;
    let lon_scale = lon_span.max - lon_span.min;
    let edge = |n: u32| f64::from(n) * 1.0 / cells;
    Area {
        lat: Span {
            min: lat_span.min + edge(lat_n) * lat_scale,
            max: lat_span.min + edge(lat_n.wrapping_add(1)) * lat_scale,
        },
        lon: Span {
            min: lon_span.min + edge(lon_n) * lon_scale,
            max: lon_span.min + edge(lon_n.wrapping_add(1)) * lon_scale,
        },
    }
}

fn area(cell: Cell) -> Area {
    area_in(LON_SPAN, LAT_SPAN, cell)
}

/// The point a score stands for: the centre of its 52-bit cell, clamped
/// to the bounds. Any score decodes (Redis never refuses one).
pub fn decode(score: f64) -> (f64, f64) {
    let a = area(Cell {
        bits: c_u64(score),
        step: STEP_MAX,
    });
    let lon = ((a.lon.min + a.lon.max) / 2.0).clamp(LON_MIN, LON_MAX);
    let lat = ((a.lat.min + a.lat.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    (lon, lat)
}

/// A double converted to an unsigned 64-bit integer as Redis's C does on
/// x86-64 (a negative score wraps around, an unrepresentable one gives
/// 2^63), where Rust's `as` would saturate.
fn c_u64(x: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let truncate = |v: f64| {
        if (-TWO_63..TWO_63).contains(&v) {
            v as i64
        } else {
            i64::MIN
        }
    };
    if x < TWO_63 {
        truncate(x) as u64
    } else {
        (truncate(x - TWO_63) as u64) ^ (1 << 63)
    }
}

/// The cell `d_lon` columns east and `d_lat` rows north (each -1, 0 or 1),
/// wrapping around at the edges as Redis's bit arithmetic does.
fn moved(cell: Cell, d_lon: i8, d_lat: i8) -> Cell {
    let (lat, lon) = deinterleave(cell.bits);
    let mask = ((1u64 << cell.step) - 1) as u32;
    let shift = |n: u32, d: i8| match d {
        0 => n,
        d if d > 0 => n.wrapping_add(1) & mask,
        _ => n.wrapping_sub(1) & mask,
    };
    Cell {
        bits: interleave(shift(lat, d_lat), shift(lon, d_lon)),
        step: cell.step,
    }
}

/// The eight neighbours: north, south, east, west, north-east,
/// north-west, south-east, south-west (Redis's search order).
pub fn neighbours(cell: Cell) -> [Cell; 8] {
    [
        moved(cell, 0, 1),
        moved(cell, 0, -1),
        moved(cell, 1, 0),
        moved(cell, -1, 0),
        moved(cell, 1, 1),
        moved(cell, -1, 1),
        moved(cell, 1, -1),
        moved(cell, -1, -1),
    ]
}

/// The north-south distance between two latitudes, in metres.
fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS * (deg_rad(lat2) - deg_rad(lat1)).abs()
}

/// Haversine distance in metres, Redis's formula (with its shortcut when
/// the longitudes are the same).
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let v = ((deg_rad(lon2) - deg_rad(lon1)) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let lat1r = deg_rad(lat1);
    let lat2r = deg_rad(lat2);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS * a.sqrt().asin()
}

/// The 11-character geohash string of a score: the decoded point encoded
/// again on the standard latitude range; the 11th character is always `0`
/// (52 bits make ten and a bit).
pub fn geohash_string(score: f64) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode(score);
    let bits = encode_in(LON_SPAN, STANDARD_LAT_SPAN, lon, lat, STEP_MAX).map_or(0, |c| c.bits);
    (0..11)
        .map(|i| {
            let idx = if i == 10 {
                0
            } else {
                (bits >> (52 - (i + 1) * 5)) & 0x1f
            };
            ALPHABET[idx as usize] as char
        })
        .collect()
}

/// The cell level whose cells are about as large as the search: halve the
/// world until it is smaller than the radius, back off two levels, one or
/// two more near the poles.
fn estimate_step(radius_m: f64, lat: f64) -> u8 {
    if radius_m == 0.0 {
        return STEP_MAX;
    }
    let mut range = radius_m;
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, i32::from(STEP_MAX)) as u8
}

/// What a search covers around its centre.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    /// BYRADIUS (and GEORADIUS*), in the search's unit.
    Radius(f64),
    /// BYBOX width height, in the search's unit.
    Box { width: f64, height: f64 },
}

/// A search area in metres around a centre.
#[derive(Clone, Copy, Debug)]
struct Region {
    lon: f64,
    lat: f64,
    shape: Shape,
    /// Metres per unit.
    unit: f64,
}

impl Region {
    /// (min lon, min lat, max lon, max lat) of the area: the box's
    /// longitudes widen toward the pole side, as on the sphere.
    fn bounds(&self) -> [f64; 4] {
        let (half_height, half_width) = match self.shape {
            Shape::Radius(r) => (self.unit * r, self.unit * r),
            Shape::Box { width, height } => (self.unit * (height / 2.0), self.unit * (width / 2.0)),
        };
        let lat_delta = rad_deg(half_height / EARTH_RADIUS);
        let lon_delta_top =
            rad_deg(half_width / EARTH_RADIUS / deg_rad(self.lat + lat_delta).cos());
        let lon_delta_bottom =
            rad_deg(half_width / EARTH_RADIUS / deg_rad(self.lat - lat_delta).cos());
        let lon_delta = if self.lat < 0.0 {
            lon_delta_bottom
        } else {
            lon_delta_top
        };
        [
            self.lon - lon_delta,
            self.lat - lat_delta,
            self.lon + lon_delta,
            self.lat + lat_delta,
        ]
    }

    /// The distance from the centre to the area's farthest point, metres.
    fn reach(&self) -> f64 {
        let r = match self.shape {
            Shape::Radius(r) => r,
            Shape::Box { width, height } => {
                ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
            }
        };
        r * self.unit
    }

    /// The centre cell and its neighbours to walk, in Redis's order; None
    /// for the ones the area cannot reach.
    fn cells(&self) -> [Option<Cell>; 9] {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let mut step = estimate_step(self.reach(), self.lat);
        let Some(mut centre) = encode(self.lon, self.lat, step) else {
            return [None; 9];
        };
        let mut around = neighbours(centre);
        let [north, south, east, west, ..] = around.map(area);
        let too_fine = north.lat.max < max_lat
            || south.lat.min > min_lat
            || east.lon.max < max_lon
            || west.lon.min > min_lon;
        if step > 1 && too_fine {
            step -= 1;
            let Some(coarser) = encode(self.lon, self.lat, step) else {
                return [None; 9];
            };
            centre = coarser;
            around = neighbours(centre);
        }
        let mut cells = [Some(centre); 9];
        for (slot, cell) in cells[1..].iter_mut().zip(around) {
            *slot = Some(cell);
        }
        if step >= 2 {
            let own = area(centre);
            // Indexes into `cells`: 1 N, 2 S, 3 E, 4 W, 5 NE, 6 NW, 7 SE, 8 SW.
            let mut drop = |which: [usize; 3]| which.iter().for_each(|&i| cells[i] = None);
            if own.lat.min < min_lat {
                drop([2, 8, 7]);
            }
            if own.lat.max > max_lat {
                drop([1, 5, 6]);
            }
            if own.lon.min < min_lon {
                drop([4, 8, 6]);
            }
            if own.lon.max > max_lon {
                drop([3, 7, 5]);
            }
        }
        cells
    }

    /// The point of `score` and its distance from the centre (metres),
    /// when it is inside the area.
    fn contains(&self, score: f64) -> Option<(f64, f64, f64)> {
        let (lon, lat) = decode(score);
        match self.shape {
            Shape::Radius(r) => {
                let d = distance(self.lon, self.lat, lon, lat);
                (d <= r * self.unit).then_some((lon, lat, d))
            }
            Shape::Box { width, height } => {
                let (width, height) = (width * self.unit, height * self.unit);
                if lat_distance(lat, self.lat) > height / 2.0 {
                    return None;
                }
                if distance(lon, lat, self.lon, lat) > width / 2.0 {
                    return None;
                }
                Some((lon, lat, distance(self.lon, self.lat, lon, lat)))
            }
        }
    }
}

/// A point a search found.
#[derive(Clone, Debug, PartialEq)]
struct Found {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    /// Metres until the answer converts it to the unit.
    dist: f64,
}

/// Walks the region's cells in `z`; stops once `limit` points are found
/// (0: no limit), as Redis's ANY does.
fn points_in(z: &ZSet, region: &Region, limit: usize) -> Vec<Found> {
    let cells = region.cells();
    let mut found = Vec::new();
    let full = |found: &Vec<Found>| limit > 0 && found.len() >= limit;
    // 0 means none walked yet; the centre (0) is never compared.
    let mut last = 0;
    for (i, cell) in cells.iter().enumerate() {
        let Some(cell) = *cell else {
            continue;
        };
        if last != 0 && cells[last] == Some(cell) {
            continue;
        }
        if full(&found) {
            break;
        }
        let min = align52(cell);
        let max = align52(Cell {
            bits: cell.bits + 1,
            step: cell.step,
        });
        let range = ScoreRange {
            min: min as f64,
            min_exclusive: false,
            max: max as f64,
            max_exclusive: true,
        };
        for (member, score) in z.by_score(&range) {
            if let Some((lon, lat, dist)) = region.contains(score) {
                found.push(Found {
                    member: member.clone(),
                    score,
                    lon,
                    lat,
                    dist,
                });
            }
            if full(&found) {
                break;
            }
        }
        last = i;
    }
    found
}

/// Where a search is centred.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Origin {
    /// A member's position (GEORADIUSBYMEMBER, FROMMEMBER).
    Member(Bytes),
    /// GEORADIUS's coordinates, FROMLONLAT.
    LonLat(f64, f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Order {
    /// Walk order.
    Unsorted,
    Asc,
    Desc,
}

/// A search whose arguments are all valid.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Search {
    pub origin: Origin,
    pub shape: Shape,
    /// Metres per unit (m 1, km 1000, ft 0.3048, mi 1609.34).
    pub unit: f64,
    pub order: Order,
    /// At most this many results (0: all).
    pub count: u64,
    /// With `count`: stop at the first `count` found instead of the nearest.
    pub any: bool,
    pub with_dist: bool,
    pub with_hash: bool,
    pub with_coord: bool,
}

/// A step Redis takes while it reads a search's arguments, after it has
/// found the key (or found it missing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Check {
    /// The member's position is looked up when the key exists: missing,
    /// it is an error.
    Member(Bytes),
    /// An argument error Redis reaches only when the key exists (the
    /// radius of GEORADIUSBYMEMBER). The full error text.
    FailIfKey(String),
    /// An argument error. The full error text.
    Fail(String),
}

/// GEORADIUS*, GEOSEARCH and their STORE forms, as parsed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoSearch {
    pub key: Bytes,
    /// In Redis's order; the first to fail is the answer.
    pub checks: Vec<Check>,
    /// None only when a check fails whenever the key exists.
    pub search: Option<Search>,
}

/// Where a search's results go.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreTo {
    pub dest: Bytes,
    /// STOREDIST: the distance (in the unit) as the score, not the hash.
    pub dist: bool,
    /// GEOSEARCHSTORE (its event is `geosearchstore`, not `georadiusstore`).
    pub geosearch: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GeoQuery {
    /// `[lon, lat]` or a null array per member.
    Pos { key: Bytes, members: Vec<Bytes> },
    /// A geohash string or nil per member.
    Hash { key: Bytes, members: Vec<Bytes> },
    /// The distance in `unit`s (metres per unit) as text, or nil.
    Dist {
        key: Bytes,
        from: Bytes,
        to: Bytes,
        unit: f64,
    },
    /// The members found, each with what was asked for.
    Search(GeoSearch),
}

const COULD_NOT_DECODE: &str = "ERR could not decode requested zset member";

/// The sorted set at `key` for a geo command; WRONGTYPE for another type.
fn geo_set<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Option<&'a ZSet>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::ZSet(z)) => Ok(Some(z)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// A distance as Redis prints it: rounded (half to even) to 4 decimals.
pub fn distance_text(d: f64) -> String {
    if d == 0.0 {
        return "0.0000".to_owned();
    }
    let scaled = (d * 10000.0).round_ties_even();
    if !scaled.is_finite() || scaled.abs() >= 9.2e18 {
        // Redis's integer conversion has no answer here either; never
        // reached by distances on the sphere.
        return format!("{d:.4}");
    }
    let n = scaled as i64;
    let sign = if n < 0 { "-" } else { "" };
    let n = n.unsigned_abs();
    format!("{sign}{}.{:04}", n / 10000, n % 10000)
}

/// Redis's distance comparison: greater, equal, or else less.
fn nearer(a: f64, b: f64) -> Ordering {
    if a > b {
        Ordering::Greater
    } else if a == b {
        Ordering::Equal
    } else {
        Ordering::Less
    }
}

/// Puts in `v[..keep]` the first `keep` elements of `v` sorted, the way
/// Redis's `pqsort` does when COUNT cuts a sorted result: Bentley and
/// McIlroy's quicksort (median of three, or of nine past 40 elements;
/// equal keys gathered at both ends and swapped to the middle; insertion
/// sort below 7), skipping the parts that lie wholly past `keep`. A full
/// sort is stable (glibc's merge sort), this one is not: points at the
/// same distance come out in the order this partition leaves them, which
/// is Redis's order.
fn partial_sort<T>(v: &mut [T], keep: usize, cmp: &impl Fn(&T, &T) -> Ordering) {
    if keep == 0 || v.is_empty() {
        return;
    }
    let last = keep - 1;
    let med3 = |v: &[T], a: usize, b: usize, c: usize| {
        if cmp(&v[a], &v[b]) == Ordering::Less {
            if cmp(&v[b], &v[c]) == Ordering::Less {
                b
            } else if cmp(&v[a], &v[c]) == Ordering::Less {
                c
            } else {
                a
            }
        } else if cmp(&v[b], &v[c]) == Ordering::Greater {
            b
        } else if cmp(&v[a], &v[c]) == Ordering::Less {
            a
        } else {
            c
        }
    };
    let vecswap = |v: &mut [T], a: usize, b: usize, n: usize| {
        for i in 0..n {
            v.swap(a + i, b + i);
        }
    };
    // The parts still to sort, as (start, len). Redis recurses into the
    // lower part and loops on the upper one; the parts are disjoint, so
    // the order they are sorted in changes nothing.
    let mut pending = vec![(0usize, v.len())];
    while let Some((a, n)) = pending.pop() {
        if n < 7 {
            for m in a + 1..a + n {
                let mut l = m;
                while l > a && cmp(&v[l - 1], &v[l]) == Ordering::Greater {
                    v.swap(l, l - 1);
                    l -= 1;
                }
            }
            continue;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d);
                pm = med3(v, pm - d, pm, pm + d);
                pn = med3(v, pn - 2 * d, pn - d, pn);
            }
            pm = med3(v, pl, pm, pn);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c == Ordering::Greater {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c == Ordering::Less {
                    break;
                }
                if c == Ordering::Equal {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let end = a + n;
        let r = (pa - a).min(pb - pa);
        vecswap(v, a, pb - r, r);
        let r = (pd - pc).min(end - pd - 1);
        vecswap(v, pb, end - r, r);
        let (below, above) = (pb - pa, pd - pc);
        // A part is sorted only if it holds one of the first `keep`.
        if below > 1 && a <= last {
            pending.push((a, below));
        }
        if above > 1 && end - above <= last {
            pending.push((end - above, above));
        }
    }
}

/// Runs the checks and the search. None when the key is missing (and no
/// check failed): the caller answers the empty result.
fn run_search(db: &Db, now: u64, gs: &GeoSearch) -> Result<Option<Vec<Found>>, StateError> {
    let z = geo_set(db, &gs.key, now)?;
    for check in &gs.checks {
        match check {
            Check::Member(member) => {
                if z.is_some_and(|z| z.score(member).is_none()) {
                    return Err(StateError::Argument(COULD_NOT_DECODE.to_owned()));
                }
            }
            Check::FailIfKey(text) if z.is_some() => {
                return Err(StateError::Argument(text.clone()))
            }
            Check::FailIfKey(_) => {}
            Check::Fail(text) => return Err(StateError::Argument(text.clone())),
        }
    }
    let Some(z) = z else {
        return Ok(None);
    };
    let Some(search) = &gs.search else {
        return Err(StateError::Syntax);
    };
    let (lon, lat) = match &search.origin {
        Origin::LonLat(lon, lat) => (*lon, *lat),
        Origin::Member(member) => match z.score(member) {
            Some(score) => decode(score),
            None => return Err(StateError::Argument(COULD_NOT_DECODE.to_owned())),
        },
    };
    let region = Region {
        lon,
        lat,
        shape: search.shape,
        unit: search.unit,
    };
    let limit = if search.any {
        usize::try_from(search.count).unwrap_or(usize::MAX)
    } else {
        0
    };
    let mut found = points_in(z, &region, limit);
    let order = match search.order {
        // COUNT alone means the nearest ones.
        Order::Unsorted if search.count > 0 && !search.any => Order::Asc,
        order => order,
    };
    let keep = match usize::try_from(search.count) {
        Ok(count) if count > 0 => count.min(found.len()),
        _ => found.len(),
    };
    let by_distance = |a: &Found, b: &Found| nearer(a.dist, b.dist);
    let farther = |a: &Found, b: &Found| nearer(a.dist, b.dist).reverse();
    match (order, keep == found.len()) {
        (Order::Unsorted, _) => {}
        (Order::Asc, true) => found.sort_by(by_distance),
        (Order::Desc, true) => found.sort_by(farther),
        (Order::Asc, false) => partial_sort(&mut found, keep, &by_distance),
        (Order::Desc, false) => partial_sort(&mut found, keep, &farther),
    }
    found.truncate(keep);
    for point in &mut found {
        point.dist /= search.unit;
    }
    Ok(Some(found))
}

/// A search's reply: members alone, or each with its distance (text),
/// hash (integer) and coordinates (doubles, which the reply prints as
/// Redis prints coordinates), in that order.
fn search_reply(found: Vec<Found>, search: &Search) -> Outcome {
    let plain = !(search.with_dist || search.with_hash || search.with_coord);
    Outcome::Array(
        found
            .into_iter()
            .map(|p| {
                if plain {
                    return Outcome::Bulk(p.member);
                }
                let mut item = vec![Outcome::Bulk(p.member)];
                if search.with_dist {
                    item.push(Outcome::Bulk(Bytes::from(distance_text(p.dist))));
                }
                if search.with_hash {
                    item.push(Outcome::Int(p.score as i64));
                }
                if search.with_coord {
                    item.push(Outcome::Array(vec![
                        Outcome::Double(p.lon),
                        Outcome::Double(p.lat),
                    ]));
                }
                Outcome::Array(item)
            })
            .collect(),
    )
}

pub fn read(db: &Db, now: u64, query: &GeoQuery) -> OpResult {
    match query {
        GeoQuery::Pos { key, members } => {
            let z = geo_set(db, key, now)?;
            Ok(Outcome::Array(
                members
                    .iter()
                    .map(|m| match z.and_then(|z| z.score(m)) {
                        Some(score) => {
                            let (lon, lat) = decode(score);
                            Outcome::Array(vec![Outcome::Double(lon), Outcome::Double(lat)])
                        }
                        None => Outcome::NilArray,
                    })
                    .collect(),
            ))
        }
        GeoQuery::Hash { key, members } => {
            let z = geo_set(db, key, now)?;
            Ok(Outcome::Array(
                members
                    .iter()
                    .map(|m| match z.and_then(|z| z.score(m)) {
                        Some(score) => Outcome::Bulk(Bytes::from(geohash_string(score))),
                        None => Outcome::Nil,
                    })
                    .collect(),
            ))
        }
        GeoQuery::Dist {
            key,
            from,
            to,
            unit,
        } => {
            let Some(z) = geo_set(db, key, now)? else {
                return Ok(Outcome::Nil);
            };
            let (Some(a), Some(b)) = (z.score(from), z.score(to)) else {
                return Ok(Outcome::Nil);
            };
            let (lon1, lat1) = decode(a);
            let (lon2, lat2) = decode(b);
            let d = distance(lon1, lat1, lon2, lat2) / unit;
            Ok(Outcome::Bulk(Bytes::from(distance_text(d))))
        }
        GeoQuery::Search(gs) => match run_search(db, now, gs)? {
            None => Ok(Outcome::Array(Vec::new())),
            Some(found) => match &gs.search {
                Some(search) => Ok(search_reply(found, search)),
                None => Err(StateError::Syntax),
            },
        },
    }
}

/// GEORADIUS ... STORE / STOREDIST and GEOSEARCHSTORE: the results become
/// the sorted set at `dest` (scored by hash, or by distance in the unit),
/// or `dest` is deleted when there are none. Answers how many.
pub(super) fn store(db: &mut Db, now: u64, gs: &GeoSearch, to: &StoreTo) -> OpResult {
    let found = run_search(db, now, gs)?.unwrap_or_default();
    let mut result = ZSet::default();
    for point in &found {
        let score = if to.dist { point.dist } else { point.score };
        result.insert(point.member.clone(), score);
    }
    Ok(super::zsets::store(db, now, &to.dest, result))
}

#[cfg(test)]
mod tests;
