//! Maintenance SQL: trimming, statistics and key rotation. Portable across
//! the three backends: batches are chosen with `SELECT id … LIMIT n` and
//! deleted with `DELETE … WHERE id IN (…)` (MySQL rejects `IN (SELECT …
//! LIMIT)`, PostgreSQL has no `DELETE … LIMIT`), and every delete re-checks
//! expiry, so a session touched since its batch was chosen survives.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable};

use super::database::{with_connection, Backend, Database};
use super::dialect::{Dialect, DialectSql};
use super::rows::Cutoffs;
use super::user_lock::UserLock;
use super::user_lock::UserLocking;
use crate::crypto::KEY_ID_RANGE;
use crate::error::{Error, Result};
use crate::schema::stored_sessions::dsl as t;

/// Which expiry rule a trim pass walks, each one range of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrimRule {
    /// Past its own deadline: `expires_at <= now`, a range of the
    /// `(expires_at, updated_at)` index.
    Deadline,
    /// No deadline of its own (written before the column existed) and idle
    /// under the store's timeout: `expires_at IS NULL AND updated_at <=
    /// idle`, a range of the same index.
    Idle,
    /// Older than the store's absolute lifetime: `created_at <= lifetime`,
    /// a range of the `created_at` index (empty unless the lifetime was
    /// shortened or the row has no deadline).
    Lifetime,
}

diesel::define_sql_function! {
    /// `COALESCE(a, b)` of a nullable and a plain BIGINT.
    fn coalesce(a: Nullable<BigInt>, b: BigInt) -> BigInt;
}

/// Whether a row is live under `$cut` (see [`Cutoffs`]), as a Diesel
/// expression. Every column is inside an expression (`created_at + 0`,
/// `COALESCE(..)`), so no backend picks an expiry index for it instead of
/// the index the query is meant to use.
macro_rules! live {
    ($cut:expr) => {
        (t::created_at + 0i64)
            .gt($cut.lifetime)
            .and(coalesce(t::expires_at, t::updated_at + $cut.idle_window()).gt($cut.now))
    };
}

/// A row as key rotation reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct RotationRow {
    pub id: i64,
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
}

/// One row of a nearest-rank selection: a value, its rank in ascending
/// order (1-based) and how many values there are.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub(crate) struct Ranked {
    #[diesel(sql_type = BigInt)]
    pub v: i64,
    #[diesel(sql_type = BigInt)]
    pub rn: i64,
    #[diesel(sql_type = BigInt)]
    pub cnt: i64,
}

/// How many live sessions were created (or last active) `h` whole hours
/// before now.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub(crate) struct Bucket {
    #[diesel(sql_type = BigInt)]
    pub h: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// How many live sessions carry one key id field in their envelope header
/// (`kid` is that field: 4 bytes, fewer for an envelope too short to hold one).
#[derive(Debug, Clone, QueryableByName)]
pub(crate) struct KeyIdCount {
    #[diesel(sql_type = Binary)]
    pub kid: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// A live row as the start-up check samples it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct SampleRow {
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The statistics as the database computes them, every part an aggregate:
/// the client receives at most 5 + 5 + 24 + 24 rows, plus one per key id
/// in use, however large the table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Aggregates {
    pub live: i64,
    pub expired: i64,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
    /// Nearest-rank rows of the envelope sizes of live rows.
    pub payload: Vec<Ranked>,
    /// Nearest-rank rows of the live sessions per bound user.
    pub per_user: Vec<Ranked>,
    /// Live sessions created in each hour of the last day.
    pub created: Vec<Bucket>,
    /// Live sessions last active in each hour of the last day.
    pub active: Vec<Bucket>,
    /// Live sessions per key id named in their envelope header.
    pub keys: Vec<KeyIdCount>,
}

/// The percentiles [`Aggregates`] carries ranks for (besides min and max).
pub(crate) const PERCENTILES: [i64; 3] = [50, 90, 99];

