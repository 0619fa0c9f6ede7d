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

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod deadline;
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

#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use self::deadline::Connections;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) use self::deadline::{run as run_bounded, Ask};
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
/// make one from a URL. The network backends' pools come wrapped in
/// [`Connections`], which dereferences to the pool and carries the store's
/// client-side deadline ([`PoolOptions::operation_timeout`]).
#[derive(Clone)]
#[non_exhaustive]
pub enum Database {
    /// SQLite (feature `sqlite`).
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    /// PostgreSQL (feature `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(Connections<diesel::PgConnection>),
    /// MySQL or MariaDB (feature `mysql`).
    #[cfg(feature = "mysql")]
    Mysql(Connections<diesel::MysqlConnection>),
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

/// Pool settings used when the store opens its own pool from a URL, and
/// the timeouts that make every store call end within a bound when the
/// database stops answering.
///
/// With the defaults, every database operation on PostgreSQL or MySQL
/// ends, with a result or an error, within the acquire timeout plus the
/// operation timeout (5 s + 5.5 s), less than the acquire timeout plus the
/// statement timeout plus 1 s, even when the server or the network stops
/// answering. On SQLite a write waits at most the acquire timeout for this
/// process's other writers, then at most the busy timeout for another
/// process's lock.
///
/// What applies to a pool you build yourself and pass to
/// [`StoreBuilder::build`](crate::StoreBuilder::build): only
/// `operation_timeout` (the client-side deadline, set by the builder). The
/// connection settings (`connect_timeout`, `tcp_keepalive`) and the
/// server-side timeouts (`statement_timeout`, `lock_timeout`) are applied
/// by [`StoreBuilder::open`](crate::StoreBuilder::open) to the connections
/// it opens; for your own pool, put them in its URL and in a connection
/// customizer (the PostgreSQL parameters and `SET` statements are listed
/// on each field).
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
    /// Longest a new connection may take to be established. PostgreSQL:
    /// the libpq `connect_timeout` parameter (whole seconds, rounded up;
    /// libpq waits at least 2 s), added to the URL unless it sets one.
    /// MySQL: not settable through Diesel; a connection that never
    /// completes occupies one of r2d2's connector threads, never a caller,
    /// which waits `acquire_timeout` at most. Default: 5 seconds.
    pub connect_timeout: Duration,
    /// Longest one statement may run on the server before the server
    /// cancels it with an error (the connection stays usable).
    /// PostgreSQL: `SET statement_timeout` and
    /// `SET idle_in_transaction_session_timeout` (a session idle inside a
    /// transaction that long is ended, releasing its row locks) on each new
    /// connection. MariaDB: `SET SESSION max_statement_time` and
    /// `idle_transaction_timeout` (whole seconds); MySQL: `SET SESSION
    /// max_execution_time` (MySQL applies it to `SELECT`s only). `None`
    /// leaves the server's settings alone. Default: 5 seconds.
    pub statement_timeout: Option<Duration>,
    /// Longest a statement waits for a lock. PostgreSQL: `SET lock_timeout`;
    /// MySQL/MariaDB: `SET SESSION innodb_lock_wait_timeout` (row locks)
    /// and `lock_wait_timeout` (metadata locks), whole seconds, at least 1.
    /// `None` leaves the server's settings alone. Default: 5 seconds.
    pub lock_timeout: Option<Duration>,
    /// The client-side deadline: the longest the store waits for the
    /// database to answer one operation once it holds a connection, for
    /// PostgreSQL and MySQL. Past it the call returns [`Error::Timeout`]
    /// and the connection is abandoned (the pool drops it once its socket
    /// answers or breaks). This is the only timeout that also fires when
    /// the server, or something between, stops answering while the TCP
    /// connection stays up: neither client library has a read timeout that
    /// Diesel can set. Operations then run on a small pool of worker
    /// threads (at most one per connection), which costs two thread
    /// wake-ups per operation: from a few to tens of microseconds,
    /// depending on how busy the machine is (`cargo bench --bench
    /// deadline` measures it). `None` runs them on the caller's thread, as
    /// fast as before and without this guarantee. Keep it above
    /// `statement_timeout`, so that the server reports a slow statement
    /// first and the connection is kept. It also applies to a pool passed
    /// to [`StoreBuilder::build`](crate::StoreBuilder::build). Default:
    /// 5.5 seconds.
    pub operation_timeout: Option<Duration>,
    /// TCP keepalive for PostgreSQL connections, so that the pool notices a
    /// peer that vanished (a crashed host, a dropped route) and a stuck
    /// connection is freed: probes start after this much idle time, repeat
    /// every third of it, and the connection is dropped after 3 unanswered
    /// probes or when sent data stays unacknowledged for twice this time
    /// (libpq `keepalives`, `keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`, `tcp_user_timeout`, each added to the URL unless
    /// it sets it). Not settable through Diesel for MySQL. `None` leaves
    /// libpq's and the system's defaults. Default: 30 seconds.
    pub tcp_keepalive: Option<Duration>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 8,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Some(DEFAULT_STATEMENT_TIMEOUT),
            lock_timeout: Some(Duration::from_secs(5)),
            operation_timeout: Some(DEFAULT_STATEMENT_TIMEOUT + OPERATION_GRACE),
            tcp_keepalive: Some(Duration::from_secs(30)),
        }
    }
}

