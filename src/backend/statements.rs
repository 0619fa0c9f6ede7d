//! The hot write statements, written so Diesel prepares each one once per
//! connection.
//!
//! Diesel never caches the statements its `update()` builds, nor inserts
//! from `Insertable` on PostgreSQL and MySQL: it prepares them again on
//! every execution (a parse and plan on every server, and an extra round
//! trip on MySQL, where prepare and execute are separate requests). These
//! types write fixed SQL with bind parameters and carry a static
//! [`QueryId`], so the statement cache keys them by type and every
//! execution after the first on a connection reuses the prepared statement.
//!
//! Each distinct SQL text is its own type: the const parameters of
//! [`CasUpdate`] pick which optional columns the statement sets, the one of
//! [`SelectLive`] whether it locks the row.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Binary, HasSqlType, Nullable};
use diesel::{QueryResult, RunQueryDsl};

/// What a backend must support for these statements: binary and BIGINT
/// bind parameters.
pub trait Binds: Backend + HasSqlType<Binary> + HasSqlType<BigInt> {}

impl<DB> Binds for DB
where
    DB: Backend + HasSqlType<Binary> + HasSqlType<BigInt>,
    [u8]: diesel::serialize::ToSql<Binary, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
}

/// Marks a statement type as cacheable: its SQL text depends only on its
/// type, never on the values bound.
macro_rules! static_query_id {
    ($name:ident $(<$($const:ident),*>)?) => {
        impl<'a $($(, const $const: bool)*)?> QueryId for $name<'a $($(, $const)*)?> {
            type QueryId = $name<'static $($(, $const)*)?>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl<'a, Conn $($(, const $const: bool)*)?> RunQueryDsl<Conn> for $name<'a $($(, $const)*)?> {}
    };
}

/// The bind values of the liveness test, `AND created_at + 0 > lifetime AND
/// COALESCE(expires_at, updated_at + idle_window) > now`.
#[derive(Debug, Clone, Copy)]
pub struct Live {
    /// Lifetime cutoff: the row must have `created_at` above it.
    pub lifetime: i64,
    /// The store's idle window, for a row without its own deadline.
    pub idle_window: i64,
    /// The current time: the row's deadline must be after it.
    pub now: i64,
}

/// `AND created_at + 0 > ? AND COALESCE(expires_at, updated_at + ?) > ?`:
/// the row is still live. Its own deadline, `expires_at`, must be after
/// now; a row without one (written before the column existed) lives while
/// `updated_at + idle window` is; the store's absolute lifetime caps both.
///
/// The expiry filters are expressions (`created_at + 0`, `COALESCE(..)`),
/// never bare columns: an expression cannot use those columns' indexes, so
/// every backend finds the row through the unique `sid` index alone.
/// Otherwise InnoDB may pick an index-merge plan on a small table, locking
/// entries of another index in one statement and the primary key in
/// another, which deadlocks concurrent writers of one session.
fn push_live<'b, DB>(out: &mut AstPass<'_, 'b, DB>, live: &'b Live) -> QueryResult<()>
where
    DB: Binds,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    out.push_sql(" AND created_at + 0 > ");
    out.push_bind_param::<BigInt, i64>(&live.lifetime)?;
    out.push_sql(" AND COALESCE(expires_at, updated_at + ");
    out.push_bind_param::<BigInt, i64>(&live.idle_window)?;
    out.push_sql(") > ");
    out.push_bind_param::<BigInt, i64>(&live.now)
}

/// The load: one live row by `sid`, its four columns in the order of
/// `Row`:
///
/// ```sql
/// SELECT data, version, created_at, updated_at FROM stored_sessions
/// WHERE sid = ? AND <live> [FOR UPDATE]
/// ```
///
/// `sid` is unique, so no `LIMIT`; `LOCK` adds `FOR UPDATE` (not on
/// SQLite, whose write transaction already holds the lock).
#[derive(Debug, Clone, Copy)]
pub struct SelectLive<'a, const LOCK: bool> {
    /// The row's `sid`.
    pub sid: &'a [u8],
    /// What makes the row live.
    pub live: Live,
}
static_query_id!(SelectLive<LOCK>);

impl<const LOCK: bool> Query for SelectLive<'_, LOCK> {
    type SqlType = (Binary, BigInt, BigInt, BigInt);
}

impl<DB: Binds, const LOCK: bool> QueryFragment<DB> for SelectLive<'_, LOCK>
where
    [u8]: diesel::serialize::ToSql<Binary, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(
            "SELECT data, version, created_at, updated_at FROM stored_sessions WHERE sid = ",
        );
        out.push_bind_param::<Binary, [u8]>(self.sid)?;
        push_live(&mut out, &self.live)?;
        if LOCK {
            out.push_sql(" FOR UPDATE");
        }
        Ok(())
    }
}

