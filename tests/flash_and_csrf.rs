//! Flash messages and the CSRF token through the store, on every backend:
//! read once in a later request, kept across renews, merged per key with
//! overlapping requests; the token stable per session, rotated on renew,
//! stored encrypted.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{contains, count, row, rows, Harness};
use stored_session::csrf::{Csrf, CsrfRejection};
use stored_session::{CookieAction, Session, SessionId, SessionStore};

fn cookie_of(action: CookieAction) -> String {
    match action {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a cookie to be set, got {other:?}"),
    }
}

fn sid_of(cookie: &str) -> stored_session::StoredId {
    SessionId::parse(cookie).unwrap().stored_id()
}

/// A stored session holding `base = 1`; its cookie.
fn create(store: &SessionStore) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("base", &1).unwrap();
    cookie_of(store.save(&mut s).unwrap())
}

/// The row version of the session named by `cookie`.
fn version(store: &SessionStore, cookie: &str) -> i64 {
    row(store.database(), &sid_of(cookie)).unwrap().version
}

/// A same-origin browser POST's headers.
fn same_origin() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("Host", "example.com"),
        ("Origin", "https://example.com"),
        ("Sec-Fetch-Site", "same-origin"),
    ])
}

fn post(session: &Session, token: &str) -> Result<(), CsrfRejection> {
    let headers = same_origin();
    Csrf::new().verify(session, "POST", |n| headers.get(n).copied(), Some(token))
}

// ---- Flash messages ----

fn flash_is_read_once_in_a_later_request(h: &Harness) {
    let store = h.store();
    // Request 1: set (and, in the same request, it is not readable).
    let mut s = store.load(None).unwrap();
    s.flash("notice", "saved").unwrap();
    assert_eq!(s.take_flash::<String>("notice").unwrap(), None);
    assert!(s.flashes::<String>().unwrap().is_empty());
    assert!(s.is_empty(), "a flash is not a value");
    let cookie = cookie_of(store.save(&mut s).unwrap());

    // A request that does not read flashes leaves them (and writes nothing).
    let v = version(&store, &cookie);
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<String>("notice").unwrap(), None);
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(version(&store, &cookie), v);

    // Request 2: read once; reading marks the session modified.
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("kept", &true).unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    assert!(!s.is_modified());
    assert_eq!(
        s.take_flash::<String>("notice").unwrap().as_deref(),
        Some("saved")
    );
    assert!(s.is_modified());
    assert_eq!(s.take_flash::<String>("notice").unwrap(), None);
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);

    // Request 3: gone.
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.take_flash::<String>("notice").unwrap(), None);
    assert!(s.flashes::<String>().unwrap().is_empty());
    assert_eq!(s.get::<bool>("kept").unwrap(), Some(true));
}

fn flashes_reads_all_and_typed_errors_still_remove(h: &Harness) {
    let store = h.store();
    let mut s = store.load(None).unwrap();
    s.flash("alert", "declined").unwrap();
    s.flash("count", &3u32).unwrap();
    s.flash("notice", "kept in cart").unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());

    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.take_flash::<u32>("count").unwrap(), Some(3));
    // A new flash set while reading the old ones waits for the next request.
    s.flash("info", "next time").unwrap();
    let shown: BTreeMap<String, String> = s.flashes().unwrap();
    assert_eq!(
        shown,
        BTreeMap::from([
            ("alert".to_owned(), "declined".to_owned()),
            ("notice".to_owned(), "kept in cart".to_owned())
        ])
    );
    let _ = store.save(&mut s).unwrap();

    let mut s = store.load(Some(&cookie)).unwrap();
    // Not a u64: an error, but the message is read all the same.
    assert!(matches!(
        s.flashes::<u64>(),
        Err(stored_session::Error::Decode { ref key, .. }) if key == "info"
    ));
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    assert!(s.flashes::<String>().unwrap().is_empty());
}

fn setting_a_flash_again_replaces_the_waiting_one(h: &Harness) {
    let store = h.store();
    let cookie = create(&store);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.flash("notice", "first").unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    s.flash("notice", "second").unwrap();
    // The waiting one was replaced by this request's, which is for later.
    assert_eq!(s.take_flash::<String>("notice").unwrap(), None);
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(
        s.take_flash::<String>("notice").unwrap().as_deref(),
        Some("second")
    );
    // Read and set again in one request: the new one waits.
    s.flash("notice", "third").unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(
        s.take_flash::<String>("notice").unwrap().as_deref(),
        Some("third")
    );
}

