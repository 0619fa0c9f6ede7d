//! Fail fast when the database stops answering (issue 11, point 4).
//!
//! * `frozen_*` (PostgreSQL, MariaDB/MySQL): the store talks to the server
//!   through a loopback proxy ([`proxy_support::Proxy`]). With the proxy
//!   frozen (sockets open, nothing forwarded: no keepalive, no
//!   `TCP_USER_TIMEOUT` and no server-side timeout can fire), a commit that
//!   holds a connection mid-request, loads, a new session's insert and a
//!   trim, all concurrent on a pool of two, must each end with a typed
//!   error within acquire timeout + statement timeout + 1 s; after `thaw`
//!   the same store serves loads and commits again, with no restart.
//! * `killed_while_frozen_*`: the frozen connections are then closed by the
//!   proxy: the calls still end within the bound, the pool replaces the
//!   dead connections, and the store works once the proxy forwards again.
//! * `own_pool_*`: a pool the application built itself and passed to
//!   `StoreBuilder::build` gets the client-side deadline too: with the
//!   proxy frozen, a load ends with `Error::Timeout` at the builder's
//!   operation timeout.
//! * `lock_wait_*`: another connection holds a session's row lock; a commit
//!   of that session ends with the server's lock-timeout error after the
//!   configured 1 s (before the client-side deadline), and the connection
//!   stays in the pool. `slow_statement_*`: a statement on one of the
//!   store's connections is cancelled by the server after the statement
//!   timeout (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`).
//! * `sqlite_writers_blocked_elsewhere`: another connection holds SQLite's
//!   write lock; concurrent commits of this process (which queue on the
//!   store's in-process writer queue) must each fail within the acquire
//!   timeout plus the busy timeout plus 1 s, not one busy timeout after
//!   another; after the lock is released, commits succeed.
//!
//! Each test is bounded: a call that has not returned by its bound plus
//! five seconds fails the test (after the proxy is thawed, so that nothing
//! is left hanging).

mod common;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod proxy_support;
mod reliability_support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Harness;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use proxy_support::Proxy;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use reliability_support::cookie_of;
use reliability_support::create;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use stored_session::Database;
#[cfg(any(feature = "postgres", feature = "mysql"))]
use stored_session::PoolOptions;
use stored_session::{CookieAction, Error, SessionStore};

/// One store call, run on its own thread.
type Call = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// The pool's acquire timeout in these tests.
const ACQUIRE: Duration = Duration::from_secs(1);
/// The statement timeout (SQLite: the busy timeout) in these tests.
const STATEMENT: Duration = Duration::from_secs(1);

/// Held by every test of this file: they count the process's worker
/// threads and measure elapsed times, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The pool size in these tests.
#[cfg(any(feature = "postgres", feature = "mysql"))]
const POOL: usize = 2;

/// What every store call must beat: acquire + statement + 1 s.
fn bound() -> Duration {
    ACQUIRE + STATEMENT + Duration::from_secs(1)
}

/// Runs each call on its own thread, all at once; returns (name, result,
/// elapsed) of each, or panics (after `cleanup`) when one has not returned
/// within the bound plus 5 s.
fn concurrently(
    calls: Vec<(&'static str, Call)>,
    cleanup: impl FnOnce(),
) -> Vec<(&'static str, Result<(), Error>, Duration)> {
    let (tx, rx) = mpsc::channel();
    let n = calls.len();
    for (name, call) in calls {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = call();
            let _ = tx.send((name, result, started.elapsed()));
        });
        // A little apart, so the first calls hold the connections.
        std::thread::sleep(Duration::from_millis(20));
    }
    let give_up = Instant::now() + bound() + Duration::from_secs(5);
    let mut out = Vec::new();
    while out.len() < n {
        match rx.recv_timeout(give_up.saturating_duration_since(Instant::now())) {
            Ok(r) => out.push(r),
            Err(_) => {
                cleanup();
                let done: Vec<_> = out.iter().map(|(name, _, _)| *name).collect();
                panic!(
                    "only {done:?} of {n} calls returned within {:?} (the bound is {:?})",
                    bound() + Duration::from_secs(5),
                    bound()
                );
            }
        }
    }
    out
}

