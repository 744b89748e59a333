//! Request parsing and reply encoding throughput of `concord::resp`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use concord::resp::{encode, Limits, Protocol, Reply, RequestParser};

fn multibulk(argv: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", argv.len()).as_bytes());
    for arg in argv {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses every request in `wire` with a fresh parser; returns how many there were.
fn parse_all(mut buf: BytesMut) -> usize {
    let mut parser = RequestParser::new(Limits::default());
    let mut n = 0;
    while let Some(argv) = parser.next_request(&mut buf).expect("valid requests") {
        black_box(&argv);
        n += 1;
    }
    n
}

fn parse(c: &mut Criterion) {
    let mut pipeline = Vec::new();
    for i in 0..16 {
        let key = format!("key:{i}");
        multibulk(&[b"SET", key.as_bytes(), b"value"], &mut pipeline);
    }
    let mut get = Vec::new();
    multibulk(&[b"GET", b"key:1"], &mut get);

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(16));
    group.bench_function("pipeline_16_set", |b| {
        b.iter_batched(
            || BytesMut::from(&pipeline[..]),
            |buf| assert_eq!(parse_all(buf), 16),
            BatchSize::SmallInput,
        )
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("single_get", |b| {
        b.iter_batched(
            || BytesMut::from(&get[..]),
            |buf| assert_eq!(parse_all(buf), 1),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn encode_replies(c: &mut Criterion) {
    let bulk = Reply::Bulk(Bytes::from_static(
        b"some value of a typical size, 40 bytes..",
    ));
    let array = Reply::Array(
        (0..10)
            .map(|i| Reply::Bulk(Bytes::from(format!("member:{i}"))))
            .collect(),
    );
    let mut group = c.benchmark_group("encode");
    for (name, reply) in [("bulk", &bulk), ("array_10_bulks", &array)] {
        for (proto_name, protocol) in [("resp2", Protocol::Resp2), ("resp3", Protocol::Resp3)] {
            let mut out = BytesMut::with_capacity(4096);
            group.bench_function(format!("{name}_{proto_name}"), |b| {
                b.iter(|| {
                    out.clear();
                    encode(black_box(reply), protocol, &mut out);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, parse, encode_replies);
criterion_main!(benches);