fn flash_survives_renew(h: &Harness) {
    let store = h.store();
    // Login: renew and flash in the same request (the demo's "welcome").
    let anonymous = create(&store);
    let mut s = store.load(Some(&anonymous)).unwrap();
    s.set_user("alice");
    s.renew();
    s.flash("notice", "welcome alice").unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());
    assert!(store.load(Some(&anonymous)).unwrap().is_new());

    // A flash waiting before a renew survives it too.
    let mut s = store.load(Some(&cookie)).unwrap();
    s.flash("alert", "password expires soon").unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    s.renew();
    let renewed = cookie_of(store.save(&mut s).unwrap());

    let mut s = store.load(Some(&renewed)).unwrap();
    let shown: BTreeMap<String, String> = s.flashes().unwrap();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(shown["notice"], "welcome alice");
    let _ = store.save(&mut s).unwrap();
    assert!(store
        .load(Some(&renewed))
        .unwrap()
        .flashes::<String>()
        .unwrap()
        .is_empty());
}

fn flash_survives_a_renew_that_loses_a_race(h: &Harness) {
    let store = h.store();
    let cookie = create(&store);
    let mut login = store.load(Some(&cookie)).unwrap();
    let mut other = store.load(Some(&cookie)).unwrap();
    login.set_user("alice");
    login.renew();
    login.flash("notice", "welcome").unwrap();
    other.insert("theme", "dark").unwrap();
    let _ = store.save(&mut other).unwrap();
    // The renew finds a newer version: it goes through the locked merge.
    let renewed = cookie_of(store.save(&mut login).unwrap());
    let mut s = store.load(Some(&renewed)).unwrap();
    assert_eq!(s.get::<String>("theme").unwrap().as_deref(), Some("dark"));
    assert_eq!(
        s.take_flash::<String>("notice").unwrap().as_deref(),
        Some("welcome")
    );
}

fn parallel_flashes_of_different_keys_both_survive(h: &Harness) {
    let store = h.store();
    let cookie = create(&store);
    // Two overlapping requests.
    let mut a = store.load(Some(&cookie)).unwrap();
    let mut b = store.load(Some(&cookie)).unwrap();
    a.flash("from_a", "A").unwrap();
    b.flash("from_b", "B").unwrap();
    assert_eq!(store.save(&mut a).unwrap(), CookieAction::Keep);
    assert_eq!(store.save(&mut b).unwrap(), CookieAction::Keep);
    let mut s = store.load(Some(&cookie)).unwrap();
    let shown: BTreeMap<String, String> = s.flashes().unwrap();
    assert_eq!(
        shown,
        BTreeMap::from([
            ("from_a".to_owned(), "A".to_owned()),
            ("from_b".to_owned(), "B".to_owned())
        ])
    );
    let _ = store.save(&mut s).unwrap();

    // And with real threads, each setting its own flash keys.
    let (threads, per_thread) = (8, 10);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (store, cookie) = (&store, &cookie);
            scope.spawn(move || {
                for i in 0..per_thread {
                    let mut s = store.load(Some(cookie)).unwrap();
                    assert!(!s.is_new());
                    s.flash(format!("t{t}-{i}"), &i).unwrap();
                    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
                }
            });
        }
    });
    let mut s = store.load(Some(&cookie)).unwrap();
    let shown: BTreeMap<String, u32> = s.flashes().unwrap();
    for t in 0..threads {
        for i in 0..per_thread {
            assert_eq!(shown.get(&format!("t{t}-{i}")), Some(&i), "lost t{t}-{i}");
        }
    }
    assert_eq!(shown.len(), (threads * per_thread) as usize);
}

fn a_flash_read_concurrently_is_not_resurrected(h: &Harness) {
    let store = h.store();
    for reader_first in [true, false] {
        let cookie = create(&store);
        let mut s = store.load(Some(&cookie)).unwrap();
        s.flash("notice", "once").unwrap();
        let _ = store.save(&mut s).unwrap();

        // The reader takes the flash while the writer (loaded at the same
        // version, flash included) writes an unrelated key.
        let mut reader = store.load(Some(&cookie)).unwrap();
        let mut writer = store.load(Some(&cookie)).unwrap();
        assert_eq!(
            reader.take_flash::<String>("notice").unwrap().as_deref(),
            Some("once")
        );
        writer.insert("unrelated", &7).unwrap();
        if reader_first {
            let _ = store.save(&mut reader).unwrap();
            let _ = store.save(&mut writer).unwrap();
        } else {
            let _ = store.save(&mut writer).unwrap();
            let _ = store.save(&mut reader).unwrap();
        }
        let mut s = store.load(Some(&cookie)).unwrap();
        assert_eq!(
            s.take_flash::<String>("notice").unwrap(),
            None,
            "resurrected (reader first: {reader_first})"
        );
        assert_eq!(s.get::<i32>("unrelated").unwrap(), Some(7));
    }
}