/// Load, change and commit one session; `Ok` only when it was written.
fn bump(store: &SessionStore, cookie: &str) -> Result<u64, Error> {
    let mut s = store.load(Some(cookie))?;
    assert!(!s.is_new(), "the session is gone");
    let n = s.get::<u64>("n")?.unwrap_or(0) + 1;
    s.insert("n", &n)?;
    let _ = store.save(&mut s)?;
    Ok(n)
}

/// Retries `bump` until it succeeds; the time it took.
fn recovery(store: &SessionStore, cookie: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        match bump(store, cookie) {
            Ok(_) => return started.elapsed(),
            Err(e) if started.elapsed() < within => {
                eprintln!("not yet recovered after {:?}: {e}", started.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("the store did not recover within {within:?}: {e}"),
        }
    }
}

/// Opens `n` connections of the store's pool at once and returns them.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn open_connections(store: &SessionStore, n: usize) {
    match store.database() {
        #[cfg(feature = "postgres")]
        Database::Postgres(pool) => drop((0..n).map(|_| pool.get().unwrap()).collect::<Vec<_>>()),
        #[cfg(feature = "mysql")]
        Database::Mysql(pool) => drop((0..n).map(|_| pool.get().unwrap()).collect::<Vec<_>>()),
        _ => unreachable!(),
    }
}

/// How many of the store's database worker threads this process has
#[cfg(any(feature = "postgres", feature = "mysql"))]
/// (Linux; `None` elsewhere).
fn worker_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim() == "stored-sess-db")
            .count(),
    )
}

/// The test timeouts: a small pool, a short acquire wait, and server-side
/// statement and lock timeouts of `STATEMENT`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn test_pool() -> PoolOptions {
    PoolOptions::default()
        .max_size(POOL as u32)
        .acquire_timeout(ACQUIRE)
        .statement_timeout(Some(STATEMENT))
        .lock_timeout(Some(STATEMENT))
}

/// A store on `h`'s database through `proxy`, with the test timeouts.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn store_via(h: &Harness, proxy: &Proxy) -> SessionStore {
    h.builder()
        .pool(test_pool())
        .open_migrated(&proxy.url_for(&h.url))
        .expect("open the store through the proxy")
}

