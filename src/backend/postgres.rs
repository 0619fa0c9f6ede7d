//! PostgreSQL.

use diesel::r2d2::{ConnectionManager, Pool};
use diesel::{Connection, PgConnection};

use super::{backend_impls, redact_url, PoolOptions};
use crate::error::Result;

/// An r2d2 pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

backend_impls!(
    PgConnection,
    "migrations/postgres",
    "octet_length(data)::BIGINT",
    transaction,
    true
);

pub(super) fn open(url: &str, options: &PoolOptions) -> Result<PgPool> {
    let pool = Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .build_unchecked(ConnectionManager::new(url));
    super::checked(pool, options.acquire_timeout, || {
        format!("could not connect to PostgreSQL at {}", redact_url(url))
    })
}
