//! Micro-benchmarks (ns/op) of the work stored-session adds around one
//! database round trip, on the ~1 KiB session the side-by-side harness uses
//! (a user id, a CSRF token and a 900-byte string):
//!
//! * `id/parse_and_hash`: validating a cookie value and SHA-256 to the stored id;
//! * `envelope/seal_1k`, `envelope/open_1k`: AES-256-GCM with a cached record
//!   key (the steady state of a load and an update); `envelope/seal_1k_new_salt`
//!   pays the HKDF of a newly created session;
//! * `msgpack/encode_1k`, `msgpack/decode_1k`: the payload MessagePack
//!   (the direct reader `load` uses); `msgpack/decode_1k_serde`: the same
//!   bytes through serde's generic path.
//!
//! The sealer and the payload codec are crate-private; they are reached through
//! the hidden `stored_session::__bench` module, which is not public API.
//!
//! Run: `cargo bench --bench micro`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use stored_session::__bench::{
    decode_payload, decode_payload_with_serde, encode_payload, new_session, Sealer,
};
use stored_session::{Keyring, Session, SessionId};

/// The benchmark session: a user id, a CSRF token and a 900-byte string.
fn session_1k() -> Session {
    let mut session = new_session();
    session.insert("user_id", &4_242_424_242u64).unwrap();
    session
        .insert("csrf", SessionId::generate().as_cookie_value())
        .unwrap();
    session.insert("note", &"x".repeat(900)).unwrap();
    session
}

fn ids(c: &mut Criterion) {
    let id = SessionId::generate();
    let cookie = id.as_cookie_value().to_owned();
    c.bench_function("id/parse_and_hash", |b| {
        b.iter(|| SessionId::parse(black_box(&cookie)).map(|id| id.stored_id()))
    });
}

fn envelope(c: &mut Criterion) {
    let sealer = Sealer::new(Keyring::generate());
    let sid = SessionId::generate().stored_id();
    let plaintext = encode_payload(&session_1k()).unwrap();
    let (envelope, salt) = sealer.seal_new(&sid, &plaintext);

    c.bench_function("envelope/seal_1k", |b| {
        b.iter(|| sealer.seal_again(&sid, &salt, black_box(&plaintext)))
    });
    c.bench_function("envelope/seal_1k_new_salt", |b| {
        b.iter(|| sealer.seal_new(&sid, black_box(&plaintext)))
    });
    c.bench_function("envelope/open_1k", |b| {
        b.iter_batched_ref(
            || envelope.clone(),
            |env| assert!(sealer.open(&sid, env).is_some()),
            BatchSize::SmallInput,
        )
    });
}

fn msgpack(c: &mut Criterion) {
    let session = session_1k();
    let bytes = encode_payload(&session).unwrap();
    c.bench_function("msgpack/encode_1k", |b| {
        b.iter(|| encode_payload(black_box(&session)).unwrap())
    });
    c.bench_function("msgpack/decode_1k", |b| {
        b.iter(|| decode_payload(black_box(&bytes)).unwrap())
    });
    c.bench_function("msgpack/decode_1k_serde", |b| {
        b.iter(|| decode_payload_with_serde(black_box(&bytes)).unwrap())
    });
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = ids, envelope, msgpack
}
criterion_main!(benches);