fn flashes_are_encrypted_and_end_with_the_session(h: &Harness) {
    let store = h.store();
    let mut s = store.load(None).unwrap();
    s.flash("notice-key-xyz", "plaintext-flash-message")
        .unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());
    let all = rows(store.database());
    assert_eq!(all.len(), 1, "a flash alone is worth a row");
    assert!(!contains(&all[0].data, b"plaintext-flash-message"));
    assert!(!contains(&all[0].data, b"notice-key-xyz"));

    // Reading the only thing the session held empties it: the row goes.
    let mut s = store.load(Some(&cookie)).unwrap();
    assert!(s.take_flash::<String>("notice-key-xyz").unwrap().is_some());
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert_eq!(count(store.database()), 0);

    // destroy drops waiting flashes; one set after it starts a new session.
    let cookie = create(&store);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.flash("notice", "from before logout").unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    s.destroy();
    assert!(s.flashes::<String>().unwrap().is_empty());
    s.flash("notice", "signed out").unwrap();
    let fresh = cookie_of(store.save(&mut s).unwrap());
    assert!(store.load(Some(&cookie)).unwrap().is_new());
    let mut s = store.load(Some(&fresh)).unwrap();
    let shown: BTreeMap<String, String> = s.flashes().unwrap();
    assert_eq!(
        shown,
        BTreeMap::from([("notice".to_owned(), "signed out".to_owned())])
    );
    assert_eq!(s.user_id(), None);

    // clear() removes values, not flashes.
    let mut s = store.load(Some(&fresh)).unwrap();
    s.insert("x", &1).unwrap();
    s.flash("alert", "still here").unwrap();
    let _ = store.save(&mut s).unwrap();
    let mut s = store.load(Some(&fresh)).unwrap();
    s.clear();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    let mut s = store.load(Some(&fresh)).unwrap();
    assert!(s.is_empty());
    assert_eq!(
        s.take_flash::<String>("alert").unwrap().as_deref(),
        Some("still here")
    );
}

// ---- CSRF token ----

fn csrf_token_persists_across_requests(h: &Harness) {
    let store = h.store();
    // An anonymous visitor shown a form: the token alone creates the row.
    let mut s = store.load(None).unwrap();
    let token = s.csrf_token();
    assert_eq!(token.len(), 43);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(s.csrf_token(), token, "stable within the request");
    assert!(s.is_empty());
    let cookie = cookie_of(store.save(&mut s).unwrap());
    let all = rows(store.database());
    assert_eq!(all.len(), 1);
    assert!(
        !contains(&all[0].data, token.as_bytes()),
        "the token is encrypted at rest"
    );

    // Later requests see the same token; reading it writes nothing.
    let v = version(&store, &cookie);
    for _ in 0..2 {
        let mut s = store.load(Some(&cookie)).unwrap();
        assert_eq!(post(&s, &token), Ok(()));
        assert_eq!(s.csrf_token(), token);
        assert!(!s.is_modified());
        assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    }
    assert_eq!(version(&store, &cookie), v);

    // It survives writes of values (and their conflicts).
    let mut a = store.load(Some(&cookie)).unwrap();
    let mut b = store.load(Some(&cookie)).unwrap();
    a.insert("a", &1).unwrap();
    b.insert("b", &2).unwrap();
    let _ = store.save(&mut a).unwrap();
    let _ = store.save(&mut b).unwrap();
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.csrf_token(), token);
    assert_eq!(post(&s, &token), Ok(()));
}

fn csrf_token_created_while_another_request_writes_is_kept(h: &Harness) {
    let store = h.store();
    let cookie = create(&store);
    let mut form = store.load(Some(&cookie)).unwrap();
    let mut other = store.load(Some(&cookie)).unwrap();
    let token = form.csrf_token();
    other.insert("other", &1).unwrap();
    let _ = store.save(&mut other).unwrap();
    let _ = store.save(&mut form).unwrap();
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(post(&s, &token), Ok(()));
    assert_eq!(s.get::<i32>("other").unwrap(), Some(1));

    // And the other order: a writer that loaded before the token existed
    // does not erase it.
    let cookie = create(&store);
    let mut form = store.load(Some(&cookie)).unwrap();
    let mut other = store.load(Some(&cookie)).unwrap();
    let token = form.csrf_token();
    other.insert("other", &1).unwrap();
    let _ = store.save(&mut form).unwrap();
    let _ = store.save(&mut other).unwrap();
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(post(&s, &token), Ok(()));
}

