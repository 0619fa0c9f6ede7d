//! Per-user sessions: binding, listing, revocation, metadata, statistics,
//! and a dedicated sessions database, on every backend.

mod common;

use std::net::IpAddr;

use common::{contains, count, rows, Harness};
use diesel::prelude::*;
use stored_session::schema::stored_sessions::dsl as t;
use stored_session::{
    rotate_keys, Backend, Config, CookieAction, Cursor, Error, IpTracking, Key, Keyring,
    MetadataPolicy, Page, SessionHandle, SessionStore,
};

fn sign_in(store: &SessionStore, user: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("visits", &1u32).unwrap();
    s.set_user(user);
    s.renew();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

fn revoking_a_user_removes_exactly_their_sessions(h: &Harness) {
    let store = h.store();
    let alice: Vec<String> = (0..3).map(|_| sign_in(&store, "alice")).collect();
    let bob: Vec<String> = (0..2).map(|_| sign_in(&store, "bob")).collect();
    let anonymous = {
        let mut s = store.load(None).unwrap();
        s.insert("cart", "1 pear").unwrap();
        match store.save(&mut s).unwrap() {
            CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        3
    );
    assert_eq!(store.revoke_user("alice").unwrap(), 3);
    assert_eq!(count(store.database()), 3);
    for c in &alice {
        let s = store.load(Some(c)).unwrap();
        assert!(
            s.is_new() && s.user_id().is_none(),
            "a revoked cookie still works"
        );
    }
    for c in &bob {
        assert_eq!(store.load(Some(c)).unwrap().user_id(), Some("bob"));
    }
    assert!(!store.load(Some(&anonymous)).unwrap().is_new());
    // A request that loaded a session before its revocation cannot bring it back.
    let mut slow = store.load(Some(&bob[0])).unwrap();
    assert_eq!(store.revoke_user("bob").unwrap(), 2);
    slow.insert("late", &1).unwrap();
    assert_eq!(store.save(&mut slow).unwrap(), CookieAction::Remove);
    assert_eq!(count(store.database()), 1);
    assert_eq!(store.revoke_all().unwrap(), 1);
    assert_eq!(count(store.database()), 0);
}

fn listing_marks_current_and_revokes_by_handle(h: &Harness) {
    let store = h.store();
    let phone = sign_in(&store, "carol");
    let laptop = sign_in(&store, "carol");
    let tablet = sign_in(&store, "carol");
    let dave = sign_in(&store, "dave");
    let me = store.load(Some(&laptop)).unwrap();
    let list = store
        .sessions_of("carol", Some(&me), Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list.len(), 3);
    assert_eq!(list.iter().filter(|i| i.current).count(), 1);
    // Handles are opaque: neither the cookie id nor the stored id.
    for info in &list {
        for secret in [&phone, &laptop, &tablet] {
            assert!(!info.handle.as_str().contains(secret.as_str()));
        }
        assert!(!info.handle.as_str().contains("2::"));
    }
    // Another user's handle ends nothing; neither does garbage.
    let daves = store
        .sessions_of("dave", None, Default::default())
        .unwrap()
        .sessions;
    assert!(!store.revoke("carol", &daves[0].handle).unwrap());
    assert!(!store
        .revoke("carol", &SessionHandle::new("not-a-handle"))
        .unwrap());
    assert!(!store.load(Some(&dave)).unwrap().is_new());
    // Revoke one (not the current one).
    let other = list.iter().find(|i| !i.current).unwrap();
    assert!(store.revoke("carol", &other.handle).unwrap());
    assert_eq!(
        store
            .sessions_of("carol", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        2
    );
    // Sign out the other devices: only the current one stays.
    assert_eq!(store.revoke_others(&me).unwrap(), 1);
    let left = store
        .sessions_of("carol", Some(&me), Default::default())
        .unwrap()
        .sessions;
    assert_eq!(left.len(), 1);
    assert!(left[0].current);
    assert!(!store.load(Some(&laptop)).unwrap().is_new());
    assert!(!store.load(Some(&dave)).unwrap().is_new());
}

fn binding_survives_renew_and_can_be_cleared(h: &Harness) {
    let store = h.store();
    let cookie = sign_in(&store, "erin");
    let mut s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.user_id(), Some("erin"));
    s.renew();
    let renewed = match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    };
    let list = store
        .sessions_of("erin", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list.len(), 1);
    let mut s = store.load(Some(&renewed)).unwrap();
    s.clear_user();
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert!(store
        .sessions_of("erin", None, Default::default())
        .unwrap()
        .sessions
        .is_empty());
    assert!(rows(store.database()).iter().all(|r| r.user_key.is_none()));
    // A concurrent request's data change does not undo another's binding.
    let mut a = store.load(Some(&renewed)).unwrap();
    let mut b = store.load(Some(&renewed)).unwrap();
    a.set_user("erin");
    b.insert("theme", "dark").unwrap();
    let _ = store.save(&mut a).unwrap();
    let _ = store.save(&mut b).unwrap();
    assert_eq!(
        store
            .sessions_of("erin", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        1
    );
}

fn user_ids_and_metadata_never_appear_in_the_table(h: &Harness) {
    let store = h.store_with(
        h.builder().config(
            Config::default()
                .clock(h.clock.clock())
                .metadata(MetadataPolicy {
                    ip: IpTracking::Truncated,
                    user_agent: true,
                }),
        ),
    );
    let user = "frank.user-id-7781@example.org";
    let agent = "Mozilla/5.0 (X11; Linux x86_64) SecretAgent/9.9";
    let ip: IpAddr = "198.51.100.77".parse().unwrap();
    let mut s = store.load(None).unwrap();
    s.set_user(user);
    s.set_client(Some(ip), Some(agent));
    s.set_meta("location", Some("Lisbon, PT"));
    s.insert("k", &1).unwrap();
    let _ = store.save(&mut s).unwrap();
    // The same client again: no change, no write.
    let version = rows(store.database())[0].version;
    s.set_client(Some("198.51.100.12".parse().unwrap()), Some(agent));
    assert!(!s.is_modified(), "same /24 and agent counted as a change");
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(rows(store.database())[0].version, version);

    for raw in rows(store.database()) {
        let mut all = raw.sid.clone();
        all.extend_from_slice(&raw.data);
        all.extend(raw.user_key.clone().unwrap_or_default());
        for needle in [
            user,
            agent,
            "198.51.100",
            "Lisbon",
            "location",
            "SecretAgent",
        ] {
            assert!(!contains(&all, needle.as_bytes()), "{needle} in the table");
        }
    }
    let info = &store
        .sessions_of(user, None, Default::default())
        .unwrap()
        .sessions[0];
    assert_eq!(info.ip.as_deref(), Some("198.51.100.0"));
    assert_eq!(info.user_agent.as_deref(), Some(agent));
    assert_eq!(
        info.fields.get("location").map(String::as_str),
        Some("Lisbon, PT")
    );
    // Off by default: nothing recorded.
    let plain = h.store();
    let mut s = plain.load(None).unwrap();
    s.set_client(Some(ip), Some(agent));
    assert!(!s.is_modified());
}

fn key_rotation_does_not_orphan_bindings(h: &Harness) {
    let old = Key::generate();
    let new = Key::generate();
    let base = h.store();
    let with = |ring: Keyring| {
        SessionStore::builder(ring)
            .config(h.config())
            .build(base.database().clone())
    };
    let before = with(Keyring::new(old.clone()));
    for _ in 0..3 {
        sign_in(&before, "grace");
    }
    let rotated = with(
        Keyring::new(new.clone())
            .with_previous(old.clone())
            .unwrap(),
    );
    // Found under the old key's binding while the old key is on the ring.
    assert_eq!(
        rotated
            .sessions_of("grace", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        3
    );
    // A new sign-in binds under the new key; both are listed together.
    sign_in(&rotated, "grace");
    assert_eq!(
        rotated
            .sessions_of("grace", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        4
    );
    // After re-encryption, the new key alone finds all of them.
    let report = rotate_keys(&rotated).unwrap();
    assert_eq!(report.rotated, 3);
    let only_new = with(Keyring::new(new));
    assert_eq!(
        only_new
            .sessions_of("grace", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        4
    );
    assert_eq!(only_new.revoke_user("grace").unwrap(), 4);
}

/// One line per plan row of `sql` under the backend's EXPLAIN: SQLite's
/// `EXPLAIN QUERY PLAN`; PostgreSQL's `EXPLAIN ANALYZE` (runs it: actual row
/// counts); MariaDB's `ANALYZE` (runs it: `r_rows`), as
/// `key=… key_len=… rows=… r_rows=… extra=…`.
fn plan(h: &Harness, db: &stored_session::Database, sql: &str) -> String {
    match h.backend {
        Backend::Sqlite => with_conn!(db, |c| {
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Text)]
                detail: String,
            }
            diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                .load::<Plan>(c)
                .unwrap()
                .into_iter()
                .map(|p| p.detail)
                .collect::<Vec<_>>()
                .join("\n")
        }),
        Backend::Postgres => with_conn!(db, |c| {
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
                line: String,
            }
            diesel::sql_query("ANALYZE stored_sessions")
                .execute(c)
                .unwrap();
            diesel::sql_query(format!("EXPLAIN ANALYZE {sql}"))
                .load::<Plan>(c)
                .unwrap()
                .into_iter()
                .map(|p| p.line)
                .collect::<Vec<_>>()
                .join("\n")
        }),
        Backend::Mysql => with_conn!(db, |c| {
            use diesel::sql_types::{Nullable, Text};
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = Nullable<Text>)]
                key: Option<String>,
                #[diesel(sql_type = Nullable<Text>)]
                key_len: Option<String>,
                #[diesel(sql_type = Nullable<Text>)]
                r_rows: Option<String>,
                #[diesel(sql_type = Nullable<Text>, column_name = "Extra")]
                extra: Option<String>,
            }
            diesel::sql_query("ANALYZE TABLE stored_sessions")
                .execute(c)
                .unwrap();
            diesel::sql_query(format!("ANALYZE {sql}"))
                .load::<Plan>(c)
                .unwrap()
                .into_iter()
                .map(|p| {
                    format!(
                        "key={} key_len={} r_rows={} extra={}",
                        p.key.unwrap_or_default(),
                        p.key_len.unwrap_or_default(),
                        p.r_rows.unwrap_or_default(),
                        p.extra.unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        }),
        _ => unreachable!(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A user with 300 sessions between 15,000 older and 15,000 newer rows of
/// 10,000 other users: one page is one index range read that stops after the page, with
/// no sort, on every backend (the SQL mirrors `user_page_query!` in
/// src/backend/maintenance.rs), and the store pages through all 300.
fn listing_a_page_is_a_bounded_index_range(h: &Harness) {
    let store = h.store();
    let db = store.database();
    let now = h.clock.now().timestamp();
    for chunk in 0..30 {
        if chunk == 15 {
            // Heidi's sessions sit between two halves of the others.
            for _ in 0..300 {
                sign_in(&store, "heidi");
            }
        }
        let batch: Vec<([u8; 32], [u8; 32])> = (0..1000u32)
            .map(|i| {
                let n = chunk * 1000 + i;
                let mut sid = [0u8; 32];
                sid[..4].copy_from_slice(&n.to_be_bytes());
                let mut user = [0x55u8; 32];
                user[..4].copy_from_slice(&(n / 3).to_be_bytes());
                (sid, user)
            })
            .collect();
        let values: Vec<_> = batch
            .iter()
            .map(|(sid, user)| {
                (
                    t::sid.eq(&sid[..]),
                    t::data.eq(&b"x"[..]),
                    t::version.eq(1i64),
                    t::user_key.eq(Some(&user[..])),
                    t::created_at.eq(now),
                    t::updated_at.eq(now),
                )
            })
            .collect();
        with_conn!(db, |c| diesel::insert_into(t::stored_sessions)
            .values(&values)
            .execute(c)
            .unwrap());
    }
    // The store pages through all of them, 50 at a time, newest first.
    let mut ids = Vec::new();
    let mut page = store.sessions_of("heidi", None, Page::default()).unwrap();
    loop {
        assert!(page.sessions.len() <= 50);
        ids.extend(page.sessions.iter().map(|i| i.handle.to_string()));
        let Some(next) = page.next.take() else { break };
        page = store
            .sessions_of(
                "heidi",
                None,
                Page {
                    limit: 50,
                    after: Some(next),
                },
            )
            .unwrap();
    }
    assert_eq!(ids.len(), 300);

    let all = rows(db);
    let heidi: Vec<&common::RawRow> = all.iter().filter(|r| r.data.len() > 1).collect();
    assert_eq!(heidi.len(), 300);
    let key = hex(heidi[0].user_key.as_ref().unwrap());
    let middle = heidi[150].id;
    let cut = now - 1000;
    let live = format!("updated_at + 0 > {cut} AND created_at + 0 > {cut}");
    let columns = "id, sid, data, version, created_at, updated_at";
    for before in [i64::MAX, middle] {
        let sql = match h.backend {
            Backend::Sqlite => format!(
                "SELECT {columns} FROM stored_sessions WHERE user_key = x'{key}' AND id < {before} \
                 AND {live} ORDER BY id DESC LIMIT 51"
            ),
            Backend::Postgres => format!(
                "SELECT {columns} FROM stored_sessions WHERE user_key >= '\\x{key}'::bytea \
                 AND user_key <= '\\x{key}'::bytea AND id < {before} AND {live} \
                 ORDER BY user_key DESC, id DESC LIMIT 51"
            ),
            _ => format!(
                "SELECT {columns} FROM stored_sessions WHERE user_key >= x'{key}' \
                 AND user_key <= x'{key}' AND id < {before} AND {live} \
                 ORDER BY user_key DESC, id DESC LIMIT 51"
            ),
        };
        let plan = plan(h, db, &sql);
        match h.backend {
            Backend::Sqlite => {
                assert!(
                    plan.contains(
                        "USING INDEX stored_sessions_user_key_idx (user_key=? AND rowid<?)"
                    ),
                    "{plan}"
                );
                assert!(!plan.contains("TEMP B-TREE"), "sorts: {plan}");
            }
            Backend::Postgres => {
                assert!(
                    plan.contains("Index Scan Backward using stored_sessions_user_key_id_idx"),
                    "{plan}"
                );
                assert!(!plan.contains("Sort"), "sorts: {plan}");
                // The scan itself returned the page (51 rows), not the user's 300.
                let scan = plan.lines().find(|l| l.contains("Index Scan")).unwrap();
                assert!(scan.contains("rows=51 loops=1)"), "{plan}");
            }
            _ => {
                assert!(plan.contains("key=stored_sessions_user_key_idx"), "{plan}");
                assert!(
                    plan.contains("key_len=41"),
                    "not a (user_key, id) range: {plan}"
                );
                assert!(plan.contains("r_rows=51.00"), "{plan}");
                assert!(!plan.contains("filesort"), "sorts: {plan}");
            }
        }
    }
}

/// Every session exactly once across pages, newest first, even while
/// requests touch and write sessions between two page reads.
fn paging_is_complete_while_sessions_are_touched(h: &Harness) {
    let store = h.store();
    let mut cookies = Vec::new();
    for n in 0..123u32 {
        let mut s = store.load(None).unwrap();
        s.set_user("pat");
        s.set_meta("n", Some(&n.to_string()));
        s.renew();
        match store.save(&mut s).unwrap() {
            CookieAction::Set(id, _) => cookies.push(id.as_cookie_value().to_owned()),
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..4 {
        sign_in(&store, "quentin");
    }
    let me = store.load(Some(&cookies[60])).unwrap();
    let mut seen: Vec<u32> = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store
            .sessions_of("pat", Some(&me), Page { limit: 10, after })
            .unwrap();
        pages += 1;
        assert!(page.sessions.len() <= 10);
        if page.next.is_some() {
            assert_eq!(page.sessions.len(), 10);
        }
        seen.extend(
            page.sessions
                .iter()
                .map(|i| i.fields["n"].parse::<u32>().unwrap()),
        );
        assert_eq!(
            page.sessions.iter().filter(|i| i.current).count(),
            usize::from(page.sessions.iter().any(|i| i.fields["n"] == "60"))
        );
        // Between two page reads: every session is touched (the idle clock
        // moves) and some get data writes; none of it moves a session.
        h.advance(301);
        for (i, c) in cookies.iter().enumerate() {
            let mut s = store.load(Some(c)).unwrap();
            if i % 7 == pages % 7 {
                s.insert("written", &pages).unwrap();
            }
            let _ = store.save(&mut s).unwrap();
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 13);
    let expected: Vec<u32> = (0..123).rev().collect();
    assert_eq!(
        seen, expected,
        "not every session exactly once, newest first"
    );
    // The last touch moved the idle clock; the listing shows it.
    let first = store.sessions_of("pat", None, Page::first(1)).unwrap();
    assert_eq!(first.sessions.len(), 1);
    assert_eq!(first.sessions[0].last_active, h.clock.now());
}

fn limits_are_respected(h: &Harness) {
    let store = h.store();
    for _ in 0..7 {
        sign_in(&store, "lena");
    }
    for (limit, len, more) in [
        (0, 1, true),
        (1, 1, true),
        (6, 6, true),
        (7, 7, false),
        (8, 7, false),
    ] {
        let page = store.sessions_of("lena", None, Page::first(limit)).unwrap();
        assert_eq!(page.sessions.len(), len, "limit {limit}");
        assert_eq!(page.next.is_some(), more, "limit {limit}");
    }
    assert_eq!(Page::default().limit, 50);
    // Above the maximum: Page::MAX_LIMIT sessions.
    let db = store.database();
    for _ in 0..Page::MAX_LIMIT {
        sign_in(&store, "mona");
    }
    let page = store
        .sessions_of("mona", None, Page::first(u32::MAX))
        .unwrap();
    assert_eq!(page.sessions.len(), Page::MAX_LIMIT as usize);
    assert!(page.next.is_none());
    sign_in(&store, "mona");
    let page = store
        .sessions_of("mona", None, Page::first(u32::MAX))
        .unwrap();
    assert_eq!(page.sessions.len(), Page::MAX_LIMIT as usize);
    let rest = store
        .sessions_of(
            "mona",
            None,
            Page {
                limit: u32::MAX,
                after: page.next,
            },
        )
        .unwrap();
    assert_eq!((rest.sessions.len(), rest.next), (1, None));
    assert_eq!(count(db), 7 + Page::MAX_LIMIT as usize + 1);
}

fn bad_cursors_are_refused(h: &Harness) {
    let store = h.store();
    for _ in 0..3 {
        sign_in(&store, "nina");
        sign_in(&store, "otto");
    }
    let ninas = store.sessions_of("nina", None, Page::first(1)).unwrap();
    let nina_cursor = ninas.next.clone().unwrap();
    let ottos = store.sessions_of("otto", None, Page::first(1)).unwrap();
    let otto_cursor = ottos.next.clone().unwrap();
    let page = |user: &str, text: &str| {
        store.sessions_of(
            user,
            None,
            Page {
                limit: 1,
                after: Some(Cursor::new(text)),
            },
        )
    };
    // Its own cursor works.
    assert_eq!(
        page("nina", nina_cursor.as_str()).unwrap().sessions.len(),
        1
    );
    // Another user's cursor, garbage, tampering: a typed error, never a panic.
    let mut flipped = nina_cursor.as_str().to_owned().into_bytes();
    flipped[30] = if flipped[30] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let mut tag_flipped = nina_cursor.as_str().to_owned().into_bytes();
    tag_flipped[0] = if tag_flipped[0] == b'A' { b'B' } else { b'A' };
    let tag_flipped = String::from_utf8(tag_flipped).unwrap();
    let hostile = [
        otto_cursor.as_str(),
        "",
        "x",
        "not a cursor at all, with spaces",
        &"A".repeat(32),
        &"A".repeat(33),
        &"é".repeat(16),
        "%00%00%00",
        ninas.sessions[0].handle.as_str(),
        &flipped,
        &tag_flipped,
        &"/".repeat(32),
    ];
    for text in hostile {
        let result = page("nina", text);
        assert!(
            matches!(result, Err(Error::InvalidCursor)),
            "{text:?}: {result:?}"
        );
    }
    assert!(matches!(
        page("otto", nina_cursor.as_str()),
        Err(Error::InvalidCursor)
    ));
    // Another store's keys: refused too (the cursor names no position there).
    let other = SessionStore::builder(Keyring::generate())
        .config(h.config())
        .build(store.database().clone());
    assert!(matches!(
        other.sessions_of(
            "nina",
            None,
            Page {
                limit: 1,
                after: Some(nina_cursor)
            }
        ),
        Err(Error::InvalidCursor)
    ));
    // Tampered handles end nothing either.
    let handle = ninas.sessions[0].handle.as_str().to_owned();
    for i in [0, 20, 31] {
        let mut bytes = handle.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let forged = SessionHandle::new(String::from_utf8(bytes).unwrap());
        assert!(!store.revoke("nina", &forged).unwrap());
    }
    assert!(!store.revoke("nina", &SessionHandle::new("")).unwrap());
    assert!(!store
        .revoke("nina", &SessionHandle::new("é".repeat(16)))
        .unwrap());
    assert_eq!(count(store.database()), 6);
    assert!(store.revoke("nina", &SessionHandle::new(handle)).unwrap());
    assert_eq!(count(store.database()), 5);
}

/// `max_sessions_per_user`: the oldest beyond the cap are revoked at login.
fn session_cap_revokes_the_oldest_at_login(h: &Harness) {
    let capped = |cap| {
        h.store_with(
            h.builder().config(
                Config::default()
                    .clock(h.clock.clock())
                    .max_sessions_per_user(cap),
            ),
        )
    };
    let store = capped(Some(3));
    let anonymous = {
        let mut s = store.load(None).unwrap();
        s.insert("cart", "1 pear").unwrap();
        match store.save(&mut s).unwrap() {
            CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
            other => panic!("{other:?}"),
        }
    };
    let bob = sign_in(&store, "bob");
    let mut rosa = Vec::new();
    for i in 0..6 {
        rosa.push(sign_in(&store, "rosa"));
        let live = store
            .sessions_of("rosa", None, Page::default())
            .unwrap()
            .sessions;
        assert_eq!(live.len(), (i + 1).min(3), "after login {i}");
    }
    // The three newest survive, the three oldest are gone.
    for (i, c) in rosa.iter().enumerate() {
        assert_eq!(
            !store.load(Some(c)).unwrap().is_new(),
            i >= 3,
            "session {i}"
        );
    }
    assert!(!store.load(Some(&bob)).unwrap().is_new());
    assert!(!store.load(Some(&anonymous)).unwrap().is_new());
    assert_eq!(count(store.database()), 3 + 2);
    // A commit that does not bind a user (a visit) revokes nothing.
    let mut s = store.load(Some(&rosa[5])).unwrap();
    s.insert("visit", &1).unwrap();
    let _ = store.save(&mut s).unwrap();
    assert_eq!(count(store.database()), 5);
    // Binding an older session (no renew) never removes newer ones: the
    // newest are kept, the login itself too.
    let mut old = store.load(Some(&anonymous)).unwrap();
    old.set_user("rosa");
    let _ = store.save(&mut old).unwrap();
    for c in &rosa[3..] {
        assert!(!store.load(Some(c)).unwrap().is_new());
    }
    assert!(!store.load(Some(&anonymous)).unwrap().is_new());
    // The next login trims back to three: the new one and the two newest.
    let newest = sign_in(&store, "rosa");
    let live = store
        .sessions_of("rosa", None, Page::default())
        .unwrap()
        .sessions;
    assert_eq!(live.len(), 3);
    for c in [&newest, &rosa[5], &rosa[4]] {
        assert!(!store.load(Some(c)).unwrap().is_new());
    }
    assert!(store.load(Some(&anonymous)).unwrap().is_new());
    assert!(store.load(Some(&rosa[3])).unwrap().is_new());
    // Some(1): a login signs every other device out. Some(0) counts as 1.
    for cap in [Some(1), Some(0)] {
        let one = capped(cap);
        let first = sign_in(&one, "sven");
        let second = sign_in(&one, "sven");
        assert!(one.load(Some(&first)).unwrap().is_new());
        assert!(!one.load(Some(&second)).unwrap().is_new());
        assert_eq!(
            one.sessions_of("sven", None, Page::default())
                .unwrap()
                .sessions
                .len(),
            1
        );
        one.revoke_user("sven").unwrap();
    }
    // Off by default.
    let plain = h.store();
    for _ in 0..5 {
        sign_in(&plain, "tara");
    }
    assert_eq!(
        plain
            .sessions_of("tara", None, Page::default())
            .unwrap()
            .sessions
            .len(),
        5
    );
    // Bindings under an older key count (and go) too.
    let old_key = Key::generate();
    let new_key = Key::generate();
    let with = |ring: Keyring| {
        SessionStore::builder(ring)
            .config(
                Config::default()
                    .clock(h.clock.clock())
                    .max_sessions_per_user(Some(3)),
            )
            .build(store.database().clone())
    };
    let before = with(Keyring::new(old_key.clone()));
    let early: Vec<String> = (0..2).map(|_| sign_in(&before, "uma")).collect();
    let rotated = with(Keyring::new(new_key).with_previous(old_key).unwrap());
    let late: Vec<String> = (0..2).map(|_| sign_in(&rotated, "uma")).collect();
    assert!(
        rotated.load(Some(&early[0])).unwrap().is_new(),
        "the oldest (old key) goes"
    );
    for c in early[1..].iter().chain(&late) {
        assert!(!rotated.load(Some(c)).unwrap().is_new());
    }
    assert_eq!(
        rotated
            .sessions_of("uma", None, Page::default())
            .unwrap()
            .sessions
            .len(),
        3
    );
}

/// `stats` equals a brute-force computation over the raw rows of a seeded
/// table: counts, activity range, percentiles, users, hourly buckets.
fn stats_equal_a_brute_force_computation(h: &Harness) {
    let store = h.store();
    let db = store.database();
    let now = h.clock.now().timestamp();
    let day = 86_400i64;
    // A deterministic spread: sizes 1..=997 bytes, users with 1..=40
    // sessions, times from 40 days ago to 2 hours in the future.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut values = Vec::new();
    let mut user = 0u32;
    let mut left_for_user = 0u64;
    for i in 0..3000u32 {
        let mut sid = [0u8; 32];
        sid[..4].copy_from_slice(&i.to_be_bytes());
        sid[4] = 0xee;
        let size = 1 + next(997) as usize;
        let bound = next(5) != 0;
        let user_key = if bound {
            if left_for_user == 0 {
                user += 1;
                left_for_user = 1 + next(40);
            }
            left_for_user -= 1;
            let mut k = [0x33u8; 32];
            k[..4].copy_from_slice(&user.to_be_bytes());
            Some(k)
        } else {
            None
        };
        let created = now - next(40 * day as u64) as i64 + 7200;
        let updated = (created + next(10 * day as u64) as i64).min(now + 7200);
        values.push((sid, vec![0xab; size], user_key, created, updated));
    }
    for chunk in values.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(sid, data, key, created, updated)| {
                (
                    t::sid.eq(&sid[..]),
                    t::data.eq(&data[..]),
                    t::version.eq(1i64),
                    t::user_key.eq(key.as_ref().map(|k| &k[..])),
                    t::created_at.eq(*created),
                    t::updated_at.eq(*updated),
                )
            })
            .collect();
        with_conn!(db, |c| diesel::insert_into(t::stored_sessions)
            .values(&rows)
            .execute(c)
            .unwrap());
    }

    // Brute force, from the raw rows, under the default 30-day rules.
    let cut = now - 30 * day;
    let all = rows(db);
    let live: Vec<&common::RawRow> = all
        .iter()
        .filter(|r| r.updated_at > cut && r.created_at > cut)
        .collect();
    let nearest = |mut v: Vec<u64>| -> Option<[u64; 6]> {
        v.sort_unstable();
        let n = v.len() as u64;
        let at = |p: u64| v[((p * n).div_ceil(100).max(1) - 1) as usize];
        (n > 0).then(|| [n, v[0], at(50), at(90), at(99), v[v.len() - 1]])
    };
    let as_array = |p: stored_session::Percentiles| [p.count, p.min, p.p50, p.p90, p.p99, p.max];
    let mut per_user = std::collections::BTreeMap::<Vec<u8>, u64>::new();
    for r in &live {
        if let Some(k) = &r.user_key {
            *per_user.entry(k.clone()).or_default() += 1;
        }
    }
    let hourly = |time: fn(&common::RawRow) -> i64| {
        let mut out = [0u64; 24];
        for r in &live {
            let t = time(r);
            if t > now - day {
                let age = (now - t).clamp(0, day - 1) / 3600;
                out[23 - age as usize] += 1;
            }
        }
        out
    };

    let stats = store.stats().unwrap();
    assert_eq!(stats.live, live.len() as u64);
    assert_eq!(stats.expired, (all.len() - live.len()) as u64);
    assert!(stats.live > 500 && stats.expired > 500, "{stats:?}");
    let at = |t: Option<i64>| t.and_then(|t| chrono::DateTime::from_timestamp(t, 0));
    assert_eq!(
        stats.oldest_activity,
        at(live.iter().map(|r| r.updated_at).min())
    );
    assert_eq!(
        stats.newest_activity,
        at(live.iter().map(|r| r.updated_at).max())
    );
    assert_eq!(
        Some(as_array(stats.payload_bytes)),
        nearest(live.iter().map(|r| r.data.len() as u64).collect())
    );
    assert_eq!(stats.users, per_user.len() as u64);
    assert_eq!(
        Some(as_array(stats.sessions_per_user)),
        nearest(per_user.values().copied().collect())
    );
    assert_eq!(stats.created_per_hour, hourly(|r| r.created_at));
    assert_eq!(stats.active_per_hour, hourly(|r| r.updated_at));
    assert!(stats.active_per_hour[23] > 0 && stats.created_per_hour.iter().sum::<u64>() > 0);

    // Expiry rules off: every row is live.
    let forever = h.store_with(
        h.builder().config(
            Config::default()
                .clock(h.clock.clock())
                .idle_timeout(None)
                .max_lifetime(None),
        ),
    );
    let stats = forever.stats().unwrap();
    assert_eq!((stats.live, stats.expired), (all.len() as u64, 0));
    // An empty table: zeros, no activity.
    let other = h.another();
    let empty = other.store();
    let stats = empty.stats().unwrap();
    assert_eq!(
        (stats.live, stats.users, stats.payload_bytes.count),
        (0, 0, 0)
    );
    assert_eq!(stats.newest_activity, None);
    assert_eq!(stats.created_per_hour, [0; 24]);
}

fn stats_include_users_and_hourly_activity(h: &Harness) {
    let store = h.store();
    for _ in 0..3 {
        sign_in(&store, "ivan");
    }
    sign_in(&store, "judy");
    h.advance(2 * 3600);
    sign_in(&store, "judy");
    let mut anon = store.load(None).unwrap();
    anon.insert("k", &1).unwrap();
    let _ = store.save(&mut anon).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.live, 6);
    assert_eq!(stats.users, 2);
    assert_eq!(stats.sessions_per_user.count, 2);
    assert_eq!(
        (stats.sessions_per_user.min, stats.sessions_per_user.max),
        (2, 3)
    );
    assert_eq!(stats.created_per_hour[23], 2);
    assert_eq!(stats.created_per_hour[21], 4);
    assert_eq!(stats.created_per_hour.iter().sum::<u64>(), 6);
    assert_eq!(stats.active_per_hour.iter().sum::<u64>(), 6);
}

fn dedicated_sessions_database(h: &Harness) {
    // The application's own data lives in one database, sessions in another.
    let app = h.another();
    let app_store_url = app.url.clone();
    let sessions = h.store();
    let _ = sign_in(&sessions, "kim");
    // The app database has its own tables and no sessions table.
    let app_db = SessionStore::builder(Keyring::generate())
        .open(&app_store_url)
        .unwrap();
    let has_table = |db: &stored_session::Database| -> bool {
        with_conn!(db, |c| t::stored_sessions
            .count()
            .get_result::<i64>(c)
            .is_ok())
    };
    assert!(!has_table(app_db.database()));
    assert!(has_table(sessions.database()));
    assert_eq!(
        sessions
            .sessions_of("kim", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        1
    );
}

backend_suite!(
    revoking_a_user_removes_exactly_their_sessions,
    listing_marks_current_and_revokes_by_handle,
    binding_survives_renew_and_can_be_cleared,
    user_ids_and_metadata_never_appear_in_the_table,
    key_rotation_does_not_orphan_bindings,
    listing_a_page_is_a_bounded_index_range,
    paging_is_complete_while_sessions_are_touched,
    limits_are_respected,
    bad_cursors_are_refused,
    session_cap_revokes_the_oldest_at_login,
    stats_equal_a_brute_force_computation,
    stats_include_users_and_hourly_activity,
    dedicated_sessions_database,
);
