use super::*;
use crate::resp::{encode as encode_reply, Protocol};
use crate::state::golden::{split_args, Harness};
use bytes::BytesMut;

/// The replies Redis 7.0.15 gave (recorded by `scripts/geo-golden.py`).
const GOLDEN: &str = include_str!("golden.resp");

/// Undoes the recording's escapes (those of the golden scripts).
fn unescape(text: &str) -> Vec<u8> {
    let quoted = format!("\"{text}\"");
    let args = split_args(&quoted).expect("a well-formed recorded reply");
    args.into_iter()
        .next()
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

/// The members and scores of a flat RESP2 array of bulk strings.
fn bulks(reply: &[u8]) -> Option<Vec<&[u8]>> {
    let text = std::str::from_utf8(reply).ok()?;
    let mut lines = text.split("\r\n");
    let count: usize = lines.next()?.strip_prefix('*')?.parse().ok()?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        lines.next()?.strip_prefix('$')?;
        out.push(lines.next()?.as_bytes());
    }
    Some(out)
}

/// ZRANGE WITHSCORES of a stored search: Redis 7.0 prints scores with 17
/// significant digits, concord (as Redis 7.2) with the shortest that read
/// back the same. The same doubles pass.
fn same_scores(command: &str, expected: &[u8], got: &[u8]) -> bool {
    if !command.starts_with("\"ZRANGE\"") {
        return false;
    }
    let (Some(expected), Some(got)) = (bulks(expected), bulks(got)) else {
        return false;
    };
    let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<f64>().ok();
    expected.len() == got.len()
        && expected
            .chunks(2)
            .zip(got.chunks(2))
            .all(|(e, g)| e[0] == g[0] && number(e[1]).is_some() && number(e[1]) == number(g[1]))
}

#[test]
fn every_recorded_reply_is_byte_identical() {
    let mut harness = Harness::new(1_700_000_000_000);
    let mut protocol = Protocol::Resp2;
    let mut lines = GOLDEN.lines();
    let mut checked = 0;
    let mut failures = Vec::new();
    while let Some(line) = lines.next() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(version) = line.strip_prefix("resp ") {
            protocol = if version == "3" {
                Protocol::Resp3
            } else {
                Protocol::Resp2
            };
            continue;
        }
        let command = line.strip_prefix("> ").expect("a command line");
        let expected = unescape(lines.next().expect("a reply line"));
        let reply = harness.run_line(command);
        let mut got = BytesMut::new();
        encode_reply(&reply, protocol, &mut got);
        if got[..] != expected[..] && !same_scores(command, &expected, &got) {
            failures.push(format!(
                "{command}\n  redis:   {}\n  concord: {}",
                String::from_utf8_lossy(&expected).escape_debug(),
                String::from_utf8_lossy(&got).escape_debug()
            ));
        }
        checked += 1;
    }
    assert!(checked > 150, "the recording was read");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn interleaving_round_trips_and_puts_latitude_in_the_even_bits() {
    for (lat, lon) in [
        (0u32, 0u32),
        (1, 0),
        (0, 1),
        (0x3ff_ffff, 0x155_5555),
        (u32::MAX, 7),
    ] {
        let bits = interleave(lat, lon);
        assert_eq!(deinterleave(bits), (lat, lon));
    }
    assert_eq!(interleave(1, 0), 0b01);
    assert_eq!(interleave(0, 1), 0b10);
    assert_eq!(interleave(0b11, 0b01), 0b0111);
}