impl Database {
    /// Ids of up to `limit` rows expired under `rule` at `cut`, in the
    /// order of the index the rule walks (soonest expired first).
    pub(crate) fn expired_ids(&self, rule: TrimRule, cut: Cutoffs, limit: i64) -> Result<Vec<i64>> {
        let mysql = matches!(self.backend(), Backend::Mysql);
        with_connection!(self, |conn| {
            let ids = t::stored_sessions.select(t::id).limit(limit);
            match rule {
                TrimRule::Deadline => ids
                    .filter(t::expires_at.le(cut.now))
                    .order((t::expires_at.asc(), t::updated_at.asc()))
                    .load::<i64>(conn),
                // Ordered so that each backend reads the `expires_at IS
                // NULL` entries of the index in its order and stops after
                // `limit`: PostgreSQL needs the order spelled out in full
                // (with `updated_at` alone it walks the `updated_at` index,
                // reading every row idle under the cutoff, deadline or
                // not); MariaDB sorts every matching entry for it, but
                // knows `updated_at` alone is the index order. SQLite reads
                // the index range either way.
                TrimRule::Idle if mysql => ids
                    .filter(t::expires_at.is_null())
                    .filter(t::updated_at.le(cut.idle))
                    .order(t::updated_at.asc())
                    .load::<i64>(conn),
                TrimRule::Idle => ids
                    .filter(t::expires_at.is_null())
                    .filter(t::updated_at.le(cut.idle))
                    .order((t::expires_at.asc(), t::updated_at.asc()))
                    .load::<i64>(conn),
                TrimRule::Lifetime => ids
                    .filter(t::created_at.le(cut.lifetime))
                    .order(t::created_at.asc())
                    .load::<i64>(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Deletes those of `ids` that are still expired under `rule` (a row
    /// touched since its batch was chosen moved its deadline and survives).
    pub(crate) fn delete_expired(
        &self,
        ids: &[i64],
        rule: TrimRule,
        cut: Cutoffs,
    ) -> Result<usize> {
        let ids = ids.to_vec();
        // The re-checks compare `column + 0`, which no index can answer, so
        // every backend finds the batch by primary key. Compared bare,
        // SQLite answered the DELETE from the rule's index range instead
        // (every expired row not yet deleted, filtered by id): each batch
        // read the whole rest of the range, and trimming grew with the
        // square of the rows (300,000 rows took 6x the time of 100,000).
        with_connection!(self, |conn| {
            let batch = t::stored_sessions.filter(t::id.eq_any(&ids));
            match rule {
                TrimRule::Deadline => {
                    diesel::delete(batch.filter((t::expires_at + 0).le(cut.now))).execute(conn)
                }
                TrimRule::Idle => diesel::delete(
                    batch
                        .filter((t::expires_at + 0).is_null())
                        .filter((t::updated_at + 0).le(cut.idle)),
                )
                .execute(conn),
                TrimRule::Lifetime => {
                    diesel::delete(batch.filter((t::created_at + 0).le(cut.lifetime))).execute(conn)
                }
            }
            .map_err(Error::from)
        })
    }

    /// Rows expired under any rule: every row that is not live.
    pub(crate) fn count_expired(&self, cut: Cutoffs) -> Result<u64> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .filter(diesel::dsl::not(live!(cut)))
                .count()
                .get_result::<i64>(conn)
                .map_err(Error::from)
        })
        .map(|n| n as u64)
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
                .filter(live!(cut))
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

impl Database {
    /// Whether the `stored_sessions` table exists where the store's
    /// statements look for it (SQLite: the main schema; PostgreSQL: the
    /// `search_path`; MySQL: the connection's database): one catalog query.
    pub(crate) fn table_exists(&self) -> Result<bool> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let sql = match self.backend() {
            Backend::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master \
                 WHERE type = 'table' AND name = 'stored_sessions'"
            }
            Backend::Postgres => {
                "SELECT CAST(CASE WHEN to_regclass('stored_sessions') IS NULL \
                 THEN 0 ELSE 1 END AS BIGINT) AS n"
            }
            Backend::Mysql => {
                "SELECT CAST(COUNT(*) AS SIGNED) AS n FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = 'stored_sessions'"
            }
        };
        with_connection!(self, |conn| {
            diesel::sql_query(sql)
                .get_result::<Found>(conn)
                .map(|found| found.n > 0)
                .map_err(Error::from)
        })
    }

    /// The `limit` most recently active live rows, newest first: one
    /// backward walk of the `updated_at` index that stops after `limit`
    /// rows (`live!` is all expressions, which keeps the planner off the
    /// other indexes). Only rows active within the store's idle timeout
    /// are walked: a session idle for longer that lives on by its own
    /// window is live but not recent.
    pub(crate) fn recent_live(&self, limit: i64, cut: Cutoffs) -> Result<Vec<SampleRow>> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .select((t::sid, t::data, t::version, t::created_at, t::updated_at))
                .filter(t::updated_at.gt(cut.idle))
                .filter(live!(cut))
                .order(t::updated_at.desc())
                .limit(limit)
                .load::<SampleRow>(conn)
                .map_err(Error::from)
        })
    }
}

