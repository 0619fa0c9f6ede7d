//! Per-session expiry (`Session::set_expiry`): remember-me idle windows,
//! absolute deadlines, browser-session cookies; the `expires_at` deadline
//! column in loads, touches and trimming; and the upgrade of a table made by
//! the first migrations (no `expires_at`), on every backend.

mod common;

use std::time::Duration;

use common::{count, insert_raw, rows, Harness};
use diesel::prelude::*;
use stored_session::schema::stored_sessions::dsl as t;
use stored_session::{
    migrations, Config, CookieAction, CookieLifetime, Database, EventKind, Expiry, RejectReason,
    SessionId, SessionStore, StoredId, Trim,
};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const REMEMBER: Duration = Duration::from_secs(30 * DAY);

/// The store's default: 2 idle hours, 90 days at most, touches after 60 s.
fn config(h: &Harness) -> Config {
    h.config()
        .idle_timeout(Some(Duration::from_secs(2 * HOUR)))
        .max_lifetime(Some(Duration::from_secs(90 * DAY)))
        .touch_after(Duration::from_secs(60))
}

fn store(h: &Harness) -> SessionStore {
    h.store_with(h.builder().config(config(h)))
}

fn now(h: &Harness) -> i64 {
    h.clock.now().timestamp()
}

/// A new session holding `n`, with `expiry`; its cookie value and the
/// lifetime `save` gave the cookie.
fn create(store: &SessionStore, n: u32, expiry: Expiry) -> (String, CookieLifetime) {
    let mut s = store.load(None).unwrap();
    s.insert("n", &n).unwrap();
    s.set_expiry(expiry);
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, lifetime) => (id.as_cookie_value().to_owned(), lifetime),
        other => panic!("{other:?}"),
    }
}

fn sid(cookie: &str) -> StoredId {
    SessionId::parse(cookie).unwrap().stored_id()
}

/// The row's `expires_at`, or `None` when the row is gone; `Some(None)` for
/// a row without a deadline.
fn expires_at(db: &Database, cookie: &str) -> Option<Option<i64>> {
    let sid = sid(cookie);
    with_conn!(db, |c| t::stored_sessions
        .filter(t::sid.eq(sid.as_bytes().as_slice()))
        .select(t::expires_at)
        .first::<Option<i64>>(c)
        .optional()
        .unwrap())
}

fn live(store: &SessionStore, cookie: &str) -> bool {
    !store.load(Some(cookie)).unwrap().is_new()
}

/// Loads and saves the session unchanged (a request that only reads it):
/// the idle clock is touched when due.
fn visit(store: &SessionStore, cookie: &str) -> CookieAction {
    let mut s = store.load(Some(cookie)).unwrap();
    assert!(!s.is_new(), "the session is gone");
    store.save(&mut s).unwrap()
}

fn remember_me_outlives_the_default_idle_but_not_its_own(h: &Harness) {
    let store = store(h);
    let t0 = now(h);
    let (plain, lifetime) = create(&store, 1, Expiry::Default);
    assert_eq!(lifetime, CookieLifetime::PolicyDefault);
    let (remembered, lifetime) = create(&store, 2, Expiry::Idle(REMEMBER));
    assert_eq!(lifetime, CookieLifetime::MaxAge(REMEMBER));
    assert_eq!(
        expires_at(store.database(), &plain),
        Some(Some(t0 + 2 * HOUR as i64))
    );
    assert_eq!(
        expires_at(store.database(), &remembered),
        Some(Some(t0 + 30 * DAY as i64))
    );

    // Three idle hours: past the store's 2, well within the session's 30 days.
    h.advance(3 * HOUR);
    assert!(!live(&store, &plain));
    let s = store.load(Some(&remembered)).unwrap();
    assert_eq!(s.get::<u32>("n").unwrap(), Some(2));
    assert_eq!(s.expiry(), Expiry::Idle(REMEMBER));
    drop(s);

    // Idle for its own 30 days (counted from its creation: the load above
    // was not saved, so nothing touched it): gone, to the second.
    h.advance(30 * DAY - 3 * HOUR - 1);
    assert!(live(&store, &remembered));
    h.advance(1);
    let rejected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = rejected.clone();
    store.subscribe(move |e| {
        if e.kind == EventKind::Rejected {
            sink.lock().unwrap().push(e.reason);
        }
    });
    assert!(!live(&store, &remembered));
    assert_eq!(*rejected.lock().unwrap(), [Some(RejectReason::NotFound)]);
}