/// The calls the frozen tests make: a commit holding a connection
#[cfg(any(feature = "postgres", feature = "mysql"))]
/// mid-request (`held`: loaded before the freeze), loads, an insert, a trim.
fn calls_on_frozen(store: &SessionStore, cookies: &[String]) -> Vec<(&'static str, Call)> {
    let mut held = store.load(Some(&cookies[0])).unwrap();
    held.insert("n", &1000u64).unwrap();
    let (s1, s2, s3, s4, s5) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
    );
    let (c1, c2) = (cookies[1].clone(), cookies[2].clone());
    vec![
        (
            "commit (held mid-request)",
            Box::new(move || s1.save(&mut held).map(|_| ())),
        ),
        ("load", Box::new(move || s2.load(Some(&c1)).map(|_| ()))),
        ("load+commit", Box::new(move || bump(&s3, &c2).map(|_| ()))),
        (
            "new session commit",
            Box::new(move || {
                let mut s = s4.load(None)?;
                s.insert("k", &1u8)?;
                s4.save(&mut s).map(|_| ())
            }),
        ),
        (
            "trim",
            Box::new(move || stored_session::trim_inactive(&s5).map(|_| ())),
        ),
    ]
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn frozen(h: &Harness) {
    let proxy = Proxy::start(proxy_support::upstream_of(&h.url));
    let store = store_via(h, &proxy);
    let cookies: Vec<String> = (0..3).map(|i| create(&store, &[("n", i as u64)])).collect();
    // Both pooled connections open and idle.
    open_connections(&store, POOL);
    let threads_before = worker_threads();
    let calls = calls_on_frozen(&store, &cookies);

    proxy.freeze();
    let frozen_at = Instant::now();
    let results = concurrently(calls, || proxy.thaw());
    let mut worst = Duration::ZERO;
    for (name, result, elapsed) in &results {
        eprintln!("{name}: {elapsed:?}: {result:?}");
        match result {
            Err(Error::Timeout { .. } | Error::PoolTimeout { .. }) => {}
            other => panic!("{name}: expected a timeout error, got {other:?}"),
        }
        assert!(
            *elapsed <= bound(),
            "{name} took {elapsed:?} to fail; the bound is {:?}",
            bound()
        );
        worst = worst.max(*elapsed);
    }
    // The held commit and the first load each held a connection (the
    // store's deadline, not the pool's acquire timeout, ended them).
    let stuck = results
        .iter()
        .filter(|(_, r, _)| matches!(r, Err(Error::Timeout { .. })))
        .count();
    assert_eq!(stuck, POOL, "calls stuck on a connection: {results:?}");
    eprintln!(
        "frozen {}: slowest error after {worst:?} (bound {:?})",
        h.backend,
        bound()
    );

    // Still frozen: later calls fail within the bound too, and start no
    // thread: the stuck workers hold every connection.
    let more = (0..8)
        .map(|_| {
            let (store, c) = (store.clone(), cookies[1].clone());
            let call: Call = Box::new(move || store.load(Some(&c)).map(|_| ()));
            ("load", call)
        })
        .collect();
    for (name, result, elapsed) in concurrently(more, || proxy.thaw()) {
        assert!(result.is_err(), "{name} succeeded through a frozen proxy");
        assert!(elapsed <= bound(), "{name} took {elapsed:?}");
    }
    if let (Some(before), Some(n)) = (threads_before, worker_threads()) {
        assert!(
            n <= before + POOL,
            "{n} database worker threads ({before} before) for a pool of {POOL}"
        );
    }

    proxy.thaw();
    let recovered = recovery(&store, &cookies[1], Duration::from_secs(10));
    eprintln!(
        "frozen {}: thawed after {:?}, serving again {recovered:?} after the thaw",
        h.backend,
        frozen_at.elapsed() - recovered
    );
    assert!(recovered <= bound(), "recovery took {recovered:?}");
    // No poisoned pool: loads and commits keep working, on every session.
    for _ in 0..10 {
        for c in &cookies {
            bump(&store, c).unwrap();
        }
    }
    let mut s = store.load(None).unwrap();
    s.insert("after", &true).unwrap();
    let cookie = cookie_of(store.save(&mut s).unwrap());
    assert_eq!(
        store
            .load(Some(&cookie))
            .unwrap()
            .get::<bool>("after")
            .unwrap(),
        Some(true)
    );
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn killed_while_frozen(h: &Harness) {
    let proxy = Proxy::start(proxy_support::upstream_of(&h.url));
    let store = store_via(h, &proxy);
    let cookies: Vec<String> = (0..3).map(|i| create(&store, &[("n", i as u64)])).collect();
    let calls = calls_on_frozen(&store, &cookies);

    proxy.freeze();
    // Once the calls are stuck, the proxy closes every connection.
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            proxy.kill();
        });
        concurrently(calls, || proxy.thaw())
    });
    for (name, result, elapsed) in &results {
        eprintln!("{name}: {elapsed:?}: {result:?}");
        assert!(result.is_err(), "{name} succeeded through a frozen proxy");
        assert!(*elapsed <= bound(), "{name} took {elapsed:?}");
    }
    proxy.thaw();
    let recovered = recovery(&store, &cookies[1], Duration::from_secs(10));
    eprintln!(
        "killed {}: serving again {recovered:?} after the thaw",
        h.backend
    );
    // Every connection of the pool was replaced: they all work.
    std::thread::scope(|s| {
        for c in &cookies {
            let store = &store;
            s.spawn(move || {
                for _ in 0..5 {
                    bump(store, c).unwrap();
                }
            });
        }
    });
}

