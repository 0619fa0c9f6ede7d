//! `LazySession`'s forwarded `Session` methods, on every enabled backend:
//! the reads load on first use; the edits that only record what the
//! request wants (`set_user`, `clear_user`, `set_meta`, `clear`, `renew`,
//! `destroy`) cost no query when made, are applied in order when the
//! session loads, and at the latest in `finish`.

mod adapter_support;
mod common;

use adapter_support::{count_events, get};
use common::{count, Harness};
use stored_session::adapters::{LazySession, Sessions, SetCookie};
use stored_session::{EventKind, SessionId};

fn sessions(h: &Harness) -> Sessions {
    Sessions::new(h.store())
}

/// The `Cookie` header value a browser sends back after `set`.
fn pair(set: &SetCookie) -> String {
    let c = set.as_cookie();
    format!("{}={}", c.name(), c.value())
}

fn begin(sessions: &Sessions, cookie: Option<&str>) -> LazySession {
    sessions.begin(cookie)
}

/// A stored session holding `a = 1`, `b = "two"`; its cookie pair.
fn stored(sessions: &Sessions) -> String {
    let mut s = begin(sessions, None);
    s.insert("a", &1u32).unwrap();
    s.insert("b", "two").unwrap();
    pair(&s.finish().unwrap().unwrap())
}

fn id_of(pair: &str) -> SessionId {
    SessionId::parse(pair.split_once('=').unwrap().1).unwrap()
}

