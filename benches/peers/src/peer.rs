//! Contender 2: `tower-sessions-sqlx-store`, the leading Rust session store,
//! through its `SessionStore` trait as tower-sessions calls it, on a tokio
//! multi-thread runtime (one task per concurrent worker).
//!
//! Pools are set up like stored-session's: at most 8 connections, no liveness
//! check on every acquire (sqlx's default `test_before_acquire(true)` would add
//! a round trip per operation, as r2d2's `test_on_check_out` would for
//! stored-session), and on SQLite WAL with `synchronous = NORMAL` and a 5 s
//! busy timeout. Its tables live in the same database as stored-session's.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use tokio::runtime::Runtime;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore;
use tower_sessions_sqlx_store::sqlx::mysql::MySqlPoolOptions;
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use tower_sessions_sqlx_store::{MySqlStore, PostgresStore, SqliteStore};

use crate::contender::{note, tokens, Contender, Op, Shape, USER_ID};
use crate::drive::{deal, drive_tasks, Cell, Stop};

/// The table the peer's sessions go to (its default schema on PostgreSQL,
/// the benchmark database itself on MariaDB).
const TABLE: &str = "tower_sessions";

type Data = HashMap<String, Value>;

pub struct TowerSqlx {
    rt: Arc<Runtime>,
    store: Arc<dyn SessionStore>,
    data: Arc<Data>,
    tokens: Arc<[Value; 2]>,
    /// The prepared records, with the index of their current token.
    records: Vec<(Record, usize)>,
    /// Records made by `Create`, for `Delete`.
    created: Vec<Record>,
}

fn pools() -> (u32, Duration) {
    (8, Duration::from_secs(5))
}

impl TowerSqlx {
    pub fn sqlite(rt: Arc<Runtime>, path: &std::path::Path) -> Self {
        let (max, acquire) = pools();
        let store = rt.block_on(async {
            let options = SqliteConnectOptions::from_str("sqlite:")
                .expect("sqlite options")
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .expect("connect sqlx sqlite");
            let store = SqliteStore::new(pool)
                .with_table_name(TABLE)
                .expect("table name");
            store.migrate().await.expect("migrate tower store");
            store
        });
        Self::new(rt, Arc::new(store))
    }

    pub fn postgres(rt: Arc<Runtime>, url: &str) -> Self {
        let (max, acquire) = pools();
        let store = rt.block_on(async {
            let pool = PgPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .test_before_acquire(false)
                .connect(url)
                .await
                .expect("connect sqlx postgres");
            let store = PostgresStore::new(pool)
                .with_table_name(TABLE)
                .expect("table name");
            store.migrate().await.expect("migrate tower store");
            store
        });
        Self::new(rt, Arc::new(store))
    }

    pub fn mysql(rt: Arc<Runtime>, url: &str, database: &str) -> Self {
        let (max, acquire) = pools();
        let store = rt.block_on(async {
            let pool = MySqlPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(acquire)
                .test_before_acquire(false)
                .connect(url)
                .await
                .expect("connect sqlx mysql");
            let store = MySqlStore::new(pool)
                .with_schema_name(database)
                .expect("schema name")
                .with_table_name(TABLE)
                .expect("table name");
            store.migrate().await.expect("migrate tower store");
            store
        });
        Self::new(rt, Arc::new(store))
    }

    fn new(rt: Arc<Runtime>, store: Arc<dyn SessionStore>) -> Self {
        let [a, b] = tokens();
        TowerSqlx {
            rt,
            store,
            data: Arc::new(Data::new()),
            tokens: Arc::new([Value::String(a), Value::String(b)]),
            records: Vec::new(),
            created: Vec::new(),
        }
    }
}

impl TowerSqlx {
    /// Runs `op` on the prepared records dealt to `workers` workers, and
    /// keeps what they leave (`Update` and `Pair`).
    fn on_records<F, Fut>(&mut self, workers: usize, stop: Stop, op: F) -> Cell
    where
        F: Fn(Worker<(Record, usize)>, usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = (Worker<(Record, usize)>, bool)> + Send + 'static,
    {
        let piles: Vec<_> = deal(std::mem::take(&mut self.records), workers)
            .into_iter()
            .map(|items| self.worker(items))
            .collect();
        let (cell, piles) = drive_tasks(&self.rt, piles, stop, op);
        self.records = piles.into_iter().flat_map(|w| w.items).collect();
        cell
    }

    fn worker<T>(&self, items: Vec<T>) -> Worker<T> {
        Worker {
            store: self.store.clone(),
            data: self.data.clone(),
            tokens: self.tokens.clone(),
            items,
        }
    }
}

fn expiry() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(30)
}

