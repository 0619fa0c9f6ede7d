//! Maintenance SQL: trimming, statistics and key rotation. Portable across
//! the three backends: batches are chosen with `SELECT id … LIMIT n` and
//! deleted with `DELETE … WHERE id IN (…)` (MySQL rejects `IN (SELECT …
//! LIMIT)`, PostgreSQL has no `DELETE … LIMIT`), and every delete re-checks
//! expiry, so a session touched since its batch was chosen survives.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::{with_connection, Cutoffs, Database, Dialect};
use crate::error::{Error, Result};
use crate::schema::stored_sessions::dsl as t;

/// Which expiry rule a trim pass walks (each has its own index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Idle,
    Lifetime,
}

/// A row as key rotation reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct RotationRow {
    pub id: i64,
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
}

#[derive(QueryableByName)]
struct Length {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Database {
    /// Ids of up to `limit` rows expired under `rule` at `cutoff`, oldest first.
    pub(crate) fn expired_ids(&self, rule: Expiry, cutoff: i64, limit: i64) -> Result<Vec<i64>> {
        with_connection!(self, |conn| {
            match rule {
                Expiry::Idle => t::stored_sessions
                    .select(t::id)
                    .filter(t::updated_at.le(cutoff))
                    .order(t::updated_at.asc())
                    .limit(limit)
                    .load::<i64>(conn),
                Expiry::Lifetime => t::stored_sessions
                    .select(t::id)
                    .filter(t::created_at.le(cutoff))
                    .order(t::created_at.asc())
                    .limit(limit)
                    .load::<i64>(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Deletes those of `ids` that are still expired under `rule`.
    pub(crate) fn delete_expired(&self, ids: &[i64], rule: Expiry, cutoff: i64) -> Result<usize> {
        let ids = ids.to_vec();
        with_connection!(self, |conn| {
            let batch = t::stored_sessions.filter(t::id.eq_any(&ids));
            match rule {
                Expiry::Idle => {
                    diesel::delete(batch.filter(t::updated_at.le(cutoff))).execute(conn)
                }
                Expiry::Lifetime => {
                    diesel::delete(batch.filter(t::created_at.le(cutoff))).execute(conn)
                }
            }
            .map_err(Error::from)
        })
    }

    /// Rows expired under either rule.
    pub(crate) fn count_expired(&self, cut: Cutoffs) -> Result<u64> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .filter(
                    t::updated_at
                        .le(cut.idle)
                        .or(t::created_at.le(cut.lifetime)),
                )
                .count()
                .get_result::<i64>(conn)
                .map_err(Error::from)
        })
        .map(|n| n as u64)
    }

    /// Live rows.
    pub(crate) fn count_live(&self, cut: Cutoffs) -> Result<u64> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime))
                .count()
                .get_result::<i64>(conn)
                .map_err(Error::from)
        })
        .map(|n| n as u64)
    }

    /// Oldest and newest `updated_at` among live rows.
    pub(crate) fn activity_range(&self, cut: Cutoffs) -> Result<(Option<i64>, Option<i64>)> {
        use diesel::dsl::{max, min};
        with_connection!(self, |conn| {
            t::stored_sessions
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime))
                .select((min(t::updated_at), max(t::updated_at)))
                .first::<(Option<i64>, Option<i64>)>(conn)
                .map_err(Error::from)
        })
    }

    /// Envelope sizes of live rows, ascending.
    pub(crate) fn payload_lengths(&self, cut: Cutoffs) -> Result<Vec<i64>> {
        with_connection!(self, |conn| {
            let sql = format!(
                "SELECT {} AS n FROM stored_sessions WHERE updated_at > {} AND created_at > {} ORDER BY n",
                dialect_of(conn).payload_length,
                cut.idle,
                cut.lifetime
            );
            diesel::sql_query(sql)
                .load::<Length>(conn)
                .map(|rows| rows.into_iter().map(|r| r.n).collect())
                .map_err(Error::from)
        })
    }

    /// Up to `limit` live rows with `id > after`, by id (key rotation walks
    /// the table with this, so it can resume where it stopped).
    pub(crate) fn rows_after(
        &self,
        after: i64,
        limit: i64,
        cut: Cutoffs,
    ) -> Result<Vec<RotationRow>> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .select((t::id, t::sid, t::data, t::version))
                .filter(t::id.gt(after))
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime))
                .order(t::id.asc())
                .limit(limit)
                .load::<RotationRow>(conn)
                .map_err(Error::from)
        })
    }

    /// Compare-and-swap replacement of a row's envelope that leaves its
    /// activity clock alone (re-encryption is not activity).
    pub(crate) fn replace_data(
        &self,
        id: i64,
        version: i64,
        data: &[u8],
        user_key: Option<&[u8; 32]>,
    ) -> Result<usize> {
        let data = data.to_vec();
        let user_key = user_key.copied();
        with_connection!(self, |conn| {
            diesel::update(
                t::stored_sessions
                    .filter(t::id.eq(id))
                    .filter(t::version.eq(version)),
            )
            .set((
                t::data.eq(&data),
                t::version.eq(version + 1),
                t::user_key.eq(user_key.as_ref().map(|k| k.as_slice())),
            ))
            .execute(conn)
            .map_err(Error::from)
        })
    }
}

