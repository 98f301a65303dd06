//! Cost of Litecoin's proof-of-work hash, scrypt(N=1024, r=1, p=1) of an 80-byte header:
//! the node's own implementation (what the Stratum server verifies submissions with), one
//! at a time and four at a time, beside the RustCrypto `scrypt` crate it is tested against.
//!
//! Run: `cargo bench -p share-chain --bench scrypt`.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use share_chain::pow::{scrypt_1024_1_1, scrypt_1024_1_1_many, scrypt_1024_1_1_reference};

fn bench_scrypt(c: &mut Criterion) {
    let mut header = [0u8; 80];
    for (i, b) in header.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut group = c.benchmark_group("scrypt_1024_1_1");
    group.throughput(Throughput::Elements(1));
    group.bench_function("p2pool (specialised)", |b| {
        b.iter(|| {
            header[76] = header[76].wrapping_add(1);
            black_box(scrypt_1024_1_1(black_box(&header)))
        })
    });
    group.bench_function("scrypt crate 0.11", |b| {
        b.iter(|| {
            header[76] = header[76].wrapping_add(1);
            black_box(scrypt_1024_1_1_reference(black_box(&header)))
        })
    });
    group.finish();

    // Four headers per call: the batch the Stratum server verifies with when submissions
    // queue up. Throughput is per header.
    let mut group = c.benchmark_group("scrypt_1024_1_1_many");
    group.throughput(Throughput::Elements(4));
    let mut headers = [header; 4];
    for (i, h) in headers.iter_mut().enumerate() {
        h[0] = i as u8;
    }
    group.bench_function("4 headers", |b| {
        b.iter(|| {
            for h in headers.iter_mut() {
                h[76] = h[76].wrapping_add(1);
            }
            black_box(scrypt_1024_1_1_many(black_box(&headers)))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_scrypt);
criterion_main!(benches);
