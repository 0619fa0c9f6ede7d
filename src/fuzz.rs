//! NOT PUBLIC API: the entry points of this crate's fuzz targets (`fuzz/`)
//! and of the corpus regression test (`tests/fuzz_corpus.rs`). Hidden,
//! unstable, may change in any release.
//!
//! Each entry point takes arbitrary bytes, runs them through exactly the code
//! the store runs on untrusted input, and panics only when a security or
//! robustness property fails (so a fuzzer reports it as a crash):
//!
//! * [`cookie`]: the bytes as a cookie value ([`SessionId::parse`]) and, with
//!   an adapter feature, as `Cookie` header values (the shared cookie policy).
//!   A value is accepted only if it is exactly 43 URL-safe base64 characters.
//! * [`envelope`]: the bytes as a stored envelope (opened as the store opens
//!   one), or as a plaintext that is sealed, mutated as the input says, and
//!   opened again: every mutation is rejected, the unmutated envelope opens
//!   to exactly its plaintext.
//! * [`payload`]: the bytes as a decrypted session payload, decoded as `load`
//!   decodes it, then read back as a session with typed `get`s; a decoded
//!   payload re-encodes and decodes to itself.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::de::IgnoredAny;
use serde_bytes::ByteBuf;

use crate::codec::{self, LoadedPayload, Payload, PayloadRef};
use crate::crypto::{Sealer, HEADER_LEN};
use crate::{Key, Keyring, Session, SessionId, StoredId, SESSION_ID_LEN};

/// The fuzzing keyring: fixed keys, so inputs (and crashes) replay exactly.
/// Current key `[0x11; 32]`, previous key `[0x22; 32]`.
pub fn keyring() -> Keyring {
    let current = Key::from_bytes(&[0x11; 32]).expect("32 bytes");
    let previous = Key::from_bytes(&[0x22; 32]).expect("32 bytes");
    Keyring::new(current)
        .with_previous(previous)
        .expect("two different keys")
}

/// The row version every fuzzed envelope is sealed at and opened as.
const VERSION: i64 = 1;

/// The stored id every fuzzed envelope belongs to.
pub fn sid() -> StoredId {
    StoredId::of("fuzz-session-id-0000000000000000000000000000")
}

fn sealer() -> &'static Sealer {
    static SEALER: OnceLock<Sealer> = OnceLock::new();
    SEALER.get_or_init(|| Sealer::new(keyring(), 64))
}

/// Cookie parsing: the bytes as a cookie value and as `Cookie` headers.
pub fn cookie(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_value(text);
    }
    cookie_headers(data);
}

/// The property every accepted cookie value has.
fn check_value(text: &str) {
    if let Some(id) = SessionId::parse(text) {
        let value = id.as_cookie_value();
        assert_eq!(value, text, "parse changed the value");
        assert_eq!(
            value.len(),
            SESSION_ID_LEN,
            "accepted a value of another length"
        );
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "accepted a byte outside the URL-safe alphabet: {value:?}"
        );
        assert_eq!(id.stored_id(), StoredId::of(text));
    }
}

/// The bytes split at `\n` into `Cookie` header values, looked up under the
/// default policy and under a `__Host-` policy.
fn cookie_headers(data: &[u8]) {
    use crate::adapters::{CookiePolicy, Presented};
    let headers: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for policy in [
        CookiePolicy::new(),
        CookiePolicy::new().with_name("sid").with_host_prefix(true),
    ] {
        let found = policy.find(headers.iter().copied());
        match &found {
            Presented::Absent => assert_eq!(found.as_load_arg(), None),
            Presented::One(value) => {
                assert_eq!(found.as_load_arg(), Some(value.as_str()));
                check_value(value);
            }
            // Ambiguous: loads as a malformed value (no query).
            Presented::Conflicting => {
                assert!(SessionId::parse(found.as_load_arg().unwrap_or("x")).is_none())
            }
        }
    }
}

/// Envelope opening. First byte even: the rest is a stored envelope, opened
/// as `load` opens one. Odd: the input is `[op, arg0, arg1, arg2, plaintext…]`;
/// the plaintext is sealed, the envelope changed by `op`, and opened again.
pub fn envelope(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let mut envelope = rest.to_vec();
        if let Ok((plaintext, _)) = sealer().open(&sid(), VERSION, &mut envelope) {
            // Only reachable with the fuzzing key: decode as load does.
            payload(plaintext);
        }
        return;
    }
    if rest.len() < 4 {
        return;
    }
    let (op, args, plaintext) = (rest[0], [rest[1], rest[2], rest[3]], &rest[4..]);
    let sid = sid();
    let sealed = sealer().seal_new(&sid, VERSION, plaintext).0;
    // Unmutated: opens to exactly the plaintext.
    let mut copy = sealed.clone();
    let (opened, _) = sealer()
        .open(&sid, VERSION, &mut copy)
        .expect("a fresh envelope must open");
    assert_eq!(opened, plaintext);
    payload(opened);

    let (mutated, open_as, at_version) = mutate(&sealed, op, args, plaintext, sid);
    if mutated == sealed && open_as == sid && at_version == VERSION {
        return; // the mutation happened to change nothing
    }
    let mut bytes = mutated.clone();
    assert!(
        sealer().open(&open_as, at_version, &mut bytes).is_err(),
        "a changed envelope opened (op {op}, args {args:?})"
    );
}