#[test]
fn scores_match_redis_and_decode_to_the_cell_centre() {
    // ZRANGE WITHSCORES after GEOADD in Redis's own geo unit.
    let cases = [
        (-74.0131604, 40.7126674, 1791873972053020u64),
        (-73.9903085, 40.7362513, 1791875485187452),
        (-73.9733487, 40.7648057, 1791875761332224),
        (-73.7858139, 40.6428986, 1791895905559723),
        (13.361389, 38.115556, 3479099956230698),
        (15.087269, 37.502669, 3479447370796909),
    ];
    for (lon, lat, score) in cases {
        assert_eq!(score_of(lon, lat), Some(score as f64), "{lon},{lat}");
        let (dlon, dlat) = decode(score as f64);
        assert!((dlon - lon).abs() < 1e-5 && (dlat - lat).abs() < 1e-5);
    }
    assert_eq!(
        decode(3479099956230698.0),
        (13.361389338970184, 38.1155563954963)
    );
    assert_eq!(score_of(180.1, 0.0), None);
    assert_eq!(score_of(0.0, 85.06), None);
    assert_eq!(score_of(f64::NAN, 0.0), None);
    assert_eq!(score_of(0.0, f64::INFINITY), None);
    // The corners: 180 and the top latitude fall just past the last cell.
    assert_eq!(score_of(-180.0, LAT_MIN), Some(0.0));
    assert!(score_of(180.0, LAT_MAX).unwrap() >= (1u64 << 52) as f64);
}

#[test]
fn any_score_decodes_as_redis_converts_it() {
    // Negative scores wrap around (Redis's C conversion), huge ones give 2^63.
    assert_eq!(c_u64(-1.0), u64::MAX);
    assert_eq!(c_u64(1e30), 0);
    assert_eq!(c_u64(f64::NEG_INFINITY), 1 << 63);
    assert_eq!(c_u64(4503599627370495.0), 4503599627370495);
    assert_eq!(decode(-1.0), (180.0, LAT_MAX));
}

#[test]
fn neighbours_are_the_adjacent_cells_and_wrap_at_the_edges() {
    let cell = encode(2.35, 48.85, 10).unwrap();
    let own = area(cell);
    let [n, s, e, w, ne, nw, se, sw] = neighbours(cell).map(area);
    assert_eq!(n.lat.min, own.lat.max);
    assert_eq!(s.lat.max, own.lat.min);
    assert_eq!(e.lon.min, own.lon.max);
    assert_eq!(w.lon.max, own.lon.min);
    assert_eq!((ne.lat.min, ne.lon.min), (own.lat.max, own.lon.max));
    assert_eq!((nw.lat.min, nw.lon.max), (own.lat.max, own.lon.min));
    assert_eq!((se.lat.max, se.lon.min), (own.lat.min, own.lon.max));
    assert_eq!((sw.lat.max, sw.lon.max), (own.lat.min, own.lon.min));
    // The east neighbour of the last column is the first one.
    let edge = encode(179.99, 0.0, 4).unwrap();
    assert_eq!(area(neighbours(edge)[2]).lon.min, -180.0);
    for step in 1..=STEP_MAX {
        let c = encode(-179.0, -85.0, step).unwrap();
        for n in neighbours(c) {
            assert_eq!(n.step, step);
            assert!(n.bits < 1u64 << (2 * u32::from(step)));
        }
    }
}

#[test]
fn distances_are_redis_haversine() {
    let (p_lon, p_lat) = decode(3479099956230698.0);
    let (c_lon, c_lat) = decode(3479447370796909.0);
    assert_eq!(
        distance_text(distance(p_lon, p_lat, c_lon, c_lat)),
        "166274.1516"
    );
    assert_eq!(
        distance_text(distance(p_lon, p_lat, c_lon, c_lat) / 1000.0),
        "166.2742"
    );
    assert_eq!(distance(1.0, 2.0, 1.0, 3.0), lat_distance(2.0, 3.0));
    assert_eq!(distance(10.0, 20.0, 10.0, 20.0), 0.0);
    let quarter = distance(0.0, 0.0, 90.0, 0.0);
    assert!((quarter - EARTH_RADIUS * std::f64::consts::FRAC_PI_2).abs() < 1e-6);
}

#[test]
fn distances_print_with_four_decimals_rounded_half_to_even() {
    assert_eq!(distance_text(0.0), "0.0000");
    assert_eq!(distance_text(-0.0), "0.0000");
    assert_eq!(distance_text(0.775), "0.7750");
    assert_eq!(distance_text(0.00005), "0.0000");
    // 0.00015 * 10000 is just under 1.5 in doubles.
    assert_eq!(distance_text(0.00015), "0.0001");
    assert_eq!(distance_text(1.03125), "1.0312");
    assert_eq!(distance_text(1.09375), "1.0938");
    assert_eq!(distance_text(12345.67891), "12345.6789");
    assert_eq!(distance_text(9.81818), "9.8182");
}

