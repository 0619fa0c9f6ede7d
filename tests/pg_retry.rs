//! Work the database aborted to resolve a conflict is run again by the
//! store: SQLSTATE 40001 (`serialization_failure`) and 40P01
//! (`deadlock_detected`) on PostgreSQL, error 1213 on MySQL/MariaDB.
//!
//! * Forced, deterministic failures: a test-only fail point makes the first
//!   N executions of the store's statements fail with the chosen error (a
//!   sequence, which a rollback does not undo, counts them). On PostgreSQL
//!   it is a row-level security policy on `stored_sessions` calling a
//!   function, so that it fires on `SELECT` (a load) as well as on
//!   `INSERT`, `UPDATE` and `DELETE` (a trigger fires on writes only); row
//!   security does not apply to superusers, so the store connects as a
//!   role of its own. On MySQL/MariaDB, triggers (writes only: there are
//!   no `SELECT` triggers) with a MyISAM counter.
//! * A real deadlock (the fail point takes two advisory locks while the
//!   test holds the second and asks for the first), with the server's
//!   messages in English, and in Russian on the pair of
//!   `scripts/pg-standby.sh` (`TEST_PG_FAILOVER_URL`), whose servers can
//!   load the ru_RU.UTF-8 locale: Diesel does not expose 40P01's SQLSTATE,
//!   so the store must recognise the translated text.
//! * A natural serialization failure: a database whose transactions are
//!   `SERIALIZABLE`, and eight writers of one session.
//!
//! How many times the store ran an operation again is read from its one
//! debug line per retry ("… running it again: …"), captured per thread.
//!
//! SQLite is not here: it never aborts a statement to resolve a conflict
//! (writers wait for the lock, in the store's queue and then for
//! `busy_timeout`), so there is nothing to retry.

mod common;
mod log_capture;

use std::sync::Mutex;
use std::thread::ThreadId;

use stored_session::{CookieAction, Error, SessionStore};

/// The store's log lines, by the thread that logged them (the retry line
/// is logged on the caller's thread), for tests running in parallel.
mod capture {
    use super::*;

    pub use crate::log_capture::install;

    /// The store's (target `stored_session`) lines among `lines`.
    fn stores(lines: Vec<(log::Level, String, String)>) -> impl Iterator<Item = String> {
        lines
            .into_iter()
            .filter(|(_, target, _)| target == "stored_session")
            .map(|(_, _, line)| line)
    }

    /// The store's retry lines logged on `thread` so far.
    pub fn retries_on(thread: ThreadId) -> Vec<String> {
        stores(crate::log_capture::lines_on(thread))
            .filter(|line| line.contains("running it again"))
            .collect()
    }

    /// How many retry lines `f` caused on this thread, and its result.
    pub fn retries<T>(f: impl FnOnce() -> T) -> (Vec<String>, T) {
        let me = std::thread::current().id();
        let before = retries_on(me).len();
        let out = f();
        (retries_on(me).split_off(before), out)
    }

    /// Every line of the store (any thread) containing `needle`.
    pub fn containing(needle: &str) -> Vec<String> {
        stores(crate::log_capture::lines())
            .filter(|line| line.contains(needle))
            .collect()
    }
}

/// Creates a session holding `key = value`; its cookie value.
fn create(store: &SessionStore, key: &str, value: &str) -> String {
    let mut s = store.load(None).unwrap();
    s.insert(key, value).unwrap();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a new cookie, got {other:?}"),
    }
}

/// Loads `cookie`, sets `key = value`, saves.
fn update(store: &SessionStore, cookie: &str, key: &str, value: &str) -> Result<(), Error> {
    let mut s = store.load(Some(cookie))?;
    assert!(!s.is_new(), "the session is gone");
    s.insert(key, value)?;
    store.save(&mut s).map(|_| ())
}

/// The value of `key` in the session `cookie` (which must exist).
fn value(store: &SessionStore, cookie: &str, key: &str) -> Option<String> {
    let s = store.load(Some(cookie)).unwrap();
    assert!(!s.is_new(), "the session is gone");
    s.get::<String>(key).unwrap()
}

