//! Faults: connections killed under load, an exhausted pool, a database
//! restarted under load.
//!
//! * `kill_every_connection_mid_load` (PostgreSQL `pg_terminate_backend`,
//!   MySQL `KILL`; runs in CI): 8 workers do load+commit on sessions of
//!   their own; every server connection of the test database is killed
//!   mid-run. Errors must be typed [`Error`]s, at most one failed operation
//!   per killed connection, every worker succeeding again within 5 s, and no
//!   acknowledged write lost.
//! * `pool_exhausted_*` (every backend; CI): with every pooled connection
//!   held elsewhere, a load and a commit fail with [`Error::PoolTimeout`]
//!   after the configured acquire timeout and before +10%; a malformed
//!   cookie still needs no connection; the store works again once the
//!   connections are back.
//! * `restart_*` (`--ignored`: restarts the shared server): the server is
//!   restarted while 8 workers run; errors while it is down, every worker
//!   succeeding again after it is back, no acknowledged write lost. Always
//!   leaves the server running.

// The load-and-fault machinery serves the server backends' tests only.
#![cfg_attr(not(any(feature = "postgres", feature = "mysql")), allow(dead_code))]

mod common;
mod reliability_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::Harness;
use reliability_support::create;
use stored_session::{CookieAction, Error, PoolOptions, SessionStore};

/// What one worker saw.
#[derive(Debug, Default)]
struct WorkerLog {
    acked: u64,
    /// (time since the test's start, error text) of every failed operation.
    errors: Vec<(Duration, String)>,
    /// Time of every successful operation.
    successes: Vec<Duration>,
}

fn is_typed_failure(e: &Error) -> bool {
    matches!(e, Error::Database(_) | Error::PoolTimeout { .. })
}

/// Runs `workers` threads doing load+increment+commit on a session each
/// until `stop`; calls `fault` from the main thread meanwhile. Returns the
/// logs, the start instant, and the cookies.
fn under_load(
    store: &SessionStore,
    workers: usize,
    fault: impl FnOnce(Instant),
) -> (Vec<WorkerLog>, Instant, Vec<String>) {
    let cookies: Vec<String> = (0..workers)
        .map(|w| create(store, &[("n", 0u64), ("worker", w as u64)]))
        .collect();
    let stop = AtomicBool::new(false);
    let logs: Vec<Mutex<WorkerLog>> = (0..workers)
        .map(|_| Mutex::new(WorkerLog::default()))
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (w, (log, cookie)) in logs.iter().zip(&cookies).enumerate() {
            let (store, stop) = (store, &stop);
            scope.spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let result = store.load(Some(cookie)).and_then(|mut s| {
                        assert!(!s.is_new(), "worker {w} lost its session");
                        let n = s.get::<u64>("n")?.unwrap_or(0);
                        s.insert("n", &(n + 1))?;
                        store.save(&mut s)
                    });
                    let at = started.elapsed();
                    let mut log = log.lock().unwrap();
                    match result {
                        Ok(CookieAction::Keep) => {
                            log.acked += 1;
                            log.successes.push(at);
                        }
                        Ok(other) => panic!("worker {w}: unexpected {other:?}"),
                        Err(e) => {
                            assert!(is_typed_failure(&e), "worker {w}: untyped failure {e:?}");
                            log.errors.push((at, e.to_string()));
                            drop(log);
                            // Do not spin while the database is away.
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            });
        }
        fault(started);
        stop.store(true, Ordering::SeqCst);
    });
    let logs = logs.into_iter().map(|m| m.into_inner().unwrap()).collect();
    (logs, started, cookies)
}

/// No acknowledged increment is lost; an operation that failed may or may
/// not have landed (the server can commit and then lose the connection).
fn check_no_lost_writes(store: &SessionStore, logs: &[WorkerLog], cookies: &[String]) {
    for (w, (log, cookie)) in logs.iter().zip(cookies).enumerate() {
        let n = store
            .load(Some(cookie))
            .unwrap()
            .get::<u64>("n")
            .unwrap()
            .unwrap();
        let failed = log.errors.len() as u64;
        assert!(
            n >= log.acked && n <= log.acked + failed,
            "worker {w}: counter {n}, {} acknowledged, {failed} failed",
            log.acked
        );
    }
}