#[test]
fn geohash_strings_use_the_standard_latitude_range() {
    // Wikipedia's example, as Redis's own test checks it.
    let score = score_of(-5.6, 42.6).unwrap();
    assert_eq!(geohash_string(score), "ezs42e44yx0");
    assert_eq!(
        geohash_string(score_of(13.361389, 38.115556).unwrap()),
        "sqc8b49rny0"
    );
}

#[test]
fn the_step_follows_the_radius_and_narrows_near_the_poles() {
    assert_eq!(estimate_step(0.0, 0.0), 26);
    assert_eq!(estimate_step(1.0, 0.0), 24);
    assert_eq!(estimate_step(1000.0, 0.0), 14);
    assert_eq!(estimate_step(1000.0, 70.0), 13);
    assert_eq!(estimate_step(1000.0, -81.0), 12);
    assert_eq!(estimate_step(5_000_000.0, 0.0), 2);
    assert_eq!(estimate_step(20_000_000.0, 0.0), 1);
    assert_eq!(estimate_step(f64::INFINITY, 0.0), 1);
    assert_eq!(estimate_step(1e-300, 0.0), 26);
}

#[test]
fn searches_skip_cells_the_area_cannot_reach_and_never_fail_on_extremes() {
    let region = Region {
        lon: 2.35,
        lat: 48.85,
        shape: Shape::Radius(1.0),
        unit: 1000.0,
    };
    let cells = region.cells();
    assert!(cells[0].is_some());
    assert!(cells
        .iter()
        .flatten()
        .all(|c| c.step == cells[0].unwrap().step));
    let mut z = ZSet::default();
    for (i, (lon, lat)) in [(2.35, 48.85), (2.36, 48.85), (3.0, 48.0), (-179.0, 85.0)]
        .into_iter()
        .enumerate()
    {
        z.insert(Bytes::from(format!("m{i}")), score_of(lon, lat).unwrap());
    }
    let found = points_in(&z, &region, 0);
    let names: Vec<_> = found.iter().map(|f| f.member.clone()).collect();
    assert_eq!(names, [Bytes::from("m0"), Bytes::from("m1")]);
    for shape in [
        Shape::Radius(f64::INFINITY),
        Shape::Radius(f64::MAX),
        Shape::Box {
            width: f64::INFINITY,
            height: 0.0,
        },
        Shape::Box {
            width: f64::MAX,
            height: f64::MAX,
        },
        Shape::Radius(0.0),
    ] {
        for (lon, lat) in [(180.0, LAT_MAX), (-180.0, LAT_MIN), (0.0, 0.0)] {
            let region = Region {
                lon,
                lat,
                shape,
                unit: 1609.34,
            };
            let _ = points_in(&z, &region, 0);
            let _ = points_in(&z, &region, 1);
        }
    }
}

#[test]
fn the_partial_sort_puts_the_nearest_first_for_any_count() {
    let mut seed = 12345u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    for len in [0usize, 1, 2, 6, 7, 8, 40, 41, 100, 500] {
        let values: Vec<(u64, usize)> = (0..len).map(|i| (next() % 10, i)).collect();
        let mut sorted = values.clone();
        sorted.sort_by_key(|v| v.0);
        for keep in [1, 2, 7, len / 2, len.saturating_sub(1)] {
            if keep == 0 || keep > len {
                continue;
            }
            let mut v = values.clone();
            partial_sort(&mut v, keep, &|a: &(u64, usize), b: &(u64, usize)| {
                a.0.cmp(&b.0)
            });
            let keys: Vec<u64> = v[..keep].iter().map(|x| x.0).collect();
            let expected: Vec<u64> = sorted[..keep].iter().map(|x| x.0).collect();
            assert_eq!(keys, expected, "len {len} keep {keep}");
            let mut all: Vec<usize> = v.iter().map(|x| x.1).collect();
            all.sort_unstable();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "a permutation");
        }
    }
}
