//! Tampering: random mutations of stored envelopes and of cookie values.
//!
//! * Through the store, on every backend: a mutated envelope is written into
//!   a live session's row (bit flips, truncations, extensions, byte
//!   corruption, a header from another session, another session's whole
//!   envelope, another key id, a changed `created_at` column), or a mutated
//!   cookie value is presented (bit flips, truncations, extensions,
//!   substitutions). Every one must give a fresh, empty session, exactly one
//!   `Rejected` event with the right reason (`UnknownKey` when the header
//!   names a key not on the ring: the cookie is then kept, not removed), no
//!   query for a malformed value, no write, and leave the real session
//!   intact. CI: 520 per backend (40 of each kind);
//!   `--ignored`: 100,000 per backend.
//! * In process, at the envelope level, through the fuzz entry point
//!   (`__fuzz::envelope`, the store's own sealer): 100,000 random mutations,
//!   each asserted rejected (runs in CI).

mod common;
mod reliability_support;

use common::{record_events, row, rows, set_created_at, set_data, Harness};
use reliability_support::{cookie_of, sid_of, Rng};
use stored_session::{EventKind, Key, RejectReason, SessionId, SessionStore};

const BASE_SESSIONS: usize = 4;

/// The kinds of mutation, applied round-robin so each gets its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    BitFlip,
    Truncate,
    Extend,
    Corrupt,
    HeaderSwap,
    RowSwap,
    KeyIdPrevious,
    KeyIdRandom,
    CreatedAt,
    CookieBitFlip,
    CookieTruncate,
    CookieExtend,
    CookieSubstitute,
}

const MUTATIONS: [Mutation; 13] = [
    Mutation::BitFlip,
    Mutation::Truncate,
    Mutation::Extend,
    Mutation::Corrupt,
    Mutation::HeaderSwap,
    Mutation::RowSwap,
    Mutation::KeyIdPrevious,
    Mutation::KeyIdRandom,
    Mutation::CreatedAt,
    Mutation::CookieBitFlip,
    Mutation::CookieTruncate,
    Mutation::CookieExtend,
    Mutation::CookieSubstitute,
];

/// Envelope header: version, algorithm, key id (4), salt (16), nonce (12).
const HEADER_LEN: usize = 34;

fn mutate_envelope(
    rng: &mut Rng,
    kind: Mutation,
    original: &[u8],
    other: &[u8],
    previous_key_id: u32,
) -> Vec<u8> {
    let mut out = original.to_vec();
    match kind {
        Mutation::BitFlip => {
            // 1 to 3 bits anywhere.
            for _ in 0..1 + rng.below(3) {
                let bit = rng.below(out.len() * 8);
                out[bit / 8] ^= 1 << (bit % 8);
            }
        }
        Mutation::Truncate => out.truncate(rng.below(out.len())),
        Mutation::Extend => {
            let extra = 1 + rng.below(64);
            out.extend(rng.bytes(extra));
        }
        Mutation::Corrupt => {
            let start = rng.below(out.len());
            let len = 1 + rng.below((out.len() - start).min(16));
            let fill = rng.bytes(len);
            out[start..start + len].copy_from_slice(&fill);
        }
        Mutation::HeaderSwap => {
            // Another session's salt and/or nonce (same key and version).
            let (from, to) = match rng.below(3) {
                0 => (6, 22),          // salt
                1 => (22, HEADER_LEN), // nonce
                _ => (0, HEADER_LEN),  // whole header
            };
            out[from..to].copy_from_slice(&other[from..to]);
        }
        Mutation::RowSwap => out = other.to_vec(),
        Mutation::KeyIdPrevious => out[2..6].copy_from_slice(&previous_key_id.to_be_bytes()),
        Mutation::KeyIdRandom => {
            let id = rng.next_u64() as u32;
            out[2..6].copy_from_slice(&id.to_be_bytes());
        }
        _ => unreachable!("{kind:?} is not an envelope mutation"),
    }
    out
}

