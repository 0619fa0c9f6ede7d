//! The repository layer: every SQL statement the store runs, expanded once per
//! backend. `SessionStore` holds the policy; this module only talks to the
//! database.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};
use diesel::result::DatabaseErrorKind;

use crate::error::{Error, Result};
use crate::id::StoredId;
use crate::schema::stored_sessions::dsl as t;

mod maintenance;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod statements;
mod user_lock;

pub(crate) use user_lock::UserLock;
use user_lock::UserLocking;

#[cfg(feature = "mysql")]
pub use self::mysql::MysqlPool;
#[cfg(feature = "postgres")]
pub use self::postgres::PgPool;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqlitePool;

/// The session database: an r2d2 pool of one of the enabled backends.
///
/// Build one from your own pool with `From` (so the app and its sessions can
/// share one pool), or let [`StoreBuilder::open`](crate::StoreBuilder::open)
/// make one from a URL.
#[derive(Clone)]
#[non_exhaustive]
pub enum Database {
    /// SQLite (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    /// PostgreSQL (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
    /// MySQL or MariaDB (feature `mysql`).
    #[cfg(feature = "mysql")]
    Mysql(MysqlPool),
}

/// Which kind of database a [`Database`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
        })
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.backend())
    }
}

/// Pool settings used when the store opens its own pool from a URL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PoolOptions {
    /// Most connections kept open. Default: 8.
    pub max_size: u32,
    /// Longest wait for a free connection before
    /// [`Error::PoolTimeout`]. Default: 5 seconds.
    pub acquire_timeout: Duration,
    /// SQLite `busy_timeout`: how long a writer waits for the lock. Default: 5 seconds.
    pub sqlite_busy_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Runs the same block against whichever backend `$db` is, with `$conn`
/// bound to a `&mut` connection of the concrete type.
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::backend::Database::Sqlite(pool) => {
                $crate::backend::run(pool, |$conn: &mut diesel::SqliteConnection| $body)
            }
            #[cfg(feature = "postgres")]
            $crate::backend::Database::Postgres(pool) => {
                $crate::backend::run(pool, |$conn: &mut diesel::PgConnection| $body)
            }
            #[cfg(feature = "mysql")]
            $crate::backend::Database::Mysql(pool) => {
                $crate::backend::run(pool, |$conn: &mut diesel::MysqlConnection| $body)
            }
        }
    };
}

/// How many times an operation is run again after the database aborted it
/// to break a deadlock (see [`run`]).
const DEADLOCK_RETRIES: u32 = 6;

/// The queue of this process's SQLite writers. SQLite lets one connection
/// write at a time, and its busy handler polls for the lock, sleeping up to
/// 100 ms between tries: with many writers in one process a writer can lose
/// every poll until `busy_timeout` runs out and fail with "database is
/// locked" (seen with 16 threads writing one session). The store's SQLite
/// writes wait here instead (woken as soon as the previous one is done), so
/// the busy handler only ever waits for writers outside this process.
#[cfg(feature = "sqlite")]
static SQLITE_WRITERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Checks a connection out (no `SELECT 1` on checkout: that would double a
/// load's round trips) and runs `f`. If the connection turns out to be dead,
/// it is marked broken so the pool drops it, and `f` runs once more on a
/// fresh connection. If the database chose `f` as the victim of a deadlock
/// (InnoDB does between a logout's `DELETE` and a concurrent renew's
/// `DELETE` + `INSERT`), it rolled `f`'s work back, so `f` runs again (a
/// few times at most) instead of failing the request.
pub(crate) fn run<C, T>(
    pool: &Pool<ConnectionManager<C>>,
    mut f: impl FnMut(&mut C) -> Result<T>,
) -> Result<T>
where
    C: R2D2Connection + Connection<TransactionManager = AnsiTransactionManager> + 'static,
{
    let mut retried = false;
    let mut deadlocks = 0;
    loop {
        let mut conn = pool.get().map_err(|e| Error::PoolTimeout {
            timeout: pool.connection_timeout(),
            message: e.to_string(),
        })?;
        match f(&mut conn) {
            Err(e) if e.is_connection_failure() => {
                // The connection is unusable: flag it so r2d2 discards it on
                // return instead of handing it to the next request.
                AnsiTransactionManager::transaction_manager_status_mut(&mut *conn).set_in_error();
                drop(conn);
                if retried {
                    return Err(e);
                }
                log::warn!(target: "stored_session", "session database connection lost; retrying once on a new connection: {e}");
                retried = true;
            }
            Err(e) if is_deadlock(&e) && deadlocks < DEADLOCK_RETRIES => {
                log::debug!(target: "stored_session", "session statement chosen as a deadlock victim; running it again: {e}");
                drop(conn);
                deadlocks += 1;
                // Back off with jitter so the two sides of the deadlock do
                // not meet again at once: 1-2 ms, doubling per attempt.
                let jitter = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() % 1_000_000)
                    .unwrap_or(0);
                let base = Duration::from_millis(1u64 << deadlocks.min(6));
                std::thread::sleep(base + Duration::from_nanos(u64::from(jitter)));
            }
            other => return other,
        }
    }
}

