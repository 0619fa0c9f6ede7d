//! What differs between backends, as traits each connection type
//! implements: its SQL fragments, how a write transaction begins and reads
//! a row under lock, its embedded migrations, and whether a failed cached
//! statement keeps failing. [`backend_impls!`] writes the impls for each
//! backend file.

use diesel::prelude::*;

use super::rows::{Cutoffs, Row};
use crate::error::Result;
use crate::id::StoredId;

/// A transaction that takes the write lock up front on SQLite
/// (`BEGIN IMMEDIATE`, so two read-modify-write transactions cannot
/// deadlock) and is a plain transaction elsewhere.
pub(crate) trait WriteTransaction: Connection {
    fn write_transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T>;

    /// Reads a live row and locks it until the transaction ends (`FOR
    /// UPDATE`; on SQLite the immediate transaction already holds the lock).
    fn load_locked(&mut self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>>;
}

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

/// The embedded migrations of the backend a connection belongs to.
pub(crate) trait Migrations {
    fn migrations() -> diesel_migrations::EmbeddedMigrations;
}

pub(super) fn migrations_for<C: Migrations>(_: &C) -> diesel_migrations::EmbeddedMigrations {
    C::migrations()
}

/// The per-backend trait impls, which differ only in the connection type,
/// the migrations directory, one SQL expression, how a write transaction
/// begins, and whether a locked read needs `FOR UPDATE`.
macro_rules! backend_impls {
    ($conn:ty, $dir:literal, $payload_length:literal, $begin:ident, $lock:literal, $sticky:literal) => {
        const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
            diesel_migrations::embed_migrations!($dir);

        impl $crate::backend::dialect::Migrations for $conn {
            fn migrations() -> diesel_migrations::EmbeddedMigrations {
                MIGRATIONS
            }
        }

        impl $crate::backend::dialect::Dialect for $conn {
            const SQL: $crate::backend::dialect::DialectSql =
                $crate::backend::dialect::DialectSql {
                    payload_length: $payload_length,
                };
            const STICKY_STATEMENT_ERRORS: bool = $sticky;
        }

        impl $crate::backend::dialect::WriteTransaction for $conn {
            fn write_transaction<T>(
                &mut self,
                f: impl FnOnce(&mut Self) -> $crate::error::Result<T>,
            ) -> $crate::error::Result<T> {
                self.$begin(f)
            }

            fn load_locked(
                &mut self,
                sid: &$crate::id::StoredId,
                cut: $crate::backend::rows::Cutoffs,
            ) -> $crate::error::Result<Option<$crate::backend::rows::Row>> {
                $crate::backend::rows::live_row::<$lock, _>(self, sid, cut)
            }
        }
    };
}
pub(crate) use backend_impls;
