//! The core behaviour suite, run against every enabled backend.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    contains, count, record_events, rejections, row, rows, set_created_at, set_data, Harness,
};
use serde::{Deserialize, Serialize};
use stored_session::{
    CookieAction, CookieLifetime, Error, Event, EventKind, Key, Keyring, RejectReason, Session,
    SessionId, SessionStore,
};

const DAY: u64 = 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cart {
    items: Vec<(String, u32)>,
    coupon: Option<String>,
    total_cents: i64,
}

/// Inserts `values`, commits, and returns the cookie value to send back.
fn create(store: &SessionStore, values: &[(&str, &str)]) -> String {
    let mut s = store.load(None).unwrap();
    for (k, v) in values {
        s.insert(*k, v).unwrap();
    }
    cookie_of(store.save(&mut s).unwrap())
}

fn cookie_of(action: CookieAction) -> String {
    match action {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a cookie to be set, got {other:?}"),
    }
}

fn sid_of(cookie: &str) -> stored_session::StoredId {
    SessionId::parse(cookie).unwrap().stored_id()
}

fn round_trip_of_serde_types(h: &Harness) {
    let store = h.store();
    let cart = Cart {
        items: vec![("apple".into(), 3), ("pear".into(), 1)],
        coupon: None,
        total_cents: -150,
    };
    let mut map = HashMap::new();
    map.insert("a".to_string(), vec![1u8, 2, 3]);
    let mut s = store.load(None).unwrap();
    s.insert("u64", &u64::MAX).unwrap();
    s.insert("i8", &-5i8).unwrap();
    s.insert("f64", &1.5e300f64).unwrap();
    s.insert("bool", &true).unwrap();
    s.insert("text", "héllo ✓ \0 nul").unwrap();
    s.insert("cart", &cart).unwrap();
    s.insert("map", &map).unwrap();
    s.insert("none", &Option::<u8>::None).unwrap();
    s.insert("unit", &()).unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());

    let s = store.load(Some(&cookie)).unwrap();
    assert!(!s.is_new());
    assert_eq!(s.get::<u64>("u64").unwrap(), Some(u64::MAX));
    assert_eq!(s.get::<i8>("i8").unwrap(), Some(-5));
    assert_eq!(s.get::<f64>("f64").unwrap(), Some(1.5e300));
    assert_eq!(s.get::<bool>("bool").unwrap(), Some(true));
    assert_eq!(
        s.get::<String>("text").unwrap().as_deref(),
        Some("héllo ✓ \0 nul")
    );
    assert_eq!(s.get::<Cart>("cart").unwrap(), Some(cart));
    assert_eq!(s.get::<HashMap<String, Vec<u8>>>("map").unwrap(), Some(map));
    assert_eq!(s.get::<Option<u8>>("none").unwrap(), Some(None));
    assert_eq!(s.get::<()>("unit").unwrap(), Some(()));
    assert_eq!(s.get::<u8>("absent").unwrap(), None);
    // A value read as the wrong type is a typed error, not a panic.
    assert!(matches!(s.get::<u64>("text"), Err(Error::Decode { .. })));
    assert_eq!(s.len(), 9);
}

fn unknown_well_formed_id_gets_a_fresh_id_and_nothing_is_written(h: &Harness) {
    let store = h.store();
    let events = record_events(&store);
    let unknown = SessionId::generate();
    let mut s = store.load(Some(unknown.as_cookie_value())).unwrap();
    assert!(s.is_new());
    assert_eq!(
        events.lock().unwrap().last().unwrap().reason,
        Some(RejectReason::NotFound)
    );
    // Nothing stored: no row, and the stale cookie is removed.
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert_eq!(count(store.database()), 0);
    // Once it holds data it is written, under a new id, never the presented one.
    s.insert("k", &1).unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());
    assert_ne!(cookie, unknown.as_cookie_value());
    let all = rows(store.database());
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].sid, sid_of(&cookie).as_bytes());
    assert!(row(store.database(), &unknown.stored_id()).is_none());
}

