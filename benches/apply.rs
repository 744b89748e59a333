//! State-machine cost per op, without raft or sockets: what the driver
//! thread spends applying SET/INCR/HSET and answering GET, running
//! redis-py's Lock scripts (every replica runs a script as it applies it),
//! and the cost of the payload codec that carries a batch through the log.

use bytes::Bytes;
use concord::command::{prepare, Request};
use concord::raft::payload;
use concord::state::scripts::{ScriptOp, ScriptQuery};
use concord::state::{Op, Query, State};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn argv(parts: &[&str]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|p| Bytes::copy_from_slice(p.as_bytes()))
        .collect()
}

fn write(parts: &[&str]) -> Op {
    match prepare(&argv(parts)) {
        Ok(Request::Write(op, ..)) => op,
        _ => panic!("{parts:?} is not a write"),
    }
}

fn read(parts: &[&str]) -> Query {
    match prepare(&argv(parts)) {
        Ok(Request::Read(q, ..)) => q,
        _ => panic!("{parts:?} is not a read"),
    }
}

/// redis-py's Lock scripts, as bench/commands.py sends them.
const LOCK_RELEASE: &str = include_str!("../bench/lua/redis_py_lock_release.lua");
const LOCK_EXTEND: &str = include_str!("../bench/lua/redis_py_lock_extend.lua");

fn sha1_hex(text: &str) -> String {
    sha1_smol::Sha1::from(text).digest().to_string()
}

fn populated(n: usize) -> State {
    let mut state = State::new();
    for i in 0..n {
        state
            .apply(
                i as u64 + 1,
                1_000,
                &write(&["SET", &format!("key:{i}"), "value"]),
            )
            .unwrap();
    }
    state
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    let set = write(&["SET", "key:500", "xxx"]);
    let incr = write(&["INCR", "counter"]);
    let hset = write(&["HSET", "h", "field", "value"]);
    let mut state = populated(100_000);
    let mut index = 1_000_000u64;
    group.bench_function("set_existing_key_100k_keys", |b| {
        b.iter(|| {
            index += 1;
            state.apply(index, 2_000, &set).unwrap()
        })
    });
    group.bench_function("incr", |b| {
        b.iter(|| {
            index += 1;
            state.apply(index, 2_000, &incr).unwrap()
        })
    });
    group.bench_function("hset", |b| {
        b.iter(|| {
            index += 1;
            state.apply(index, 2_000, &hset).unwrap()
        })
    });
    let get = read(&["GET", "key:500"]);
    group.bench_function("get_100k_keys", |b| {
        b.iter(|| state.read(&get, 2_000).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("script");
    group.throughput(Throughput::Elements(1));
    let mut state = populated(1_000);
    state.set_script_host(concord::script::host());
    state
        .apply(index, 2_000, &write(&["SCRIPT", "LOAD", LOCK_EXTEND]))
        .unwrap();
    state
        .apply(index + 1, 2_000, &write(&["SCRIPT", "LOAD", LOCK_RELEASE]))
        .unwrap();
    state
        .apply(
            index + 2,
            2_000,
            &write(&["SET", "lock", "token", "PX", "1000000"]),
        )
        .unwrap();
    index += 3;
    let extend = write(&[
        "EVALSHA",
        &sha1_hex(LOCK_EXTEND),
        "1",
        "lock",
        "token",
        "30000",
        "1",
    ]);
    group.bench_function("evalsha_lock_extend", |b| {
        b.iter(|| {
            index += 1;
            state.apply(index, 2_000, &extend).unwrap()
        })
    });
    let release = write(&["EVALSHA", &sha1_hex(LOCK_RELEASE), "1", "lock", "other"]);
    group.bench_function("evalsha_lock_release_not_owner", |b| {
        b.iter(|| {
            index += 1;
            state.apply(index, 2_000, &release).unwrap()
        })
    });
    // EVALSHA as a connection submits it: a read first, which stops at
    // the extend script's PEXPIRE (the op then goes to the log).
    let Op::Script(ScriptOp::EvalSha { sha, run }) = extend else {
        unreachable!("EVALSHA parses to an EvalSha op")
    };
    let extend_first = Query::Script(ScriptQuery::EvalShaFirst { sha, run });
    group.bench_function("evalsha_lock_extend_read_first_stops", |b| {
        b.iter(|| state.read(&extend_first, 2_000).unwrap_err())
    });
    group.finish();

    let mut group = c.benchmark_group("payload");
    let batch: Vec<Op> = (0..800)
        .map(|i| write(&["SET", &format!("key:{i}"), "value"]))
        .collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("encode_batch_of_800_sets", |b| {
        b.iter(|| payload::encode(1_000, &batch))
    });
    let encoded = payload::encode(1_000, &batch);
    group.bench_function("decode_batch_of_800_sets", |b| {
        b.iter(|| payload::decode(&encoded).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("snapshot");
    let state = populated(100_000);
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("encode_100k_keys", |b| b.iter(|| state.encode_snapshot()));
    let bytes = state.encode_snapshot();
    group.bench_function("decode_100k_keys", |b| {
        b.iter_batched(
            || bytes.clone(),
            |bytes| State::decode_snapshot(&bytes).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
