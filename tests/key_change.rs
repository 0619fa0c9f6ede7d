//! A wrong key is a configuration error, not tampering (issue 15, points 2
//! and 3), on every backend: a restart with another keyring rejects
//! sessions as `UnknownKey`, keeps their rows and cookies, and the right
//! keyring opens them again; the start-up check finds a missing table and a
//! keyring that opens too little; `stats` counts unreadable sessions.

mod common;

use common::{record_events, rejections, row, rows, set_data, Harness};
use stored_session::{
    CheckReport, CookieAction, Error, Key, KeyUsage, Keyring, RejectReason, SessionId,
    SessionStore, StartupCheck, StoredId,
};

fn create(store: &SessionStore, value: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("v", value).unwrap();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a new cookie, got {other:?}"),
    }
}

fn sid_of(cookie: &str) -> StoredId {
    SessionId::parse(cookie).unwrap().stored_id()
}

/// A store on the harness's database with `keyring` and `policy`,
/// migrated (so the check is about the keys).
fn store_with(h: &Harness, keyring: Keyring, policy: StartupCheck) -> Result<SessionStore, Error> {
    SessionStore::builder(keyring)
        .config(h.config().startup_check(policy))
        .open_migrated(&h.url)
}

fn restart_with_another_key_keeps_rows_and_cookies(h: &Harness) {
    let original = h.store();
    let cookies: Vec<String> = ["a", "b"].iter().map(|v| create(&original, v)).collect();
    let before = rows(original.database());

    // Restart with a different key (the default policy only logs).
    let wrong = store_with(h, Keyring::new(Key::generate()), StartupCheck::Warn).unwrap();
    let events = record_events(&wrong);
    let mut s = wrong.load(Some(&cookies[0])).unwrap();
    assert!(s.is_new() && s.is_empty());
    let rejected: Vec<_> = rejections(&events);
    assert_eq!(
        rejected,
        vec![(Some(sid_of(&cookies[0])), Some(RejectReason::UnknownKey))]
    );
    // Nothing stored: the cookie is left alone (not removed), nothing written.
    assert_eq!(wrong.save(&mut s).unwrap(), CookieAction::Keep);
    // Storing data starts a new session under a new id, as for any new one.
    let mut s = wrong.load(Some(&cookies[1])).unwrap();
    s.insert("v", "new").unwrap();
    let CookieAction::Set(fresh, _) = wrong.save(&mut s).unwrap() else {
        panic!("a fresh session with data sets a cookie")
    };
    assert_ne!(fresh.as_cookie_value(), cookies[1]);
    // The rejected sessions' rows are untouched.
    for cookie in &cookies {
        let sid = sid_of(cookie);
        let then = before.iter().find(|r| r.sid == sid.as_bytes()).unwrap();
        assert_eq!(row(wrong.database(), &sid).as_ref(), Some(then));
    }

    // The right key back (alone, or as an older key): both sessions open.
    let restored = store_with(h, h.keyring.clone(), StartupCheck::Fail).unwrap();
    let rotated = store_with(
        h,
        Keyring::new(Key::generate())
            .with_previous(h.keyring.current().clone())
            .unwrap(),
        StartupCheck::Warn,
    )
    .unwrap();
    for store in [&restored, &rotated] {
        for (cookie, value) in cookies.iter().zip(["a", "b"]) {
            let s = store.load(Some(cookie)).unwrap();
            assert_eq!(s.get::<String>("v").unwrap().as_deref(), Some(value));
        }
    }

    // Tampering under a known key is still `Tampered`, and still removes.
    let sid = sid_of(&cookies[0]);
    let mut data = row(restored.database(), &sid).unwrap().data;
    let last = data.len() - 1;
    data[last] ^= 1;
    set_data(restored.database(), sid.as_bytes(), &data);
    let events = record_events(&restored);
    let mut s = restored.load(Some(&cookies[0])).unwrap();
    assert_eq!(restored.save(&mut s).unwrap(), CookieAction::Remove);
    let reasons: Vec<_> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.reason)
        .collect();
    assert_eq!(reasons, vec![RejectReason::Tampered]);
}

fn check_finds_a_missing_table(h: &Harness) {
    // `Fail`: opening refuses, with the advice in the message.
    let err = h
        .builder()
        .config(h.config().startup_check(StartupCheck::Fail))
        .open(&h.url)
        .unwrap_err();
    assert!(matches!(err, Error::MissingTable), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the stored_sessions table does not exist: run `stored-session migrate` or `store.run_migrations()`"
    );
    // `Warn` (the default) and `Off`: the store opens; `check` says it.
    for policy in [StartupCheck::Warn, StartupCheck::Off] {
        let store = h
            .builder()
            .config(h.config().startup_check(policy))
            .open(&h.url)
            .unwrap();
        assert!(matches!(store.check(), Err(Error::MissingTable)));
    }
    // An app that opens, then migrates, still works.
    let store = h.builder().open(&h.url).unwrap();
    store.run_migrations().unwrap();
    let report = store.check().unwrap();
    assert_eq!((report.sampled, report.readable), (0, 0));
    assert_eq!(report.keyring_ids, vec![h.keyring.current().id()]);
    // `open_migrated` migrates before it checks, even under `Fail`.
    let other = h.another();
    other
        .builder()
        .config(other.config().startup_check(StartupCheck::Fail))
        .open_migrated(&other.url)
        .unwrap();
}