/// Whether `e` is the typed error of a conflict the store gave up retrying.
fn is_conflict(e: &Error) -> bool {
    matches!(
        e,
        Error::Database(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::SerializationFailure,
            _
        ))
    )
}

/// No log line holds a raw cookie id.
fn no_raw_ids(cookies: &[&str]) {
    for cookie in cookies {
        let leaked = capture::containing(cookie);
        assert!(leaked.is_empty(), "raw id in log lines: {leaked:?}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use diesel::sql_types::BigInt;
    use stored_session::{Keyring, PoolOptions};

    use super::*;

    use crate::common::server_url as server;

    /// `url` with its user info and its database (the URL path) replaced;
    /// hosts and query kept (a multi-host URL stays one).
    fn rewrite(url: &str, userinfo: &str, database: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a server URL");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let query = tail.find('?').map_or("", |i| &tail[i..]);
        format!("{scheme}://{userinfo}@{hosts}/{database}{query}")
    }

    /// A database for one test, owned by a role of its own (no superuser
    /// rights, so row security applies to it), dropped with the role.
    struct TestDb {
        server: String,
        name: String,
        /// The role's URL: what the store connects with.
        app_url: String,
        /// The superuser's URL of the same database.
        admin_url: String,
    }

    impl TestDb {
        fn create(server: &str) -> TestDb {
            let hex = stored_session::SessionId::generate()
                .stored_id()
                .to_string();
            let name = format!("ss_test_{}", &hex[3..19]);
            let mut conn = PgConnection::establish(server)
                .unwrap_or_else(|e| panic!("{server} is unreachable: {e}"));
            // A password, so that the role also logs in where the server
            // does not trust 127.0.0.1.
            let password = &hex[20..40];
            for sql in [
                format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
                format!("CREATE DATABASE {name} OWNER {name}"),
            ] {
                diesel::sql_query(sql).execute(&mut conn).unwrap();
            }
            let admin_user = user_of(server);
            TestDb {
                server: server.to_owned(),
                app_url: rewrite(server, &format!("{name}:{password}"), &name),
                admin_url: rewrite(server, &admin_user, &name),
                name,
            }
        }

        fn admin(&self) -> PgConnection {
            PgConnection::establish(&self.admin_url).unwrap()
        }

        fn execute(&self, sql: &str) {
            self.admin()
                .batch_execute(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }

        /// A store on this database, as the role, with its migrations.
        fn store(&self) -> SessionStore {
            SessionStore::builder(Keyring::generate())
                .pool(PoolOptions::default().max_size(10))
                .open_migrated(&self.app_url)
                .expect("open store")
        }

        /// The fail point (see the module docs), off until [`plan`].
        fn install_fail_point(&self) {
            self.execute(
                "CREATE TABLE ss_fail_plan (
                     sqlstate text NOT NULL, message text NOT NULL, detail text,
                     failures bigint NOT NULL, deadlock boolean NOT NULL DEFAULT false);
                 CREATE SEQUENCE ss_fail_count;
                 CREATE FUNCTION ss_fail_point() RETURNS boolean
                 LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public AS $$
                 DECLARE p ss_fail_plan;
                 BEGIN
                     SELECT * INTO p FROM ss_fail_plan LIMIT 1;
                     IF NOT FOUND OR nextval('ss_fail_count') > p.failures THEN
                         RETURN true;
                     END IF;
                     IF p.deadlock THEN
                         -- The test holds 7002 and waits for 7001.
                         PERFORM pg_advisory_xact_lock(7001);
                         PERFORM pg_advisory_xact_lock(7002);
                         RETURN true;
                     END IF;
                     IF p.detail IS NULL THEN
                         RAISE EXCEPTION USING ERRCODE = p.sqlstate, MESSAGE = p.message;
                     END IF;
                     RAISE EXCEPTION USING ERRCODE = p.sqlstate, MESSAGE = p.message,
                         DETAIL = p.detail;
                 END $$;
                 ALTER TABLE stored_sessions ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE stored_sessions FORCE ROW LEVEL SECURITY;
                 CREATE POLICY ss_fail ON stored_sessions
                     USING (ss_fail_point()) WITH CHECK (ss_fail_point());",
            );
        }

        /// The next `failures` executions of the store's statements fail
        /// with `sqlstate` and `message` (and `detail`).
        fn plan(&self, sqlstate: &str, message: &str, detail: Option<&str>, failures: i64) {
            let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
            self.execute(&format!(
                "DELETE FROM ss_fail_plan; ALTER SEQUENCE ss_fail_count RESTART;
                 INSERT INTO ss_fail_plan VALUES ({}, {}, {}, {failures}, false);",
                quote(sqlstate),
                quote(message),
                detail.map_or("NULL".to_owned(), quote),
            ));
        }

        fn plan_deadlocks(&self, failures: i64) {
            self.execute(&format!(
                "DELETE FROM ss_fail_plan; ALTER SEQUENCE ss_fail_count RESTART;
                 INSERT INTO ss_fail_plan VALUES ('', '', NULL, {failures}, true);"
            ));
        }

        fn clear(&self) {
            self.execute("DELETE FROM ss_fail_plan");
        }

        /// How many times the fail point ran since the last plan.
        fn fail_point_calls(&self) -> i64 {
            #[derive(QueryableByName)]
            struct N {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            diesel::sql_query(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS n FROM ss_fail_count",
            )
            .get_result::<N>(&mut self.admin())
            .unwrap()
            .n
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            if let Ok(mut conn) = PgConnection::establish(&self.server) {
                for sql in [
                    format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
                    format!("DROP ROLE IF EXISTS {}", self.name),
                ] {
                    let _ = diesel::sql_query(sql).execute(&mut conn);
                }
            }
        }
    }

    fn user_of(url: &str) -> String {
        let rest = url.split_once("://").unwrap().1;
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        authority
            .rsplit_once('@')
            .map_or("postgres", |(u, _)| u)
            .to_owned()
    }

    /// 40001 on each kind of statement the store runs: a create (INSERT),
    /// a load (SELECT), an update (UPDATE) and a destroy (DELETE) each
    /// succeed after three failures, with three retries and the data
    /// intact.
    #[test]
    fn forced_serialization_failures_are_retried_on_every_statement() {
        capture::install();
        let Some(server) = server("TEST_POSTGRES_URL") else {
            return;
        };
        let db = TestDb::create(&server);
        let store = db.store();
        db.install_fail_point();
        let failures = 3;
        let tag = format!("forced 40001 ({})", db.name);
        let expect_retried = |what: &str, retries: Vec<String>| {
            assert_eq!(retries.len(), failures as usize, "{what}: {retries:?}");
            assert!(
                retries.iter().all(|line| line.contains(&tag)),
                "{retries:?}"
            );
            assert!(
                db.fail_point_calls() > failures,
                "{what}: the fail point ran"
            );
        };

        db.plan("40001", &tag, None, failures);
        let (retries, cookie) = capture::retries(|| create(&store, "a", "1"));
        expect_retried("create", retries);

        db.plan("40001", &tag, None, failures);
        let (retries, loaded) = capture::retries(|| store.load(Some(&cookie)));
        expect_retried("load", retries);
        assert_eq!(
            loaded.unwrap().get::<String>("a").unwrap().as_deref(),
            Some("1")
        );

        // The load's plan is used up: this load runs at once.
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("b", "2").unwrap();
        db.plan("40001", &tag, None, failures);
        let (retries, updated) = capture::retries(|| store.save(&mut s));
        expect_retried("update", retries);
        assert!(matches!(updated, Ok(CookieAction::Keep)), "{updated:?}");
        db.clear();
        assert_eq!(value(&store, &cookie, "a").as_deref(), Some("1"));
        assert_eq!(value(&store, &cookie, "b").as_deref(), Some("2"));

        db.plan("40001", &tag, None, failures);
        let (retries, destroyed) = capture::retries(|| store.destroy(&cookie));
        expect_retried("destroy", retries);
        assert!(destroyed.unwrap());
        db.clear();
        assert!(store.load(Some(&cookie)).unwrap().is_new());
        no_raw_ids(&[&cookie]);
    }

    /// PostgreSQL's 40P01 message in English and in every language of
    /// its message catalogs (as `postgres-15.mo` has them), as a server
    /// with that `lc_messages` sends it: each is retried. So is an
    /// unknown translation whose detail names the lock modes, which
    /// PostgreSQL never translates. A 40P01 with neither (raised by hand
    /// with a message of its own) is not recognised: Diesel does not
    /// expose the SQLSTATE.
    #[test]
    fn forced_deadlocks_are_retried_whatever_the_language() {
        capture::install();
        let Some(server) = server("TEST_POSTGRES_URL") else {
            return;
        };
        let db = TestDb::create(&server);
        let store = db.store();
        let cookie = create(&store, "start", "0");
        db.install_fail_point();
        let translations = [
            "deadlock detected",
            "Verklemmung (Deadlock) entdeckt",
            "se ha detectado un deadlock",
            "interblocage (deadlock) détecté",
            "rilevato deadlock",
            "デッドロックを検出しました",
            "ნაპოვნია ურთიერთბლოკირება",
            "deadlock 발생했음",
            "обнаружена взаимоблокировка",
            "deadlock upptäckt",
            "виявлено взаємне блокування",
            "检测到死锁",
            "發現死結",
        ];
        let detail = "Süreç 101, işlem 7 üzerinde ShareLock bekliyor; süreç 102 engelliyor.\n\
                      Süreç 102, işlem 8 üzerinde ShareLock bekliyor; süreç 101 engelliyor.";
        let mut cases: Vec<(&str, Option<&str>)> =
            translations.iter().map(|&m| (m, None)).collect();
        cases.push(("kilitlenme algılandı", Some(detail)));
        for (i, (message, detail)) in cases.iter().enumerate() {
            let mut s = store.load(Some(&cookie)).unwrap();
            s.insert(format!("k{i}"), message).unwrap();
            db.plan("40P01", message, *detail, 1);
            let (retries, saved) = capture::retries(|| store.save(&mut s));
            assert!(saved.is_ok(), "{message}: {saved:?}");
            assert_eq!(retries.len(), 1, "{message}: {retries:?}");
            assert!(retries[0].contains(message), "{retries:?}");
            db.clear();
        }
        for (i, (message, _)) in cases.iter().enumerate() {
            assert_eq!(
                value(&store, &cookie, &format!("k{i}")).as_deref(),
                Some(*message)
            );
        }

        // No known text, no detail: an error, not a retry.
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("unrecognised", "x").unwrap();
        db.plan("40P01", "a conflict of our own", None, 1);
        let (retries, saved) = capture::retries(|| store.save(&mut s));
        db.clear();
        assert!(retries.is_empty(), "{retries:?}");
        assert!(matches!(saved, Err(Error::Database(_))), "{saved:?}");
        assert_eq!(value(&store, &cookie, "unrecognised"), None);
        no_raw_ids(&[&cookie]);
    }

    /// More failures than the store retries: the caller gets the typed
    /// error after a bounded number of attempts, and nothing is lost or
    /// half-written.
    #[test]
    fn more_failures_than_the_retry_budget_give_a_typed_error() {
        capture::install();
        let Some(server) = server("TEST_POSTGRES_URL") else {
            return;
        };
        let db = TestDb::create(&server);
        let store = db.store();
        let cookie = create(&store, "a", "1");
        db.install_fail_point();
        let tag = format!("endless 40001 ({})", db.name);

        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("a", "2").unwrap();
        s.insert("b", "2").unwrap();
        db.plan("40001", &tag, None, i64::MAX);
        let started = Instant::now();
        let (retries, saved) = capture::retries(|| store.save(&mut s));
        let took = started.elapsed();
        let err = saved.expect_err("every attempt fails");
        assert!(is_conflict(&err), "{err:#?}");
        assert!(err.to_string().contains(&tag), "{err}");
        // Each failed attempt met the fail point once, and all but the
        // last were followed by a retry line.
        let attempts = db.fail_point_calls();
        assert_eq!(attempts, retries.len() as i64 + 1, "{retries:?}");
        assert!((2..=10).contains(&attempts), "{attempts} attempts");
        assert!(took < Duration::from_secs(2), "gave up after {took:?}");
        eprintln!("gave up after {attempts} attempts in {took:?}");

        let (retries, destroyed) = capture::retries(|| store.destroy(&cookie));
        assert!(is_conflict(&destroyed.expect_err("every attempt fails")));
        assert!(!retries.is_empty());
        let (_, loaded) = capture::retries(|| store.load(Some(&cookie)));
        assert!(is_conflict(&loaded.expect_err("every attempt fails")));

        db.clear();
        assert_eq!(value(&store, &cookie, "a").as_deref(), Some("1"));
        assert_eq!(value(&store, &cookie, "b"), None);
        no_raw_ids(&[&cookie]);
    }

    /// A database whose transactions are all SERIALIZABLE, eight writers
    /// of distinct keys of one session: the server aborts some statements
    /// with 40001 ("could not serialize access due to concurrent update"),
    /// the store runs them again, every call either succeeds or returns
    /// the typed error, and every key whose save succeeded is there.
    #[test]
    fn natural_serialization_failures_under_serializable() {
        capture::install();
        let Some(server) = server("TEST_POSTGRES_URL") else {
            return;
        };
        let db = TestDb::create(&server);
        db.execute(&format!(
            "ALTER DATABASE {} SET default_transaction_isolation = 'serializable'",
            db.name
        ));
        let store = db.store();
        // The store's connections run serializable transactions.
        let isolation = match store.database() {
            stored_session::Database::Postgres(pool) => {
                #[derive(QueryableByName)]
                struct I {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    transaction_isolation: String,
                }
                diesel::sql_query("SHOW transaction_isolation")
                    .get_result::<I>(&mut *pool.get().unwrap())
                    .unwrap()
                    .transaction_isolation
            }
            _ => unreachable!(),
        };
        assert_eq!(isolation, "serializable");
        let cookie = create(&store, "owner", "test");
        let threads = 8;
        let per_thread = 25;
        let outcomes = Mutex::new(Vec::new());
        let workers = Mutex::new(Vec::new());
        let started = Instant::now();
        std::thread::scope(|scope| {
            for t in 0..threads {
                let (store, cookie, outcomes, workers) = (&store, &cookie, &outcomes, &workers);
                scope.spawn(move || {
                    workers.lock().unwrap().push(std::thread::current().id());
                    for i in 0..per_thread {
                        let key = format!("t{t}-k{i}");
                        let result = update(store, cookie, &key, &format!("{t}/{i}"));
                        outcomes
                            .lock()
                            .unwrap()
                            .push((key, format!("{t}/{i}"), result));
                    }
                });
            }
        });
        let took = started.elapsed();
        let outcomes = outcomes.into_inner().unwrap();
        let retries: usize = workers
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|t| capture::retries_on(t).len())
            .sum();
        let s = store.load(Some(&cookie)).unwrap();
        let (mut saved, mut failed) = (0, 0);
        for (key, expected, result) in &outcomes {
            match result {
                Ok(()) => {
                    saved += 1;
                    assert_eq!(
                        s.get::<String>(key).unwrap().as_deref(),
                        Some(expected.as_str()),
                        "an acknowledged key was lost"
                    );
                }
                Err(e) => {
                    assert!(is_conflict(e), "{key}: not a conflict: {e:#?}");
                    failed += 1;
                }
            }
        }
        eprintln!(
            "{threads} writers x {per_thread} saves under SERIALIZABLE in {took:?}: \
             {saved} saved, {failed} gave up, {retries} retries"
        );
        assert_eq!(saved + failed, threads * per_thread);
        // The conflicts were real, and retried.
        assert!(retries > 0, "no serialization failure was retried");
        assert!(
            !capture::containing("could not serialize access").is_empty(),
            "the retries were not for serialization failures"
        );
        // Most saves get through within the retry budget (here about 96%;
        // the rest return the typed error).
        assert!(saved * 2 >= threads * per_thread, "only {saved} saved");
        no_raw_ids(&[&cookie]);
    }

    /// A real deadlock between the store's statement and another session:
    /// the server aborts the store's transaction with 40P01, in the
    /// language of `lc_messages`, and the store runs it again.
    fn real_deadlock(server: &str, lc_messages: Option<&str>) {
        let db = TestDb::create(server);
        if let Some(lc) = lc_messages {
            db.execute(&format!(
                "ALTER DATABASE {} SET lc_messages = '{lc}'",
                db.name
            ));
        }
        db.execute(&format!(
            "ALTER DATABASE {} SET deadlock_timeout = '200ms'",
            db.name
        ));
        let store = db.store();
        let cookie = create(&store, "a", "1");
        db.install_fail_point();
        let (ready_tx, ready_rx) = mpsc::channel();
        let admin_url = db.admin_url.clone();
        let other = std::thread::spawn(move || {
            let mut conn = PgConnection::establish(&admin_url).unwrap();
            // This side never runs the deadlock check: the store's does,
            // and aborts its own transaction.
            conn.batch_execute("SET deadlock_timeout = '60s'; SELECT pg_advisory_lock(7002)")
                .unwrap();
            ready_tx.send(()).unwrap();
            let until = Instant::now() + Duration::from_secs(10);
            loop {
                #[derive(QueryableByName)]
                struct N {
                    #[diesel(sql_type = BigInt)]
                    n: i64,
                }
                let held = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' \
                     AND objid = 7001 AND granted AND pid <> pg_backend_pid()",
                )
                .get_result::<N>(&mut conn)
                .unwrap()
                .n;
                if held > 0 {
                    break;
                }
                assert!(Instant::now() < until, "the store never took lock 7001");
                std::thread::sleep(Duration::from_millis(5));
            }
            conn.batch_execute("SELECT pg_advisory_lock(7001); SELECT pg_advisory_unlock_all()")
                .unwrap();
        });
        ready_rx.recv().unwrap();
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("b", "2").unwrap();
        // The other session holds 7002: the save's statement takes 7001,
        // waits for 7002, the other session asks for 7001.
        db.plan_deadlocks(1);
        let (retries, updated) = capture::retries(|| store.save(&mut s));
        other.join().unwrap();
        db.clear();
        assert!(updated.is_ok(), "{updated:?}");
        eprintln!("retried after: {retries:?}");
        assert_eq!(retries.len(), 1, "{retries:?}");
        let expected = match lc_messages {
            Some(_) => "обнаружена взаимоблокировка",
            None => "deadlock detected",
        };
        assert!(retries[0].contains(expected), "{retries:?}");
        assert_eq!(value(&store, &cookie, "a").as_deref(), Some("1"));
        assert_eq!(value(&store, &cookie, "b").as_deref(), Some("2"));
        no_raw_ids(&[&cookie]);
    }

    #[test]
    fn a_real_deadlock_is_retried() {
        capture::install();
        if let Some(server) = server("TEST_POSTGRES_URL") {
            real_deadlock(&server, None);
        }
    }

    /// The same on a server speaking Russian: the pair of
    /// `scripts/pg-standby.sh` can load ru_RU.UTF-8 (this system's own
    /// server has only the C locales, so `SET lc_messages` to another
    /// language fails there).
    #[test]
    fn a_real_deadlock_reported_in_russian_is_retried() {
        capture::install();
        let Some(server) = server("TEST_PG_FAILOVER_URL") else {
            return;
        };
        let mut conn = PgConnection::establish(&server)
            .unwrap_or_else(|e| panic!("TEST_PG_FAILOVER_URL is unreachable: {e}"));
        if let Err(e) = conn.batch_execute("SET lc_messages = 'ru_RU.UTF-8'") {
            let note = format!(
                "the server cannot load ru_RU.UTF-8 ({e}); scripts/pg-standby.sh builds it with localedef"
            );
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{note}");
            }
            eprintln!("note: {note}; skipping");
            return;
        }
        real_deadlock(&server, Some("ru_RU.UTF-8"));
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;

    use super::*;
    use crate::common::Harness;

    /// Triggers that make the next N writes of the table fail with error
    /// 1213 (SQLSTATE 40001) and a message without the word "deadlock",
    /// so that only the error number can make the store retry; a MyISAM
    /// counter, which a rollback does not undo.
    fn install(h: &Harness) {
        let mut conn = MysqlConnection::establish(&h.url).unwrap();
        conn.batch_execute(
            "CREATE TABLE ss_fail (calls BIGINT NOT NULL, failures BIGINT NOT NULL) ENGINE=MyISAM;
             INSERT INTO ss_fail VALUES (0, 0);",
        )
        .unwrap();
        for (name, event) in [("i", "INSERT"), ("u", "UPDATE"), ("d", "DELETE")] {
            diesel::sql_query(format!(
                "CREATE TRIGGER ss_fail_{name} BEFORE {event} ON stored_sessions FOR EACH ROW
                 BEGIN
                     UPDATE ss_fail SET calls = calls + 1;
                     IF (SELECT calls <= failures FROM ss_fail) THEN
                         SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213,
                             MESSAGE_TEXT = 'forced conflict (test trigger)';
                     END IF;
                 END"
            ))
            .execute(&mut conn)
            .unwrap();
        }
    }

    fn plan(h: &Harness, failures: i64) {
        let mut conn = MysqlConnection::establish(&h.url).unwrap();
        diesel::sql_query(format!(
            "UPDATE ss_fail SET calls = 0, failures = {failures}"
        ))
        .execute(&mut conn)
        .unwrap();
    }

    fn calls(h: &Harness) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            calls: i64,
        }
        let mut conn = MysqlConnection::establish(&h.url).unwrap();
        diesel::sql_query("SELECT calls FROM ss_fail")
            .get_result::<N>(&mut conn)
            .unwrap()
            .calls
    }

    #[test]
    fn forced_1213_is_retried_on_every_write() {
        capture::install();
        let Some(h) = Harness::mysql() else {
            return;
        };
        let store = h.store();
        install(&h);
        let failures = 3;
        let expect = |what: &str, retries: Vec<String>| {
            assert_eq!(retries.len(), failures as usize, "{what}: {retries:?}");
            assert!(
                retries.iter().all(|l| l.contains("forced conflict")),
                "{retries:?}"
            );
            assert_eq!(calls(&h), failures + 1, "{what}");
        };
        plan(&h, failures);
        let (retries, cookie) = capture::retries(|| create(&store, "a", "1"));
        expect("create", retries);
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("b", "2").unwrap();
        plan(&h, failures);
        let (retries, saved) = capture::retries(|| store.save(&mut s));
        assert!(saved.is_ok(), "{saved:?}");
        expect("update", retries);
        assert_eq!(value(&store, &cookie, "a").as_deref(), Some("1"));
        assert_eq!(value(&store, &cookie, "b").as_deref(), Some("2"));
        plan(&h, failures);
        let (retries, destroyed) = capture::retries(|| store.destroy(&cookie));
        assert!(destroyed.unwrap());
        expect("destroy", retries);
        assert!(store.load(Some(&cookie)).unwrap().is_new());
        no_raw_ids(&[&cookie]);
    }

    #[test]
    fn more_1213s_than_the_retry_budget_give_a_typed_error() {
        capture::install();
        let Some(h) = Harness::mysql() else {
            return;
        };
        let store = h.store();
        let cookie = create(&store, "a", "1");
        install(&h);
        let mut s = store.load(Some(&cookie)).unwrap();
        s.insert("a", "2").unwrap();
        plan(&h, i64::MAX);
        let (retries, saved) = capture::retries(|| store.save(&mut s));
        let err = saved.expect_err("every attempt fails");
        assert!(is_conflict(&err), "{err:#?}");
        assert_eq!(calls(&h), retries.len() as i64 + 1, "{retries:?}");
        assert!((2..=10).contains(&calls(&h)));
        let (_, destroyed) = capture::retries(|| store.destroy(&cookie));
        assert!(is_conflict(&destroyed.expect_err("every attempt fails")));
        plan(&h, 0);
        assert_eq!(value(&store, &cookie, "a").as_deref(), Some("1"));
        no_raw_ids(&[&cookie]);
    }
}
