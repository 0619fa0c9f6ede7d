//! Contender 3, the floor: raw Diesel on stored-session's own table and
//! indexes, through an r2d2 pool set up like the store's (at most 8
//! connections, no `SELECT 1` on checkout; on SQLite WAL, `synchronous =
//! NORMAL`, 5 s busy timeout). No hashing, no encryption, no encoding:
//!
//! * load: `SELECT data FROM stored_sessions WHERE sid = ?` (the unique index);
//! * update: `UPDATE stored_sessions SET data = ? WHERE sid = ?`;
//! * create: `INSERT` of a row (sid, data, version, times);
//! * delete: `DELETE FROM stored_sessions WHERE sid = ?`.
//!
//! Every statement is prepared once per connection, as the store's are.
//!
//! The blob has the length of stored-session's envelope for the same session,
//! and keys are a random prefix plus a counter (no random draw, no hash).
//!
//! A second instance, `store-sql`, runs stored-session's own load and update
//! statements in the same way (see [`Floor::store_sql`]): it splits the gap
//! between the store and the floor into what its SQL costs and what its
//! hashing, encryption and encoding cost. It takes part in load and update only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use diesel::backend::Backend;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::serialize::ToSql;
use diesel::sql_types::{Binary, HasSqlType};
use ring::rand::{SecureRandom, SystemRandom};
use stored_session::__bench::{CasUpdate, Live, NewRow, SelectLive};
use stored_session::schema::stored_sessions::dsl as t;

use crate::contender::{Contender, Op, Shape};
use crate::drive::{deal, drive_threads, Cell, Stop};

pub enum FloorPool {
    Sqlite(Pool<ConnectionManager<SqliteConnection>>),
    Postgres(Pool<ConnectionManager<PgConnection>>),
    Mysql(Pool<ConnectionManager<MysqlConnection>>),
}