/// Why the store rejects a mutated envelope: a well-formed header whose
/// key id is on no key of the ring (`ring_ids`) is an unknown key, whatever
/// else changed; everything else is tampering.
fn envelope_reason(envelope: &[u8], ring_ids: &[u32]) -> RejectReason {
    let long_enough = envelope.len() >= HEADER_LEN + 16;
    let known_format = matches!(envelope.first(), Some(1 | 2)) && envelope.get(1) == Some(&1);
    if long_enough && known_format {
        let id = u32::from_be_bytes(envelope[2..6].try_into().unwrap());
        if !ring_ids.contains(&id) {
            return RejectReason::UnknownKey;
        }
    }
    RejectReason::Tampered
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn mutate_cookie(rng: &mut Rng, kind: Mutation, original: &str) -> String {
    let mut bytes = original.as_bytes().to_vec();
    match kind {
        Mutation::CookieBitFlip => {
            let bit = rng.below(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        Mutation::CookieTruncate => bytes.truncate(rng.below(bytes.len())),
        Mutation::CookieExtend => {
            for _ in 0..1 + rng.below(8) {
                // Mostly alphabet characters (stays well-formed-looking),
                // sometimes any byte.
                let b = if rng.below(4) == 0 {
                    rng.byte()
                } else {
                    ALPHABET[rng.below(64)]
                };
                bytes.push(b);
            }
        }
        Mutation::CookieSubstitute => {
            // Another alphabet character: still well-formed, names no row.
            let at = rng.below(bytes.len());
            let mut c = ALPHABET[rng.below(64)];
            while c == bytes[at] {
                c = ALPHABET[rng.below(64)];
            }
            bytes[at] = c;
        }
        _ => unreachable!("{kind:?} is not a cookie mutation"),
    }
    // What an adapter hands the store: the header text, bad bytes replaced.
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tamper_through_the_store(h: &Harness, n: usize) {
    let previous = Key::generate();
    let previous_id = previous.id();
    let ring_ids = [h.keyring.current().id(), previous_id];
    let store = h.store_with(
        SessionStore::builder(h.keyring.clone().with_previous(previous).unwrap())
            .config(h.config()),
    );
    let cookies: Vec<String> = (0..BASE_SESSIONS)
        .map(|i| {
            let mut s = store.load(None).unwrap();
            s.insert("user", &format!("user-{i}")).unwrap();
            s.insert("roles", &vec!["admin"; i + 1]).unwrap();
            cookie_of(store.save(&mut s).unwrap())
        })
        .collect();
    let sids: Vec<_> = cookies.iter().map(|c| sid_of(c)).collect();
    let originals: Vec<_> = sids
        .iter()
        .map(|sid| row(store.database(), sid).unwrap())
        .collect();
    let events = record_events(&store);
    let mut rng = Rng::new(0x7a3e_5eed);
    let mut counts = [0usize; MUTATIONS.len()];

    // `n` applied mutations: attempts that would change nothing (a random
    // byte equal to the one it replaces, a lossy replacement that restores
    // the text) are skipped and do not count.
    let mut attempt = 0usize;
    while counts.iter().sum::<usize>() < n {
        let i = attempt;
        attempt += 1;
        let kind = MUTATIONS[i % MUTATIONS.len()];
        let a = rng.below(BASE_SESSIONS);
        let b = (a + 1 + rng.below(BASE_SESSIONS - 1)) % BASE_SESSIONS;
        events.lock().unwrap().clear();
        let (presented, expected_reason, expect_read) = match kind {
            Mutation::CookieBitFlip
            | Mutation::CookieTruncate
            | Mutation::CookieExtend
            | Mutation::CookieSubstitute => {
                let mutated = mutate_cookie(&mut rng, kind, &cookies[a]);
                if mutated == cookies[a] {
                    continue; // a lossy replacement can undo nothing; skip no-ops
                }
                let well_formed = SessionId::parse(&mutated).is_some();
                let reason = if well_formed {
                    RejectReason::NotFound
                } else {
                    RejectReason::Malformed
                };
                (mutated, reason, well_formed)
            }
            Mutation::CreatedAt => {
                let delta = 1 + rng.below(1_000_000) as i64;
                let at = if rng.below(2) == 0 {
                    originals[a].created_at - delta
                } else {
                    originals[a].created_at + delta
                };
                set_created_at(store.database(), &originals[a].sid, at);
                (cookies[a].clone(), RejectReason::Tampered, true)
            }
            _ => {
                let mutated = mutate_envelope(
                    &mut rng,
                    kind,
                    &originals[a].data,
                    &originals[b].data,
                    previous_id,
                );
                if mutated == originals[a].data {
                    continue; // e.g. a random byte equal to the one it replaced
                }
                set_data(store.database(), &originals[a].sid, &mutated);
                (
                    cookies[a].clone(),
                    envelope_reason(&mutated, &ring_ids),
                    true,
                )
            }
        };
        events.lock().unwrap().clear();

        let mut session = store.load(Some(&presented)).unwrap();
        assert!(
            session.is_new() && session.is_empty() && session.stored_id().is_none(),
            "mutation {i} ({kind:?}) was accepted"
        );
        {
            let seen = events.lock().unwrap();
            let kinds: Vec<_> = seen.iter().map(|e| e.kind).collect();
            let expected_kinds = if expect_read {
                vec![EventKind::Read, EventKind::Rejected]
            } else {
                vec![EventKind::Rejected]
            };
            assert_eq!(kinds, expected_kinds, "mutation {i} ({kind:?})");
            assert_eq!(
                seen.last().unwrap().reason,
                Some(expected_reason),
                "mutation {i} ({kind:?})"
            );
            if expect_read {
                let found = u64::from(matches!(
                    expected_reason,
                    RejectReason::Tampered | RejectReason::UnknownKey
                ));
                assert_eq!(seen[0].rows, found, "mutation {i} ({kind:?})");
            }
        }
        // The fresh session writes nothing and clears the bad cookie, but
        // one sealed under a key not on the ring is a configuration
        // problem: its cookie is left alone.
        let action = if expected_reason == RejectReason::UnknownKey {
            stored_session::CookieAction::Keep
        } else {
            stored_session::CookieAction::Remove
        };
        assert_eq!(
            store.save(&mut session).unwrap(),
            action,
            "mutation {i} ({kind:?})"
        );
        // Put the real row back.
        match kind {
            Mutation::CreatedAt => {
                set_created_at(store.database(), &originals[a].sid, originals[a].created_at)
            }
            Mutation::CookieBitFlip
            | Mutation::CookieTruncate
            | Mutation::CookieExtend
            | Mutation::CookieSubstitute => {}
            _ => set_data(store.database(), &originals[a].sid, &originals[a].data),
        }
        counts[MUTATIONS.iter().position(|m| *m == kind).unwrap()] += 1;
    }

    // Nothing was written, and every real session is intact.
    assert_eq!(rows(store.database()), originals);
    for (i, cookie) in cookies.iter().enumerate() {
        let s = store.load(Some(cookie)).unwrap();
        assert_eq!(
            s.get::<String>("user").unwrap().as_deref(),
            Some(format!("user-{i}").as_str())
        );
    }
    let total: usize = counts.iter().sum();
    eprintln!(
        "{:?}: {total} mutations ({} no-op attempts skipped), 0 accepted, 0 panics; \
         per kind: {:?}",
        h.backend,
        attempt - total,
        MUTATIONS.iter().zip(counts).collect::<Vec<_>>()
    );
    assert_eq!(total, n);
    assert!(
        attempt - total <= n / 100,
        "too many no-op attempts: {attempt} for {n}"
    );
}

fn tamper_ci(h: &Harness) {
    tamper_through_the_store(h, 520);
}

fn tamper_100k(h: &Harness) {
    tamper_through_the_store(h, 100_000);
}

backend_suite!(tamper_ci);

mod long {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[test]
    #[ignore = "long run: 100,000 mutations through SQLite"]
    fn sqlite_100k() {
        tamper_100k(&Harness::sqlite().unwrap());
    }

    #[cfg(feature = "postgres")]
    #[test]
    #[ignore = "long run: 100,000 mutations through PostgreSQL"]
    fn postgres_100k() {
        if let Some(h) = Harness::postgres() {
            tamper_100k(&h);
        }
    }

    #[cfg(feature = "mysql")]
    #[test]
    #[ignore = "long run: 100,000 mutations through MySQL"]
    fn mysql_100k() {
        if let Some(h) = Harness::mysql() {
            tamper_100k(&h);
        }
    }
}

#[cfg(feature = "fuzzing")]
/// 100,000 random mutations at the envelope level, through the fuzz entry
/// point that seals with the store's sealer, mutates, and asserts the open
/// fails (it panics on acceptance).
#[test]
fn envelope_mutations_100k_in_process() {
    let mut rng = Rng::new(0xe4e1_09e5);
    for _ in 0..100_000 {
        let op = rng.byte();
        let len = rng.below(200);
        let mut input = vec![1u8, op, rng.byte(), rng.byte(), rng.byte()];
        input.extend(rng.bytes(len));
        stored_session::__fuzz::envelope(&input);
    }
}
