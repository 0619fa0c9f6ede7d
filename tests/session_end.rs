//! The end of a session, on every backend: nothing of it survives inside the
//! request (destroy, or a row found gone at commit), revocation wins every
//! race with a concurrent renew, and renewing keeps the absolute deadline.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{count, Harness};
use stored_session::{CookieAction, PoolOptions, SessionStore};

fn sign_in(store: &SessionStore, user: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("visits", &1u32).unwrap();
    s.set_user(user);
    s.set_meta("device", Some("laptop"));
    s.renew();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

/// Asserts that nothing of the ended session is left in memory.
fn assert_wiped(s: &stored_session::Session) {
    assert_eq!(s.user_id(), None, "the user binding survived the end");
    assert_eq!(s.meta("device"), None, "metadata survived the end");
    assert!(s.is_empty(), "values survived the end");
    assert!(s.is_new());
}

/// After a later insert, a commit creates an anonymous session: no user, no
/// metadata, none of the old values.
fn assert_next_is_anonymous(store: &SessionStore, s: &mut stored_session::Session, old: &str) {
    s.insert("flash", "signed out").unwrap();
    let CookieAction::Set(id, _) = store.save(s).unwrap() else {
        panic!("a new session needs a cookie");
    };
    assert_ne!(id.as_cookie_value(), old);
    let again = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(again.user_id(), None);
    assert_eq!(again.meta("device"), None);
    assert_eq!(again.get::<u32>("visits").unwrap(), None);
    assert_eq!(
        again.get::<String>("flash").unwrap().as_deref(),
        Some("signed out")
    );
    assert!(store
        .sessions_of("alice", None, Default::default())
        .unwrap()
        .sessions
        .is_empty());
}

fn destroy_forgets_everything_at_once(h: &Harness) {
    let store = h.store();
    let cookie = sign_in(&store, "alice");
    let mut s = store.load(Some(&cookie)).unwrap();
    s.destroy();
    assert_eq!(s.user_id(), None);
    assert_eq!(s.meta("device"), None);
    assert!(s.is_empty());
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert_wiped(&s);
    assert_next_is_anonymous(&store, &mut s, &cookie);
    assert!(store.load(Some(&cookie)).unwrap().is_new());
}

fn insert_after_destroy_starts_an_anonymous_session(h: &Harness) {
    let store = h.store();
    let cookie = sign_in(&store, "alice");
    let mut s = store.load(Some(&cookie)).unwrap();
    s.destroy();
    s.insert("flash", "signed out").unwrap();
    let CookieAction::Set(id, _) = store.save(&mut s).unwrap() else {
        panic!("the flash needs a new session");
    };
    assert_ne!(id.as_cookie_value(), cookie);
    assert!(store.load(Some(&cookie)).unwrap().is_new());
    let next = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(next.user_id(), None);
    assert_eq!(next.meta("device"), None);
    assert_eq!(next.get::<u32>("visits").unwrap(), None);
    assert_eq!(count(store.database()), 1);
}

/// Ends the row behind the request's back in each way a row can end.
fn found_gone_at_commit_forgets_everything(h: &Harness) {
    type End = fn(&Harness, &SessionStore, &str);
    let ends: [(&str, End); 4] = [
        ("revoked", |_, store, _| {
            store.revoke_user("alice").unwrap();
        }),
        ("destroyed elsewhere", |_, store, cookie| {
            let mut other = store.load(Some(cookie)).unwrap();
            other.destroy();
            let _ = store.save(&mut other).unwrap();
        }),
        ("expired and trimmed", |h, store, _| {
            h.advance(40 * 24 * 3600);
            stored_session::trim_inactive(store).unwrap();
        }),
        ("expired", |h, _, _| h.advance(40 * 24 * 3600)),
    ];
    for (what, end) in ends {
        let store = h.store();
        let cookie = sign_in(&store, "alice");
        let mut s = store.load(Some(&cookie)).unwrap();
        assert_eq!(s.user_id(), Some("alice"));
        end(h, &store, &cookie);
        s.insert("late", &1).unwrap();
        assert_eq!(
            store.save(&mut s).unwrap(),
            CookieAction::Remove,
            "{what}: a gone row must not come back"
        );
        assert_wiped(&s);
        assert_next_is_anonymous(&store, &mut s, &cookie);
        assert!(store.load(Some(&cookie)).unwrap().is_new(), "{what}");
        let _ = store.revoke_all().unwrap();
    }
}

fn renew_keeps_the_absolute_deadline(h: &Harness) {
    let store = h.store_with(
        h.builder().config(
            h.config()
                .max_lifetime(Some(Duration::from_secs(3600)))
                .idle_timeout(Some(Duration::from_secs(600))),
        ),
    );
    let mut cookie = sign_in(&store, "alice");
    let created = store.load(Some(&cookie)).unwrap().created_at();
    // Renew every 5 minutes, as an app renewing on each privilege change.
    for _ in 0..11 {
        h.advance(300);
        let mut s = store.load(Some(&cookie)).unwrap();
        assert!(!s.is_new(), "renewed sessions live until the deadline");
        s.renew();
        let CookieAction::Set(id, _) = store.save(&mut s).unwrap() else {
            panic!("renew sets a cookie");
        };
        assert_eq!(s.created_at(), created, "renew moved the creation time");
        cookie = id.as_cookie_value().to_owned();
        assert_eq!(store.load(Some(&cookie)).unwrap().created_at(), created);
    }
    // 55 minutes in: alive. At 60 minutes the absolute deadline ends it,
    // renewed or not.
    assert!(!store.load(Some(&cookie)).unwrap().is_new());
    h.advance(300);
    let mut s = store.load(Some(&cookie)).unwrap();
    assert!(s.is_new(), "renewing extended the absolute lifetime");
    s.renew();
    let _ = store.save(&mut s).unwrap();
}

/// The locked (conflict) path renews too: it must keep the deadline as well.
fn renew_after_a_conflict_keeps_the_absolute_deadline(h: &Harness) {
    let store = h.store();
    let cookie = sign_in(&store, "alice");
    let created = store.load(Some(&cookie)).unwrap().created_at();
    h.advance(1000);
    let mut a = store.load(Some(&cookie)).unwrap();
    let mut b = store.load(Some(&cookie)).unwrap();
    b.insert("b", &1).unwrap();
    // 1000 s in, the write moves the idle clock: resend the same id.
    assert!(matches!(
        store.save(&mut b).unwrap(),
        CookieAction::Refresh(..)
    ));
    a.renew();
    let CookieAction::Set(id, _) = store.save(&mut a).unwrap() else {
        panic!("renew sets a cookie");
    };
    let renewed = store.load(Some(id.as_cookie_value())).unwrap();
    assert_eq!(renewed.created_at(), created);
    assert_eq!(renewed.get::<i32>("b").unwrap(), Some(1));
}

/// A request that loads `cookie`, changes it, renews, and commits as soon
/// as the other side of `barrier` is ready; its new cookie, if any.
fn spawn_renew(
    store: &SessionStore,
    cookie: &str,
    race: u32,
    barrier: &Arc<Barrier>,
) -> std::thread::JoinHandle<Option<String>> {
    let (store, barrier, cookie) = (store.clone(), barrier.clone(), cookie.to_owned());
    std::thread::spawn(move || {
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("race", &race).unwrap();
        s.renew();
        barrier.wait();
        match store.save(&mut s).unwrap() {
            CookieAction::Set(id, _) => Some(id.as_cookie_value().to_owned()),
            _ => None,
        }
    })
}

/// 1,000 races of a renew (login, privilege change) against "sign out
/// everywhere": once `revoke_user` returns, no session of the user that
/// existed before the call loads, whichever side won.
fn revoke_user_wins_every_race_with_renew(h: &Harness) {
    let races = std::env::var("SS_REVOKE_RACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let store = h.store_with(h.builder().pool(PoolOptions::default().max_size(4)));
    let mut survivors = Vec::new();
    for race in 0..races {
        let cookie = sign_in(&store, "alice");
        let barrier = Arc::new(Barrier::new(2));
        let renewer = spawn_renew(&store, &cookie, race, &barrier);
        barrier.wait();
        store.revoke_user("alice").unwrap();
        let renewed = renewer.join().unwrap();
        for c in std::iter::once(&cookie).chain(renewed.as_ref()) {
            let s = store.load(Some(c)).unwrap();
            if !s.is_new() {
                survivors.push(race);
            }
        }
        let left = store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .len();
        if left != 0 {
            survivors.push(race);
            store.revoke_user("alice").unwrap();
        }
    }
    assert!(
        survivors.is_empty(),
        "{} of {races} renewed sessions survived revoke_user: races {:?}",
        survivors.len(),
        &survivors[..survivors.len().min(20)]
    );
}

/// The same for "sign out other devices": the device that stays renews
/// concurrently with a second device's renew, and the other device loses.
fn revoke_others_wins_every_race_with_renew(h: &Harness) {
    let races = std::env::var("SS_REVOKE_RACES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
        / 2;
    let store = h.store_with(h.builder().pool(PoolOptions::default().max_size(4)));
    let mut survivors = 0;
    for race in 0..races {
        let keeper = sign_in(&store, "alice");
        let other = sign_in(&store, "alice");
        let barrier = Arc::new(Barrier::new(2));
        let renewer = spawn_renew(&store, &other, race, &barrier);
        let current = store.load(Some(&keeper)).unwrap();
        barrier.wait();
        store.revoke_others(&current).unwrap();
        let renewed = renewer.join().unwrap();
        for c in std::iter::once(&other).chain(renewed.as_ref()) {
            if !store.load(Some(c)).unwrap().is_new() {
                survivors += 1;
            }
        }
        assert!(!store.load(Some(&keeper)).unwrap().is_new());
        store.revoke_user("alice").unwrap();
    }
    assert_eq!(
        survivors, 0,
        "sessions survived revoke_others in {races} races"
    );
}

/// `SessionStore::destroy(cookie)` ends a session by its id ("sign this
/// device out"): it stops loading, a request still holding it cannot bring
/// it back, and a second call or a malformed id ends nothing.
fn destroy_by_id_ends_a_session_without_loading_it(h: &Harness) {
    let store = h.store();
    let cookie = sign_in(&store, "alice");
    let other = sign_in(&store, "alice");
    let mut held = store.load(Some(&cookie)).unwrap();
    assert!(store.destroy(&cookie).unwrap());
    assert!(store.load(Some(&cookie)).unwrap().is_new());
    held.insert("late", &1).unwrap();
    assert_eq!(store.save(&mut held).unwrap(), CookieAction::Remove);
    assert_wiped(&held);
    assert!(!store.destroy(&cookie).unwrap());
    assert!(!store.destroy("not an id").unwrap());
    assert!(
        !store.load(Some(&other)).unwrap().is_new(),
        "only that session ends"
    );
    assert_eq!(count(store.database()), 1);
}

backend_suite!(
    destroy_by_id_ends_a_session_without_loading_it,
    destroy_forgets_everything_at_once,
    insert_after_destroy_starts_an_anonymous_session,
    found_gone_at_commit_forgets_everything,
    renew_keeps_the_absolute_deadline,
    renew_after_a_conflict_keeps_the_absolute_deadline,
    revoke_user_wins_every_race_with_renew,
    revoke_others_wins_every_race_with_renew,
);
