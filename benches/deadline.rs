//! What the client-side deadline costs per operation on PostgreSQL and
//! MariaDB/MySQL: `store.load` and an update `commit` of a ~1 KiB session,
//! with the default `operation_timeout` (each operation handed to a worker
//! thread) against `operation_timeout(None)` (run on the caller's thread,
//! as before the deadline existed), on one database, in alternating cells
//! so that the noise of a shared machine falls on both alike.
//!
//! Run: `TEST_POSTGRES_URL=postgres://… TEST_MYSQL_URL=mysql://… cargo bench
//! --bench deadline --features postgres,mysql` (a backend whose variable is
//! unset is skipped). `DEADLINE_BENCH_ROUNDS` sets the number of rounds
//! (default 20); `DEADLINE_BENCH_WORKERS` the concurrent threads per cell
//! (default 1).

use std::time::{Duration, Instant};

use stored_session::{CookieAction, Keyring, PoolOptions, SessionId, SessionStore};

const SESSIONS: usize = 200;
const CELL: Duration = Duration::from_millis(150);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn create(store: &SessionStore) -> String {
    let mut s = store.load(None).unwrap();
    s.insert("user_id", &4_242_424_242u64).unwrap();
    s.insert("csrf", SessionId::generate().as_cookie_value())
        .unwrap();
    s.insert("note", &"x".repeat(900)).unwrap();
    match store.save(&mut s).unwrap() {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("{other:?}"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Load,
    Update,
}

/// Runs `op` for one cell on `workers` threads; the latencies.
fn cell(store: &SessionStore, cookies: &[String], op: Op, workers: usize) -> Vec<Duration> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let end = Instant::now() + CELL;
                    let mut i = w;
                    while Instant::now() < end {
                        let cookie = &cookies[i % cookies.len()];
                        i += workers;
                        let t = Instant::now();
                        let mut s = store.load(Some(cookie)).unwrap();
                        if op == Op::Update {
                            s.insert("csrf", SessionId::generate().as_cookie_value())
                                .unwrap();
                            let _ = store.save(&mut s).unwrap();
                        }
                        out.push(t.elapsed());
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// The interquartile mean.
fn typical(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let (lo, hi) = (v.len() / 4, v.len() - v.len() / 4);
    let mid = &v[lo..hi];
    mid.iter().sum::<Duration>() / mid.len().max(1) as u32
}

fn bench(name: &str, url: &str) {
    let rounds = env_usize("DEADLINE_BENCH_ROUNDS", 20);
    let workers = env_usize("DEADLINE_BENCH_WORKERS", 1);
    let keyring = Keyring::generate();
    let with = SessionStore::builder(keyring.clone())
        .open_migrated(url)
        .unwrap();
    let without = SessionStore::builder(keyring)
        .pool(PoolOptions::default().operation_timeout(None))
        .open_migrated(url)
        .unwrap();
    let cookies: Vec<String> = (0..SESSIONS).map(|_| create(&with)).collect();
    for op in [Op::Load, Op::Update] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..=rounds {
            // Alternate which contender goes first; round 0 is warm-up.
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for deadline in order {
                let store = if deadline { &with } else { &without };
                let lat = cell(store, &cookies, op, workers);
                if round > 0 {
                    if deadline { &mut a } else { &mut b }.extend(lat);
                }
            }
        }
        let (ta, tb) = (typical(a), typical(b));
        println!(
            "{name} {} ({workers} worker(s)): deadline {ta:?}, caller thread {tb:?}, ratio {:.3}",
            if op == Op::Load {
                "load"
            } else {
                "load+update"
            },
            ta.as_secs_f64() / tb.as_secs_f64()
        );
    }
}

/// `url` with its database (the path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let host_end = base[base.find("://").unwrap() + 3..]
        .find('/')
        .map_or(base.len(), |i| base.find("://").unwrap() + 3 + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runs `bench` on a fresh database of the server at `url`, then drops it.
fn on_fresh_database(name: &str, url: &str) {
    use diesel::{Connection, RunQueryDsl};
    let db = format!("ss_bench_deadline_{}", std::process::id());
    let admin = |sql: String| {
        if name == "postgres" {
            let mut c = diesel::PgConnection::establish(url).unwrap();
            diesel::sql_query(sql).execute(&mut c).unwrap();
        } else {
            let mut c = diesel::MysqlConnection::establish(url).unwrap();
            diesel::sql_query(sql).execute(&mut c).unwrap();
        }
    };
    admin(format!("CREATE DATABASE {db}"));
    bench(name, &with_database(url, &db));
    admin(if name == "postgres" {
        format!("DROP DATABASE {db} WITH (FORCE)")
    } else {
        format!("DROP DATABASE {db}")
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for (name, var) in [
        ("postgres", "TEST_POSTGRES_URL"),
        ("mysql", "TEST_MYSQL_URL"),
    ] {
        match std::env::var(var) {
            Ok(url) if !url.is_empty() => on_fresh_database(name, &url),
            _ => eprintln!("{var} is not set: skipping {name}"),
        }
    }
}