fn touching_a_remember_me_session_extends_it_by_its_own_window(h: &Harness) {
    let store = store(h);
    let (cookie, _) = create(&store, 1, Expiry::Idle(REMEMBER));
    let (plain, _) = create(&store, 2, Expiry::Default);

    // A day later a read touches it: the deadline slides by 30 days, not
    // by the store's 2 hours, and the cookie's Max-Age restarts at 30 days.
    h.advance(DAY);
    let id = SessionId::parse(&cookie).unwrap();
    assert_eq!(
        visit(&store, &cookie),
        CookieAction::Refresh(id.clone(), CookieLifetime::MaxAge(REMEMBER))
    );
    let touched = now(h);
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(touched + 30 * DAY as i64))
    );
    // A data write after touch_after slides it the same way.
    h.advance(HOUR);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.insert("n", &3).unwrap();
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Refresh(id, CookieLifetime::MaxAge(REMEMBER))
    );
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(now(h) + 30 * DAY as i64))
    );

    // 29 days and 23 hours after the write: past the first deadline
    // (creation + 30 days), alive thanks to the slide.
    h.advance(30 * DAY - HOUR);
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<u32>("n").unwrap(), Some(3));
    drop(s);

    // A default session touched the same way slides by the store's window.
    let (plain2, _) = create(&store, 4, Expiry::Default);
    h.advance(HOUR);
    assert!(matches!(
        visit(&store, &plain2),
        CookieAction::Refresh(_, CookieLifetime::PolicyDefault)
    ));
    assert_eq!(
        expires_at(store.database(), &plain2),
        Some(Some(now(h) + 2 * HOUR as i64))
    );
    assert!(!live(&store, &plain));
}

fn an_absolute_deadline_is_enforced_on_load_and_by_trim(h: &Harness) {
    let store = store(h);
    let t0 = now(h);
    let deadline = h.clock.now() + chrono::Duration::seconds(HOUR as i64);
    let (cookie, lifetime) = create(&store, 1, Expiry::At(deadline));
    assert_eq!(lifetime, CookieLifetime::MaxAge(Duration::from_secs(HOUR)));
    let (other, _) = create(&store, 2, Expiry::Idle(REMEMBER));
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(t0 + HOUR as i64))
    );

    // Touches slide the idle window, never past the deadline; the cookie's
    // Max-Age counts down to it.
    h.advance(50 * 60);
    let id = SessionId::parse(&cookie).unwrap();
    assert_eq!(
        visit(&store, &cookie),
        CookieAction::Refresh(id, CookieLifetime::MaxAge(Duration::from_secs(600)))
    );
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(t0 + HOUR as i64))
    );
    h.advance(599);
    assert!(live(&store, &cookie));
    h.advance(1);
    assert!(!live(&store, &cookie));

    // The deadline is authenticated: moving the column does not revive it.
    with_conn!(store.database(), |c| diesel::update(
        t::stored_sessions.filter(t::sid.eq(sid(&cookie).as_bytes().as_slice()))
    )
    .set(t::expires_at.eq(now(h) + DAY as i64))
    .execute(c)
    .unwrap());
    let rejected = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = rejected.clone();
    store.subscribe(move |e| {
        if e.kind == EventKind::Rejected {
            sink.lock().unwrap().push(e.reason);
        }
    });
    assert!(!live(&store, &cookie));
    assert_eq!(*rejected.lock().unwrap(), [Some(RejectReason::Expired)]);
    with_conn!(store.database(), |c| diesel::update(
        t::stored_sessions.filter(t::sid.eq(sid(&cookie).as_bytes().as_slice()))
    )
    .set(t::expires_at.eq(t0 + HOUR as i64))
    .execute(c)
    .unwrap());

    // Trimming deletes it, and only it.
    assert_eq!(Trim::new().count(&store).unwrap(), 1);
    let report = Trim::new().run(&store).unwrap();
    assert_eq!(report.deleted, 1);
    assert_eq!(expires_at(store.database(), &cookie), None);
    assert!(live(&store, &other));

    // A deadline already past ends the session at its save, as destroy does.
    let mut s = store.load(Some(&other)).unwrap();
    s.set_expiry(Expiry::At(h.clock.now() - chrono::Duration::seconds(1)));
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Remove);
    assert!(s.is_empty());
    assert_eq!(count(store.database()), 0);
    // A new one with it is never stored.
    let mut s = store.load(None).unwrap();
    s.insert("n", &1).unwrap();
    s.set_expiry(Expiry::At(h.clock.now()));
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    assert_eq!(count(store.database()), 0);
}