fn dialect_of<C: Dialect>(_: &C) -> &'static DialectSql {
    &C::SQL
}

/// A user's session row, for listing.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct UserRow {
    pub id: i64,
    pub sid: Vec<u8>,
    pub data: Vec<u8>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row as a handle resolves to it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct HandleRow {
    pub sid: Vec<u8>,
    pub user_key: Option<Vec<u8>>,
}

/// Builds one user's newest-first page query on the boxed `$query` and
/// loads it as `$out`. The order is `id DESC` (rows never change `id`),
/// served by the `user_key` index without a sort:
///
/// * SQLite: `user_key = ? AND id < ? ORDER BY id DESC` — its index on
///   `user_key` carries the rowid (`id`), so the search is `(user_key=? AND
///   rowid<?)` and reads exactly the rows returned.
/// * PostgreSQL and MySQL/MariaDB: `user_key >= ? AND user_key <= ? AND id
///   < ? ORDER BY user_key DESC, id DESC`. The same rows, but written as a
///   range so that the order is the index's order, `(user_key, id)`. With
///   `user_key = ?`, PostgreSQL drops the constant column from the sort and
///   may walk the primary key backwards filtering on `user_key` (200,000
///   rows read for a user whose sessions are old), and MariaDB may prefer a
///   primary-key range; the range form makes both start at the user's
///   newest entry below the cursor and stop after `LIMIT` rows (InnoDB's
///   secondary index carries the primary key; PostgreSQL needs the
///   `(user_key, id)` index of the second migration).
///
/// The expiry filters are expressions (`live!`) so no backend picks an
/// expiry index instead.
macro_rules! user_page_query {
    ($conn:ident, $query:expr, $key:expr, $before:expr, $limit:expr, $cut:expr, $range:expr, $out:ty) => {{
        let query = $query
            .filter(t::id.lt($before))
            .filter(live!($cut))
            .limit($limit);
        if $range {
            query
                .filter(t::user_key.ge($key))
                .filter(t::user_key.le($key))
                .order((t::user_key.desc(), t::id.desc()))
                .load::<$out>($conn)
        } else {
            query
                .filter(t::user_key.eq($key))
                .order(t::id.desc())
                .load::<$out>($conn)
        }
        .map_err(Error::from)
    }};
}

impl Database {
    /// Whether the user page query is written as a `user_key` range (see
    /// `user_page_query!`).
    fn user_range(&self) -> bool {
        !matches!(self.backend(), Backend::Sqlite)
    }

    /// Up to `limit` live rows bound to `key` with `id < before`, newest
    /// (highest `id`) first: one indexed range read of at most `limit` rows.
    pub(crate) fn user_page(
        &self,
        key: &[u8; 32],
        before: i64,
        limit: i64,
        cut: Cutoffs,
    ) -> Result<Vec<UserRow>> {
        let key = *key;
        let range = self.user_range();
        with_connection!(self, |conn| {
            user_page_query!(
                conn,
                t::stored_sessions.select((
                    t::id,
                    t::sid,
                    t::data,
                    t::version,
                    t::created_at,
                    t::updated_at
                )),
                key,
                before,
                limit,
                cut,
                range,
                UserRow
            )
        })
    }