fn malformed_ids_give_a_fresh_session_without_a_query(h: &Harness) {
    // A store whose table does not exist: any query would fail.
    let empty = h.another();
    let unmigrated = empty.builder().open(&empty.url).unwrap();
    let store = h.store();
    let events = record_events(&store);
    let valid = SessionId::generate();
    let stored_form = valid.stored_id().to_string();
    let ten_kb = "a".repeat(10 * 1024);
    let with_nul = format!("{}\0", &valid.as_cookie_value()[..42]);
    let too_long = format!("{}A", valid.as_cookie_value());
    let bad_alphabet = format!("{}+", &valid.as_cookie_value()[..42]);
    let bad = [
        "",
        " ",
        "abc",
        too_long.as_str(),
        bad_alphabet.as_str(),
        stored_form.as_str(),
        &stored_form[..43],
        ten_kb.as_str(),
        with_nul.as_str(),
        "ÄÖÜäöüßÄÖÜäöüßÄÖÜäöüßÄÖÜäöüßÄÖÜäöüßÄÖÜäöü",
    ];
    for value in bad {
        let s = unmigrated
            .load(Some(value))
            .expect("no query for a malformed id");
        assert!(s.is_new());
        let s = store.load(Some(value)).unwrap();
        assert!(s.is_new() && s.is_empty());
    }
    // The unmigrated store does query for a well-formed id (and fails):
    // proof that the successes above made no query.
    assert!(unmigrated.load(Some(valid.as_cookie_value())).is_err());
    let events = events.lock().unwrap();
    assert_eq!(events.len(), bad.len());
    assert!(events.iter().all(|e| e.kind == EventKind::Rejected
        && e.reason == Some(RejectReason::Malformed)
        && e.sid.is_none()));
}

fn reading_never_creates_a_row(h: &Harness) {
    let store = h.store();
    for cookie in [
        None,
        Some("garbage"),
        Some(SessionId::generate().as_cookie_value()),
    ] {
        let mut s = store.load(cookie).unwrap();
        let _ = s.get::<u64>("user_id").unwrap();
        let _ = store.save(&mut s).unwrap();
    }
    assert_eq!(count(store.database()), 0);
    let cookie = create(&store, &[("a", "1")]);
    let before = rows(store.database());
    for _ in 0..3 {
        let mut s = store.load(Some(&cookie)).unwrap();
        assert_eq!(s.get::<String>("a").unwrap().as_deref(), Some("1"));
        assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    }
    assert_eq!(rows(store.database()), before);
}

fn raw_id_and_plaintext_never_appear_in_the_table(h: &Harness) {
    let store = h.store();
    let secret = "SECRET-MARKER-4f1c9a-credit-card-4111111111111111";
    let mut s = store.load(None).unwrap();
    s.insert("csrf", secret).unwrap();
    s.insert("SECRET-KEY-NAME-77", &1u8).unwrap();
    s.set_user("user-7f3e-alice@example.com");
    let cookie = cookie_of(store.save(&mut s).unwrap());
    // Rewrite once more so both the insert and the update path are covered.
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("flash", secret).unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    let needles: [&[u8]; 5] = [
        cookie.as_bytes(),
        secret.as_bytes(),
        b"SECRET-KEY-NAME-77",
        b"user-7f3e-alice@example.com",
        b"csrf",
    ];
    for raw in rows(store.database()) {
        let mut all = raw.sid.clone();
        all.extend_from_slice(&raw.data);
        all.extend(raw.user_key.clone().unwrap_or_default());
        for needle in needles {
            assert!(
                !contains(&all, needle),
                "{:?} found in the table",
                String::from_utf8_lossy(needle)
            );
        }
        assert_eq!(raw.sid, sid_of(&cookie).as_bytes());
    }
}