fn a_browser_session_cookie_has_no_max_age_but_the_idle_timeout_holds(h: &Harness) {
    let store = store(h);
    let (cookie, lifetime) = create(&store, 1, Expiry::BrowserSession);
    assert_eq!(lifetime, CookieLifetime::Session);
    assert_eq!(lifetime.max_age(Some(REMEMBER)), None);
    #[cfg(feature = "adapters")]
    {
        // Even under a policy that makes persistent cookies.
        use stored_session::adapters::CookiePolicy;
        let policy = CookiePolicy::new().with_max_age(Some(REMEMBER));
        let id = SessionId::parse(&cookie).unwrap();
        let header = policy.session_cookie(&id, lifetime).header_value();
        assert!(
            !header.contains("Max-Age") && !header.contains("Expires"),
            "{header}"
        );
        let header = policy
            .session_cookie(&id, CookieLifetime::PolicyDefault)
            .header_value();
        assert!(header.contains("Max-Age=2592000"), "{header}");
    }

    // Touches keep it alive under the store's idle timeout...
    let id = SessionId::parse(&cookie).unwrap();
    h.advance(HOUR);
    assert_eq!(
        visit(&store, &cookie),
        CookieAction::Refresh(id, CookieLifetime::Session)
    );
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(now(h) + 2 * HOUR as i64))
    );
    h.advance(2 * HOUR - 1);
    assert!(live(&store, &cookie));
    // ...and it ends with it, however long the browser stays open.
    h.advance(1);
    assert!(!live(&store, &cookie));
}

