//! What the `session_expiry` migration costs on a large live table: fills
//! a table made by the earlier migrations with `MIGRATION_COST_ROWS` rows
//! (default 1,000,000), then runs the new migrations as an application
//! does (`run_migrations`) while another connection keeps writing and
//! reading old rows, and prints the migration's wall time and the longest
//! write and read it stalled. Ignored by default (minutes, and a server):
//!
//! ```sh
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//! cargo test --all-features --test migration_cost -- --ignored --nocapture --test-threads 1
//! ```

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Harness;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use stored_session::schema::stored_sessions::dsl as t;
use stored_session::{migrations, Backend, Database, PoolOptions};

fn rows() -> i64 {
    std::env::var("MIGRATION_COST_ROWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000)
}

/// One statement that inserts `n` rows shaped like real ones: a 32-byte
/// sid, a 256-byte envelope, a user binding on every other row, times
/// spread over the last day.
fn fill_sql(backend: Backend, n: i64, now: i64) -> Vec<String> {
    match backend {
        Backend::Sqlite => vec![format!(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {n}) \
             INSERT INTO stored_sessions (sid, data, version, user_key, created_at, updated_at) \
             SELECT randomblob(32), randomblob(256), 1, \
                    CASE WHEN n % 2 = 0 THEN randomblob(32) END, {now} - n % 86400, {now} - n % 86400 \
             FROM c"
        )],
        Backend::Postgres => vec![format!(
            "INSERT INTO stored_sessions (sid, data, version, user_key, created_at, updated_at) \
             SELECT sha256(int8send(g)), decode(repeat(md5(g::text), 16), 'hex'), 1, \
                    CASE WHEN g % 2 = 0 THEN sha256(int8send(-g)) END, {now} - g % 86400, {now} - g % 86400 \
             FROM generate_series(1, {n}) AS g"
        )],
        Backend::Mysql => {
            // 1000 x ceil(n / 1000) numbers from a 1000-row recursive CTE
            // (within MySQL's default recursion depth).
            let k = (n + 999) / 1000;
            vec![format!(
                "INSERT INTO stored_sessions (sid, data, version, user_key, created_at, updated_at) \
                 WITH RECURSIVE d(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM d WHERE n < 999) \
                 SELECT UNHEX(SHA2(a.n * 1000 + b.n, 256)), UNHEX(REPEAT(MD5(a.n * 1000 + b.n), 16)), 1, \
                        IF((a.n * 1000 + b.n) % 2 = 0, UNHEX(SHA2(-(a.n * 1000 + b.n) - 1, 256)), NULL), \
                        {now} - (a.n * 1000 + b.n) % 86400, {now} - (a.n * 1000 + b.n) % 86400 \
                 FROM d AS a CROSS JOIN d AS b WHERE a.n < {k} AND a.n * 1000 + b.n < {n}"
            )]
        }
        _ => unreachable!(),
    }
}