/// The number of open connections in the store's pool.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn pool_connections(store: &SessionStore) -> u32 {
    match store.database() {
        #[cfg(feature = "postgres")]
        Database::Postgres(pool) => pool.state().connections,
        #[cfg(feature = "mysql")]
        Database::Mysql(pool) => pool.state().connections,
        _ => unreachable!(),
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn lock_wait(h: &Harness) {
    use diesel::connection::SimpleConnection;

    let store = h.builder().pool(test_pool()).open_migrated(&h.url).unwrap();
    let cookie = create(&store, &[("n", 1u64)]);
    let mut held = store.load(Some(&cookie)).unwrap();
    held.insert("n", &2u64).unwrap();
    let connections = pool_connections(&store);

    // Another client locks every row until it ends its transaction.
    let lock = "SELECT id FROM stored_sessions FOR UPDATE";
    let mut release: Box<dyn FnMut()> = match h.backend {
        #[cfg(feature = "postgres")]
        stored_session::Backend::Postgres => {
            use diesel::Connection;
            let mut raw = diesel::PgConnection::establish(&h.url).unwrap();
            raw.batch_execute(&format!("BEGIN; {lock}")).unwrap();
            Box::new(move || raw.batch_execute("ROLLBACK").unwrap())
        }
        #[cfg(feature = "mysql")]
        stored_session::Backend::Mysql => {
            use diesel::Connection;
            let mut raw = diesel::MysqlConnection::establish(&h.url).unwrap();
            raw.batch_execute("START TRANSACTION").unwrap();
            raw.batch_execute(lock).unwrap();
            Box::new(move || raw.batch_execute("ROLLBACK").unwrap())
        }
        _ => unreachable!(),
    };
    let s1 = store.clone();
    let calls: Vec<(&'static str, Call)> = vec![(
        "commit (row locked elsewhere)",
        Box::new(move || s1.save(&mut held).map(|_| ())),
    )];
    let results = concurrently(calls, &mut release);
    let (name, result, elapsed) = &results[0];
    eprintln!("lock wait {}: {name}: {elapsed:?}: {result:?}", h.backend);
    // The server's lock timeout, not the client's deadline (1.5 s).
    assert!(
        matches!(result, Err(Error::Database(_))),
        "expected the server's lock-timeout error, got {result:?}"
    );
    assert!(
        *elapsed >= STATEMENT.mul_f32(0.9) && *elapsed < STATEMENT + Duration::from_millis(450),
        "the lock wait ended after {elapsed:?}"
    );
    // The connection answered, so the pool kept it (except on MySQL, where
    // it is replaced: its failed statement would keep failing).
    if h.backend == stored_session::Backend::Postgres {
        assert_eq!(pool_connections(&store), connections);
    }
    release();
    // The same statement runs again at once on the same pool (MariaDB:
    // the connection whose cached statement failed was replaced).
    assert_eq!(bump(&store, &cookie).unwrap(), 2);
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn slow_statement(h: &Harness) {
    use diesel::RunQueryDsl;

    let store = h
        .builder()
        .pool(
            PoolOptions::default()
                .statement_timeout(Some(STATEMENT))
                .lock_timeout(Some(STATEMENT)),
        )
        .open_migrated(&h.url)
        .unwrap();
    let sleep = match h.backend {
        stored_session::Backend::Postgres => "SELECT pg_sleep(3)",
        _ => "SELECT SLEEP(3)",
    };
    let started = Instant::now();
    let result = crate::with_conn!(store.database(), |c| diesel::sql_query(sleep).execute(c));
    let elapsed = started.elapsed();
    eprintln!("slow statement {}: {elapsed:?}: {result:?}", h.backend);
    assert!(result.is_err(), "a 3 s statement ran to its end");
    assert!(
        elapsed < Duration::from_secs(2),
        "cancelled after {elapsed:?}"
    );
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn own_pool(h: &Harness) {
    use diesel::r2d2::{ConnectionManager, Pool};

    let proxy = Proxy::start(proxy_support::upstream_of(&h.url));
    let url = proxy.url_for(&h.url);
    let limit = Duration::from_millis(800);
    let builder = h
        .builder()
        .pool(PoolOptions::default().operation_timeout(Some(limit)));
    let store = match h.backend {
        #[cfg(feature = "postgres")]
        stored_session::Backend::Postgres => builder.build(
            Pool::builder()
                .max_size(1)
                .connection_timeout(ACQUIRE)
                .test_on_check_out(false)
                .build(ConnectionManager::<diesel::PgConnection>::new(url))
                .unwrap(),
        ),
        #[cfg(feature = "mysql")]
        stored_session::Backend::Mysql => builder.build(
            Pool::builder()
                .max_size(1)
                .connection_timeout(ACQUIRE)
                .test_on_check_out(false)
                .build(ConnectionManager::<diesel::MysqlConnection>::new(url))
                .unwrap(),
        ),
        _ => unreachable!(),
    };
    store.run_migrations().unwrap();
    let cookie = create(&store, &[("n", 1u64)]);

    proxy.freeze();
    let s1 = store.clone();
    let calls: Vec<(&'static str, Call)> =
        vec![("load", Box::new(move || s1.load(Some(&cookie)).map(|_| ())))];
    let results = concurrently(calls, || proxy.thaw());
    let (name, result, elapsed) = &results[0];
    eprintln!("own pool {}: {name}: {elapsed:?}: {result:?}", h.backend);
    assert!(
        matches!(result, Err(Error::Timeout { timeout }) if *timeout == limit),
        "{result:?}"
    );
    assert!(*elapsed < limit + Duration::from_millis(300), "{elapsed:?}");
    proxy.thaw();
    let recovered = recovery(
        &store,
        &create(&store, &[("n", 1u64)]),
        Duration::from_secs(5),
    );
    assert!(recovered < bound());
}

#[cfg(feature = "postgres")]
#[test]
fn own_pool_postgres() {
    let _serial = serial();
    if let Some(h) = Harness::postgres() {
        own_pool(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn own_pool_mysql() {
    let _serial = serial();
    if let Some(h) = Harness::mysql() {
        own_pool(&h);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn lock_wait_postgres() {
    let _serial = serial();
    if let Some(h) = Harness::postgres() {
        lock_wait(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn lock_wait_mysql() {
    let _serial = serial();
    if let Some(h) = Harness::mysql() {
        lock_wait(&h);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn slow_statement_postgres() {
    let _serial = serial();
    if let Some(h) = Harness::postgres() {
        slow_statement(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn slow_statement_mysql() {
    let _serial = serial();
    if let Some(h) = Harness::mysql() {
        slow_statement(&h);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn frozen_postgres() {
    let _serial = serial();
    if let Some(h) = Harness::postgres() {
        frozen(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn frozen_mysql() {
    let _serial = serial();
    if let Some(h) = Harness::mysql() {
        frozen(&h);
    }
}

#[cfg(feature = "postgres")]
#[test]
fn killed_while_frozen_postgres() {
    let _serial = serial();
    if let Some(h) = Harness::postgres() {
        killed_while_frozen(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn killed_while_frozen_mysql() {
    let _serial = serial();
    if let Some(h) = Harness::mysql() {
        killed_while_frozen(&h);
    }
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_writers_blocked_elsewhere() {
    let _serial = serial();
    use diesel::connection::SimpleConnection;
    use diesel::Connection;

    let h = Harness::sqlite().unwrap();
    let mut options = stored_session::PoolOptions::default();
    options.acquire_timeout = ACQUIRE;
    options.sqlite_busy_timeout = STATEMENT;
    let store = h.store_with(h.builder().pool(options));
    let cookies: Vec<String> = (0..6).map(|i| create(&store, &[("n", i as u64)])).collect();

    // Another process's writer: holds SQLite's write lock.
    let path = h.url.strip_prefix("sqlite://").unwrap();
    let mut other = diesel::SqliteConnection::establish(path).unwrap();
    other.batch_execute("BEGIN IMMEDIATE").unwrap();

    let calls = cookies
        .iter()
        .map(|c| {
            let (store, c) = (store.clone(), c.clone());
            let call: Call = Box::new(move || bump(&store, &c).map(|_| ()));
            ("load+commit", call)
        })
        .collect();
    let results = concurrently(calls, || ());
    for (name, result, elapsed) in &results {
        eprintln!("{name}: {elapsed:?}: {result:?}");
        assert!(result.is_err(), "{name} wrote past another writer's lock");
        assert!(
            *elapsed <= bound(),
            "{name} took {elapsed:?} to fail; the bound is {:?}",
            bound()
        );
    }
    other.batch_execute("ROLLBACK").unwrap();
    let recovered = recovery(&store, &cookies[0], Duration::from_secs(5));
    assert!(recovered < Duration::from_secs(1));
    for c in &cookies {
        assert!(bump(&store, c).is_ok());
    }
    let mut s = store.load(None).unwrap();
    s.insert("k", &1u8).unwrap();
    assert!(matches!(
        store.save(&mut s).unwrap(),
        CookieAction::Set(_, _)
    ));
}