/// One mutation of a sealed envelope, and the row (and row version) it is
/// opened as.
fn mutate(
    sealed: &[u8],
    op: u8,
    args: [u8; 3],
    plaintext: &[u8],
    sid: StoredId,
) -> (Vec<u8>, StoredId, i64) {
    let mut out = sealed.to_vec();
    let pos = usize::from(u16::from_be_bytes([args[0], args[1]])) % sealed.len();
    match op % 8 {
        // Bit flip.
        0 => out[pos] ^= 1 << (args[2] % 8),
        // Byte replaced.
        1 => out[pos] = args[2],
        // Truncation.
        2 => out.truncate(pos),
        // Extension.
        3 => out.extend(std::iter::repeat_n(args[2], usize::from(args[0]) + 1)),
        // Header from another envelope (another salt and nonce).
        4 => {
            let other = sealer().seal_new(&sid, VERSION, plaintext).0;
            let end = HEADER_LEN.min(1 + usize::from(args[2]) % HEADER_LEN);
            out[..end].copy_from_slice(&other[..end]);
        }
        // Key id: the previous key's, or arbitrary.
        5 => {
            let id = if args[2] % 2 == 0 {
                keyring().keys()[1].id()
            } else {
                u32::from_be_bytes([args[0], args[1], args[2], op])
            };
            out[2..6].copy_from_slice(&id.to_be_bytes());
        }
        // The envelope of another row, or of its own row at another
        // version (put back after the row moved on: a rollback).
        6 if args[2] % 2 == 0 => {
            let other = StoredId::of(&format!("another-row-{args:?}"));
            return (out, other, VERSION);
        }
        6 => return (out, sid, VERSION + 1 + i64::from(args[0])),
        // Byte removed.
        _ => {
            out.remove(pos);
        }
    }
    (out, sid, VERSION)
}

/// Payload decoding and typed reads, as `load` and `Session::get` do them.
/// `load` decodes with `LoadedPayload` (straight into the session's map,
/// through the direct reader when it can, see `codec::fast`);
/// it must accept exactly what `Payload::decode` accepts, with the same
/// content, and `commit`'s borrowed `PayloadRef` must encode to exactly the
/// bytes the owned `Payload` encodes to.
pub fn payload(data: &[u8]) {
    // The direct reader of the store's own encoding never disagrees with
    // serde: what it accepts, serde accepts with the same content.
    if let Some(direct) = codec::fast::decode(data) {
        assert_eq!(
            LoadedPayload::decode_with_serde(data).as_ref(),
            Some(&direct),
            "the direct payload reader accepts what serde decodes otherwise"
        );
    }
    let loaded = LoadedPayload::decode(data);
    let Some(decoded) = Payload::decode(data) else {
        assert!(
            loaded.is_none(),
            "load accepts a payload that Payload::decode refuses"
        );
        // Arbitrary bytes as one session value, decoded as any type.
        let _ = codec::decode_value::<IgnoredAny>("v", data);
        let _ = codec::decode_value::<String>("v", data);
        return;
    };
    let loaded = loaded.expect("load refuses a payload that Payload::decode accepts");
    assert_eq!(loaded.created_at, decoded.created_at);
    assert_eq!(loaded.meta, decoded.meta);
    assert_eq!(loaded.user, decoded.user);
    assert_eq!(loaded.expiry, decoded.expiry);
    assert_eq!(loaded.csrf, decoded.csrf);
    assert!(
        loaded.flashes.len() == decoded.flashes.len()
            && loaded
                .flashes
                .iter()
                .zip(&decoded.flashes)
                .all(|((lk, lv), (dk, dv))| lk == dk && lv.as_slice() == dv.as_slice()),
        "load decoded other flashes than Payload::decode"
    );
    assert!(
        loaded.data.len() == decoded.data.len()
            && loaded
                .data
                .iter()
                .zip(&decoded.data)
                .all(|((lk, lv), (dk, dv))| lk == dk && lv.as_slice() == dv.as_slice()),
        "load decoded other values than Payload::decode"
    );

    let owned = decoded.encode().expect("a decoded payload re-encodes");
    let borrowed = PayloadRef {
        created_at: loaded.created_at,
        data: &loaded.data,
        meta: &loaded.meta,
        user: loaded.user.as_deref(),
        expiry: loaded.expiry,
        flashes: &loaded.flashes,
        csrf: loaded.csrf.as_deref(),
    }
    .encode()
    .expect("a decoded payload re-encodes");
    assert_eq!(
        borrowed, owned,
        "commit's encoding differs from the owned one"
    );
    let again = Payload::decode(&owned).expect("a re-encoded payload decodes");
    assert_eq!(again, decoded, "payload round trip changed it");

    let record = crate::session::Record {
        sid: sid(),
        version: VERSION,
        salt: [0; 16],
        updated_at: loaded.created_at,
        stale_key: false,
    };
    let mut session = Session::loaded(
        crate::SessionId::generate(),
        record,
        loaded,
        Default::default(),
    );
    let keys: Vec<String> = session.keys().map(str::to_owned).collect();
    for key in &keys {
        let _ = session.get::<IgnoredAny>(key);
        let _ = session.get::<u64>(key);
        let _ = session.get::<i64>(key);
        let _ = session.get::<f64>(key);
        let _ = session.get::<String>(key);
        let _ = session.get::<Vec<String>>(key);
        let _ = session.get::<BTreeMap<String, String>>(key);
        let _ = session.get::<(String, u32, Option<bool>)>(key);
    }
    let _ = session.created_at();
    let _ = format!("{session:?}");
    // Whatever the token, a POST carrying any other one is refused.
    let csrf = crate::csrf::Csrf::new();
    let header = |_: &str| None::<&str>;
    assert!(csrf
        .verify(&session, "POST", header, Some("not-the-token"))
        .is_err());
    let _ = session.flashes::<IgnoredAny>();
    let _ = session.take_flash::<String>("notice");
}