    /// The ids of up to `limit` live rows bound to `key`, newest first (the
    /// same indexed read as [`user_page`](Self::user_page), without the data).
    pub(crate) fn user_ids(&self, key: &[u8; 32], limit: i64, cut: Cutoffs) -> Result<Vec<i64>> {
        let key = *key;
        let range = self.user_range();
        with_connection!(self, |conn| {
            user_page_query!(
                conn,
                t::stored_sessions.select(t::id),
                key,
                i64::MAX,
                limit,
                cut,
                range,
                i64
            )
        })
    }

    /// The `sid` and binding of the live row `id` (a primary-key lookup).
    pub(crate) fn row_for_handle(&self, id: i64, cut: Cutoffs) -> Result<Option<HandleRow>> {
        with_connection!(self, |conn| {
            t::stored_sessions
                .select((t::sid, t::user_key))
                .filter(t::id.eq(id))
                .filter(live!(cut))
                .first::<HandleRow>(conn)
                .optional()
                .map_err(Error::from)
        })
    }

    /// The `id` of the row `sid` (any state), by the unique `sid` index.
    pub(crate) fn row_id(&self, sid: &[u8; 32]) -> Result<Option<i64>> {
        let sid = *sid;
        with_connection!(self, |conn| {
            t::stored_sessions
                .select(t::id)
                .filter(t::sid.eq(sid.as_slice()))
                .first::<i64>(conn)
                .optional()
                .map_err(Error::from)
        })
    }

    /// Deletes the rows bound to any of `keys` with `id <= max_id` (a range
    /// of the `user_key` index per key).
    /// Holds the user's lock, like [`delete_for_user`](Self::delete_for_user).
    pub(crate) fn delete_user_up_to(&self, keys: &[[u8; 32]], max_id: i64) -> Result<usize> {
        let lock = keys.first().map(UserLock::of);
        let keys = keys.to_vec();
        let _gate = self.write_gate()?;
        with_connection!(self, |conn| {
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            conn.user_transaction(lock, |conn| {
                diesel::delete(
                    t::stored_sessions
                        .filter(t::user_key.eq_any(&keys))
                        .filter(t::id.le(max_id)),
                )
                .execute(conn)
                .map_err(Error::from)
            })
        })
    }