/// The time by which every worker had succeeded again after `since`.
fn recovered_at(logs: &[WorkerLog], since: Duration) -> Option<Duration> {
    logs.iter()
        .map(|l| l.successes.iter().copied().find(|&t| t > since))
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max())
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn kill_every_connection_mid_load(h: &Harness) {
    let workers = 8;
    let store = h.store_with(
        h.builder().pool(
            PoolOptions::default()
                .max_size(workers as u32)
                .acquire_timeout(Duration::from_secs(5)),
        ),
    );
    let killed = Mutex::new((0usize, Duration::ZERO));
    let (logs, _, cookies) = under_load(&store, workers, |started| {
        // Let the pool fill up under load, then kill its connections.
        std::thread::sleep(Duration::from_millis(700));
        let at = started.elapsed();
        let n = reliability_support::kill_connections(h);
        *killed.lock().unwrap() = (n, at);
        std::thread::sleep(Duration::from_millis(2_500));
    });
    let (killed, kill_at) = killed.into_inner().unwrap();
    assert!(killed >= 1, "no connection was killed");
    let failed: usize = logs.iter().map(|l| l.errors.len()).sum();
    let ops: u64 = logs.iter().map(|l| l.acked).sum();
    let last_error = logs.iter().flat_map(|l| l.errors.iter().map(|e| e.0)).max();
    let recovered = recovered_at(&logs, last_error.unwrap_or(kill_at).max(kill_at))
        .expect("every worker succeeds again after the kill");
    let recovery = recovered.saturating_sub(kill_at);
    for l in &logs {
        for (_, e) in &l.errors {
            eprintln!("  failure after the kill: {e}");
        }
    }
    assert!(
        failed <= killed,
        "{failed} failed operations for {killed} killed connections"
    );
    assert!(
        recovery <= Duration::from_secs(5),
        "full recovery took {recovery:?}"
    );
    check_no_lost_writes(&store, &logs, &cookies);
    eprintln!(
        "{:?}: killed {killed} connections mid-load: {failed} failed operations of {}, \
         every worker succeeding again {:.0} ms after the kill, 0 acknowledged writes lost",
        h.backend,
        ops + failed as u64,
        recovery.as_secs_f64() * 1000.0
    );
}

/// Holds `n` of the pool's connections on other threads until `release`.
fn hold_connections(
    store: &SessionStore,
    n: usize,
    release: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles = (0..n)
        .map(|_| {
            let (db, barrier, release) =
                (store.database().clone(), barrier.clone(), release.clone());
            std::thread::spawn(move || {
                crate::with_conn!(&db, |_c| {
                    barrier.wait();
                    while !release.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                })
            })
        })
        .collect();
    barrier.wait();
    handles
}

fn pool_exhausted(h: &Harness) {
    let timeout = Duration::from_millis(800);
    let store = h.store_with(
        h.builder()
            .pool(PoolOptions::default().max_size(2).acquire_timeout(timeout)),
    );
    let cookie = create(&store, &[("n", 1u64)]);
    let mut dirty = store.load(Some(&cookie)).unwrap();
    dirty.insert("n", &2u64).unwrap();

    let release = Arc::new(AtomicBool::new(false));
    let holders = hold_connections(&store, 2, release.clone());
    let mut waits = Vec::new();
    for what in ["load", "commit"] {
        let started = Instant::now();
        let result = if what == "load" {
            store.load(Some(&cookie)).map(|_| CookieAction::Keep)
        } else {
            store.save(&mut dirty)
        };
        let waited = started.elapsed();
        match result {
            Err(Error::PoolTimeout {
                timeout: reported, ..
            }) => assert_eq!(reported, timeout),
            other => panic!("{what} with an exhausted pool: {other:?}"),
        }
        assert!(
            waited >= timeout && waited <= timeout.mul_f64(1.1),
            "{what} failed after {waited:?} (acquire timeout {timeout:?})"
        );
        waits.push(waited);
    }
    // A malformed cookie needs no connection: it never waits.
    let started = Instant::now();
    assert!(store.load(Some("not-an-id")).unwrap().is_new());
    assert!(started.elapsed() < Duration::from_millis(100));

    release.store(true, Ordering::SeqCst);
    for t in holders {
        t.join().unwrap();
    }
    // Back to normal, and the failed commit can be retried.
    assert_eq!(store.save(&mut dirty).unwrap(), CookieAction::Keep);
    let s = store.load(Some(&cookie)).unwrap();
    assert_eq!(s.get::<u64>("n").unwrap(), Some(2));
    eprintln!(
        "{:?}: exhausted pool: PoolTimeout after {:?} (load) and {:?} (commit), \
         acquire timeout {timeout:?}",
        h.backend, waits[0], waits[1]
    );
}