/// Whether the database aborted (and rolled back) the work to break a
/// deadlock or a serialization conflict: MySQL error 1213 and SQLSTATE
/// 40001 (`SerializationFailure`), PostgreSQL's `deadlock detected` (40P01).
fn is_deadlock(e: &Error) -> bool {
    match e {
        Error::Database(diesel::result::Error::DatabaseError(kind, info)) => {
            matches!(kind, DatabaseErrorKind::SerializationFailure)
                || info.message().to_ascii_lowercase().contains("deadlock")
        }
        _ => false,
    }
}

/// Finishes a pool the store opened itself: one checkout proves the
/// database is reachable, so `open` fails fast with a clear error.
///
/// The pools keep no idle minimum (`min_idle(Some(0))`): with one, r2d2
/// replaces checked-out connections on background threads, and a process
/// that exits while such a thread is inside libpq's or libmysqlclient's
/// connection setup can crash in the C libraries' exit handlers.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn checked<C>(
    pool: Pool<ConnectionManager<C>>,
    timeout: Duration,
    what: impl FnOnce() -> String,
) -> Result<Pool<ConnectionManager<C>>>
where
    C: R2D2Connection + 'static,
{
    match pool.get() {
        Ok(conn) => {
            drop(conn);
            Ok(pool)
        }
        Err(e) => Err(Error::PoolTimeout {
            timeout,
            message: format!("{}: {e}", what()),
        }),
    }
}

/// A transaction that takes the write lock up front on SQLite
/// (`BEGIN IMMEDIATE`, so two read-modify-write transactions cannot
/// deadlock) and is a plain transaction elsewhere.
pub(crate) trait WriteTransaction: Connection {
    fn write_transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T>;

    /// Reads a live row and locks it until the transaction ends (`FOR
    /// UPDATE`; on SQLite the immediate transaction already holds the lock).
    fn load_locked(&mut self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>>;
}

/// A row as the store reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct Row {
    pub data: Vec<u8>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Rows count as live while `updated_at > idle` and `created_at > lifetime`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoffs {
    pub idle: i64,
    pub lifetime: i64,
}

/// How an attempted renew ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewResult {
    Done,
    /// The old row's version moved or the row is gone; nothing changed.
    Conflict,
}