/// What `Create` does: a new record with the values, stored.
async fn create(store: &dyn SessionStore, data: &Data) -> Record {
    let mut record = Record {
        id: Id::default(),
        data: data.clone(),
        expiry_date: expiry(),
    };
    store.create(&mut record).await.expect("create");
    record
}

struct Worker<T> {
    store: Arc<dyn SessionStore>,
    data: Arc<Data>,
    tokens: Arc<[Value; 2]>,
    items: Vec<T>,
}

impl Contender for TowerSqlx {
    fn prepare(&mut self, n: usize, shape: Shape) {
        let mut data = Data::new();
        data.insert("user_id".into(), Value::from(USER_ID));
        data.insert("csrf".into(), self.tokens[0].clone());
        data.insert("note".into(), Value::String(note(shape)));
        self.data = Arc::new(data);
        let (store, data) = (self.store.clone(), self.data.clone());
        self.records = self.rt.block_on(async move {
            let mut records = Vec::with_capacity(n);
            for _ in 0..n {
                let record = create(&*store, &data).await;
                let loaded = store.load(&record.id).await.expect("load");
                records.push((loaded.expect("a prepared session must load"), 0));
            }
            records
        });
    }

    fn run(&mut self, op: Op, workers: usize, stop: Stop) -> Cell {
        let worker = |items| self.worker(items);
        match op {
            Op::Load => {
                // Every worker walks all the sessions, from its own offset
                // (as the store's and the floor's workers do).
                let ids: Vec<Id> = self.records.iter().map(|(r, _)| r.id).collect();
                let n = ids.len();
                let piles: Vec<_> = (0..workers)
                    .map(|w| {
                        let mut mine = ids.clone();
                        mine.rotate_left(w * n / workers);
                        worker(mine)
                    })
                    .collect();
                let (cell, _) = drive_tasks(&self.rt, piles, stop, |w: Worker<Id>, i| async move {
                    let id = w.items[i % w.items.len()];
                    let found = w.store.load(&id).await.expect("load");
                    assert!(found.is_some(), "a prepared session must load");
                    (w, true)
                });
                cell
            }
            Op::Update => self.on_records(workers, stop, |mut w, i| async move {
                let k = i % w.items.len();
                let (record, token) = &mut w.items[k];
                *token ^= 1;
                record.data.insert("csrf".into(), w.tokens[*token].clone());
                w.store.save(record).await.expect("save");
                (w, true)
            }),
            Op::Pair => self.on_records(workers, stop, |mut w, i| async move {
                let k = i % w.items.len();
                let (kept, token) = &mut w.items[k];
                let mut record = w
                    .store
                    .load(&kept.id)
                    .await
                    .expect("load")
                    .expect("a prepared session must load");
                *token ^= 1;
                record.data.insert("csrf".into(), w.tokens[*token].clone());
                w.store.save(&record).await.expect("save");
                *kept = record;
                (w, true)
            }),
            Op::Create => {
                let piles: Vec<_> = (0..workers).map(|_| self.worker(Vec::new())).collect();
                let (cell, piles) = drive_tasks(
                    &self.rt,
                    piles,
                    stop,
                    |mut w: Worker<Record>, _| async move {
                        let record = create(&*w.store, &w.data).await;
                        w.items.push(record);
                        (w, true)
                    },
                );
                self.created.extend(piles.into_iter().flat_map(|w| w.items));
                cell
            }
            Op::Delete => {
                let piles: Vec<_> = deal(std::mem::take(&mut self.created), workers)
                    .into_iter()
                    .map(|items| self.worker(items))
                    .collect();
                let (cell, piles) = drive_tasks(
                    &self.rt,
                    piles,
                    stop,
                    |mut w: Worker<Record>, _| async move {
                        let Some(record) = w.items.pop() else {
                            return (w, false);
                        };
                        w.store.delete(&record.id).await.expect("delete");
                        (w, true)
                    },
                );
                self.created = piles.into_iter().flat_map(|w| w.items).collect();
                cell
            }
        }
    }
}