backend_suite!(pool_exhausted);

#[cfg(feature = "postgres")]
#[test]
fn kill_every_connection_mid_load_postgres() {
    if let Some(h) = Harness::postgres() {
        kill_every_connection_mid_load(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
fn kill_every_connection_mid_load_mysql() {
    if let Some(h) = Harness::mysql() {
        kill_every_connection_mid_load(&h);
    }
}

/// Restarts the server under load. `stop_start` brings it down and up again
/// and returns when it accepts connections.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn restart_under_load(h: &Harness, stop_start: impl FnOnce(Instant) -> (Duration, Duration)) {
    let workers = 8;
    let store = h.store_with(
        h.builder().pool(
            PoolOptions::default()
                .max_size(workers as u32)
                .acquire_timeout(Duration::from_secs(1)),
        ),
    );
    let window = Mutex::new((Duration::ZERO, Duration::ZERO));
    let (logs, _, cookies) = under_load(&store, workers, |started| {
        std::thread::sleep(Duration::from_millis(1_000));
        let (down_at, up_at) = stop_start(started);
        *window.lock().unwrap() = (down_at, up_at);
        // Keep the load on until every worker has succeeded again (max 30 s).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            if started.elapsed() > up_at + Duration::from_secs(6) {
                break;
            }
        }
    });
    let (down_at, up_at) = window.into_inner().unwrap();
    let failed: usize = logs.iter().map(|l| l.errors.len()).sum();
    let ops: u64 = logs.iter().map(|l| l.acked).sum();
    assert!(failed > 0, "no operation failed while the server was down");
    let recovered = recovered_at(&logs, up_at).expect("every worker succeeds after the restart");
    let mut kinds: Vec<String> = logs
        .iter()
        .flat_map(|l| {
            l.errors
                .iter()
                .map(|e| e.1.chars().take(60).collect::<String>())
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    check_no_lost_writes(&store, &logs, &cookies);
    eprintln!(
        "{:?}: restart under load: down at {:.1} s, accepting again at {:.1} s; \
         {failed} failed operations (typed) of {}, every worker succeeding again \
         {:.0} ms after the server was back; 0 acknowledged writes lost; errors seen: {kinds:#?}",
        h.backend,
        down_at.as_secs_f64(),
        up_at.as_secs_f64(),
        ops + failed as u64,
        recovered.saturating_sub(up_at).as_secs_f64() * 1000.0
    );
    assert!(
        recovered.saturating_sub(up_at) <= Duration::from_secs(5),
        "recovery took {:?} after the server was back",
        recovered.saturating_sub(up_at)
    );
}

fn run(cmd: &str, args: &[&str]) {
    let status = std::process::Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(status.success(), "{cmd} {args:?}: {status}");
}

#[cfg(feature = "postgres")]
#[test]
#[ignore = "restarts the shared PostgreSQL server"]
fn restart_postgres_under_load() {
    let Some(h) = Harness::postgres() else { return };
    restart_under_load(&h, |started| {
        let down = started.elapsed();
        run(
            "pg_ctlcluster",
            &["--skip-systemctl-redirect", "15", "main", "restart"],
        );
        let up = wait_until_up(|| {
            std::process::Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
                .status()
                .is_ok_and(|s| s.success())
        });
        (down, up.duration_since(started))
    });
}

#[cfg(feature = "mysql")]
#[test]
#[ignore = "restarts the shared MariaDB server"]
fn restart_mysql_under_load() {
    let Some(h) = Harness::mysql() else { return };
    let ping = || {
        std::process::Command::new("mysqladmin")
            .args([
                "--protocol=tcp",
                "-h",
                "127.0.0.1",
                "-P",
                "3306",
                "-uroot",
                "ping",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    restart_under_load(&h, |started| {
        let down = started.elapsed();
        let result = std::panic::catch_unwind(|| {
            run("mysqladmin", &["-uroot", "shutdown"]);
            std::thread::sleep(Duration::from_secs(2));
        });
        // Whatever happened, start it again.
        run(
            "start-stop-daemon",
            &[
                "--start",
                "--oknodo",
                "--background",
                "--exec",
                "/usr/sbin/mariadbd",
            ],
        );
        let up = wait_until_up(ping);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
        (down, up.duration_since(started))
    });
}

/// Polls `up` (for at most 60 s) and returns when it first held.
fn wait_until_up(mut up: impl FnMut() -> bool) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if up() {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not come back within 60 s");
}