    /// Deletes every row bound to any of `keys`, except `keep`.
    ///
    /// Holds the user's lock (`keys[0]` is the binding under the current
    /// key), so a renew of one of these sessions either committed before and
    /// its new row is deleted here, or runs after and finds its row gone.
    pub(crate) fn delete_for_user(
        &self,
        keys: &[[u8; 32]],
        keep: Option<&[u8; 32]>,
    ) -> Result<usize> {
        let lock = keys.first().map(UserLock::of);
        let keys = keys.to_vec();
        let keep = keep.copied();
        let _gate = self.write_gate()?;
        with_connection!(self, |conn| {
            let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            conn.user_transaction(lock, |conn| {
                let target = t::stored_sessions.filter(t::user_key.eq_any(&keys));
                match keep {
                    Some(sid) => {
                        diesel::delete(target.filter(t::sid.ne(sid.as_slice()))).execute(conn)
                    }
                    None => diesel::delete(target).execute(conn),
                }
                .map_err(Error::from)
            })
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
}

impl Database {
    /// Every statistic in SQL, on one pooled connection:
    ///
    /// * counts and the activity range: `COUNT(*)`, `MIN`, `MAX`;
    /// * per-hour activity: `GROUP BY` the age in whole hours (at most 24
    ///   groups: only rows of the last day are grouped);
    /// * percentiles of payload sizes and of sessions per user: ranked in
    ///   the database with `ROW_NUMBER() OVER (ORDER BY v)` and `COUNT(*)
    ///   OVER ()`, of which only the rows at the nearest ranks (min, p50,
    ///   p90, p99, max: at most 5) are returned. The sessions-per-user values
    ///   are themselves a `GROUP BY user_key`, so neither the rows nor the
    ///   users ever reach the client. Window functions: PostgreSQL, SQLite
    ///   3.25+, MySQL 8.0+, MariaDB 10.2+.
    ///
    /// The rank condition is integer arithmetic (`rn * 100 >= p * cnt AND
    /// (rn - 1) * 100 < p * cnt`, i.e. `rn = ceil(p * cnt / 100)`), the same
    /// nearest-rank definition on every backend.
    pub(crate) fn aggregates(&self, now: i64, since: i64, cut: Cutoffs) -> Result<Aggregates> {
        use diesel::dsl::{count_star, max, min};
        let mysql = matches!(self.backend(), Backend::Mysql);
        // Only our own integers are formatted into the SQL. i64::MIN (a
        // disabled expiry rule) is written as MIN + 1: its literal does not
        // parse as a BIGINT everywhere.
        let live = format!(
            "created_at > {} AND COALESCE(expires_at, updated_at + {}) > {}",
            cut.lifetime.max(i64::MIN + 1),
            cut.idle_window(),
            cut.now
        );
        let int = move |expr: &str| {
            if mysql {
                format!("CAST({expr} AS SIGNED)")
            } else {
                format!("CAST({expr} AS BIGINT)")
            }
        };
        let div = if mysql { "DIV" } else { "/" };
        let ranked_sql = move |values: &str| {
            let mut wanted = String::from("rn = 1 OR rn = cnt");
            for p in PERCENTILES {
                wanted.push_str(&format!(
                    " OR (rn * 100 >= {p} * cnt AND (rn - 1) * 100 < {p} * cnt)"
                ));
            }
            format!(
                "SELECT {v}, {rn}, {cnt} FROM (\
                 SELECT v, {row} AS rn, {all} AS cnt FROM ({values}) AS vals\
                 ) AS ranked WHERE {wanted}",
                v = int("v") + " AS v",
                rn = int("rn") + " AS rn",
                cnt = int("cnt") + " AS cnt",
                row = int("ROW_NUMBER() OVER (ORDER BY v)"),
                all = int("COUNT(*) OVER ()"),
            )
        };
        let hourly_sql = |column: &str| {
            format!(
                "SELECT {h} AS h, {n} AS n FROM stored_sessions \
                 WHERE {column} >= {since} AND {live} GROUP BY 1",
                h = int(&format!(
                    "CASE WHEN {column} >= {now} THEN 0 ELSE ({now} - {column}) {div} 3600 END"
                )),
                n = int("COUNT(*)"),
            )
        };
        let per_user = ranked_sql(&format!(
            "SELECT COUNT(*) AS v FROM stored_sessions \
             WHERE user_key IS NOT NULL AND {live} GROUP BY user_key"
        ));
        let created = hourly_sql("created_at");
        let active = hourly_sql("updated_at");
        // The key id field of each envelope header, read by `substr` (the
        // same function on every backend, 1-based): only the first bytes of
        // each `data` value are needed.
        let (kid_at, kid_len) = (KEY_ID_RANGE.start + 1, KEY_ID_RANGE.len());
        let keys = format!(
            "SELECT substr(data, {kid_at}, {kid_len}) AS kid, {n} AS n \
             FROM stored_sessions WHERE {live} GROUP BY substr(data, {kid_at}, {kid_len})",
            n = int("COUNT(*)"),
        );
        with_connection!(self, |conn| {
            let (count, oldest, newest) = t::stored_sessions
                .filter(live!(cut))
                .select((count_star(), min(t::updated_at), max(t::updated_at)))
                .first::<(i64, Option<i64>, Option<i64>)>(conn)?;
            let expired = t::stored_sessions
                .filter(diesel::dsl::not(live!(cut)))
                .count()
                .get_result::<i64>(conn)?;
            let payload = ranked_sql(&format!(
                "SELECT {} AS v FROM stored_sessions WHERE {live}",
                dialect_of(conn).payload_length
            ));
            Ok(Aggregates {
                live: count,
                expired,
                oldest,
                newest,
                payload: diesel::sql_query(&payload).load::<Ranked>(conn)?,
                per_user: diesel::sql_query(&per_user).load::<Ranked>(conn)?,
                created: diesel::sql_query(&created).load::<Bucket>(conn)?,
                active: diesel::sql_query(&active).load::<Bucket>(conn)?,
                keys: diesel::sql_query(&keys).load::<KeyIdCount>(conn)?,
            })
        })
    }
}