fn tampered_truncated_and_swapped_envelopes_give_a_fresh_session(h: &Harness) {
    let store = h.store();
    let events = record_events(&store);
    let db = store.database();
    let a = create(&store, &[("who", "a")]);
    let b = create(&store, &[("who", "b")]);
    let c = create(&store, &[("who", "c")]);
    let d = create(&store, &[("who", "d")]);
    let (sa, sb, sc, sd) = (sid_of(&a), sid_of(&b), sid_of(&c), sid_of(&d));
    let data_a = row(db, &sa).unwrap().data;

    // Row swap: A's valid envelope copied into B's row.
    set_data(db, sb.as_bytes(), &data_a);
    // A bit flip in C's ciphertext.
    let mut flipped = row(db, &sc).unwrap().data;
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    set_data(db, sc.as_bytes(), &flipped);
    // D truncated to its header.
    let truncated = row(db, &sd).unwrap().data[..20].to_vec();
    set_data(db, sd.as_bytes(), &truncated);

    for cookie in [&b, &c, &d] {
        let s = store.load(Some(cookie)).unwrap();
        assert!(s.is_new(), "tampered session accepted");
        assert!(s.is_empty());
    }
    // A is untouched.
    let s = store.load(Some(&a)).unwrap();
    assert_eq!(s.get::<String>("who").unwrap().as_deref(), Some("a"));

    // The plain created_at column moved (to dodge absolute expiry): rejected.
    set_created_at(db, sa.as_bytes(), row(db, &sa).unwrap().created_at + 1000);
    assert!(store.load(Some(&a)).unwrap().is_new());

    let rejected: Vec<_> = rejections(&events);
    assert_eq!(
        rejected,
        vec![
            (Some(sb), Some(RejectReason::Tampered)),
            (Some(sc), Some(RejectReason::Tampered)),
            (Some(sd), Some(RejectReason::Tampered)),
            (Some(sa), Some(RejectReason::Tampered)),
        ]
    );
    // A fresh session issued for a tampered cookie never reuses its id.
    let mut s = store.load(Some(&b)).unwrap();
    s.insert("x", &1).unwrap();
    assert_ne!(cookie_of(store.save(&mut s).unwrap()), b);
}

fn key_rotation(h: &Harness) {
    let old = Key::generate();
    let new = Key::generate();
    let key_id = |data: &[u8]| u32::from_be_bytes([data[2], data[3], data[4], data[5]]);

    let store_old = h.store_with(h.builder().config(Default::default()));
    let store_old = SessionStore::builder(Keyring::new(old.clone()))
        .config(h.config())
        .build(store_old.database().clone());
    let cookie = create(&store_old, &[("k", "v")]);
    let sid = sid_of(&cookie);
    assert_eq!(
        key_id(&row(store_old.database(), &sid).unwrap().data),
        old.id()
    );

    // Rotated ring: the new key writes, the old one still reads.
    let rotated = SessionStore::builder(
        Keyring::new(new.clone())
            .with_previous(old.clone())
            .unwrap(),
    )
    .config(h.config())
    .build(store_old.database().clone());
    let mut s = rotated.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v"));
    // Unchanged, but sealed with an old key: re-encrypted on this write.
    assert_eq!(rotated.save(&mut s).unwrap(), CookieAction::Keep);
    let raw = row(rotated.database(), &sid).unwrap();
    assert_eq!(key_id(&raw.data), new.id());
    assert_eq!(raw.version, 2);

    // The new key alone now reads it.
    let only_new = SessionStore::builder(Keyring::new(new.clone()))
        .config(h.config())
        .build(store_old.database().clone());
    assert_eq!(
        only_new
            .load(Some(&cookie))
            .unwrap()
            .get::<String>("k")
            .unwrap()
            .as_deref(),
        Some("v")
    );
    // A ring without the key that sealed it: a fresh session, never a panic.
    let cookie2 = create(&store_old, &[("k", "w")]);
    assert!(only_new.load(Some(&cookie2)).unwrap().is_new());
    let unrelated = SessionStore::builder(Keyring::generate())
        .config(h.config())
        .build(store_old.database().clone());
    assert!(unrelated.load(Some(&cookie)).unwrap().is_new());
}

