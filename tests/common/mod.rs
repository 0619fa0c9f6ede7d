//! Test harness shared by every integration test: one isolated database per
//! test on each backend, and raw access to the `stored_sessions` table.
//!
//! * SQLite: a fresh file under the system temp directory.
//! * PostgreSQL: a fresh database on the server named by `TEST_POSTGRES_URL`
//!   (e.g. `postgres://postgres@127.0.0.1:5432/postgres`).
//! * MySQL/MariaDB: a fresh database on the server named by `TEST_MYSQL_URL`
//!   (e.g. `mysql://root@127.0.0.1:3306/test`).
//! * MariaDB Galera: a fresh database on the cluster named by
//!   `TEST_GALERA_URLS` (its nodes' URLs, comma-separated, as printed by
//!   `scripts/galera.sh urls`), used through the first node; the cluster
//!   replicates it to the others (see [`Harness::url_on`]).
//!
//! Without the variable a server backend's tests are skipped with a note,
//! except under `CI=true`, where a missing or unreachable server fails them.
#![allow(dead_code)]

use std::path::PathBuf;

use diesel::prelude::*;
use stored_session::schema::stored_sessions::dsl as t;
use stored_session::{
    Backend, Config, Database, Event, EventKind, Keyring, ManualClock, RejectReason, SessionStore,
    StoreBuilder, StoredId,
};

/// Runs `$body` with `$conn` bound to a connection of the database's backend.
#[macro_export]
macro_rules! with_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            stored_session::Database::Sqlite(pool) => {
                let $conn = &mut *pool.get().unwrap();
                $body
            }
            #[cfg(feature = "postgres")]
            stored_session::Database::Postgres(pool) => {
                let $conn = &mut *pool.get().unwrap();
                $body
            }
            #[cfg(feature = "mysql")]
            stored_session::Database::Mysql(pool) => {
                let $conn = &mut *pool.get().unwrap();
                $body
            }
            #[allow(unreachable_patterns)]
            _ => unreachable!(),
        }
    };
}

/// One isolated database for one test.
pub struct Harness {
    pub backend: Backend,
    pub url: String,
    pub clock: ManualClock,
    pub keyring: Keyring,
    cleanup: Cleanup,
}

enum Cleanup {
    File(PathBuf),
    #[cfg(feature = "postgres")]
    Postgres {
        server: String,
        name: String,
    },
    #[cfg(feature = "mysql")]
    Mysql {
        server: String,
        name: String,
        /// On the Galera cluster (`TEST_GALERA_URLS`).
        galera: bool,
    },
}

fn unique_name() -> String {
    let id = stored_session::SessionId::generate();
    let hex = id.stored_id().to_string();
    format!("ss_test_{}", &hex[3..19])
}

/// The server URL for a backend, or `None` (skip) when it is not configured
/// outside CI (then a missing variable fails the test).
pub fn server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{var} must be set when CI=true: the suite runs on every backend in CI")
        }
        _ => {
            eprintln!("note: {var} is not set; skipping this backend's test");
            None
        }
    }
}

/// The Galera cluster's node URLs from `TEST_GALERA_URLS` (comma-separated),
/// or `None` (skip) when it is not set outside CI.
#[cfg(feature = "mysql")]
pub fn galera_urls() -> Option<Vec<String>> {
    let urls: Vec<String> = server_url("TEST_GALERA_URLS")?
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    assert!(
        !urls.is_empty(),
        "TEST_GALERA_URLS names no node (comma-separated mysql:// URLs)"
    );
    Some(urls)
}