fn dialect_of<C: Dialect>(_: &C) -> &'static super::DialectSql {
    &C::SQL
}

/// A user's session row, for listing.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct UserRow {
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Database {
    /// Live rows bound to any of `keys` (one user's bindings), most recently
    /// active first. An indexed lookup on `user_key`.
    pub(crate) fn rows_for_user(&self, keys: &[[u8; 32]], cut: Cutoffs) -> Result<Vec<UserRow>> {
        let keys = keys.to_vec();
        with_connection!(self, |conn| {
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            t::stored_sessions
                .select((t::sid, t::data, t::version, t::created_at, t::updated_at))
                .filter(t::user_key.eq_any(&keys))
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime))
                .order(t::updated_at.desc())
                .load::<UserRow>(conn)
                .map_err(Error::from)
        })
    }

    /// Deletes every row bound to any of `keys`, except `keep`.
    pub(crate) fn delete_for_user(
        &self,
        keys: &[[u8; 32]],
        keep: Option<&[u8; 32]>,
    ) -> Result<usize> {
        let keys = keys.to_vec();
        let keep = keep.copied();
        with_connection!(self, |conn| {
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            let target = t::stored_sessions.filter(t::user_key.eq_any(&keys));
            match keep {
                Some(sid) => diesel::delete(target.filter(t::sid.ne(sid.as_slice()))).execute(conn),
                None => diesel::delete(target).execute(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Ids of up to `limit` rows, ascending (for deleting everything in batches).
    pub(crate) fn first_ids(&self, limit: i64) -> Result<Vec<i64>> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .select(t::id)
                .order(t::id.asc())
                .limit(limit)
                .load::<i64>(conn)
                .map_err(Error::from)
        })
    }

    /// Deletes rows by id.
    pub(crate) fn delete_ids(&self, ids: &[i64]) -> Result<usize> {
        let ids = ids.to_vec();
        with_connection!(self, |conn| {
            diesel::delete(t::stored_sessions.filter(t::id.eq_any(&ids)))
                .execute(conn)
                .map_err(Error::from)
        })
    }

    /// Number of live sessions per bound user (one entry per user).
    pub(crate) fn sessions_per_user(&self, cut: Cutoffs) -> Result<Vec<i64>> {
        use diesel::dsl::count_star;
        with_connection!(self, |conn| {
            t::stored_sessions
                .filter(t::user_key.is_not_null())
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime))
                .group_by(t::user_key)
                .select(count_star())
                .load::<i64>(conn)
                .map_err(Error::from)
        })
    }

    /// `created_at` (or `updated_at`) of live rows at or after `since`.
    pub(crate) fn times_since(&self, created: bool, since: i64, cut: Cutoffs) -> Result<Vec<i64>> {
        with_connection!(self, |conn| {
            let live = t::stored_sessions
                .filter(t::updated_at.gt(cut.idle))
                .filter(t::created_at.gt(cut.lifetime));
            if created {
                live.filter(t::created_at.ge(since))
                    .select(t::created_at)
                    .load::<i64>(conn)
            } else {
                live.filter(t::updated_at.ge(since))
                    .select(t::updated_at)
                    .load::<i64>(conn)
            }
            .map_err(Error::from)
        })
    }
}