fn cost(h: &Harness) {
    use diesel_migrations::MigrationHarness;
    let n = rows();
    // SQLite writers wait for the index build (up to a minute) rather
    // than fail after the default 5 s.
    let options = PoolOptions::default().sqlite_busy_timeout(Duration::from_secs(60));
    let db = Database::open(&h.url, &options).unwrap();
    let dir = format!("{}/migrations/{}", env!("CARGO_MANIFEST_DIR"), h.backend);
    let old = migrations::for_backend(h.backend)
        .iter()
        .take_while(|m| m.name < "2026-12-02")
        .count();
    for _ in 0..old {
        let source = diesel_migrations::FileBasedMigrations::from_path(&dir).unwrap();
        with_conn!(&db, |c| c.run_next_migration(source).unwrap());
    }
    let now = h.clock.now().timestamp();
    let started = Instant::now();
    // Filling takes longer than the store's statement timeout.
    let unbounded = options
        .clone()
        .statement_timeout(None)
        .lock_timeout(None)
        .operation_timeout(None);
    let filler = Database::open(&h.url, &unbounded).unwrap();
    for sql in fill_sql(h.backend, n, now) {
        with_conn!(&filler, |c| c.batch_execute(&sql).unwrap());
    }
    let filled = started.elapsed();
    if h.backend == Backend::Postgres {
        with_conn!(&filler, |c| c
            .batch_execute("VACUUM ANALYZE stored_sessions")
            .unwrap());
    }
    drop(filler);
    let total = with_conn!(&db, |c| t::stored_sessions
        .count()
        .get_result::<i64>(c)
        .unwrap());
    assert_eq!(total, n);
    let sids: Vec<Vec<u8>> = with_conn!(&db, |c| t::stored_sessions
        .select(t::sid)
        .order(t::id)
        .limit(1000)
        .load(c)
        .unwrap());

    // Meanwhile, the old application keeps serving its sessions: one write
    // (a touch of `updated_at`) and one read by sid after another, on their
    // own connection. The longest of each is what the migration stalled.
    // Before the migration starts, the same loop gives the baseline.
    let done = AtomicBool::new(false);
    let migrating = AtomicBool::new(false);
    let (migrated, stalls, baseline) = std::thread::scope(|scope| {
        let worker = scope.spawn(|| {
            let (mut write, mut read, mut ops) = (Duration::ZERO, Duration::ZERO, 0u64);
            let mut baseline = (Duration::ZERO, Duration::ZERO);
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                if !migrating.load(Ordering::Relaxed) && ops > 0 {
                    baseline = (baseline.0.max(write), baseline.1.max(read));
                    (write, read, ops) = (Duration::ZERO, Duration::ZERO, 0);
                }
                let sid = &sids[i % sids.len()];
                i += 1;
                let at = Instant::now();
                let n = with_conn!(&db, |c| diesel::update(
                    t::stored_sessions.filter(t::sid.eq(sid))
                )
                .set(t::updated_at.eq(now + i as i64))
                .execute(c)
                .unwrap());
                assert_eq!(n, 1);
                write = write.max(at.elapsed());
                let at = Instant::now();
                let data: Vec<u8> = with_conn!(&db, |c| t::stored_sessions
                    .filter(t::sid.eq(sid))
                    .select(t::data)
                    .first(c)
                    .unwrap());
                assert_eq!(data.len(), 256);
                read = read.max(at.elapsed());
                ops += 1;
            }
            ((write, read, ops), baseline)
        });
        std::thread::sleep(Duration::from_secs(2));
        migrating.store(true, Ordering::Relaxed);
        let at = Instant::now();
        let applied = db.run_migrations().unwrap();
        let migrated = at.elapsed();
        done.store(true, Ordering::Relaxed);
        assert!(applied
            .iter()
            .any(|a| a == "2026-12-02-000000_session_expiry"));
        let (stalls, baseline) = worker.join().unwrap();
        (migrated, stalls, baseline)
    });
    // The revert, for the record.
    let at = Instant::now();
    let new = migrations::for_backend(h.backend).len() - old;
    for _ in 0..new {
        let source = diesel_migrations::FileBasedMigrations::from_path(&dir).unwrap();
        with_conn!(&db, |c| c.revert_last_migration(source).unwrap());
    }
    let reverted = at.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}: {n} rows (filled in {:.1} s): migration {:.2} s; meanwhile {} writes + reads, \
         longest write {:.0} ms, longest read {:.0} ms (before it: {:.0} ms, {:.0} ms); \
         down.sql {:.2} s",
        h.backend,
        filled.as_secs_f64(),
        migrated.as_secs_f64(),
        stalls.2,
        ms(stalls.0),
        ms(stalls.1),
        ms(baseline.0),
        ms(baseline.1),
        reverted.as_secs_f64(),
    );
}

#[cfg(feature = "sqlite")]
#[test]
#[ignore = "minutes: fills a million rows"]
fn sqlite() {
    if let Some(h) = Harness::sqlite() {
        cost(&h);
    }
}

#[cfg(feature = "postgres")]
#[test]
#[ignore = "minutes: fills a million rows"]
fn postgres() {
    if let Some(h) = Harness::postgres() {
        cost(&h);
    }
}

#[cfg(feature = "mysql")]
#[test]
#[ignore = "minutes: fills a million rows"]
fn mysql() {
    if let Some(h) = Harness::mysql() {
        cost(&h);
    }
}