/// Runs `$body` with `$conn` bound to a pooled connection of the concrete type.
macro_rules! with_conn {
    ($pool:expr, |$conn:ident| $body:expr) => {
        match $pool {
            FloorPool::Sqlite(pool) => {
                let $conn = &mut *pool.get().expect("pooled connection");
                $body
            }
            FloorPool::Postgres(pool) => {
                let $conn = &mut *pool.get().expect("pooled connection");
                $body
            }
            FloorPool::Mysql(pool) => {
                let $conn = &mut *pool.get().expect("pooled connection");
                $body
            }
        }
    };
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(
            "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        )
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

fn builder<C: diesel::r2d2::R2D2Connection + 'static>() -> r2d2::Builder<ConnectionManager<C>> {
    Pool::builder()
        .max_size(8)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(false)
}

impl FloorPool {
    pub fn sqlite(path: &str) -> Self {
        FloorPool::Sqlite(
            builder()
                .connection_customizer(Box::new(SqlitePragmas))
                .build(ConnectionManager::new(path))
                .expect("floor sqlite pool"),
        )
    }

    pub fn postgres(url: &str) -> Self {
        FloorPool::Postgres(
            builder()
                .build(ConnectionManager::new(url))
                .expect("floor postgres pool"),
        )
    }

    pub fn mysql(url: &str) -> Self {
        FloorPool::Mysql(
            builder()
                .build(ConnectionManager::new(url))
                .expect("floor mysql pool"),
        )
    }

    /// The `data` of the row with this sid.
    pub fn data_of(&self, sid: &[u8; 32]) -> Vec<u8> {
        with_conn!(self, |conn| t::stored_sessions
            .filter(t::sid.eq(&sid[..]))
            .select(t::data)
            .get_result::<Vec<u8>>(conn)
            .expect("row"))
    }

    /// Inserts rows in multi-row statements of up to 1,000 (setup only).
    pub fn insert_many(&self, rows: &[([u8; 32], i64)], blob: &[u8]) {
        for chunk in rows.chunks(1000) {
            let values: Vec<_> = chunk
                .iter()
                .map(|(sid, at)| {
                    (
                        t::sid.eq(&sid[..]),
                        t::data.eq(blob),
                        t::version.eq(1i64),
                        t::created_at.eq(*at),
                        t::updated_at.eq(*at),
                    )
                })
                .collect();
            with_conn!(self, |conn| diesel::insert_into(t::stored_sessions)
                .values(&values)
                .execute(conn)
                .expect("bulk insert"));
        }
    }

    /// One `DELETE … WHERE updated_at <= cutoff`: the floor of trimming.
    pub fn delete_idle(&self, cutoff: i64) -> usize {
        with_conn!(self, |conn| diesel::delete(
            t::stored_sessions.filter(t::updated_at.le(cutoff))
        )
        .execute(conn)
        .expect("delete"))
    }

    /// Number of rows in the table.
    pub fn count(&self) -> usize {
        with_conn!(self, |conn| t::stored_sessions
            .count()
            .get_result::<i64>(conn)
            .expect("count") as usize)
    }

    /// Removes every row (between measurements).
    pub fn delete_all(&self) {
        with_conn!(self, |conn| diesel::delete(t::stored_sessions)
            .execute(conn)
            .expect("delete all"));
    }

    fn load(&self, sid: &[u8; 32]) -> Option<Vec<u8>> {
        with_conn!(self, |conn| t::stored_sessions
            .filter(t::sid.eq(&sid[..]))
            .select(t::data)
            .get_result::<Vec<u8>>(conn)
            .optional()
            .expect("select"))
    }

    /// The store's load statement (`SelectLive` in src/backend/statements.rs).
    fn load_as_store(&self, sid: &[u8; 32], now: i64) -> Option<Vec<u8>> {
        let cut = now - DAYS_30;
        let select = SelectLive::<false> {
            sid,
            live: Live {
                lifetime: cut,
                idle_window: DAYS_30,
                now,
            },
        };
        with_conn!(self, |conn| select
            .get_result::<StoreRow>(conn)
            .optional()
            .expect("select"))
        .map(|row| row.0)
    }

    /// The store's compare-and-swap update as an ordinary write runs it
    /// (`Database::update` in src/backend/repository.rs): neither the idle clock nor
    /// the user binding is due to move.
    fn update_as_store(&self, sid: &[u8; 32], version: i64, blob: &[u8], now: i64) -> usize {
        let cut = now - DAYS_30;
        let cas = CasUpdate::<false, false> {
            sid,
            data: blob,
            version,
            next_version: version + 1,
            updated_at: now,
            expires_at: None,
            user_key: None,
            live: Live {
                lifetime: cut,
                idle_window: DAYS_30,
                now,
            },
        };
        with_conn!(self, |conn| cas.execute(conn).expect("update"))
    }

    fn update(&self, sid: &[u8; 32], blob: &[u8]) -> usize {
        with_conn!(self, |conn| SetData { sid, data: blob }
            .execute(conn)
            .expect("update"))
    }

    fn insert(&self, sid: &[u8; 32], blob: &[u8], now: i64) -> usize {
        let row = NewRow {
            sid,
            data: blob,
            version: 1,
            user_key: None,
            created_at: now,
            updated_at: now,
            expires_at: Some(now + DAYS_30),
        };
        with_conn!(self, |conn| row.execute(conn).expect("insert"))
    }

    fn delete(&self, sid: &[u8; 32]) -> usize {
        with_conn!(self, |conn| diesel::delete(
            t::stored_sessions.filter(t::sid.eq(&sid[..]))
        )
        .execute(conn)
        .expect("delete"))
    }
}

/// The floor's update, `UPDATE stored_sessions SET data = ? WHERE sid = ?`,
/// as a statement Diesel prepares once per connection like the store's own
/// (Diesel's `update()` is prepared again on every call).
#[derive(Clone, Copy)]
struct SetData<'a> {
    sid: &'a [u8],
    data: &'a [u8],
}

impl QueryId for SetData<'_> {
    type QueryId = SetData<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for SetData<'_> {}

impl<DB> QueryFragment<DB> for SetData<'_>
where
    DB: Backend + HasSqlType<Binary>,
    [u8]: ToSql<Binary, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE stored_sessions SET data = ");
        out.push_bind_param::<Binary, [u8]>(self.data)?;
        out.push_sql(" WHERE sid = ");
        out.push_bind_param::<Binary, [u8]>(self.sid)
    }
}

/// The store's default idle timeout and lifetime (30 days), in seconds.
const DAYS_30: i64 = 30 * 24 * 60 * 60;

/// What the store's load statement returns.
type StoreRow = (Vec<u8>, i64, i64, i64);

/// One prepared row: its sid, the blob it holds, its version.
type Prepared = ([u8; 32], usize, i64);

pub struct Floor {
    pub pool: FloorPool,
    /// Runs stored-session's own statements instead of the minimal ones.
    as_store: bool,
    /// Two blobs of the same length that updates alternate between, so every
    /// update really changes the row (MySQL skips writing an unchanged row).
    blobs: [Vec<u8>; 2],
    prefix: [u8; 24],
    counter: AtomicU64,
    keys: Vec<Prepared>,
    created: Vec<[u8; 32]>,
}