/// The compare-and-swap data write:
///
/// ```sql
/// UPDATE stored_sessions SET data = ?, version = ?
///     [, updated_at = ?, expires_at = ?] -- TOUCH: the idle clock is due for a
///                                        -- refresh (or the expiry changed)
///     [, user_key = ?]                   -- REBIND: the user binding changed or is re-keyed
/// WHERE sid = ? AND version = ? AND <live>
/// ```
///
/// Leaving a column out of `SET` leaves its index alone: SQLite rewrites an
/// index only for the columns a statement sets, and PostgreSQL can make the
/// update a heap-only tuple update (no index entries at all) when no indexed
/// column changes.
#[derive(Debug, Clone, Copy)]
pub struct CasUpdate<'a, const TOUCH: bool, const REBIND: bool> {
    /// The row's `sid`.
    pub sid: &'a [u8],
    /// The new envelope.
    pub data: &'a [u8],
    /// The version this write expects to find.
    pub version: i64,
    /// The version it writes.
    pub next_version: i64,
    /// The new idle clock (written only when `TOUCH`).
    pub updated_at: i64,
    /// The new deadline (written only when `TOUCH`).
    pub expires_at: Option<i64>,
    /// The new user binding (written only when `REBIND`).
    pub user_key: Option<&'a [u8]>,
    /// What makes the row live.
    pub live: Live,
}
static_query_id!(CasUpdate<TOUCH, REBIND>);

impl<'a, const TOUCH: bool, const REBIND: bool> CasUpdate<'a, TOUCH, REBIND> {
    /// The same values, written by the statement of another shape.
    pub fn shaped<const T: bool, const R: bool>(&self) -> CasUpdate<'a, T, R> {
        CasUpdate {
            sid: self.sid,
            data: self.data,
            version: self.version,
            next_version: self.next_version,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            user_key: self.user_key,
            live: self.live,
        }
    }
}

impl<DB: Binds, const TOUCH: bool, const REBIND: bool> QueryFragment<DB>
    for CasUpdate<'_, TOUCH, REBIND>
where
    [u8]: diesel::serialize::ToSql<Binary, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE stored_sessions SET data = ");
        out.push_bind_param::<Binary, [u8]>(self.data)?;
        out.push_sql(", version = ");
        out.push_bind_param::<BigInt, i64>(&self.next_version)?;
        if TOUCH {
            out.push_sql(", updated_at = ");
            out.push_bind_param::<BigInt, i64>(&self.updated_at)?;
            out.push_sql(", expires_at = ");
            out.push_bind_param::<Nullable<BigInt>, Option<i64>>(&self.expires_at)?;
        }
        if REBIND {
            out.push_sql(", user_key = ");
            out.push_bind_param::<Nullable<Binary>, Option<&[u8]>>(&self.user_key)?;
        }
        out.push_sql(" WHERE sid = ");
        out.push_bind_param::<Binary, [u8]>(self.sid)?;
        out.push_sql(" AND version = ");
        out.push_bind_param::<BigInt, i64>(&self.version)?;
        push_live(&mut out, &self.live)
    }
}

/// Refreshes the idle clock of a live row and slides its deadline by the
/// session's own idle window:
/// `UPDATE stored_sessions SET updated_at = ?, expires_at = ? WHERE sid = ? AND <live>`.
#[derive(Debug)]
pub struct Touch<'a> {
    /// The row's `sid`.
    pub sid: &'a [u8],
    /// The new idle clock.
    pub now: i64,
    /// The new deadline.
    pub expires_at: Option<i64>,
    /// What makes the row live.
    pub live: Live,
}
static_query_id!(Touch);

impl<DB: Binds> QueryFragment<DB> for Touch<'_>
where
    [u8]: diesel::serialize::ToSql<Binary, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE stored_sessions SET updated_at = ");
        out.push_bind_param::<BigInt, i64>(&self.now)?;
        out.push_sql(", expires_at = ");
        out.push_bind_param::<Nullable<BigInt>, Option<i64>>(&self.expires_at)?;
        out.push_sql(" WHERE sid = ");
        out.push_bind_param::<Binary, [u8]>(self.sid)?;
        push_live(&mut out, &self.live)
    }
}

/// One new row: `INSERT INTO stored_sessions (sid, data, version, user_key,
/// created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    /// SHA-256 of the public id.
    pub sid: &'a [u8],
    /// The envelope.
    pub data: &'a [u8],
    /// The first version (1).
    pub version: i64,
    /// The user binding, if any.
    pub user_key: Option<&'a [u8]>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Idle clock, Unix seconds.
    pub updated_at: i64,
    /// Deadline, Unix seconds (`None`: the store's limits).
    pub expires_at: Option<i64>,
}
static_query_id!(NewRow);

impl<DB: Binds> QueryFragment<DB> for NewRow<'_>
where
    [u8]: diesel::serialize::ToSql<Binary, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO stored_sessions (sid, data, version, user_key, created_at, updated_at, expires_at) VALUES (",
        );
        out.push_bind_param::<Binary, [u8]>(self.sid)?;
        out.push_sql(", ");
        out.push_bind_param::<Binary, [u8]>(self.data)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(&self.version)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Binary>, Option<&[u8]>>(&self.user_key)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(&self.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, i64>(&self.updated_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, Option<i64>>(&self.expires_at)?;
        out.push_sql(")");
        Ok(())
    }
}
