//! Per-user sessions: binding, listing, revocation, metadata, statistics,
//! and a dedicated sessions database, on every backend.

mod common;

use std::net::IpAddr;

use common::{contains, count, rows, Harness};
use diesel::prelude::*;
use stored_session::schema::stored_sessions::dsl as t;
use stored_session::{
    rotate_keys, Backend, Config, CookieAction, IpTracking, Key, Keyring, MetadataPolicy,
    SessionHandle, SessionStore,
};

fn sign_in(store: &SessionStore, user: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("visits", &1u32).unwrap();
    s.set_user(user);
    s.renew();
    match store.commit(&mut s).unwrap() {
        CookieAction::Set(id) => id.as_cookie_value().to_owned(),
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
        match store.commit(&mut s).unwrap() {
            CookieAction::Set(id) => id.as_cookie_value().to_owned(),
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
    assert_eq!(store.commit(&mut slow).unwrap(), CookieAction::Remove);
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
    let renewed = match store.commit(&mut s).unwrap() {
        CookieAction::Set(id) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    };
    let list = store
        .sessions_of("erin", None, Default::default())
        .unwrap()
        .sessions;
    assert_eq!(list.len(), 1);
    let mut s = store.load(Some(&renewed)).unwrap();
    s.clear_user();
    assert_eq!(store.commit(&mut s).unwrap(), CookieAction::None);
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
    let _ = store.commit(&mut a).unwrap();
    let _ = store.commit(&mut b).unwrap();
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
    let _ = store.commit(&mut s).unwrap();
    // The same client again: no change, no write.
    let version = rows(store.database())[0].version;
    s.set_client(Some("198.51.100.12".parse().unwrap()), Some(agent));
    assert!(!s.is_modified(), "same /24 and agent counted as a change");
    assert_eq!(store.commit(&mut s).unwrap(), CookieAction::None);
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
            .clock(h.clock.clock())
            .build(base.database().clone())
    };
    let before = with(Keyring::new(old.clone()));
    for _ in 0..3 {
        sign_in(&before, "grace");
    }
    let rotated = with(Keyring::new(new.clone()).with_previous(old.clone()));
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

fn listing_ten_thousand_users_is_an_indexed_lookup(h: &Harness) {
    let store = h.store();
    let db = store.database();
    // 10,000 users x 3 sessions (raw rows: random user keys), plus a real user.
    let now = h.clock.now().timestamp();
    for chunk in 0..30 {
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
    for _ in 0..3 {
        sign_in(&store, "heidi");
    }
    assert_eq!(
        store
            .sessions_of("heidi", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        3
    );
    let key = "55".repeat(32);
    let cut = now - 1000;
    let plan: String = match h.backend {
        Backend::Sqlite => with_conn!(db, |c| {
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Text)]
                detail: String,
            }
            diesel::sql_query(format!(
                "EXPLAIN QUERY PLAN SELECT sid, data, version, created_at, updated_at FROM stored_sessions \
                 WHERE user_key IN (x'{key}') AND updated_at > {cut} AND created_at > {cut} ORDER BY updated_at DESC"
            ))
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
            diesel::sql_query(format!(
                "EXPLAIN SELECT sid, data, version, created_at, updated_at FROM stored_sessions \
                 WHERE user_key IN ('\\x{key}'::bytea) AND updated_at > {cut} AND created_at > {cut} ORDER BY updated_at DESC"
            ))
            .load::<Plan>(c)
            .unwrap()
            .into_iter()
            .map(|p| p.line)
            .collect::<Vec<_>>()
            .join("\n")
        }),
        Backend::Mysql => with_conn!(db, |c| {
            #[derive(QueryableByName)]
            struct Plan {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                key: Option<String>,
            }
            diesel::sql_query("ANALYZE TABLE stored_sessions")
                .execute(c)
                .unwrap();
            diesel::sql_query(format!(
                "EXPLAIN SELECT sid, data, version, created_at, updated_at FROM stored_sessions \
                 WHERE user_key IN (x'{key}') AND updated_at > {cut} AND created_at > {cut} ORDER BY updated_at DESC"
            ))
            .load::<Plan>(c)
            .unwrap()
            .into_iter()
            .map(|p| p.key.unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
        }),
        _ => unreachable!(),
    };
    assert!(
        plan.contains("stored_sessions_user_key_idx"),
        "the user listing does not use the user_key index:\n{plan}"
    );
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
    let _ = store.commit(&mut anon).unwrap();
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
    listing_ten_thousand_users_is_an_indexed_lookup,
    stats_include_users_and_hourly_activity,
    dedicated_sessions_database,
);