impl Floor {
    /// The floor proper: the minimal statements.
    pub fn new(pool: FloorPool) -> Self {
        Self::with(pool, false)
    }

    /// stored-session's exact SQL (the live-row filters, the four columns a
    /// load reads, the compare-and-swap update that also checks and sets
    /// `version`), still with no hashing, encryption or encoding: what the
    /// store's SQL costs, apart from its CPU work.
    pub fn store_sql(pool: FloorPool) -> Self {
        Self::with(pool, true)
    }

    fn with(pool: FloorPool, as_store: bool) -> Self {
        let mut prefix = [0u8; 24];
        SystemRandom::new().fill(&mut prefix).expect("random");
        Floor {
            pool,
            as_store,
            blobs: [Vec::new(), Vec::new()],
            prefix,
            counter: AtomicU64::new(0),
            keys: Vec::new(),
            created: Vec::new(),
        }
    }

    fn next_key(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        key[..24].copy_from_slice(&self.prefix);
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        key[24..].copy_from_slice(&n.to_le_bytes());
        key
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl Contender for Floor {
    fn prepare(&mut self, n: usize, shape: Shape) {
        // Stand-in bytes of the envelope's length (their value is irrelevant).
        self.blobs = [3, 5].map(|k| (0..shape.blob_len).map(|i| (i * k + 1) as u8).collect());
        self.keys = (0..n).map(|_| (self.next_key(), 0, 1)).collect();
        for (key, _, _) in &self.keys {
            assert_eq!(self.pool.insert(key, &self.blobs[0], now()), 1);
        }
    }

    fn run(&mut self, op: Op, workers: usize, stop: Stop) -> Cell {
        let this = &*self;
        match op {
            Op::Load => {
                let n = this.keys.len();
                let states: Vec<usize> = (0..workers).collect();
                drive_threads(states, stop, |w, i| {
                    let (key, _, _) = &this.keys[(*w * n / workers + i) % n];
                    let found = if this.as_store {
                        this.pool.load_as_store(key, now()).is_some()
                    } else {
                        this.pool.load(key).is_some()
                    };
                    assert!(found, "a prepared row must load");
                    true
                })
                .0
            }
            Op::Update => {
                let piles = deal(std::mem::take(&mut self.keys), workers);
                let this = &*self;
                let (cell, piles) = drive_threads(piles, stop, |keys, i| {
                    let k = i % keys.len();
                    let (key, blob, version) = &mut keys[k];
                    *blob ^= 1;
                    let rows = if this.as_store {
                        let rows =
                            this.pool
                                .update_as_store(key, *version, &this.blobs[*blob], now());
                        *version += 1;
                        rows
                    } else {
                        this.pool.update(key, &this.blobs[*blob])
                    };
                    assert_eq!(rows, 1);
                    true
                });
                self.keys = piles.into_iter().flatten().collect();
                cell
            }
            Op::Pair => {
                // The minimal request that writes: read the row, write the
                // other blob (store-sql does not run pairs).
                let piles = deal(std::mem::take(&mut self.keys), workers);
                let this = &*self;
                let (cell, piles) = drive_threads(piles, stop, |keys, i| {
                    let k = i % keys.len();
                    let (key, blob, _) = &mut keys[k];
                    assert!(this.pool.load(key).is_some(), "a prepared row must load");
                    *blob ^= 1;
                    assert_eq!(this.pool.update(key, &this.blobs[*blob]), 1);
                    true
                });
                self.keys = piles.into_iter().flatten().collect();
                cell
            }
            Op::Create => {
                let piles: Vec<Vec<[u8; 32]>> = (0..workers).map(|_| Vec::new()).collect();
                let (cell, piles) = drive_threads(piles, stop, |made, _| {
                    let key = this.next_key();
                    assert_eq!(this.pool.insert(&key, &this.blobs[0], now()), 1);
                    made.push(key);
                    true
                });
                self.created.extend(piles.into_iter().flatten());
                cell
            }
            Op::Delete => {
                let piles = deal(std::mem::take(&mut self.created), workers);
                let this = &*self;
                let (cell, piles) = drive_threads(piles, stop, |left, _| {
                    let Some(key) = left.pop() else {
                        return false;
                    };
                    assert_eq!(this.pool.delete(&key), 1);
                    true
                });
                self.created = piles.into_iter().flatten().collect();
                cell
            }
        }
    }
}