fn check_with_another_keyring_reports_and_fails_per_policy(h: &Harness) {
    let original = h.store();
    let old_id = h.keyring.current().id();
    for i in 0..5 {
        create(&original, &format!("s{i}"));
    }
    let other = Keyring::new(Key::generate());
    let other_id = other.current().id();

    // `Fail`: opening fails with the report.
    let err = store_with(h, other.clone(), StartupCheck::Fail).unwrap_err();
    let Error::KeyringMismatch(report) = &err else {
        panic!("expected KeyringMismatch, got {err:?}")
    };
    let expected = {
        let mut r = CheckReport::default();
        r.sampled = 5;
        r.unknown_key = 5;
        r.unknown_key_ids = vec![old_id];
        r.keyring_ids = vec![other_id];
        r
    };
    assert_eq!(report, &expected);
    assert!(report.mostly_unreadable());
    let text = err.to_string();
    assert!(
        text.contains("opens 0 of the 5 most recently active sessions")
            && text.contains(&format!(
                "sealed under keys not on the ring (key ids {old_id:08x})"
            ))
            && text.contains("put the key that sealed them back on the ring"),
        "{text}"
    );
    // `Warn` and `Off`: the same store opens; `check` returns the error.
    for policy in [StartupCheck::Warn, StartupCheck::Off] {
        let store = store_with(h, other.clone(), policy).unwrap();
        assert!(matches!(store.check(), Err(Error::KeyringMismatch(_))));
    }

    // The old key as an older key on the new ring: everything opens.
    let rotated = Keyring::new(Key::generate())
        .with_previous(h.keyring.current().clone())
        .unwrap();
    let store = store_with(h, rotated, StartupCheck::Fail).unwrap();
    let report = store.check().unwrap();
    assert_eq!(
        (report.sampled, report.readable, report.unreadable()),
        (5, 5, 0)
    );

    // The sample is the most recently active sessions, at most 32: 40 newer
    // sessions under the new key hide the 5 old ones from it.
    h.advance(60);
    for i in 0..40 {
        create(&store, &format!("n{i}"));
    }
    let new_only = Keyring::new(store.keyring().current().clone());
    let store = store_with(h, new_only.clone(), StartupCheck::Fail).unwrap();
    let report = store.check().unwrap();
    assert_eq!((report.sampled, report.readable), (32, 32));

    // A minority of unreadable ones: reported, not an error; a tampered
    // envelope counts as tampered, not as an unknown key.
    h.advance(60);
    for i in 0..3 {
        create(&original, &format!("o{i}"));
    }
    let sid = sid_of(&create(&store, "t"));
    let mut data = row(store.database(), &sid).unwrap().data;
    data[40] ^= 1;
    set_data(store.database(), sid.as_bytes(), &data);
    let report = store.check().unwrap();
    assert_eq!(
        (
            report.sampled,
            report.readable,
            report.unknown_key,
            report.tampered,
            report.undecodable
        ),
        (32, 28, 3, 1, 0)
    );
    assert_eq!(report.unknown_key_ids, vec![old_id]);
    assert!(!report.mostly_unreadable());
    assert!(report
        .to_string()
        .contains("1 failed to open under a key on the ring (tampered)"));
}

fn stats_count_unreadable_sessions(h: &Harness) {
    let a = h.store();
    let b_key = Key::generate();
    let b = store_with(h, Keyring::new(b_key.clone()), StartupCheck::Off).unwrap();
    for i in 0..3 {
        create(&a, &format!("a{i}"));
    }
    for i in 0..2 {
        create(&b, &format!("b{i}"));
    }
    let by_key = |stats: &stored_session::Stats| -> Vec<(u32, u64)> {
        stats
            .sessions_by_key
            .iter()
            .map(|k: &KeyUsage| (k.key_id, k.sessions))
            .collect()
    };
    let expected = vec![(h.keyring.current().id(), 3), (b_key.id(), 2)];

    let stats = a.stats().unwrap();
    assert_eq!((stats.live, stats.unreadable), (5, Some(2)));
    assert_eq!(by_key(&stats), expected);
    let stats = b.stats().unwrap();
    assert_eq!((stats.live, stats.unreadable), (5, Some(3)));
    // Both keys on the ring: nothing unreadable.
    let both = store_with(
        h,
        h.keyring.clone().with_previous(b_key.clone()).unwrap(),
        StartupCheck::Fail,
    )
    .unwrap();
    assert_eq!(both.stats().unwrap().unreadable, Some(0));
    // Key-free statistics cannot know, and say so.
    let stats = a.database().stats(&h.config()).unwrap();
    assert_eq!((stats.live, stats.unreadable), (5, None));
    assert_eq!(by_key(&stats), expected);

    // Expired sessions count in neither.
    h.advance(31 * 24 * 3600);
    create(&b, "late");
    let stats = a.stats().unwrap();
    assert_eq!(
        (stats.live, stats.expired, stats.unreadable),
        (1, 5, Some(1))
    );
    assert_eq!(by_key(&stats), vec![(b_key.id(), 1)]);
}

backend_suite!(
    restart_with_another_key_keeps_rows_and_cookies,
    check_finds_a_missing_table,
    check_with_another_keyring_reports_and_fails_per_policy,
    stats_count_unreadable_sessions,
);