pub(crate) fn is_unique_violation(e: &Error) -> bool {
    matches!(
        e,
        Error::Database(diesel::result::Error::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

pub(crate) use maintenance::{Bucket, Expiry, Ranked, UserRow};
pub(crate) use statements::NewRow;
use statements::{CasUpdate, SelectLive, Touch};
pub(crate) use with_connection;

/// The live row of `sid`, if any (see [`SelectLive`]); `LOCK` reads it
/// `FOR UPDATE`.
pub(crate) fn live_row<const LOCK: bool, C>(
    conn: &mut C,
    sid: &StoredId,
    cut: Cutoffs,
) -> Result<Option<Row>>
where
    C: Connection,
    for<'a> SelectLive<'a, LOCK>: diesel::query_dsl::LoadQuery<'a, C, Row>,
{
    SelectLive::<LOCK> {
        sid: sid.as_bytes(),
        idle: cut.idle,
        lifetime: cut.lifetime,
    }
    .get_result::<Row>(conn)
    .optional()
    .map_err(Error::from)
}

/// The per-backend trait impls, which differ only in the connection type,
/// the migrations directory, one SQL expression, how a write transaction
/// begins, and whether a locked read needs `FOR UPDATE`.
macro_rules! backend_impls {
    ($conn:ty, $dir:literal, $payload_length:literal, $begin:ident, $lock:literal) => {
        const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
            diesel_migrations::embed_migrations!($dir);

        impl $crate::backend::Migrations for $conn {
            fn migrations() -> diesel_migrations::EmbeddedMigrations {
                MIGRATIONS
            }
        }

        impl $crate::backend::Dialect for $conn {
            const SQL: $crate::backend::DialectSql = $crate::backend::DialectSql {
                payload_length: $payload_length,
            };
        }

        impl $crate::backend::WriteTransaction for $conn {
            fn write_transaction<T>(
                &mut self,
                f: impl FnOnce(&mut Self) -> $crate::error::Result<T>,
            ) -> $crate::error::Result<T> {
                self.$begin(f)
            }

            fn load_locked(
                &mut self,
                sid: &$crate::id::StoredId,
                cut: $crate::backend::Cutoffs,
            ) -> $crate::error::Result<Option<$crate::backend::Row>> {
                $crate::backend::live_row::<$lock, _>(self, sid, cut)
            }
        }
    };
}
pub(crate) use backend_impls;

/// SQL that differs between backends.
#[derive(Debug)]
pub(crate) struct DialectSql {
    /// Expression giving the byte length of `data` as a BIGINT.
    pub payload_length: &'static str,
}

/// Backend-specific SQL fragments, one impl per connection type.
pub(crate) trait Dialect {
    const SQL: DialectSql;
}

/// What to do with a row read under lock (see [`Database::locked`]).
#[derive(Debug)]
pub(crate) enum Plan {
    /// Leave it (gone, or unreadable).
    Nothing,
    /// Replace its data.
    Update {
        data: Vec<u8>,
        /// The version read under the lock; the write stores the next one.
        version: i64,
        now: i64,
        user_key: Option<[u8; 32]>,
    },
    /// Delete it.
    Delete,
    /// Delete it and insert this row instead.
    Renew {
        sid: StoredId,
        data: Vec<u8>,
        user_key: Option<[u8; 32]>,
        /// The session's creation time, which renewing keeps.
        created_at: i64,
        now: i64,
    },
}

impl Database {
    /// Held around each of the store's writes: on SQLite, a place in the
    /// in-process writer queue (see `SQLITE_WRITERS`); elsewhere nothing.
    fn write_gate(&self) -> Option<std::sync::MutexGuard<'static, ()>> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => Some(SQLITE_WRITERS.lock().unwrap_or_else(|e| e.into_inner())),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Database::Postgres(_) => Backend::Postgres,
            #[cfg(feature = "mysql")]
            Database::Mysql(_) => Backend::Mysql,
        }
    }

    /// Opens a pool from a URL: `postgres://…`/`postgresql://…`,
    /// `mysql://…`/`mariadb://…`, `sqlite://path`, `sqlite::memory:`, or a
    /// plain file path (SQLite).
    pub(crate) fn open(url: &str, options: &PoolOptions) -> Result<Database> {
        // Whatever a driver says about a failed connection, it reaches the
        // caller (and the CLI's stderr) without the URL's passwords.
        Self::open_unscrubbed(url, options).map_err(|e| e.scrubbed(url))
    }

    fn open_unscrubbed(url: &str, options: &PoolOptions) -> Result<Database> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return postgres::open(url, options).map(Database::Postgres);
            #[cfg(not(feature = "postgres"))]
            return Err(Error::Config(
                "a postgres:// URL needs the `postgres` feature".into(),
            ));
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return mysql::open(url, options).map(Database::Mysql);
            #[cfg(not(feature = "mysql"))]
            return Err(Error::Config(
                "a mysql:// URL needs the `mysql` feature".into(),
            ));
        }
        if lower.contains("://") && !lower.starts_with("sqlite://") && !lower.starts_with("file:") {
            return Err(Error::Config(format!(
                "unsupported database URL scheme in {:?}",
                redact_url(url)
            )));
        }
        #[cfg(feature = "sqlite")]
        return sqlite::open(url, options).map(Database::Sqlite);
        #[cfg(not(feature = "sqlite"))]
        return Err(Error::Config(
            "a SQLite path needs the `sqlite` feature".into(),
        ));
    }

    /// Runs the embedded migrations for this backend.
    pub(crate) fn run_migrations(&self) -> Result<()> {
        use diesel_migrations::MigrationHarness;
        with_connection!(self, |conn| {
            conn.run_pending_migrations(migrations_for(conn))
                .map(|_| ())
                .map_err(|e| Error::Migration(e.to_string()))
        })
    }

    /// One indexed SELECT by `sid` that already filters out expired rows.
    pub(crate) fn load(&self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>> {
        with_connection!(self, |conn| live_row::<false, _>(conn, sid, cut))
    }

    /// The slow path after a write conflict: in one write transaction, read
    /// the row under lock, let `plan` decide (it merges and seals), and apply
    /// the plan. Concurrent writers of the same session queue on the lock, so
    /// this always makes progress. Returns the rows the plan affected.
    ///
    /// `lock` is the user lock to hold when the plan may renew (see
    /// [`user_lock`]).
    pub(crate) fn locked(
        &self,
        sid: &StoredId,
        cut: Cutoffs,
        lock: Option<UserLock>,
        plan: &mut dyn FnMut(Option<Row>) -> Result<Plan>,
    ) -> Result<usize> {
        let _gate = self.write_gate();
        with_connection!(self, |conn| {
            conn.user_transaction(lock, |conn| {
                let row = conn.load_locked(sid, cut)?;
                let target = t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()));
                Ok(match plan(row)? {
                    Plan::Nothing => 0,
                    Plan::Update {
                        data,
                        version,
                        now,
                        user_key,
                    } => CasUpdate::<true, true> {
                        sid: sid.as_bytes(),
                        data: &data,
                        version,
                        next_version: version + 1,
                        updated_at: now,
                        user_key: user_key.as_ref().map(|k| k.as_slice()),
                        idle: cut.idle,
                        lifetime: cut.lifetime,
                    }
                    .execute(conn)?,
                    Plan::Delete => diesel::delete(target).execute(conn)?,
                    Plan::Renew {
                        sid: new_sid,
                        data,
                        user_key,
                        created_at,
                        now,
                    } => {
                        diesel::delete(target).execute(conn)?;
                        NewRow {
                            sid: new_sid.as_bytes(),
                            data: &data,
                            version: 1,
                            user_key: user_key.as_ref().map(|k| k.as_slice()),
                            created_at,
                            updated_at: now,
                        }
                        .execute(conn)?
                    }
                })
            })
        })
    }

    /// INSERT; `Ok(false)` when the sid already exists.
    pub(crate) fn insert(&self, row: &NewRow<'_>) -> Result<bool> {
        let _gate = self.write_gate();
        let result = with_connection!(self, |conn| { row.execute(conn).map_err(Error::from) });
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Compare-and-swap UPDATE of the data; 0 rows when the version moved,
    /// the row is gone or it expired. `touch` is `Some(now)` to move the
    /// idle clock too, `None` to leave `updated_at` (and its index entry)
    /// alone. `user_key` is `None` to leave the indexed binding column alone
    /// (the common case), `Some(value)` to set it.
    pub(crate) fn update(
        &self,
        sid: &StoredId,
        version: i64,
        data: &[u8],
        touch: Option<i64>,
        user_key: Option<Option<&[u8]>>,
        cut: Cutoffs,
    ) -> Result<usize> {
        let _gate = self.write_gate();
        let cas = CasUpdate::<false, false> {
            sid: sid.as_bytes(),
            data,
            version,
            next_version: version + 1,
            updated_at: touch.unwrap_or_default(),
            user_key: user_key.flatten(),
            idle: cut.idle,
            lifetime: cut.lifetime,
        };
        // One prepared statement per combination of optional columns.
        with_connection!(self, |conn| {
            match (touch.is_some(), user_key.is_some()) {
                (false, false) => cas.execute(conn),
                (true, false) => cas.shaped::<true, false>().execute(conn),
                (false, true) => cas.shaped::<false, true>().execute(conn),
                (true, true) => cas.shaped::<true, true>().execute(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Refreshes `updated_at` only, never `data`, and only on a live row.
    pub(crate) fn touch(&self, sid: &StoredId, now: i64, cut: Cutoffs) -> Result<usize> {
        let _gate = self.write_gate();
        with_connection!(self, |conn| {
            Touch {
                sid: sid.as_bytes(),
                now,
                idle: cut.idle,
                lifetime: cut.lifetime,
            }
            .execute(conn)
            .map_err(Error::from)
        })
    }

    /// DELETE by sid, optionally only at a given version.
    pub(crate) fn delete(&self, sid: &StoredId, version: Option<i64>) -> Result<usize> {
        let _gate = self.write_gate();
        with_connection!(self, |conn| {
            let target = t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()));
            match version {
                Some(v) => diesel::delete(target.filter(t::version.eq(v))).execute(conn),
                None => diesel::delete(target).execute(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Deletes the old row (at its version) and inserts the new one in one
    /// transaction, holding the user's lock when the new row is bound to a
    /// user (so a concurrent revocation of that user cannot miss it). A
    /// unique violation on the new sid is returned as an error (and rolls
    /// the delete back).
    pub(crate) fn renew(
        &self,
        old: &StoredId,
        version: i64,
        new: &NewRow<'_>,
        lock: Option<UserLock>,
    ) -> Result<RenewResult> {
        let _gate = self.write_gate();
        with_connection!(self, |conn| {
            conn.user_transaction(lock, |conn| {
                let deleted = diesel::delete(
                    t::stored_sessions
                        .filter(t::sid.eq(old.as_bytes().as_slice()))
                        .filter(t::version.eq(version)),
                )
                .execute(conn)?;
                if deleted == 0 {
                    return Ok(RenewResult::Conflict);
                }
                new.execute(conn)?;
                Ok(RenewResult::Done)
            })
        })
    }
}

/// The embedded migrations of the backend a connection belongs to.
pub(crate) trait Migrations {
    fn migrations() -> diesel_migrations::EmbeddedMigrations;
}

fn migrations_for<C: Migrations>(_: &C) -> diesel_migrations::EmbeddedMigrations {
    C::migrations()
}

/// Hides the passwords of a database URL for error messages and logs.
pub(crate) use crate::redact::url as redact_url;

#[cfg(feature = "sqlite")]
impl From<SqlitePool> for Database {
    fn from(pool: SqlitePool) -> Self {
        Database::Sqlite(pool)
    }
}

#[cfg(feature = "postgres")]
impl From<PgPool> for Database {
    fn from(pool: PgPool) -> Self {
        Database::Postgres(pool)
    }
}

#[cfg(feature = "mysql")]
impl From<MysqlPool> for Database {
    fn from(pool: MysqlPool) -> Self {
        Database::Mysql(pool)
    }
}