fn idle_expiry_and_touch_never_revives(h: &Harness) {
    let store = h.store_with(
        h.builder().config(
            h.config()
                .idle_timeout(Some(Duration::from_secs(3600)))
                .max_lifetime(None)
                .touch_after(Duration::from_secs(60)),
        ),
    );
    let cookie = create(&store, &[("k", "v")]);
    // Activity inside the idle window keeps it alive via touches.
    for _ in 0..5 {
        h.advance(3000);
        let mut s = store.load(Some(&cookie)).unwrap();
        assert!(!s.is_new(), "expired while active");
        let id = SessionId::parse(&cookie).unwrap();
        assert_eq!(
            store.save(&mut s).unwrap(),
            CookieAction::Refresh(id, CookieLifetime::PolicyDefault)
        );
    }
    // A request that loaded it just before expiry commits just after: the
    // touch must not revive it.
    h.advance(3000);
    let mut late = store.load(Some(&cookie)).unwrap();
    assert!(!late.is_new());
    h.advance(3600);
    assert_eq!(store.save(&mut late).unwrap(), CookieAction::Remove);
    assert!(store.load(Some(&cookie)).unwrap().is_new());
    // Nor does a data write from such a request.
    let cookie = create(&store, &[("k", "v")]);
    let mut late = store.load(Some(&cookie)).unwrap();
    h.advance(3601);
    late.insert("k", "changed").unwrap();
    assert_eq!(store.save(&mut late).unwrap(), CookieAction::Remove);
    assert!(store.load(Some(&cookie)).unwrap().is_new());
}

fn absolute_expiry(h: &Harness) {
    let store = h.store_with(
        h.builder().config(
            h.config()
                .idle_timeout(Some(Duration::from_secs(DAY)))
                .max_lifetime(Some(Duration::from_secs(3 * DAY)))
                .touch_after(Duration::from_secs(60)),
        ),
    );
    let cookie = create(&store, &[("k", "v")]);
    // Used every 12 hours: never idle, but it dies at 3 days all the same.
    let mut alive_for = 0;
    loop {
        h.advance(DAY / 2);
        let mut s = store.load(Some(&cookie)).unwrap();
        if s.is_new() {
            break;
        }
        alive_for += DAY / 2;
        s.insert("tick", &alive_for).unwrap();
        let _ = store.save(&mut s).unwrap();
        assert!(alive_for < 4 * DAY, "absolute lifetime not enforced");
    }
    assert_eq!(alive_for, 3 * DAY - DAY / 2);
    // Renew changes the id, not the lifetime: the absolute clock keeps
    // running from the first creation.
    let cookie = create(&store, &[("k", "v")]);
    let hours = |n: u64| n * 3600;
    h.advance(hours(20));
    let _ = store.save(&mut store.load(Some(&cookie)).unwrap()).unwrap();
    h.advance(hours(20));
    let mut s = store.load(Some(&cookie)).unwrap();
    s.renew();
    let renewed = cookie_of(store.save(&mut s).unwrap());
    h.advance(hours(20));
    let mut s = store.load(Some(&renewed)).unwrap();
    assert!(!s.is_new(), "60 hours after creation: alive");
    let _ = store.save(&mut s).unwrap();
    // 80 hours after the first creation (past the 72-hour lifetime), 40
    // after the renew: expired.
    h.advance(hours(20));
    assert!(
        store.load(Some(&renewed)).unwrap().is_new(),
        "renew extended the absolute lifetime"
    );
}

fn unchanged_session_is_not_written(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("k", "v")]);
    let sid = sid_of(&cookie);
    let before = row(store.database(), &sid).unwrap();
    h.advance(10);
    let mut s = store.load(Some(&cookie)).unwrap();
    let _ = s.get::<String>("k").unwrap();
    s.insert("k", "v").unwrap(); // the same value: not a change
    assert!(!s.is_modified());
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    let after = row(store.database(), &sid).unwrap();
    assert_eq!(after, before, "an unchanged session was written");
}