/// Replaces the database name (the URL path) of a server URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Harness {
    fn new(backend: Backend, url: String, cleanup: Cleanup) -> Self {
        Harness {
            backend,
            url,
            clock: ManualClock::new(chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap()),
            keyring: Keyring::generate(),
            cleanup,
        }
    }

    #[cfg(feature = "sqlite")]
    pub fn sqlite() -> Option<Harness> {
        let dir = std::env::temp_dir().join("stored-session-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.db", unique_name()));
        let url = format!("sqlite://{}", path.display());
        Some(Harness::new(Backend::Sqlite, url, Cleanup::File(path)))
    }

    #[cfg(feature = "postgres")]
    pub fn postgres() -> Option<Harness> {
        let server = server_url("TEST_POSTGRES_URL")?;
        let name = unique_name();
        let mut conn = PgConnection::establish(&server)
            .unwrap_or_else(|e| panic!("TEST_POSTGRES_URL is unreachable: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let url = with_database(&server, &name);
        Some(Harness::new(
            Backend::Postgres,
            url,
            Cleanup::Postgres { server, name },
        ))
    }

    #[cfg(feature = "mysql")]
    pub fn mysql() -> Option<Harness> {
        let server = server_url("TEST_MYSQL_URL")?;
        Some(Harness::mysql_on(server, "TEST_MYSQL_URL", false))
    }

    /// A fresh database on the Galera cluster of `TEST_GALERA_URLS`, used
    /// through its first node.
    #[cfg(feature = "mysql")]
    pub fn galera() -> Option<Harness> {
        let server = galera_urls()?.swap_remove(0);
        Some(Harness::mysql_on(server, "TEST_GALERA_URLS", true))
    }

    #[cfg(feature = "mysql")]
    fn mysql_on(server: String, var: &str, galera: bool) -> Harness {
        let name = unique_name();
        let mut conn = MysqlConnection::establish(&server)
            .unwrap_or_else(|e| panic!("{var} is unreachable: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .unwrap();
        let url = with_database(&server, &name);
        Harness::new(
            Backend::Mysql,
            url,
            Cleanup::Mysql {
                server,
                name,
                galera,
            },
        )
    }

    /// This harness's database through another server of the same
    /// cluster (a Galera node's URL from `TEST_GALERA_URLS`).
    #[cfg(feature = "mysql")]
    pub fn url_on(&self, server: &str) -> String {
        match &self.cleanup {
            Cleanup::Mysql { name, .. } => with_database(server, name),
            _ => panic!("url_on: not a MySQL harness"),
        }
    }

    /// Whether this harness's database is on the Galera cluster.
    pub fn is_galera(&self) -> bool {
        #[cfg(feature = "mysql")]
        if let Cleanup::Mysql { galera, .. } = &self.cleanup {
            return *galera;
        }
        false
    }

    /// Another isolated database on the same backend.
    pub fn another(&self) -> Harness {
        match self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => Harness::sqlite(),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Harness::postgres(),
            #[cfg(feature = "mysql")]
            Backend::Mysql => match self.cleanup {
                Cleanup::Mysql { galera: true, .. } => Harness::galera(),
                _ => Harness::mysql(),
            },
            #[allow(unreachable_patterns)]
            _ => None,
        }
        .expect("same backend as an existing harness")
    }

    /// The default policy on this harness's clock.
    pub fn config(&self) -> Config {
        Config::default().clock(self.clock.clock())
    }

    /// A builder with this harness's keys and clock, ready to `open`.
    pub fn builder(&self) -> StoreBuilder {
        SessionStore::builder(self.keyring.clone()).config(self.config())
    }

    /// A migrated store on this harness's database.
    pub fn store(&self) -> SessionStore {
        self.store_with(self.builder())
    }

    /// A migrated store from a customised builder.
    pub fn store_with(&self, builder: StoreBuilder) -> SessionStore {
        builder.open_migrated(&self.url).expect("open store")
    }

    /// A migrated store that records client metadata (IP truncated to
    /// /24 or /48, and the user agent).
    pub fn store_with_metadata(&self) -> SessionStore {
        let policy = stored_session::MetadataPolicy {
            ip: stored_session::IpTracking::Truncated,
            user_agent: true,
        };
        let config = self.config().metadata(policy);
        self.store_with(self.builder().config(config))
    }

    /// Advances the harness clock.
    pub fn advance(&self, secs: u64) {
        self.clock.advance(std::time::Duration::from_secs(secs));
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            #[cfg(feature = "postgres")]
            Cleanup::Postgres { server, name } => {
                if let Ok(mut conn) = PgConnection::establish(server) {
                    let _ =
                        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn);
                }
            }
            #[cfg(feature = "mysql")]
            Cleanup::Mysql { server, name, .. } => {
                if let Ok(mut conn) = MysqlConnection::establish(server) {
                    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}"))
                        .execute(&mut conn);
                }
            }
        }
    }
}