fn the_expiry_survives_renew_and_a_conflicting_write(h: &Harness) {
    let store = store(h);
    let (cookie, _) = create(&store, 1, Expiry::Idle(REMEMBER));
    h.advance(DAY);
    let mut s = store.load(Some(&cookie)).unwrap();
    s.set_user("alice");
    s.renew();
    let CookieAction::Set(renewed, lifetime) = store.save(&mut s).unwrap() else {
        panic!("renew sets a cookie")
    };
    assert_ne!(renewed.as_cookie_value(), cookie);
    assert_eq!(lifetime, CookieLifetime::MaxAge(REMEMBER));
    let renewed = renewed.as_cookie_value().to_owned();
    assert_eq!(
        expires_at(store.database(), &renewed),
        Some(Some(now(h) + 30 * DAY as i64))
    );
    let s = store.load(Some(&renewed)).unwrap();
    assert_eq!(s.expiry(), Expiry::Idle(REMEMBER));
    drop(s);

    // Two requests at once: one writes a value, the other the expiry; the
    // loser merges under the row lock and keeps both.
    let mut a = store.load(Some(&renewed)).unwrap();
    let mut b = store.load(Some(&renewed)).unwrap();
    a.insert("cart", &3).unwrap();
    b.set_expiry(Expiry::BrowserSession);
    assert_eq!(store.save(&mut a).unwrap(), CookieAction::Keep);
    let id = SessionId::parse(&renewed).unwrap();
    assert_eq!(
        store.save(&mut b).unwrap(),
        CookieAction::Set(id.clone(), CookieLifetime::Session)
    );
    let s = store.load(Some(&renewed)).unwrap();
    assert_eq!(s.expiry(), Expiry::BrowserSession);
    assert_eq!(s.get::<u32>("cart").unwrap(), Some(3));
    drop(s);
    assert_eq!(
        expires_at(store.database(), &renewed),
        Some(Some(now(h) + 2 * HOUR as i64))
    );

    // The other way round: a value written after a conflict keeps the
    // expiry the other request chose.
    let mut a = store.load(Some(&renewed)).unwrap();
    let mut b = store.load(Some(&renewed)).unwrap();
    a.set_expiry(Expiry::Idle(REMEMBER));
    b.insert("cart", &4).unwrap();
    assert_eq!(
        store.save(&mut a).unwrap(),
        CookieAction::Set(id, CookieLifetime::MaxAge(REMEMBER))
    );
    let _ = store.save(&mut b).unwrap();
    let s = store.load(Some(&renewed)).unwrap();
    assert_eq!(s.expiry(), Expiry::Idle(REMEMBER));
    assert_eq!(s.get::<u32>("cart").unwrap(), Some(4));
    drop(s);
    assert_eq!(
        expires_at(store.database(), &renewed),
        Some(Some(now(h) + 30 * DAY as i64))
    );
}

fn changing_the_expiry_rewrites_the_cookie_under_the_same_id(h: &Harness) {
    let store = store(h);
    let (cookie, _) = create(&store, 1, Expiry::Default);
    let id = SessionId::parse(&cookie).unwrap();
    h.advance(10); // within touch_after: only the new expiry moves the clock
    let mut s = store.load(Some(&cookie)).unwrap();
    s.set_expiry(Expiry::Idle(REMEMBER));
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Set(id.clone(), CookieLifetime::MaxAge(REMEMBER))
    );
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(now(h) + 30 * DAY as i64))
    );
    // The same value again is no change.
    s.set_expiry(Expiry::Idle(REMEMBER + Duration::from_millis(300)));
    assert!(!s.is_modified());
    assert_eq!(store.save(&mut s).unwrap(), CookieAction::Keep);
    // Back to the store's limits: the policy's cookie, the store's window.
    s.set_expiry(Expiry::Default);
    assert_eq!(
        store.save(&mut s).unwrap(),
        CookieAction::Set(id, CookieLifetime::PolicyDefault)
    );
    assert_eq!(
        expires_at(store.database(), &cookie),
        Some(Some(now(h) + 2 * HOUR as i64))
    );
    // Destroying forgets it: what is stored afterwards starts anew.
    s.set_expiry(Expiry::BrowserSession);
    s.destroy();
    assert_eq!(s.expiry(), Expiry::Default);
}