/// `save` answers `Refresh(id)` with the session's own id exactly when the
/// row's `updated_at` moved (a touch, a data write with a touch due, a
/// write resolved under the lock), and `Keep` when it did not.
fn save_says_refresh_exactly_when_the_idle_clock_moved(h: &Harness) {
    let store = h.store_with(
        h.builder()
            .config(h.config().touch_after(Duration::from_secs(300))),
    );
    let cookie = create(&store, &[("k", "v")]);
    let id = SessionId::parse(&cookie).unwrap();
    let sid = sid_of(&cookie);
    let idle_clock = || row(store.database(), &sid).unwrap().updated_at;
    let start = idle_clock();

    // Read only, touch not due: Keep, clock unchanged.
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    // Data write, touch not due: Keep, clock unchanged.
    h.advance(100);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("k", "w").unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(idle_clock(), start);

    // Read only, touch due: Refresh(same id), clock moved.
    h.advance(300);
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(id.clone(), CookieLifetime::PolicyDefault)
    );
    assert_eq!(idle_clock(), start + 400);
    // The same Session saved again at once: nothing moved, Keep.
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    // Data write, touch due: Refresh, clock moved.
    h.advance(301);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("k", "x").unwrap();
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(id.clone(), CookieLifetime::PolicyDefault)
    );
    assert_eq!(idle_clock(), start + 701);

    // A conflict resolved under the lock moves the clock to now: Refresh.
    h.advance(10);
    let mut a = store.load(Some(&cookie)).unwrap();
    let mut b = store.load(Some(&cookie)).unwrap();
    a.insert("a", "1").unwrap();
    b.insert("b", "2").unwrap();
    assert_eq!(store.save(&mut a).unwrap(), CookieAction::Keep);
    assert_eq!(idle_clock(), start + 701);
    assert_eq!(
        store.save(&mut b).unwrap(),
        CookieAction::Refresh(id.clone(), CookieLifetime::PolicyDefault)
    );
    assert_eq!(idle_clock(), start + 711);
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("a").unwrap().as_deref(), Some("1"));
    assert_eq!(s.get::<String>("b").unwrap().as_deref(), Some("2"));
}

fn touch_updates_only_the_clock(h: &Harness) {
    let store = h.store_with(
        h.builder()
            .config(h.config().touch_after(Duration::from_secs(300))),
    );
    let cookie = create(&store, &[("k", "v")]);
    let sid = sid_of(&cookie);
    let before = row(store.database(), &sid).unwrap();
    h.advance(301);
    let mut s = store.load(Some(&cookie)).unwrap();
    let events = record_events(&store);
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(
            SessionId::parse(&cookie).unwrap(),
            CookieLifetime::PolicyDefault
        )
    );
    let after = row(store.database(), &sid).unwrap();
    assert_eq!(after.updated_at, before.updated_at + 301);
    assert_eq!(after.data, before.data, "a touch rewrote the data");
    assert_eq!(after.version, before.version);
    assert_eq!(after.created_at, before.created_at);
    let kinds: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.kind, e.rows))
        .collect();
    assert_eq!(kinds, vec![(EventKind::Touch, 1)]);
}

fn data_write_moves_the_idle_clock_only_when_a_touch_is_due(h: &Harness) {
    let store = h.store_with(
        h.builder().config(
            h.config()
                .touch_after(Duration::from_secs(300))
                .idle_timeout(Some(Duration::from_secs(1000))),
        ),
    );
    let cookie = create(&store, &[("k", "v1")]);
    let sid = sid_of(&cookie);
    let created = row(store.database(), &sid).unwrap();

    // Within touch_after of the last refresh: the data and version move,
    // the idle clock (and its index entry) does not.
    h.advance(10);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("k", "v2").unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    let early = row(store.database(), &sid).unwrap();
    assert_ne!(early.data, created.data);
    assert_eq!(early.version, created.version + 1);
    assert_eq!(early.updated_at, created.updated_at);

    // Once a touch is due, the write refreshes the clock as well.
    h.advance(300);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("k", "v3").unwrap();
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(
            SessionId::parse(&cookie).unwrap(),
            CookieLifetime::PolicyDefault
        )
    );
    let late = row(store.database(), &sid).unwrap();
    assert_eq!(late.version, created.version + 2);
    assert_eq!(late.updated_at, created.updated_at + 310);
    // The same session object can go on writing: its record follows.
    s.insert("k", "v4").unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(
        row(store.database(), &sid).unwrap().updated_at,
        created.updated_at + 310
    );

    // Idle expiry counts from the clock as stored: precise to touch_after.
    h.advance(999);
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("k").unwrap().as_deref(), Some("v4"));
    h.advance(2);
    assert!(store.load(Some(&cookie)).unwrap().is_new());
}