/// The default [`PoolOptions::statement_timeout`].
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much longer than the statement timeout the client waits by default,
/// so that the server's own timeout reports first.
pub(crate) const OPERATION_GRACE: Duration = Duration::from_millis(500);

/// Whole seconds, rounded up, at least 1 (for settings in seconds).
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn whole_seconds(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

/// Milliseconds, rounded up, at least 1 (0 would mean "no limit").
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000).max(1)
}

/// Runs the same block against whichever backend `$db` is, with `$conn`
/// bound to a `&mut` connection of the concrete type.
///
/// The block becomes a `move` closure that may run on another thread (see
/// [`deadline`]): it must own what it uses (copy borrowed inputs into
/// owned values before the macro). The second form also binds `$ask`, the
/// callback through which the block asks for `plan`'s answer (see
/// [`Database::locked`]).
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::backend::with_connection!($db, None, |$conn, _ask| $body)
    };
    ($db:expr, $plan:expr, |$conn:ident, $ask:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::backend::Database::Sqlite(pool) => $crate::backend::run(
                pool,
                $plan,
                move |$conn: &mut diesel::SqliteConnection,
                      $ask: &mut dyn FnMut(
                    Option<$crate::backend::Row>,
                )
                    -> $crate::error::Result<$crate::backend::Plan>| $body,
            ),
            #[cfg(feature = "postgres")]
            $crate::backend::Database::Postgres(conns) => $crate::backend::run_bounded(
                conns,
                $plan,
                move |$conn: &mut diesel::PgConnection, $ask: $crate::backend::Ask<'_>| $body,
            ),
            #[cfg(feature = "mysql")]
            $crate::backend::Database::Mysql(conns) => $crate::backend::run_bounded(
                conns,
                $plan,
                move |$conn: &mut diesel::MysqlConnection, $ask: $crate::backend::Ask<'_>| $body,
            ),
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
///
/// A writer waits here at most the pool's acquire timeout
/// ([`Error::PoolTimeout`] after that): when another process holds the
/// lock, each queued writer fails within acquire + busy timeout instead of
/// one busy timeout after the other.
#[cfg(feature = "sqlite")]
static SQLITE_WRITERS: WriterQueue = WriterQueue {
    state: std::sync::Mutex::new(QueueState {
        busy: false,
        waiting: 0,
    }),
    free: std::sync::Condvar::new(),
};

#[cfg(feature = "sqlite")]
struct WriterQueue {
    state: std::sync::Mutex<QueueState>,
    free: std::sync::Condvar,
}

#[cfg(feature = "sqlite")]
struct QueueState {
    busy: bool,
    waiting: usize,
}

/// A writer's turn in [`SQLITE_WRITERS`]; the next one's starts on drop.
#[cfg(feature = "sqlite")]
pub(crate) struct WriterTurn(());

#[cfg(feature = "sqlite")]
impl WriterQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enter(&'static self, limit: Duration) -> Result<WriterTurn> {
        let mut state = self.state();
        if state.busy {
            let end = std::time::Instant::now() + limit;
            state.waiting += 1;
            while state.busy {
                let left = end.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    state.waiting -= 1;
                    return Err(Error::PoolTimeout {
                        timeout: limit,
                        message: "this process's other SQLite writers held the write lock".into(),
                    });
                }
                state = self
                    .free
                    .wait_timeout(state, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            state.waiting -= 1;
        }
        state.busy = true;
        Ok(WriterTurn(()))
    }
}

#[cfg(feature = "sqlite")]
impl Drop for WriterTurn {
    fn drop(&mut self) {
        let mut state = SQLITE_WRITERS.state();
        state.busy = false;
        let waiting = state.waiting > 0;
        drop(state);
        // Only when someone waits: a notify is a system call.
        if waiting {
            SQLITE_WRITERS.free.notify_one();
        }
    }
}

/// When an operation that failed runs again (see [`run`]).
#[derive(Debug, Default)]
pub(crate) struct Retries {
    retried: bool,
    deadlocks: u32,
}

impl Retries {
    /// Whether to run the operation again after `e`, and after what pause.
    /// A timeout is never retried.
    pub(crate) fn next(&mut self, e: &Error) -> Option<Duration> {
        if e.is_connection_failure() {
            if self.retried {
                return None;
            }
            log::warn!(target: "stored_session", "session database connection lost; retrying once on a new connection: {e}");
            self.retried = true;
            Some(Duration::ZERO)
        } else if is_deadlock(e) && self.deadlocks < DEADLOCK_RETRIES {
            log::debug!(target: "stored_session", "session statement chosen as a deadlock victim; running it again: {e}");
            self.deadlocks += 1;
            // Back off with jitter so the two sides of the deadlock do
            // not meet again at once: 1-2 ms, doubling per attempt.
            let jitter = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() % 1_000_000)
                .unwrap_or(0);
            let base = Duration::from_millis(1u64 << self.deadlocks.min(6));
            Some(base + Duration::from_nanos(u64::from(jitter)))
        } else {
            None
        }
    }
}

