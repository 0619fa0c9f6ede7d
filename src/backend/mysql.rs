//! MySQL and MariaDB: strict `sql_mode` on every connection, so an oversized
//! or malformed value is an error rather than silently truncated.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, MysqlConnection};

use super::{backend_impls, redact_url, PoolOptions};
use crate::error::Result;

/// An r2d2 pool of MySQL / MariaDB connections.
pub type MysqlPool = Pool<ConnectionManager<MysqlConnection>>;

/// The session `sql_mode` set on every connection the store opens. Diesel
/// needs `PIPES_AS_CONCAT`; the rest makes bad data an error.
pub const STRICT_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY,PIPES_AS_CONCAT";

backend_impls!(
    MysqlConnection,
    "migrations/mysql",
    "CAST(LENGTH(data) AS SIGNED)",
    transaction,
    true
);

#[derive(Debug)]
struct Strict;

impl CustomizeConnection<MysqlConnection, diesel::r2d2::Error> for Strict {
    fn on_acquire(&self, conn: &mut MysqlConnection) -> Result<(), diesel::r2d2::Error> {
        // READ COMMITTED: no gap locks, so a logout's DELETE and a renew's
        // DELETE + INSERT of neighbouring keys rarely deadlock (every session
        // write is a single-row compare-and-swap; nothing relies on
        // repeatable reads).
        conn.batch_execute(&format!(
            "SET SESSION sql_mode = '{STRICT_SQL_MODE}'; \
             SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub(super) fn open(url: &str, options: &PoolOptions) -> Result<MysqlPool> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let pool = Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(Strict))
        .build_unchecked(ConnectionManager::new(url.as_str()));
    super::checked(pool, options.acquire_timeout, || {
        format!("could not connect to MySQL at {}", redact_url(&url))
    })
}