/// A raw row of the table, as an attacker with a dump would see it.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct RawRow {
    pub id: i64,
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
    pub user_key: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn rows(db: &Database) -> Vec<RawRow> {
    with_conn!(db, |c| t::stored_sessions
        .order(t::id)
        .select((
            t::id,
            t::sid,
            t::data,
            t::version,
            t::user_key,
            t::created_at,
            t::updated_at
        ))
        .load::<RawRow>(c)
        .unwrap())
}

pub fn count(db: &Database) -> usize {
    rows(db).len()
}

pub fn row(db: &Database, sid: &stored_session::StoredId) -> Option<RawRow> {
    rows(db).into_iter().find(|r| r.sid == sid.as_bytes())
}

pub fn set_data(db: &Database, sid: &[u8], data: &[u8]) {
    let n = with_conn!(db, |c| diesel::update(
        t::stored_sessions.filter(t::sid.eq(sid))
    )
    .set(t::data.eq(data))
    .execute(c)
    .unwrap());
    assert_eq!(n, 1);
}

pub fn set_created_at(db: &Database, sid: &[u8], at: i64) {
    let n = with_conn!(db, |c| diesel::update(
        t::stored_sessions.filter(t::sid.eq(sid))
    )
    .set(t::created_at.eq(at))
    .execute(c)
    .unwrap());
    assert_eq!(n, 1);
}

/// Inserts `n` raw rows (garbage envelopes) with the given times, in chunks.
pub fn insert_raw(db: &Database, n: usize, created_at: i64, updated_at: i64) {
    let mut next = 0usize;
    while next < n {
        let chunk = (n - next).min(1000);
        let sids: Vec<[u8; 32]> = (next..next + chunk)
            .map(|i| {
                let mut sid = [0xEEu8; 32];
                sid[..8].copy_from_slice(&(i as u64).to_be_bytes());
                sid[8..16].copy_from_slice(&created_at.to_be_bytes());
                sid[16..24].copy_from_slice(&updated_at.to_be_bytes());
                sid
            })
            .collect();
        let values: Vec<_> = sids
            .iter()
            .map(|sid| {
                (
                    t::sid.eq(&sid[..]),
                    t::data.eq(&b"expired-garbage"[..]),
                    t::version.eq(1i64),
                    t::created_at.eq(created_at),
                    t::updated_at.eq(updated_at),
                )
            })
            .collect();
        let inserted = with_conn!(db, |c| diesel::insert_into(t::stored_sessions)
            .values(&values)
            .execute(c)
            .unwrap());
        assert_eq!(inserted, chunk);
        next += chunk;
    }
}

/// Every byte the table holds for its sessions (ids, envelopes, user
/// keys), to check that nothing readable is in it.
#[allow(dead_code)]
pub fn table_bytes(db: &Database) -> Vec<u8> {
    rows(db)
        .into_iter()
        .flat_map(|r| {
            let mut bytes = r.sid;
            bytes.extend(r.data);
            bytes.extend(r.user_key.unwrap_or_default());
            bytes
        })
        .collect()
}

/// Records every event the store emits.
#[allow(dead_code)]
pub fn record_events(store: &SessionStore) -> std::sync::Arc<std::sync::Mutex<Vec<Event>>> {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    store.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

/// The `Rejected` events among `events`: the hashed id and the reason.
#[allow(dead_code)]
pub fn rejections(
    events: &std::sync::Mutex<Vec<Event>>,
) -> Vec<(Option<StoredId>, Option<RejectReason>)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::Rejected)
        .map(|e| (e.sid, e.reason))
        .collect()
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Instantiates a list of suite tests (functions taking `&Harness`) once per
/// enabled backend, as modules `sqlite`, `postgres` and `mysql`, and once on
/// a node of the Galera cluster (module `galera`, with the `mysql` feature).
#[macro_export]
macro_rules! backend_suite {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[test]
                fn $test() {
                    if let Some(h) = $crate::common::Harness::sqlite() {
                        super::$test(&h);
                    }
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[test]
                fn $test() {
                    if let Some(h) = $crate::common::Harness::postgres() {
                        super::$test(&h);
                    }
                }
            )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $(
                #[test]
                fn $test() {
                    if let Some(h) = $crate::common::Harness::mysql() {
                        super::$test(&h);
                    }
                }
            )*
        }
        #[cfg(feature = "mysql")]
        mod galera {
            $(
                #[test]
                fn $test() {
                    if let Some(h) = $crate::common::Harness::galera() {
                        super::$test(&h);
                    }
                }
            )*
        }
    };
}