fn trim_deletes_exactly_the_expired_sessions_of_mixed_windows(h: &Harness) {
    let store = store(h);
    let db = store.database();
    let t0 = now(h);
    let at = |secs: u64| Expiry::At(h.clock.now() + chrono::Duration::seconds(secs as i64));
    // Early sessions, created at t0; the end is T = t0 + 30 days + 1 hour.
    let (default_idle, _) = create(&store, 1, Expiry::Default); // idle: expired
    let (remember_live, _) = create(&store, 3, Expiry::Idle(REMEMBER)); // touched at t0 + 29d
    let (remember_idle, _) = create(&store, 4, Expiry::Idle(REMEMBER)); // idle 30d + 1h
    let (at_past, _) = create(&store, 5, at(HOUR)); // its deadline, t0 + 1h, passed
    let (browser_idle, _) = create(&store, 7, Expiry::BrowserSession); // idle: expired
    h.advance(29 * DAY);
    assert!(matches!(
        visit(&store, &remember_live),
        CookieAction::Refresh(..)
    ));
    h.advance(DAY);
    // Late sessions, created at T - 1 hour: live.
    let (default_live, _) = create(&store, 2, Expiry::Default);
    let (at_live, _) = create(&store, 6, at(10 * DAY));
    let (browser_live, _) = create(&store, 8, Expiry::BrowserSession);
    assert_eq!(expires_at(db, &at_past), Some(Some(t0 + HOUR as i64)));
    h.advance(HOUR);
    let end = now(h);
    assert_eq!(end, t0 + (30 * DAY + HOUR) as i64);
    // Rows without a deadline, as the first migrations' table has them:
    // 3 idle past the store's 2 hours, 3 live, 3 past the 90-day lifetime.
    insert_raw(db, 3, end - 10 * DAY as i64, end - 3 * HOUR as i64);
    insert_raw(db, 3, end - 10 * DAY as i64, end - HOUR as i64);
    insert_raw(db, 3, end - 91 * DAY as i64, end - HOUR as i64);
    assert_eq!(count(db), 8 + 9);

    let expired = [&default_idle, &remember_idle, &at_past, &browser_idle];
    let alive = [&default_live, &remember_live, &at_live, &browser_live];
    assert_eq!(Trim::new().count(&store).unwrap(), 4 + 3 + 3);
    assert_eq!(db.stats(store.config()).unwrap().expired, 4 + 3 + 3);
    assert_eq!(db.stats(store.config()).unwrap().live, 4 + 3);
    let report = Trim::new().batch_size(2).run(&store).unwrap();
    assert_eq!(report.deleted, 10);
    for cookie in expired {
        assert_eq!(expires_at(db, cookie), None, "an expired session survived");
    }
    for cookie in alive {
        assert!(live(&store, cookie), "a live session was trimmed");
    }
    // Left: the 4 live sessions and the 3 live rows without a deadline.
    let left = rows(db);
    assert_eq!(left.len(), 7);
    assert_eq!(
        left.iter()
            .filter(|r| r.updated_at == end - HOUR as i64)
            .count(),
        3 + 3
    );
    assert_eq!(Trim::new().run(&store).unwrap().deleted, 0);
}

/// How many migrations precede `2026-12-02-000000_session_expiry`: the
/// table as 0.1 and the first 0.2 builds made it.
fn v1_migrations(h: &Harness) -> usize {
    migrations::for_backend(h.backend)
        .iter()
        .take_while(|m| m.name < "2026-12-02")
        .count()
}

/// The crate's migrations directory for the harness's backend, as the
/// diesel CLI reads it.
fn migrations_dir(h: &Harness) -> diesel_migrations::FileBasedMigrations {
    let dir = format!("{}/migrations/{}", env!("CARGO_MANIFEST_DIR"), h.backend);
    diesel_migrations::FileBasedMigrations::from_path(dir).unwrap()
}

/// Whether `stored_sessions` has an `expires_at` column.
fn has_expires_at(db: &Database) -> bool {
    with_conn!(db, |c| t::stored_sessions
        .select(t::expires_at)
        .limit(1)
        .load::<Option<i64>>(c)
        .is_ok())
}

