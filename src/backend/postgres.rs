//! PostgreSQL.

use diesel::r2d2::{ConnectionManager, Pool};
use diesel::{Connection, PgConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

use super::{
    live, redact_url, select_live, Cutoffs, Migrations, PoolOptions, Row, WriteTransaction,
};
use crate::error::{Error, Result};
use crate::id::StoredId;
use crate::schema::stored_sessions::dsl as t;
use diesel::prelude::*;

/// An r2d2 pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

impl Migrations for PgConnection {
    fn migrations() -> EmbeddedMigrations {
        MIGRATIONS
    }
}

impl super::Dialect for PgConnection {
    const SQL: super::DialectSql = super::DialectSql {
        payload_length: "octet_length(data)::BIGINT",
    };
}

impl WriteTransaction for PgConnection {
    fn write_transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.transaction(f)
    }

    fn load_locked(&mut self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>> {
        select_live!(sid, cut)
            .for_update()
            .first::<Row>(self)
            .optional()
            .map_err(Error::from)
    }
}

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