fn csrf_token_rotates_on_renew(h: &Harness) {
    let store = h.store();
    let mut s = store.load(None).unwrap();
    let before = s.csrf_token();
    let cookie = cookie_of(store.save(&mut s).unwrap());

    // Login.
    let mut s = store.load(Some(&cookie)).unwrap();
    s.set_user("alice");
    s.renew();
    let after = s.csrf_token();
    assert_ne!(after, before);
    let renewed = cookie_of(store.save(&mut s).unwrap());

    let mut s = store.load(Some(&renewed)).unwrap();
    assert_eq!(post(&s, &before), Err(CsrfRejection::InvalidToken));
    assert_eq!(post(&s, &after), Ok(()));
    assert_eq!(s.csrf_token(), after);

    // A renew that loses a race still rotates.
    let mut login = store.load(Some(&renewed)).unwrap();
    let mut other = store.load(Some(&renewed)).unwrap();
    login.renew();
    let rotated = login.csrf_token();
    assert_ne!(rotated, after);
    other.insert("theme", "dark").unwrap();
    let _ = store.save(&mut other).unwrap();
    let last = cookie_of(store.save(&mut login).unwrap());
    let s = store.load(Some(&last)).unwrap();
    assert_eq!(post(&s, &after), Err(CsrfRejection::InvalidToken));
    assert_eq!(post(&s, &rotated), Ok(()));
    assert_eq!(s.get::<String>("theme").unwrap().as_deref(), Some("dark"));

    // A session without a token gets none from a renew.
    let cookie = create(&store);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.renew();
    let renewed = cookie_of(store.save(&mut s).unwrap());
    let s = store.load(Some(&renewed)).unwrap();
    assert_eq!(post(&s, &before), Err(CsrfRejection::NoSessionToken));
}

fn csrf_token_is_per_session_and_ends_with_it(h: &Harness) {
    let store = h.store();
    let mut one = store.load(None).unwrap();
    let mut two = store.load(None).unwrap();
    let (t1, t2) = (one.csrf_token(), two.csrf_token());
    assert_ne!(t1, t2);
    let c1 = cookie_of(store.save(&mut one).unwrap());
    let c2 = cookie_of(store.save(&mut two).unwrap());
    let one = store.load(Some(&c1)).unwrap();
    let two = store.load(Some(&c2)).unwrap();
    assert_eq!(post(&one, &t1), Ok(()));
    assert_eq!(post(&two, &t2), Ok(()));
    assert_eq!(post(&one, &t2), Err(CsrfRejection::InvalidToken));
    assert_eq!(post(&two, &t1), Err(CsrfRejection::InvalidToken));

    // A visitor without a session (cookie missing or expired).
    let fresh = store.load(None).unwrap();
    assert_eq!(post(&fresh, &t1), Err(CsrfRejection::NoSessionToken));

    // Logout ends the token; a new one is drawn on demand.
    let mut s = store.load(Some(&c1)).unwrap();
    s.destroy();
    assert_eq!(post(&s, &t1), Err(CsrfRejection::NoSessionToken));
    let next = s.csrf_token();
    assert_ne!(next, t1);
    let c3 = cookie_of(store.save(&mut s).unwrap());
    assert!(store.load(Some(&c1)).unwrap().is_new());
    let s = store.load(Some(&c3)).unwrap();
    assert_eq!(post(&s, &next), Ok(()));
    assert_eq!(post(&s, &t1), Err(CsrfRejection::InvalidToken));
}

backend_suite!(
    flash_is_read_once_in_a_later_request,
    flashes_reads_all_and_typed_errors_still_remove,
    setting_a_flash_again_replaces_the_waiting_one,
    flash_survives_renew,
    flash_survives_a_renew_that_loses_a_race,
    parallel_flashes_of_different_keys_both_survive,
    a_flash_read_concurrently_is_not_resurrected,
    flashes_are_encrypted_and_end_with_the_session,
    csrf_token_persists_across_requests,
    csrf_token_created_while_another_request_writes_is_kept,
    csrf_token_rotates_on_renew,
    csrf_token_is_per_session_and_ends_with_it,
);
