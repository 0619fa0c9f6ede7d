//! The public [`Database`] (a pool of one of the enabled backends) and
//! [`Backend`]; opening one from a URL, running its migrations, and
//! [`with_connection!`], which runs a block on whichever backend it is.

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, R2D2Connection};

#[cfg(any(feature = "postgres", feature = "mysql"))]
use super::deadline::Connections;
use super::dialect::{migrations_for, Dialect, Migrations};
#[cfg(feature = "sqlite")]
use super::gate::SqliteConnections;
#[cfg(feature = "mysql")]
use super::mysql::{self, MysqlPool};
use super::pool::PoolOptions;
#[cfg(feature = "postgres")]
use super::postgres::{self, PgPool};
use super::runner::run;
#[cfg(feature = "sqlite")]
use super::sqlite::{self, SqlitePool};
use crate::error::{Error, Result};
use crate::redact::url as redact_url;

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
    Sqlite(SqliteConnections),
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

/// Runs the same block against whichever backend `$db` is, with `$conn`
/// bound to a `&mut` connection of the concrete type.
///
/// The block becomes a `move` closure that may run on another thread (see
/// [`deadline`](super::deadline)): it must own what it uses (copy borrowed inputs into
/// owned values before the macro). The second form also binds `$ask`, the
/// callback through which the block asks for `plan`'s answer (see
/// [`Database::locked`]).
macro_rules! with_connection {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::backend::database::with_connection!($db, None, |$conn, _ask| $body)
    };
    ($db:expr, $plan:expr, |$conn:ident, $ask:ident| $body:expr) => {
        match $db {
            #[cfg(feature = "sqlite")]
            $crate::backend::database::Database::Sqlite(conns) => $crate::backend::runner::run(
                conns.pool(),
                $plan,
                move |$conn: &mut diesel::SqliteConnection,
                      $ask: &mut dyn FnMut(
                    Option<$crate::backend::rows::Row>,
                ) -> $crate::error::Result<
                    $crate::backend::rows::Plan,
                >| $body,
            ),
            #[cfg(feature = "postgres")]
            $crate::backend::database::Database::Postgres(conns) => $crate::backend::deadline::run(
                conns,
                $plan,
                move |$conn: &mut diesel::PgConnection,
                      $ask: $crate::backend::deadline::Ask<'_>| $body,
            ),
            #[cfg(feature = "mysql")]
            $crate::backend::database::Database::Mysql(conns) => $crate::backend::deadline::run(
                conns,
                $plan,
                move |$conn: &mut diesel::MysqlConnection,
                      $ask: $crate::backend::deadline::Ask<'_>| $body,
            ),
        }
    };
}
pub(crate) use with_connection;

impl Database {
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
    /// plain file path (SQLite), with `options` (pool size, timeouts, the
    /// client-side deadline). A connection is made right away, so a
    /// database that cannot be reached or opened fails here, at once and
    /// saying why, rather than at first use.
    ///
    /// A `Database` needs no keys: it runs the table-wide maintenance that
    /// decrypts nothing ([`run_migrations`](Database::run_migrations),
    /// [`stats`](Database::stats), [`revoke_all`](Database::revoke_all),
    /// [`Trim::run_on`](crate::Trim::run_on)), as the `stored-session` CLI
    /// does. Build a [`SessionStore`](crate::SessionStore) on it with
    /// [`StoreBuilder::build`](crate::StoreBuilder::build) to serve sessions.
    ///
    /// ```
    /// use stored_session::{Backend, Config, Database, PoolOptions};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// db.run_migrations()?;
    /// assert_eq!(db.backend(), Backend::Sqlite);
    /// assert_eq!(db.stats(&Config::default())?.live, 0);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unsupported URL or a backend whose feature
    /// is off. [`Error::Connection`] when the first connection fails (an
    /// unknown database or role, a wrong password, a refused connection, a
    /// SQLite file that cannot be opened or is not a database) or does not
    /// complete within [`PoolOptions::connect_timeout`]: returned as soon as
    /// the driver gives up, with its reason. [`Error::PoolTimeout`] only if
    /// the pool then cannot check out a connection of its own within
    /// [`PoolOptions::acquire_timeout`]. No error's text contains a
    /// password from `url`: the URL is shown with `***` in place of each
    /// password it holds.
    ///
    /// ```
    /// use stored_session::{Backend, Database, Error, PoolOptions};
    ///
    /// let missing = std::env::temp_dir().join("no-such-dir").join("sessions.db");
    /// let err = Database::open(&missing.display().to_string(), &PoolOptions::default())
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::Connection { backend: Backend::Sqlite, .. }));
    /// assert!(err.to_string().starts_with("could not open the SQLite database at "));
    /// ```
    pub fn open(url: &str, options: &PoolOptions) -> Result<Database> {
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
        return sqlite::open(url, options).map(Database::from);
        #[cfg(not(feature = "sqlite"))]
        return Err(Error::Config(
            "a SQLite path needs the `sqlite` feature".into(),
        ));
    }

    /// Creates or updates the `stored_sessions` table: runs this backend's
    /// embedded migrations that have not run yet (none when the table is
    /// up to date), and returns the names of those it ran, oldest first
    /// (the directory names of [`migrations::for_backend`](crate::migrations::for_backend),
    /// e.g. `2026-11-27-000000_create_stored_sessions`); an empty list means
    /// the table was already up to date. Needs no keys.
    ///
    /// They run on the caller's thread, without the client-side deadline
    /// and (on the servers) with the server's default statement and lock
    /// timeouts: a migration of a large table may take longer than any
    /// request should. The connection is discarded afterwards, so that
    /// these settings never reach a request.
    ///
    /// ```
    /// use stored_session::{Database, PoolOptions};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// let applied = db.run_migrations()?;
    /// assert_eq!(
    ///     applied,
    ///     ["2026-11-27-000000_create_stored_sessions", "2026-12-02-000000_session_expiry"]
    /// );
    /// assert!(db.run_migrations()?.is_empty()); // up to date: nothing to do
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] when a migration fails; database and pool
    /// failures.
    pub fn run_migrations(&self) -> Result<Vec<String>> {
        use diesel_migrations::MigrationHarness;
        fn migrate<C>(pool: &Pool<ConnectionManager<C>>, unbounded: &[&str]) -> Result<Vec<String>>
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
                // What `run_pending_migrations` does, keeping the names.
                let result = conn
                    .pending_migrations(migrations_for(conn))
                    .and_then(|pending| {
                        conn.run_migrations(&pending)?;
                        Ok(pending.iter().map(|m| m.name().to_string()).collect())
                    })
                    .map_err(|e| Error::Migration(e.to_string()));
                if !unbounded.is_empty() {
                    AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
                }
                result
            })
        }
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(conns) => migrate(conns.pool(), &[]),
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
}

#[cfg(feature = "sqlite")]
/// Joins the writer queue of the pool's database file (one per file in
/// this process, shared with every other store on it).
impl From<SqlitePool> for Database {
    fn from(pool: SqlitePool) -> Self {
        Database::Sqlite(SqliteConnections::new(pool))
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