fn renew_kills_the_old_id_and_keeps_the_data(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("cart", "3 apples")]);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.renew();
    s.insert("user", "alice").unwrap();
    let renewed = cookie_of(store.save(&mut s).unwrap());
    assert_ne!(renewed, cookie);
    assert!(
        store.load(Some(&cookie)).unwrap().is_new(),
        "old id still works"
    );
    let s = store.load(Some(&renewed)).unwrap();
    assert_eq!(
        s.get::<String>("cart").unwrap().as_deref(),
        Some("3 apples")
    );
    assert_eq!(s.get::<String>("user").unwrap().as_deref(), Some("alice"));
    assert_eq!(count(store.database()), 1);
    // Renewing a brand-new session just inserts it.
    let mut s = store.load(None).unwrap();
    s.insert("k", &1).unwrap();
    s.renew();
    let _ = cookie_of(store.save(&mut s).unwrap());
    assert_eq!(count(store.database()), 2);
}

fn destroy_removes_the_row_and_the_cookie(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("k", "v")]);
    let keep = create(&store, &[("k", "other")]);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.destroy();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert!(row(store.database(), &sid_of(&cookie)).is_none());
    assert!(store.load(Some(&cookie)).unwrap().is_new());
    assert_eq!(count(store.database()), 1);
    assert!(!store.load(Some(&keep)).unwrap().is_new());
    // Emptying a session deletes it too.
    let mut s = store.load(Some(&keep)).unwrap();
    s.clear();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert_eq!(count(store.database()), 0);
}

fn concurrent_writers_of_different_keys_both_survive(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("base", "1")]);
    // Two overlapping requests.
    let mut a = store.load(Some(&cookie)).unwrap();
    let mut b = store.load(Some(&cookie)).unwrap();
    a.insert("from_a", "A").unwrap();
    b.insert("from_b", "B").unwrap();
    b.remove("base");
    let _ = store.save(&mut a).unwrap();
    let _ = store.save(&mut b).unwrap();
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("from_a").unwrap().as_deref(), Some("A"));
    assert_eq!(s.get::<String>("from_b").unwrap().as_deref(), Some("B"));
    assert!(!s.contains_key("base"));

    // And with real threads.
    let threads = 8;
    let per_thread = 25;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = store.clone();
            let cookie = cookie.clone();
            scope.spawn(move || {
                for i in 0..per_thread {
                    let mut s: Session = store.load(Some(&cookie)).unwrap();
                    s.insert(format!("t{t}-{i}"), &i).unwrap();
                    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
                }
            });
        }
    });
    let s = store.load(Some(&cookie)).unwrap();
    for t in 0..threads {
        for i in 0..per_thread {
            assert_eq!(
                s.get::<u32>(&format!("t{t}-{i}")).unwrap(),
                Some(i),
                "lost t{t}-{i}"
            );
        }
    }
}

fn save_after_concurrent_destroy_does_not_recreate(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("k", "v")]);
    let mut slow = store.load(Some(&cookie)).unwrap();
    let mut logout = store.load(Some(&cookie)).unwrap();
    logout.destroy();
    assert_eq!(store.save(&mut logout).unwrap(), CookieAction::Remove);
    slow.insert("late", "write").unwrap();
    assert_eq!(store.save(&mut slow).unwrap(), CookieAction::Remove);
    assert_eq!(
        count(store.database()),
        0,
        "a destroyed session was resurrected"
    );
    // A renew racing a logout does not resurrect it either.
    let cookie = create(&store, &[("k", "v")]);
    let mut login = store.load(Some(&cookie)).unwrap();
    let mut logout = store.load(Some(&cookie)).unwrap();
    logout.destroy();
    let _ = store.save(&mut logout).unwrap();
    login.renew();
    assert_eq!(store.save(&mut login).unwrap(), CookieAction::Remove);
    assert_eq!(count(store.database()), 0);
}

