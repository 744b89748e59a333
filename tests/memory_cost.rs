//! MEMORY USAGE, and the dataset size `maxmemory` limits, against what the
//! allocator really hands out for the same keys.
//!
//! This test binary installs the counting allocator over mimalloc, as the
//! server does, applies writes the way a replica does (each op encoded as a
//! log entry, decoded, applied), and compares the bytes allocated per key
//! with the cost the state accounts for it. The bar is 20%.

use bytes::Bytes;
use concord::command::{self, Request};
use concord::raft::payload;
use concord::state::{Op, State};

#[global_allocator]
static GLOBAL: concord::alloc::Counting<mimalloc::MiMalloc> =
    concord::alloc::Counting(mimalloc::MiMalloc);

fn op(words: &[Vec<u8>]) -> Op {
    let argv: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.clone())).collect();
    match command::prepare(&argv) {
        Ok(Request::Write(op, ..)) => op,
        _ => panic!("not a write: {:?}", String::from_utf8_lossy(&words[0])),
    }
}

/// Each command as its own encoded log entry.
fn entries(commands: Vec<Vec<Vec<u8>>>) -> Vec<Vec<u8>> {
    commands
        .iter()
        .map(|c| payload::encode(1, &[op(c)]))
        .collect()
}

/// Applies the entries as a follower would: decoded, then applied.
fn apply_all(state: &mut State, entries: &[Vec<u8>]) {
    let mut index = state.applied_index();
    for data in entries {
        let batch = payload::decode(data).unwrap();
        for op in &batch.ops {
            index += 1;
            state.apply(index, 1, op).unwrap();
        }
    }
}

fn allocated() -> i64 {
    concord::alloc::mark_installed();
    concord::alloc::allocated_bytes().unwrap() as i64
}

fn w(s: impl Into<String>) -> Vec<u8> {
    s.into().into_bytes()
}

/// Builds `keys` keys with `make(i)` and returns (allocated, accounted)
/// bytes per key.
fn measure(keys: usize, make: impl Fn(usize) -> Vec<Vec<Vec<u8>>>) -> (f64, f64) {
    let mut state = State::new();
    // The entries are built before the measure starts and freed after it,
    // so only what the state keeps is counted.
    let entries = entries((0..keys).flat_map(&make).collect());
    let before = allocated();
    let accounted_before = state.dataset_bytes() as i64;
    apply_all(&mut state, &entries);
    let after = allocated();
    let accounted = state.dataset_bytes() as i64 - accounted_before;
    let real = (after - before) as f64 / keys as f64;
    std::hint::black_box(&state);
    drop(entries);
    (real, accounted as f64 / keys as f64)
}

fn check(name: &str, keys: usize, make: impl Fn(usize) -> Vec<Vec<Vec<u8>>>) -> String {
    let (real, accounted) = measure(keys, make);
    let ratio = accounted / real;
    let line = format!(
        "{name}: allocated {real:.0} B/key, accounted {accounted:.0} B/key, ratio {ratio:.2}"
    );
    println!("{line}");
    if !(0.8..=1.2).contains(&ratio) {
        return format!("{line}: off by more than 20%\n");
    }
    String::new()
}

#[test]
fn accounted_costs_are_within_20_percent_of_the_allocator() {
    let mut failures = String::new();
    failures += &check("string 100 B", 100_000, |i| {
        vec![vec![w("SET"), w(format!("key:{i:08}")), vec![b'x'; 100]]]
    });
    failures += &check("string 10 B", 100_000, |i| {
        vec![vec![w("SET"), w(format!("key:{i:08}")), vec![b'x'; 10]]]
    });
    failures += &check("string 4 KiB with TTL", 10_000, |i| {
        vec![vec![
            w("SET"),
            w(format!("key:{i:08}")),
            vec![b'x'; 4096],
            w("EX"),
            w("1000"),
        ]]
    });
    failures += &check("integer", 100_000, |i| {
        vec![vec![
            w("SET"),
            w(format!("counter:{i:08}")),
            w(i.to_string()),
        ]]
    });
    failures += &check("hash of 1 field", 20_000, |i| {
        vec![vec![
            w("HSET"),
            w(format!("h:{i:08}")),
            w("field"),
            w("value"),
        ]]
    });
    failures += &check("hash of 20 fields", 5_000, |i| {
        let mut cmd = vec![w("HSET"), w(format!("h:{i:08}"))];
        for f in 0..20 {
            cmd.push(w(format!("field:{f}")));
            cmd.push(w(format!("value:{f}")));
        }
        vec![cmd]
    });
    failures += &check("hash of 2000 fields", 20, |i| {
        (0..20)
            .map(|c| {
                let mut cmd = vec![w("HSET"), w(format!("h:{i:08}"))];
                for f in 0..100 {
                    cmd.push(w(format!("field:{}", c * 100 + f)));
                    cmd.push(w("v"));
                }
                cmd
            })
            .collect()
    });
    failures += &check("set of 10 members", 10_000, |i| {
        let mut cmd = vec![w("SADD"), w(format!("s:{i:08}"))];
        cmd.extend((0..10).map(|m| w(format!("member:{m}"))));
        vec![cmd]
    });
    failures += &check("zset of 10 members", 10_000, |i| {
        let mut cmd = vec![w("ZADD"), w(format!("z:{i:08}"))];
        for m in 0..10 {
            cmd.push(w(m.to_string()));
            cmd.push(w(format!("member:{m}")));
        }
        vec![cmd]
    });
    failures += &check("list of 10 elements", 10_000, |i| {
        let mut cmd = vec![w("RPUSH"), w(format!("l:{i:08}"))];
        cmd.extend((0..10).map(|m| w(format!("element:{m}"))));
        vec![cmd]
    });
    assert!(failures.is_empty(), "\n{failures}");
}