/// The plan callback of operations that have none: leave the row alone.
pub(crate) fn no_plan(_: Option<Row>) -> Result<Plan> {
    Ok(Plan::Nothing)
}

/// Checks a connection out (no `SELECT 1` on checkout: that would double a
/// load's round trips) and runs `f` on the caller's thread, with `plan` as
/// its write-plan callback. If the connection turns out to be dead, it is
/// marked broken so the pool drops it, and `f` runs once more on a fresh
/// connection (a MySQL connection is also discarded after any server
/// error, see [`Dialect::STICKY_STATEMENT_ERRORS`]). If the database chose
/// `f` as the victim of a deadlock
/// (InnoDB does between a logout's `DELETE` and a concurrent renew's
/// `DELETE` + `INSERT`), it rolled `f`'s work back, so `f` runs again (a
/// few times at most) instead of failing the request.
///
/// SQLite always runs here; PostgreSQL and MySQL do when they have no
/// client-side deadline (see [`run_bounded`], which has the same retries
/// on a worker thread).
pub(crate) fn run<C, T>(
    pool: &Pool<ConnectionManager<C>>,
    plan: Option<&mut dyn FnMut(Option<Row>) -> Result<Plan>>,
    mut f: impl FnMut(&mut C, &mut dyn FnMut(Option<Row>) -> Result<Plan>) -> Result<T>,
) -> Result<T>
where
    C: R2D2Connection + Connection<TransactionManager = AnsiTransactionManager> + Dialect + 'static,
{
    let mut no = no_plan;
    let plan: &mut dyn FnMut(Option<Row>) -> Result<Plan> = match plan {
        Some(plan) => plan,
        None => &mut no,
    };
    let mut retries = Retries::default();
    loop {
        let mut conn = pool.get().map_err(|e| Error::PoolTimeout {
            timeout: pool.connection_timeout(),
            message: e.to_string(),
        })?;
        match f(&mut conn, &mut *plan) {
            Err(e) => {
                let broken = discard_after::<C>(&e);
                if broken {
                    // The connection is unusable: flag it so r2d2 discards
                    // it on return instead of handing it to the next request.
                    AnsiTransactionManager::transaction_manager_status_mut(&mut *conn)
                        .set_in_error();
                }
                drop(conn);
                if broken {
                    replace_broken(pool);
                }
                match retries.next(&e) {
                    Some(pause) => std::thread::sleep(pause),
                    None => return Err(e),
                }
            }
            ok => return ok,
        }
    }
}