fn upgrading_a_v1_table_keeps_its_sessions(h: &Harness) {
    use diesel_migrations::MigrationHarness;
    // The old table: only the migrations before per-session expiry.
    let db = Database::open(&h.url, &Default::default()).unwrap();
    for _ in 0..v1_migrations(h) {
        with_conn!(&db, |c| c.run_next_migration(migrations_dir(h)).unwrap());
    }
    assert!(!has_expires_at(&db));

    // Sessions as the old store wrote them: sealed by a store with the same
    // keys on a scratch database, then copied row for row (the envelope is
    // bound to the session id and row version, not to the database).
    // Sessions that never chose an expiry seal exactly the old payload.
    let scratch = h.another();
    let writer = scratch.store_with(h.builder().config(config(h)));
    let t0 = now(h);
    let mut bound = writer.load(None).unwrap();
    bound.set_user("alice");
    bound.insert("n", &1u32).unwrap();
    let CookieAction::Set(bound, _) = writer.save(&mut bound).unwrap() else {
        panic!()
    };
    let (plain, _) = create(&writer, 2, Expiry::Default);
    let (stale, _) = create(&writer, 3, Expiry::Default);
    h.advance(HOUR);
    for cookie in [bound.as_cookie_value(), &plain] {
        assert!(matches!(visit(&writer, cookie), CookieAction::Refresh(..)));
    }
    h.advance(HOUR + 30 * 60); // `stale` has been idle 2.5 hours now
    let copied = rows(writer.database());
    assert_eq!(copied.len(), 3);
    for r in &copied {
        let n = with_conn!(&db, |c| diesel::insert_into(t::stored_sessions)
            .values((
                t::sid.eq(&r.sid),
                t::data.eq(&r.data),
                t::version.eq(r.version),
                t::user_key.eq(&r.user_key),
                t::created_at.eq(r.created_at),
                t::updated_at.eq(r.updated_at),
            ))
            .execute(c)
            .unwrap());
        assert_eq!(n, 1);
    }
    // Plus many rows, some idle (the migration must not depend on their
    // content).
    insert_raw(&db, 500, t0, t0);

    // The upgrade, as the application runs it: exactly the new migrations.
    let store = h.builder().config(config(h)).open(&h.url).unwrap();
    let applied = store.run_migrations().unwrap();
    let new: Vec<&str> = migrations::for_backend(h.backend)[v1_migrations(h)..]
        .iter()
        .map(|m| m.name)
        .collect();
    assert!(new.contains(&"2026-12-02-000000_session_expiry"));
    assert_eq!(applied, new);
    assert!(has_expires_at(store.database()));
    if h.backend == stored_session::Backend::Postgres {
        // Built CONCURRENTLY, outside a transaction, and valid.
        #[derive(QueryableByName)]
        struct Valid {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            indisvalid: bool,
        }
        let valid = with_conn!(store.database(), |c| diesel::sql_query(
            "SELECT indisvalid FROM pg_index \
             WHERE indexrelid = 'stored_sessions_expires_at_idx'::regclass"
        )
        .load::<Valid>(c)
        .unwrap());
        assert!(valid.len() == 1 && valid[0].indisvalid);
    }

    // Every old row is there, without a deadline; the live ones load.
    assert_eq!(count(store.database()), 503);
    assert_eq!(expires_at(store.database(), &plain), Some(None));
    let s = store.load(Some(bound.as_cookie_value())).unwrap();
    assert_eq!(
        (s.get::<u32>("n").unwrap(), s.user_id()),
        (Some(1), Some("alice"))
    );
    assert_eq!(s.expiry(), Expiry::Default);
    drop(s);
    assert_eq!(
        store
            .sessions_of("alice", None, Default::default())
            .unwrap()
            .sessions
            .len(),
        1
    );
    assert!(!live(&store, &stale));
    // Their next touch gives them their deadline.
    let action = visit(&store, &plain);
    assert!(matches!(action, CookieAction::Refresh(..)), "{action:?}");
    assert_eq!(
        expires_at(store.database(), &plain),
        Some(Some(now(h) + 2 * HOUR as i64))
    );

    // Trimming takes the expired old rows (under the store's limits) and
    // nothing else.
    assert_eq!(Trim::new().count(&store).unwrap(), 1 + 500);
    assert_eq!(
        Trim::new().batch_size(100).run(&store).unwrap().deleted,
        501
    );
    assert_eq!(count(store.database()), 2);
    // `bound` was last touched 1.5 hours ago, without a deadline: it idles
    // out under the store's timeout like any old row.
    h.advance(HOUR);
    assert!(!live(&store, bound.as_cookie_value()));
    assert!(live(&store, &plain));
    assert_eq!(Trim::new().run(&store).unwrap().deleted, 1);

    // down.sql reverts it (newest first), and it applies again.
    for _ in &new {
        with_conn!(store.database(), |c| c
            .revert_last_migration(migrations_dir(h))
            .unwrap());
    }
    assert!(!has_expires_at(store.database()));
    assert_eq!(count(store.database()), 1);
    assert_eq!(store.run_migrations().unwrap(), new);
    assert!(live(&store, &plain));
}

