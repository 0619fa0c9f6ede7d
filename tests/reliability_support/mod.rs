//! Shared by the reliability tests (`tests/reliability_*.rs`): a seeded
//! PRNG, event recording, session helpers, and the server-side fault
//! injection (killing a test database's connections).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stored_session::{CookieAction, EventKind, SessionId, SessionStore, StoredId};

use crate::common::Harness;

/// SplitMix64: small, fast, reproducible. Seeded from `RELIABILITY_SEED`
/// when set (to replay a failure), else from the given default.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(default_seed: u64) -> Self {
        let seed = std::env::var("RELIABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed);
        eprintln!("RELIABILITY_SEED={seed}");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// Counts the store's events of one kind.
pub fn count_kind(store: &SessionStore, kind: EventKind) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let sink = n.clone();
    store.subscribe(move |e| {
        if e.kind == kind {
            sink.fetch_add(1, Ordering::SeqCst);
        }
    });
    n
}

pub fn cookie_of(action: CookieAction) -> String {
    match action {
        CookieAction::Set(id, _) => id.as_cookie_value().to_owned(),
        other => panic!("expected a cookie to be set, got {other:?}"),
    }
}

pub fn sid_of(cookie: &str) -> StoredId {
    SessionId::parse(cookie).unwrap().stored_id()
}

/// Creates a session holding `values` and returns its cookie value.
pub fn create<V: serde::Serialize>(store: &SessionStore, values: &[(&str, V)]) -> String {
    let mut s = store.load(None).unwrap();
    for (k, v) in values {
        s.insert(*k, v).unwrap();
    }
    cookie_of(store.save(&mut s).unwrap())
}

/// The database name in a harness URL (its path).
pub fn database_name(h: &Harness) -> String {
    let base = h.url.split('?').next().unwrap();
    base.rsplit('/').next().unwrap().to_owned()
}

/// The server URL (the harness URL with the database swapped for the
/// server's default one), for administrative connections.
pub fn admin_url(h: &Harness) -> String {
    match h.backend {
        stored_session::Backend::Postgres => std::env::var("TEST_POSTGRES_URL").unwrap(),
        stored_session::Backend::Mysql => std::env::var("TEST_MYSQL_URL").unwrap(),
        _ => panic!("no server for {:?}", h.backend),
    }
}

/// Kills every server connection to the harness's own database (other
/// tests' databases are left alone) and returns how many were killed.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub fn kill_connections(h: &Harness) -> usize {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Bool, Text};
    let name = database_name(h);
    match h.backend {
        #[cfg(feature = "postgres")]
        stored_session::Backend::Postgres => {
            #[derive(QueryableByName)]
            struct Killed {
                #[diesel(sql_type = Bool)]
                killed: bool,
            }
            let mut conn = PgConnection::establish(&admin_url(h)).unwrap();
            let rows: Vec<Killed> = diesel::sql_query(
                "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind::<Text, _>(&name)
            .load(&mut conn)
            .unwrap();
            rows.iter().filter(|r| r.killed).count()
        }
        #[cfg(feature = "mysql")]
        stored_session::Backend::Mysql => {
            #[derive(QueryableByName)]
            struct Id {
                #[diesel(sql_type = BigInt)]
                id: i64,
            }
            let mut conn = MysqlConnection::establish(&admin_url(h)).unwrap();
            let ids: Vec<Id> = diesel::sql_query(
                "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
                 WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind::<Text, _>(&name)
            .load(&mut conn)
            .unwrap();
            let mut killed = 0;
            for Id { id } in ids {
                // A connection may end by itself meanwhile: not an error.
                if diesel::sql_query(format!("KILL {id}"))
                    .execute(&mut conn)
                    .is_ok()
                {
                    killed += 1;
                }
            }
            killed
        }
        _ => panic!("no server connections to kill on {:?}", h.backend),
    }
}

/// How many server connections the harness's database has right now.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub fn connection_count(h: &Harness) -> usize {
    use diesel::prelude::*;
    use diesel::sql_types::{BigInt, Text};
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let name = database_name(h);
    let n: N = match h.backend {
        #[cfg(feature = "postgres")]
        stored_session::Backend::Postgres => {
            let mut conn = PgConnection::establish(&admin_url(h)).unwrap();
            diesel::sql_query(
                "SELECT COUNT(*)::BIGINT AS n FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind::<Text, _>(&name)
            .get_result(&mut conn)
            .unwrap()
        }
        #[cfg(feature = "mysql")]
        stored_session::Backend::Mysql => {
            let mut conn = MysqlConnection::establish(&admin_url(h)).unwrap();
            diesel::sql_query(
                "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.processlist \
                 WHERE db = ? AND id <> CONNECTION_ID()",
            )
            .bind::<Text, _>(&name)
            .get_result(&mut conn)
            .unwrap()
        }
        _ => panic!("no server connections on {:?}", h.backend),
    };
    n.n as usize
}

/// Waits until `f` holds, up to `timeout`; whether it did.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Scales a test's size: the full figure under `RELIABILITY_FULL=1` (what
/// the `--ignored` long runs set for themselves), else the CI figure.
pub fn scaled(ci: usize, full: usize, long_run: bool) -> usize {
    if long_run {
        full
    } else {
        ci
    }
}