fn payload_over_the_cap_is_a_typed_error_and_nothing_is_written(h: &Harness) {
    let store = h.store_with(h.builder().config(h.config().max_payload(1024)));
    let mut s = store.load(None).unwrap();
    s.insert("big", &"x".repeat(2000)).unwrap();
    match store.save(&mut s) {
        Err(Error::PayloadTooLarge { size, max }) => {
            assert_eq!(max, 1024);
            assert!(size > 2000);
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_eq!(count(store.database()), 0);
    // An existing session that grows too big keeps its stored version.
    let cookie = create(&store, &[("small", "ok")]);
    let before = row(store.database(), &sid_of(&cookie)).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("big", &"x".repeat(2000)).unwrap();
    assert!(matches!(
        store.save(&mut s),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert_eq!(row(store.database(), &sid_of(&cookie)).unwrap(), before);
}

fn large_payloads_round_trip_exactly(h: &Harness) {
    let store = h.store_with(h.builder().config(h.config().max_payload(8 * 1024 * 1024)));
    // Past MySQL's 64 KiB BLOB and 16 MiB MEDIUMBLOB-adjacent sizes.
    for size in [70 * 1024, 3 * 1024 * 1024] {
        let value: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let mut s = store.load(None).unwrap();
        s.insert("blob", &serde_bytes::ByteBuf::from(value.clone()))
            .unwrap();
        let cookie = cookie_of(store.save(&mut s).unwrap());
        let s = store.load(Some(&cookie)).unwrap();
        let back: serde_bytes::ByteBuf = s.get("blob").unwrap().unwrap();
        assert_eq!(back.len(), size);
        assert!(
            back.as_slice() == value.as_slice(),
            "{size}-byte payload changed"
        );
    }
}

fn events_for_every_operation(h: &Harness) {
    let store = h.store_with(
        h.builder()
            .config(h.config().touch_after(Duration::from_secs(60))),
    );
    let events = record_events(&store);
    let kinds = |events: &Arc<Mutex<Vec<Event>>>| -> Vec<(EventKind, u64)> {
        events
            .lock()
            .unwrap()
            .drain(..)
            .map(|e| (e.kind, e.rows))
            .collect()
    };
    let cookie = create(&store, &[("k", "v")]);
    let sid = sid_of(&cookie);
    assert_eq!(kinds(&events), vec![(EventKind::Write, 1)]);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("k", "w").unwrap();
    let _ = store.save(&mut s).unwrap();
    assert_eq!(
        kinds(&events),
        vec![(EventKind::Read, 1), (EventKind::Write, 1)]
    );
    h.advance(61);
    let mut s = store.load(Some(&cookie)).unwrap();
    let _ = store.save(&mut s).unwrap();
    assert_eq!(
        kinds(&events),
        vec![(EventKind::Read, 1), (EventKind::Touch, 1)]
    );
    let mut s = store.load(Some(&cookie)).unwrap();
    s.renew();
    let renewed = cookie_of(store.save(&mut s).unwrap());
    let all: Vec<Event> = events.lock().unwrap().clone();
    assert_eq!(all[1].kind, EventKind::Renew);
    assert_eq!(all[1].previous_sid, Some(sid));
    assert_eq!(all[1].sid, Some(sid_of(&renewed)));
    let _ = kinds(&events);
    let mut s = store.load(Some(&renewed)).unwrap();
    s.destroy();
    let _ = store.save(&mut s).unwrap();
    assert_eq!(
        kinds(&events),
        vec![(EventKind::Read, 1), (EventKind::Delete, 1)]
    );
    let _ = store.load(Some(&renewed)).unwrap();
    assert_eq!(
        kinds(&events),
        vec![(EventKind::Read, 0), (EventKind::Rejected, 0)]
    );
    // No event ever carries the raw id.
    for e in events.lock().unwrap().iter() {
        assert!(!format!("{e} {e:?}").contains(&cookie));
    }
}

fn conflicting_removes_and_clears_merge_per_key(h: &Harness) {
    let store = h.store();
    let cookie = create(&store, &[("a", "1"), ("b", "2"), ("c", "3")]);
    let mut first = store.load(Some(&cookie)).unwrap();
    let mut second = store.load(Some(&cookie)).unwrap();
    first.remove("a");
    first.insert("b", "20").unwrap();
    second.insert("c", "30").unwrap();
    second.insert("d", "40").unwrap();
    let _ = store.save(&mut first).unwrap();
    let _ = store.save(&mut second).unwrap();
    let s = store.load(Some(&cookie)).unwrap();
    let got: Vec<(String, String)> = s
        .keys()
        .map(|k| (k.to_owned(), s.get::<String>(k).unwrap().unwrap()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("b".into(), "20".into()),
            ("c".into(), "30".into()),
            ("d".into(), "40".into())
        ]
    );
    assert_eq!(row(store.database(), &sid_of(&cookie)).unwrap().version, 3);
}

fn connections_are_configured_for_sessions(h: &Harness) {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Text {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let store = h.store();
    match h.backend {
        stored_session::Backend::Sqlite => {
            let mode = with_conn!(store.database(), |c| diesel::sql_query(
                "SELECT journal_mode AS value FROM pragma_journal_mode"
            )
            .get_result::<Text>(c)
            .unwrap()
            .value);
            assert_eq!(mode, "wal");
            let timeout = with_conn!(store.database(), |c| diesel::sql_query(
                "SELECT CAST(timeout AS TEXT) AS value FROM pragma_busy_timeout"
            )
            .get_result::<Text>(c)
            .unwrap()
            .value);
            assert_eq!(timeout, "5000");
        }
        stored_session::Backend::Mysql => {
            let mode = with_conn!(store.database(), |c| diesel::sql_query(
                "SELECT @@SESSION.sql_mode AS value"
            )
            .get_result::<Text>(c)
            .unwrap()
            .value);
            assert!(mode.contains("STRICT_ALL_TABLES"), "{mode}");
            // MariaDB calls it tx_isolation; MySQL 8 transaction_isolation.
            let isolation = with_conn!(store.database(), |c| diesel::sql_query(
                "SELECT @@SESSION.tx_isolation AS value"
            )
            .get_result::<Text>(c)
            .or_else(
                |_| diesel::sql_query("SELECT @@SESSION.transaction_isolation AS value")
                    .get_result::<Text>(c)
            )
            .unwrap()
            .value);
            assert_eq!(isolation, "READ-COMMITTED");
        }
        _ => {}
    }
}

/// Rollback: an envelope put back into its own row after the row moved on
/// (restored from an older backup, or replayed from a captured copy of the
/// column) is refused, because the row version it was written at is
/// authenticated. A whole-row restore (data and version together) is the
/// documented limit: it opens.
fn envelope_restored_from_an_older_backup_is_refused(h: &Harness) {
    use diesel::prelude::*;
    use stored_session::schema::stored_sessions::dsl as t;
    let store = h.store();
    let db = store.database();
    let cookie = create(&store, &[("role", "admin")]);
    let sid = stored_session::SessionId::parse(&cookie)
        .unwrap()
        .stored_id();
    let backup = row(db, &sid).unwrap();
    // The app demotes the user: a newer version of the same row.
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("role", "reader").unwrap();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(row(db, &sid).unwrap().version, backup.version + 1);

    // Only the data column restored: refused, as a tampered envelope.
    set_data(db, sid.as_bytes(), &backup.data);
    let s = store.load(Some(&cookie)).unwrap();
    assert!(s.is_new(), "a rolled-back envelope was accepted");
    assert_eq!(s.get::<String>("role").unwrap(), None);

    // The whole row restored (data and version): indistinguishable from the
    // row as it was, so it opens; the security model says what to do after
    // restoring a backup.
    with_conn!(db, |c| diesel::update(
        t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()))
    )
    .set(t::version.eq(backup.version))
    .execute(c)
    .unwrap());
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("role").unwrap().as_deref(), Some("admin"));
}

backend_suite!(
    envelope_restored_from_an_older_backup_is_refused,
    connections_are_configured_for_sessions,
    round_trip_of_serde_types,
    unknown_well_formed_id_gets_a_fresh_id_and_nothing_is_written,
    malformed_ids_give_a_fresh_session_without_a_query,
    reading_never_creates_a_row,
    raw_id_and_plaintext_never_appear_in_the_table,
    tampered_truncated_and_swapped_envelopes_give_a_fresh_session,
    key_rotation,
    idle_expiry_and_touch_never_revives,
    absolute_expiry,
    unchanged_session_is_not_written,
    touch_updates_only_the_clock,
    data_write_moves_the_idle_clock_only_when_a_touch_is_due,
    renew_kills_the_old_id_and_keeps_the_data,
    destroy_removes_the_row_and_the_cookie,
    concurrent_writers_of_different_keys_both_survive,
    save_after_concurrent_destroy_does_not_recreate,
    payload_over_the_cap_is_a_typed_error_and_nothing_is_written,
    large_payloads_round_trip_exactly,
    events_for_every_operation,
    conflicting_removes_and_clears_merge_per_key,
    save_says_refresh_exactly_when_the_idle_clock_moved,
);
