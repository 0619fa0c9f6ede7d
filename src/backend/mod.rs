//! The repository layer: every SQL statement the store runs, expanded once per
//! backend. `SessionStore` holds the policy; this module only talks to the
//! database.
//!
//! Its modules, each depending only on those listed before it:
//!
//! - `statements`: the hand-written statements (typed, prepared, cached).
//! - `rows`: the shapes read and written (row, cutoffs, write plan).
//! - `dialect`: what differs per backend, as traits and `backend_impls!`.
//! - `pool`: [`PoolOptions`] and the shared steps of opening a pool.
//! - `runner`: running one operation on a pooled connection, with the
//!   retries after a lost connection or a deadlock.
//! - `deadline`: the same on worker threads, bounded by a client-side
//!   deadline (PostgreSQL, MySQL).
//! - `sqlite`, `postgres`, `mysql`: opening each backend's pool.
//! - `database`: the public [`Database`] and [`Backend`], opening one from a
//!   URL, migrations, and `with_connection!`.
//! - `gate`: the SQLite writer queue every write passes.
//! - `user_lock`: the per-user lock that revocation and renewing share.
//! - `repository`: the session-row operations (load, write, renew, delete).
//! - `maintenance`: the table-wide operations (trim, stats, users, rotation).

mod database;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod deadline;
mod dialect;
mod gate;
mod maintenance;
#[cfg(feature = "mysql")]
mod mysql;
mod pool;
#[cfg(feature = "postgres")]
mod postgres;
mod repository;
mod rows;
mod runner;
#[cfg(feature = "sqlite")]
mod sqlite;
pub(crate) mod statements;
mod user_lock;

pub use self::database::{Backend, Database};
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub use self::deadline::Connections;
#[cfg(feature = "sqlite")]
pub use self::gate::SqliteConnections;
#[cfg(feature = "mysql")]
pub use self::mysql::{MysqlPool, STRICT_SQL_MODE};
pub use self::pool::PoolOptions;
#[cfg(feature = "postgres")]
pub use self::postgres::PgPool;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqlitePool;

pub(crate) use self::maintenance::{Bucket, Ranked, SampleRow, TrimRule, UserRow};
pub(crate) use self::repository::Binding;
pub(crate) use self::rows::{Applied, Cutoffs, Plan, RenewResult, Row};
pub(crate) use self::runner::is_unique_violation;
pub(crate) use self::statements::NewRow;
pub(crate) use self::user_lock::UserLock;