/// Seed inputs for each target: `(target, file name, bytes)`. Written to
/// `fuzz/seeds/` by `cargo test --test fuzz_corpus -- --ignored write_seeds`.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let id = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let cookies: Vec<(&str, Vec<u8>)> = vec![
        ("valid-id", id.as_bytes().to_vec()),
        ("header-one", format!("id={id}").into_bytes()),
        (
            "header-among-others",
            format!("a=1; id={id}; theme=dark").into_bytes(),
        ),
        (
            "header-host-prefix",
            format!("__Host-sid={id}").into_bytes(),
        ),
        ("two-headers", format!("id={id}\nid={id}").into_bytes()),
        (
            "conflicting",
            format!("id={id}; id=BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").into_bytes(),
        ),
        (
            "stored-form",
            b"id=2::ba7816bf8f01cfea414140de5dae2223".to_vec(),
        ),
        ("empty", Vec::new()),
        ("junk", b";;; = ; ==; id==".to_vec()),
        ("non-utf8", b"x=\xff\xfe; id=\xc3\x28\x80".to_vec()),
        ("nul", b"id=abc\0def".to_vec()),
        ("quoted", format!("id=\"{id}\"").into_bytes()),
        ("percent", b"id=%41%41%41; i%64=AAA".to_vec()),
        ("padded", format!("id={id}=").into_bytes()),
    ];
    for (name, bytes) in cookies {
        out.push(("cookie", name.to_owned(), bytes));
    }

    let mut data = BTreeMap::new();
    data.insert(
        "user".to_owned(),
        ByteBuf::from(codec::encode_value("alice").expect("encodes")),
    );
    data.insert(
        "visits".to_owned(),
        ByteBuf::from(codec::encode_value(&42u64).expect("encodes")),
    );
    data.insert(
        "cart".to_owned(),
        ByteBuf::from(codec::encode_value(&vec![("apple", 3u32, Some(true))]).expect("encodes")),
    );
    let full = Payload {
        created_at: 1_900_000_000,
        data,
        meta: BTreeMap::new(),
        user: None,
        ..Payload::default()
    };
    let empty = Payload::default();
    let mut flashed = full.clone();
    flashed.flashes.insert(
        "notice".to_owned(),
        ByteBuf::from(codec::encode_value("saved").expect("encodes")),
    );
    flashed.csrf = Some("k".repeat(43));
    out.push((
        "payload",
        "flash-and-csrf".into(),
        flashed.encode().expect("encodes"),
    ));
    let full_bytes = full.encode().expect("encodes");
    out.push(("payload", "full".into(), full_bytes.clone()));
    out.push(("payload", "empty".into(), empty.encode().expect("encodes")));
    out.push(("payload", "truncated".into(), full_bytes[..10].to_vec()));
    out.push((
        "payload",
        "deep-array".into(),
        [&[0x91u8; 200][..], &[0xc0]].concat(),
    ));
    out.push((
        "payload",
        "huge-map-length".into(),
        vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'c'],
    ));

    let sid = sid();
    let sealed = sealer().seal_new(&sid, VERSION, &full_bytes).0;
    out.push((
        "envelope",
        "sealed-full".into(),
        [&[0u8][..], &sealed].concat(),
    ));
    out.push((
        "envelope",
        "header-only".into(),
        [&[0u8][..], &sealed[..HEADER_LEN]].concat(),
    ));
    for op in 0..8u8 {
        out.push((
            "envelope",
            format!("mutate-op{op}"),
            [&[1u8, op, 0, 7, 3][..], &full_bytes].concat(),
        ));
    }
    out
}