fn reads_load_on_first_use(h: &Harness) {
    let sessions = sessions(h);
    let cookie = stored(&sessions);
    let reads = count_events(sessions.store(), EventKind::Read);

    let mut s = begin(&sessions, Some(&cookie));
    assert!(s.contains_key("a").unwrap());
    assert_eq!(get(&reads), 1);
    assert!(!s.contains_key("zzz").unwrap());
    assert_eq!(s.keys().unwrap().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(s.len().unwrap(), 2);
    assert!(!s.is_empty().unwrap());
    assert!(!s.is_new().unwrap());
    assert_eq!(s.stored_id().unwrap(), Some(id_of(&cookie).stored_id()));
    assert_eq!(s.created_at().unwrap(), h.clock.now());
    assert_eq!(s.user_id().unwrap(), None);
    assert_eq!(s.meta("ip").unwrap(), None);
    assert_eq!(get(&reads), 1, "one load for all of them");
    assert!(s.finish().unwrap().is_none(), "reads change nothing");

    // Each one loads by itself.
    type Read = fn(&mut LazySession) -> bool;
    let each: [(&str, Read); 10] = [
        ("contains_key", |s| s.contains_key("a").unwrap()),
        ("keys", |s| s.keys().unwrap().count() == 2),
        ("len", |s| s.len().unwrap() == 2),
        ("is_empty", |s| !s.is_empty().unwrap()),
        ("is_new", |s| !s.is_new().unwrap()),
        ("stored_id", |s| s.stored_id().unwrap().is_some()),
        ("created_at", |s| s.created_at().is_ok()),
        ("user_id", |s| s.user_id().unwrap().is_none()),
        ("meta", |s| s.meta("x").unwrap().is_none()),
        ("take", |s| s.take::<u32>("a").unwrap() == Some(1)),
    ];
    for (what, read) in each {
        let mut s = begin(&sessions, Some(&cookie));
        assert!(!s.is_loaded());
        assert!(read(&mut s), "{what}");
        assert!(s.is_loaded(), "{what} did not load");
    }

    // A fresh visitor: new, empty, nothing stored.
    let mut s = begin(&sessions, None);
    assert!(s.is_new().unwrap());
    assert!(s.is_empty().unwrap());
    assert_eq!(s.stored_id().unwrap(), None);
    assert!(s.finish().unwrap().is_none());
}

fn take_removes_and_returns(h: &Harness) {
    let sessions = sessions(h);
    let cookie = stored(&sessions);
    let mut s = begin(&sessions, Some(&cookie));
    assert_eq!(s.take::<String>("b").unwrap().as_deref(), Some("two"));
    assert_eq!(s.take::<String>("b").unwrap(), None);
    assert!(s.finish().unwrap().is_none());
    let mut s = begin(&sessions, Some(&cookie));
    assert_eq!(s.keys().unwrap().collect::<Vec<_>>(), ["a"]);
    // A value of another type: an error, and the key is gone all the same.
    assert!(s.take::<String>("a").is_err());
    assert!(!s.contains_key("a").unwrap());
}

/// `set_user`, `clear_user` and `set_meta` cost no query when made; the
/// session loads (once) when read, or in `finish`.
fn edits_are_applied_on_load(h: &Harness) {
    let sessions = sessions(h);
    let store = sessions.store().clone();
    let cookie = stored(&sessions);
    let reads = count_events(&store, EventKind::Read);

    let mut s = begin(&sessions, Some(&cookie));
    s.set_user("alice");
    s.set_meta("city", Some("Lyon"));
    assert!(!s.is_loaded());
    assert_eq!(get(&reads), 0);
    assert_eq!(s.user_id().unwrap(), Some("alice"));
    assert_eq!(s.meta("city").unwrap(), Some("Lyon"));
    assert_eq!(get(&reads), 1);
    assert_eq!(s.get::<u32>("a").unwrap(), Some(1), "the data was loaded");
    assert!(s.finish().unwrap().is_none(), "same id: no cookie");
    let list = store
        .sessions_of("alice", None, Default::default())
        .unwrap();
    assert_eq!(list.sessions.len(), 1);

    // Never loaded in the handler: `finish` loads, applies, commits.
    let mut s = begin(&sessions, Some(&cookie));
    let before = get(&reads); // (listing emits reads of its own)
    s.clear_user();
    s.set_meta("city", None);
    assert_eq!(get(&reads), before);
    assert!(s.finish().unwrap().is_none());
    assert!(get(&reads) > before, "finish loaded the session");
    let list = store
        .sessions_of("alice", None, Default::default())
        .unwrap();
    assert!(list.sessions.is_empty());
    let mut s = begin(&sessions, Some(&cookie));
    assert_eq!(s.user_id().unwrap(), None);
    assert_eq!(s.meta("city").unwrap(), None);
    assert_eq!(s.len().unwrap(), 2, "the data is untouched");

    // A new visitor bound to a user in one call: the row is created.
    let mut s = begin(&sessions, None);
    s.set_user("bob");
    let set = s.finish().unwrap().expect("a new session sets its cookie");
    assert!(!set.is_removal());
    let list = store.sessions_of("bob", None, Default::default()).unwrap();
    assert_eq!(list.sessions.len(), 1);

    // After a load, an edit applies at once.
    let mut s = begin(&sessions, Some(&cookie));
    s.load().unwrap();
    s.set_user("carol");
    assert_eq!(s.loaded().unwrap().user_id(), Some("carol"));
}

fn clear_is_applied_on_load(h: &Harness) {
    let sessions = sessions(h);
    let store = sessions.store().clone();
    let cookie = stored(&sessions);
    let reads = count_events(&store, EventKind::Read);

    // Cleared and refilled: the row stays under the same id.
    let mut s = begin(&sessions, Some(&cookie));
    s.clear();
    assert_eq!(get(&reads), 0);
    s.insert("c", &3u8).unwrap();
    assert_eq!(s.keys().unwrap().collect::<Vec<_>>(), ["c"]);
    assert!(s.finish().unwrap().is_none());
    let mut s = begin(&sessions, Some(&cookie));
    assert_eq!(s.keys().unwrap().collect::<Vec<_>>(), ["c"]);

    // Cleared and left empty: `finish` loads it and the row is deleted.
    let before = count(store.database());
    let mut s = begin(&sessions, Some(&cookie));
    s.clear();
    let set = s
        .finish()
        .unwrap()
        .expect("an emptied session loses its cookie");
    assert!(set.is_removal());
    assert_eq!(count(store.database()), before - 1);
}

fn renew_is_applied_on_load(h: &Harness) {
    let sessions = sessions(h);
    let store = sessions.store().clone();
    let cookie = stored(&sessions);
    let reads = count_events(&store, EventKind::Read);

    let mut s = begin(&sessions, Some(&cookie));
    s.renew(); // returns (), as Session::renew
    assert_eq!(get(&reads), 0);
    let set = s
        .finish()
        .unwrap()
        .expect("a renewed session gets a new id");
    let renewed = pair(&set);
    assert_ne!(renewed, cookie);
    assert_eq!(get(&reads), 1);
    // The data moved; the old id is dead.
    let mut s = begin(&sessions, Some(&renewed));
    assert_eq!(s.len().unwrap(), 2);
    let mut s = begin(&sessions, Some(&cookie));
    assert!(s.is_new().unwrap());
}

fn destroy_is_applied_on_load(h: &Harness) {
    let sessions = sessions(h);
    let store = sessions.store().clone();
    let cookie = stored(&sessions);
    let reads = count_events(&store, EventKind::Read);
    let before = count(store.database());

    // Unused session: `destroy` returns () (as Session::destroy) and the
    // row goes in `finish`.
    let mut s = begin(&sessions, Some(&cookie));
    s.set_user("dave");
    let () = s.destroy();
    assert!(!s.is_loaded());
    assert_eq!(get(&reads), 0);
    let set = s.finish().unwrap().expect("the cookie is removed");
    assert!(set.is_removal());
    assert_eq!(count(store.database()), before - 1);
    let list = store.sessions_of("dave", None, Default::default()).unwrap();
    assert!(list.sessions.is_empty());

    // Destroyed, then used: everything it held is gone; what comes after
    // starts a new session under a new id, in the order the edits were made.
    let cookie = stored(&sessions);
    let mut s = begin(&sessions, Some(&cookie));
    s.set_user("erin");
    s.destroy();
    s.set_user("frank");
    assert_eq!(s.get::<u32>("a").unwrap(), None);
    assert_eq!(s.user_id().unwrap(), Some("frank"));
    assert!(s.loaded().unwrap().is_destroyed());
    s.insert("flash", "signed out").unwrap();
    let set = s.finish().unwrap().unwrap();
    assert!(!set.is_removal());
    assert_ne!(pair(&set), cookie);
    let mut old = begin(&sessions, Some(&cookie));
    assert!(old.is_new().unwrap());
    let mut new = begin(&sessions, Some(&pair(&set)));
    assert_eq!(
        new.get::<String>("flash").unwrap().as_deref(),
        Some("signed out")
    );
    assert_eq!(new.user_id().unwrap(), Some("frank"));
    let erin = store.sessions_of("erin", None, Default::default()).unwrap();
    assert!(erin.sessions.is_empty());
}

/// A failed load shows in `load_failed`, and pending edits fail `finish`.
fn failed_loads(h: &Harness) {
    use diesel::RunQueryDsl;
    let sessions = sessions(h);
    let cookie = stored(&sessions);
    let mut s = begin(&sessions, Some(&cookie));
    s.destroy();
    crate::with_conn!(sessions.store().database(), |c| {
        diesel::sql_query("DROP TABLE stored_sessions")
            .execute(c)
            .unwrap()
    });
    assert!(!s.load_failed());
    assert!(s.finish().is_err(), "the row to delete could not be read");

    let mut s = begin(&sessions, Some(&cookie));
    assert!(s.user_id().is_err());
    assert!(s.load_failed());
    assert!(s.loaded().is_none());
    s.set_user("gina"); // recorded, not applied
    assert!(s.finish().is_err());
    // No cookie, no query: nothing to load, nothing fails.
    let mut s = begin(&sessions, None);
    s.set_user("hal");
    assert!(s.finish().is_err(), "a new session's insert fails too");
}

fn debug_shows_no_pending_values(h: &Harness) {
    let sessions = sessions(h);
    let mut s = begin(&sessions, None);
    s.set_user("secret-user-id");
    s.set_meta("note", Some("secret-note"));
    let text = format!("{s:?}");
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("pending_edits: 2"), "{text}");
}

backend_suite!(
    reads_load_on_first_use,
    take_removes_and_returns,
    edits_are_applied_on_load,
    clear_is_applied_on_load,
    renew_is_applied_on_load,
    destroy_is_applied_on_load,
    failed_loads,
    debug_shows_no_pending_values,
);