/// After a broken connection was dropped: r2d2 0.8 does not wake the
/// callers waiting for a connection then (it does when a connection comes
/// back or a new one is made), so they would sleep through their whole
/// acquire timeout although there is room for a new connection. A
/// zero-timeout checkout starts one (or hands back an idle one, which wakes
/// a waiter as it returns).
pub(crate) fn replace_broken<C: R2D2Connection + 'static>(pool: &Pool<ConnectionManager<C>>) {
    drop(pool.get_timeout(Duration::ZERO));
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

/// What [`Database::write_gate`] holds.
#[cfg(feature = "sqlite")]
type WriteTurn = WriterTurn;
/// What [`Database::write_gate`] holds (nothing without SQLite).
#[cfg(not(feature = "sqlite"))]
type WriteTurn = ();

/// A [`NewRow`] that owns its bytes, for an operation that may run on
/// another thread.
#[derive(Debug, Clone)]
struct OwnedRow {
    sid: Vec<u8>,
    data: Vec<u8>,
    version: i64,
    user_key: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
}

impl OwnedRow {
    fn from(row: &NewRow<'_>) -> OwnedRow {
        OwnedRow {
            sid: row.sid.to_vec(),
            data: row.data.to_vec(),
            version: row.version,
            user_key: row.user_key.map(<[u8]>::to_vec),
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }

    fn as_new_row(&self) -> NewRow<'_> {
        NewRow {
            sid: &self.sid,
            data: &self.data,
            version: self.version,
            user_key: self.user_key.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
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
    ($conn:ty, $dir:literal, $payload_length:literal, $begin:ident, $lock:literal, $sticky:literal) => {
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
            const STICKY_STATEMENT_ERRORS: bool = $sticky;
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

    /// Whether a cached prepared statement that failed keeps failing: on
    /// MySQL/MariaDB (Diesel 2.3 with libmariadb), once an execution of a
    /// cached statement returned a server error (a lock wait timeout, a
    /// statement timeout, a deadlock, a duplicate key), every later
    /// execution of that statement on that connection returns the same
    /// error at once. Such a connection is discarded after any server error.
    const STICKY_STATEMENT_ERRORS: bool;
}

/// Whether a connection that returned `e` must be discarded rather than
/// lent out again: it is dead, or (see [`Dialect::STICKY_STATEMENT_ERRORS`])
/// one of its cached statements is stuck on an error.
pub(crate) fn discard_after<C: Dialect>(e: &Error) -> bool {
    e.is_connection_failure()
        || (C::STICKY_STATEMENT_ERRORS
            && matches!(e, Error::Database(diesel::result::Error::DatabaseError(..))))
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
    /// Held around each of the store's writes: on SQLite, a turn in the
    /// in-process writer queue (see `SQLITE_WRITERS`; waiting at most the
    /// pool's acquire timeout); elsewhere nothing.
    fn write_gate(&self) -> Result<Option<WriteTurn>> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(pool) => SQLITE_WRITERS.enter(pool.connection_timeout()).map(Some),
            #[allow(unreachable_patterns)]
            _ => Ok(None),
        }
    }

    /// The same database with the client-side deadline `timeout` (see
    /// [`PoolOptions::operation_timeout`]); SQLite has none.
    pub(crate) fn with_operation_timeout(self, timeout: Option<Duration>) -> Database {
        match self {
            #[cfg(feature = "postgres")]
            Database::Postgres(conns) => Database::Postgres(conns.with_timeout(timeout)),
            #[cfg(feature = "mysql")]
            Database::Mysql(conns) => Database::Mysql(conns.with_timeout(timeout)),
            #[allow(unreachable_patterns)]
            other => {
                let _ = timeout;
                other
            }
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
            return postgres::open(url, options)
                .map(|pool| Database::Postgres(Connections::new(pool, options.operation_timeout)));
            #[cfg(not(feature = "postgres"))]
            return Err(Error::Config(
                "a postgres:// URL needs the `postgres` feature".into(),
            ));
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return mysql::open(url, options)
                .map(|pool| Database::Mysql(Connections::new(pool, options.operation_timeout)));
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

    /// Runs the embedded migrations for this backend, on the caller's
    /// thread, without the client-side deadline and (on the servers) with
    /// the server's default statement and lock timeouts: a migration of a
    /// large table may take longer than any request should. The connection
    /// is discarded afterwards, so that these settings never reach a request.
    pub(crate) fn run_migrations(&self) -> Result<()> {
        use diesel_migrations::MigrationHarness;
        fn migrate<C>(pool: &Pool<ConnectionManager<C>>, unbounded: &[&str]) -> Result<()>
        where
            C: R2D2Connection
                + Connection<TransactionManager = AnsiTransactionManager>
                + Dialect
                + Migrations
                + MigrationHarness<C::Backend>
                + 'static,
        {
            run(pool, None, |conn, _| {
                for sql in unbounded {
                    // A setting this server does not know is one it does
                    // not apply either.
                    let _ = conn.batch_execute(sql);
                }
                let result = conn
                    .run_pending_migrations(migrations_for(conn))
                    .map(|_| ())
                    .map_err(|e| Error::Migration(e.to_string()));
                if !unbounded.is_empty() {
                    AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
                }
                result
            })
        }
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(pool) => migrate(pool, &[]),
            #[cfg(feature = "postgres")]
            Database::Postgres(conns) => migrate(
                conns.pool(),
                &[
                    "SET statement_timeout = DEFAULT; SET lock_timeout = DEFAULT; \
                   SET idle_in_transaction_session_timeout = DEFAULT",
                ],
            ),
            #[cfg(feature = "mysql")]
            Database::Mysql(conns) => migrate(
                conns.pool(),
                &[
                    "SET SESSION lock_wait_timeout = DEFAULT",
                    "SET SESSION innodb_lock_wait_timeout = DEFAULT",
                    "SET SESSION max_statement_time = DEFAULT",
                    "SET SESSION idle_transaction_timeout = DEFAULT",
                    "SET SESSION max_execution_time = DEFAULT",
                ],
            ),
        }
    }

    /// One indexed SELECT by `sid` that already filters out expired rows.
    pub(crate) fn load(&self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>> {
        let sid = *sid;
        with_connection!(self, |conn| live_row::<false, _>(conn, &sid, cut))
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
        let _gate = self.write_gate()?;
        let sid = *sid;
        // The plan runs on the caller's thread; a worker asks for it.
        with_connection!(self, Some(plan), |conn, ask| {
            conn.user_transaction(lock, |conn| {
                let row = conn.load_locked(&sid, cut)?;
                let target = t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()));
                Ok(match ask(row)? {
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
        let _gate = self.write_gate()?;
        let row = OwnedRow::from(row);
        let result = with_connection!(self, |conn| {
            row.as_new_row().execute(conn).map_err(Error::from)
        });
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
        let _gate = self.write_gate()?;
        let sid = *sid;
        let data = data.to_vec();
        let rebind = user_key.is_some();
        let user_key = user_key.flatten().map(<[u8]>::to_vec);
        // One prepared statement per combination of optional columns.
        with_connection!(self, |conn| {
            let cas = CasUpdate::<false, false> {
                sid: sid.as_bytes(),
                data: &data,
                version,
                next_version: version + 1,
                updated_at: touch.unwrap_or_default(),
                user_key: user_key.as_deref(),
                idle: cut.idle,
                lifetime: cut.lifetime,
            };
            match (touch.is_some(), rebind) {
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
        let _gate = self.write_gate()?;
        let sid = *sid;
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
        let _gate = self.write_gate()?;
        let sid = *sid;
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
        let _gate = self.write_gate()?;
        let old = *old;
        let new = OwnedRow::from(new);
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
                new.as_new_row().execute(conn)?;
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

/// With the default client-side deadline
/// ([`PoolOptions::operation_timeout`]); a [`StoreBuilder`](crate::StoreBuilder)
/// sets its own.
#[cfg(feature = "postgres")]
impl From<PgPool> for Database {
    fn from(pool: PgPool) -> Self {
        Database::Postgres(Connections::new(
            pool,
            PoolOptions::default().operation_timeout,
        ))
    }
}

/// With the default client-side deadline
/// ([`PoolOptions::operation_timeout`]); a [`StoreBuilder`](crate::StoreBuilder)
/// sets its own.
#[cfg(feature = "mysql")]
impl From<MysqlPool> for Database {
    fn from(pool: MysqlPool) -> Self {
        Database::Mysql(Connections::new(
            pool,
            PoolOptions::default().operation_timeout,
        ))
    }
}