/// The migrations the diesel CLI would run from `migrations/<backend>` are
/// the embedded ones, with the same files.
fn the_migration_directories_match_the_embedded_migrations(h: &Harness) {
    let dir = format!("{}/migrations/{}", env!("CARGO_MANIFEST_DIR"), h.backend);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let embedded = migrations::for_backend(h.backend);
    assert_eq!(
        names,
        embedded
            .iter()
            .map(|m| m.name.to_owned())
            .collect::<Vec<_>>()
    );
    for m in embedded {
        let read = |file: &str| std::fs::read_to_string(format!("{dir}/{}/{file}", m.name)).ok();
        assert_eq!(read("up.sql").as_deref(), Some(m.up));
        assert_eq!(read("down.sql").as_deref(), Some(m.down));
        assert_eq!(read("metadata.toml").as_deref(), m.metadata);
    }
}

/// Through the adapters' request cycle: the cookie's `Max-Age` follows
/// the session's expiry, including on a plain touch under a policy whose
/// own cookies have none.
#[cfg(feature = "adapters")]
fn the_adapters_write_the_cookie_the_expiry_asks_for(h: &Harness) {
    use stored_session::adapters::{CookiePolicy, Sessions};
    let sessions = Sessions::with_policy(store(h), CookiePolicy::new()).unwrap();
    let pair = |set: &stored_session::adapters::SetCookie| {
        let c = set.as_cookie();
        format!("{}={}", c.name(), c.value())
    };

    // POST /login with "remember me".
    let mut login = sessions.begin(Vec::<String>::new());
    login.insert("user", "alice").unwrap();
    login.set_expiry(Expiry::Idle(REMEMBER));
    let set = login.finish().unwrap().expect("a cookie");
    assert!(
        set.header_value().contains("; Max-Age=2592000"),
        "{}",
        set.header_value()
    );
    let remembered = pair(&set);
    // Without it: a browser-session cookie.
    let mut login = sessions.begin(Vec::<String>::new());
    login.insert("user", "bob").unwrap();
    login.load().unwrap().set_expiry(Expiry::BrowserSession);
    let set = login.finish().unwrap().expect("a cookie");
    assert!(
        !set.header_value().contains("Max-Age"),
        "{}",
        set.header_value()
    );
    let browser = pair(&set);

    // A day later, a read touches both: the remembered cookie is sent
    // again with a fresh 30 days; the browser-session one is left alone.
    h.advance(DAY);
    let mut visit = sessions.begin([remembered.as_str()]);
    assert_eq!(
        visit.get::<String>("user").unwrap().as_deref(),
        Some("alice")
    );
    let again = visit.finish().unwrap().expect("the cookie is refreshed");
    assert_eq!(pair(&again), remembered);
    assert!(again.header_value().contains("; Max-Age=2592000"));
    let mut visit = sessions.begin([browser.as_str()]);
    assert_eq!(visit.get::<String>("user").unwrap(), None); // idle 24 hours: gone
    assert!(visit.finish().unwrap().expect("a removal").is_removal());
}

#[cfg(feature = "adapters")]
mod adapters {
    use super::*;
    backend_suite!(the_adapters_write_the_cookie_the_expiry_asks_for);
}

backend_suite!(
    remember_me_outlives_the_default_idle_but_not_its_own,
    touching_a_remember_me_session_extends_it_by_its_own_window,
    an_absolute_deadline_is_enforced_on_load_and_by_trim,
    a_browser_session_cookie_has_no_max_age_but_the_idle_timeout_holds,
    the_expiry_survives_renew_and_a_conflicting_write,
    changing_the_expiry_rewrites_the_cookie_under_the_same_id,
    trim_deletes_exactly_the_expired_sessions_of_mixed_windows,
    upgrading_a_v1_table_keeps_its_sessions,
    the_migration_directories_match_the_embedded_migrations,
);
