//! Databases: a fresh benchmark database per backend, and the three
//! contenders opened on it.

use std::path::PathBuf;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::Text;
use tokio::runtime::Runtime;

use crate::contender::{Contender, Shape};
use crate::floor::{Floor, FloorPool};
use crate::peer::TowerSqlx;
use crate::ss::StoredSession;
use crate::Options;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
    /// A MariaDB Galera cluster, through one node (load and update only).
    Galera,
}

impl Backend {
    pub fn parse(text: &str) -> Option<Backend> {
        match text.trim() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::Mysql),
            "galera" => Some(Backend::Galera),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
            Backend::Galera => "galera",
        }
    }
}

/// The tokio runtime the peer runs on: the default multi-thread runtime (one
/// worker per core).
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// One backend's database with the three contenders on it.
pub struct Bench {
    pub backend: Backend,
    pub server: String,
    pub ss: StoredSession,
    /// The peer (`None` when opened without it, for instruction counts).
    pub peer: Option<TowerSqlx>,
    pub floor: Floor,
    /// The store's own statements, no crypto (load and update only).
    pub sql: Floor,
}

/// The SQLite file: in this crate's (ignored) target directory.
pub fn sqlite_path(o: &Options) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(format!("{}.db", o.database))
}

/// `url` with its database path replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// `url` with `sslmode=disable`, unless it names an `sslmode` itself.
fn plain_tcp(url: &str) -> String {
    if url.contains("sslmode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    }
}

impl Bench {
    /// Drops and recreates the benchmark database, then opens the four
    /// contenders on it (stored-session first: it runs its migrations).
    pub fn open(backend: Backend, o: &Options, rt: Arc<Runtime>) -> Bench {
        Self::open_with(backend, o, Some(rt))
    }

    /// [`Bench::open`], without the peer when `rt` is `None`.
    pub fn open_with(backend: Backend, o: &Options, rt: Option<Arc<Runtime>>) -> Bench {
        let db = &o.database;
        // Per backend: the URL the store opens, how to open a floor pool,
        // how to open the peer.
        type Make<T> = Box<dyn Fn() -> T>;
        let (url, floor_pool, peer): (String, Make<FloorPool>, Make<Option<TowerSqlx>>) =
            match backend {
                Backend::Sqlite => {
                    let path = sqlite_path(o);
                    std::fs::create_dir_all(path.parent().expect("parent")).expect("target dir");
                    for suffix in ["", "-wal", "-shm"] {
                        let mut p = path.clone().into_os_string();
                        p.push(suffix);
                        let _ = std::fs::remove_file(p);
                    }
                    let text = path.to_str().expect("utf-8 path").to_owned();
                    let url = format!("sqlite://{text}");
                    (
                        url,
                        Box::new(move || FloorPool::sqlite(&text)),
                        Box::new(move || {
                            rt.as_ref().map(|rt| TowerSqlx::sqlite(rt.clone(), &path))
                        }),
                    )
                }
                Backend::Postgres => {
                    let mut admin =
                        PgConnection::establish(&o.postgres_admin).expect("connect to PostgreSQL");
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                        .execute(&mut admin)
                        .expect("drop benchmark database");
                    diesel::sql_query(format!("CREATE DATABASE {db}"))
                        .execute(&mut admin)
                        .expect("create benchmark database");
                    // Plain TCP for every contender: the peer's sqlx is built
                    // without TLS, and libpq would otherwise negotiate it
                    // (`sslmode=prefer`) with a server that has `ssl = on`.
                    let url = plain_tcp(&with_database(&o.postgres_admin, db));
                    let (a, b) = (url.clone(), url.clone());
                    (
                        url,
                        Box::new(move || FloorPool::postgres(&a)),
                        Box::new(move || rt.as_ref().map(|rt| TowerSqlx::postgres(rt.clone(), &b))),
                    )
                }
                Backend::Mysql | Backend::Galera => {
                    let admin_url = match backend {
                        Backend::Galera => o.galera_admin.as_deref().expect("a Galera URL"),
                        _ => &o.mysql_admin,
                    };
                    let mut admin =
                        MysqlConnection::establish(admin_url).expect("connect to MySQL");
                    diesel::sql_query(format!("DROP DATABASE IF EXISTS {db}"))
                        .execute(&mut admin)
                        .expect("drop benchmark database");
                    diesel::sql_query(format!("CREATE DATABASE {db}"))
                        .execute(&mut admin)
                        .expect("create benchmark database");
                    let url = with_database(admin_url, db);
                    let (a, b, name) = (url.clone(), url.clone(), db.clone());
                    (
                        url,
                        Box::new(move || FloorPool::mysql(&a)),
                        Box::new(move || {
                            rt.as_ref()
                                .map(|rt| TowerSqlx::mysql(rt.clone(), &b, &name))
                        }),
                    )
                }
            };
        let ss = StoredSession::open(&url);
        let floor = Floor::new(floor_pool());
        let sql = Floor::store_sql(floor_pool());
        let peer = peer();
        let version = floor.pool.version();
        let server = match backend {
            Backend::Sqlite => format!("SQLite {version} (file, WAL)"),
            Backend::Postgres => version,
            Backend::Mysql => format!("MariaDB/MySQL {version}"),
            Backend::Galera => format!(
                "MariaDB Galera cluster {version} ({} nodes, through one)",
                floor.pool.variable("wsrep_cluster_size")
            ),
        };
        Bench {
            backend,
            server,
            ss,
            peer,
            floor,
            sql,
        }
    }

    /// Contender by index: 0 stored-session, 1 the peer, 2 the floor, 3 the
    /// store's SQL without its crypto.
    pub fn contender(&mut self, idx: usize) -> &mut dyn Contender {
        match idx {
            0 => &mut self.ss,
            1 => self.peer.as_mut().expect("the peer is open"),
            2 => &mut self.floor,
            _ => &mut self.sql,
        }
    }

    /// Prepares `n` sessions with a `note_len`-byte string in each contender;
    /// the floor's blob gets the length of stored-session's envelope.
    pub fn prepare_all(&mut self, n: usize, note_len: usize) -> Shape {
        let mut shape = Shape {
            note_len,
            blob_len: 0,
        };
        self.ss.prepare(n, shape);
        shape.blob_len = self.floor.pool.data_of(&self.ss.stored_id(0)).len();
        if let Some(peer) = &mut self.peer {
            peer.prepare(n, shape);
        }
        self.floor.prepare(n, shape);
        self.sql.prepare(n, shape);
        shape
    }
}

impl FloorPool {
    /// A MySQL/MariaDB status variable's value ("?" if unknown).
    pub fn variable(&self, name: &str) -> String {
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = Text, column_name = "Value")]
            value: String,
        }
        let FloorPool::Mysql(p) = self else {
            return "?".into();
        };
        diesel::sql_query(format!("SHOW STATUS LIKE '{name}'"))
            .get_result::<Row>(&mut *p.get().expect("conn"))
            .map_or_else(|_| "?".into(), |r| r.value)
    }

    /// Refreshes the planner's statistics of the benchmark table, as
    /// autovacuum and InnoDB's persistent statistics do on their own.
    pub fn analyze(&self) {
        let sql = match self {
            FloorPool::Sqlite(_) => "ANALYZE",
            FloorPool::Postgres(_) => "ANALYZE stored_sessions",
            FloorPool::Mysql(_) => "ANALYZE TABLE stored_sessions",
        };
        let query = diesel::sql_query(sql);
        let done = match self {
            FloorPool::Sqlite(p) => query.execute(&mut *p.get().expect("conn")),
            FloorPool::Postgres(p) => query.execute(&mut *p.get().expect("conn")),
            FloorPool::Mysql(p) => query.execute(&mut *p.get().expect("conn")),
        };
        done.expect("analyze");
    }

    /// The server's version string.
    pub fn version(&self) -> String {
        let query = match self {
            FloorPool::Sqlite(_) => "sqlite_version()",
            _ => "version()",
        };
        let select = diesel::select(diesel::dsl::sql::<Text>(query));
        match self {
            FloorPool::Sqlite(p) => select.get_result(&mut *p.get().expect("conn")),
            FloorPool::Postgres(p) => select.get_result(&mut *p.get().expect("conn")),
            FloorPool::Mysql(p) => select.get_result(&mut *p.get().expect("conn")),
        }
        .expect("server version")
    }
}

#[cfg(test)]
mod tests {
    use super::{plain_tcp, with_database};

    #[test]
    fn postgres_urls_get_plain_tcp_unless_they_choose() {
        assert_eq!(
            plain_tcp("postgres://h/b"),
            "postgres://h/b?sslmode=disable"
        );
        assert_eq!(
            plain_tcp("postgres://h/b?application_name=x"),
            "postgres://h/b?application_name=x&sslmode=disable"
        );
        assert_eq!(
            plain_tcp("postgres://h/b?sslmode=require"),
            "postgres://h/b?sslmode=require"
        );
    }

    #[test]
    fn database_in_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306", "b"),
            "mysql://root@127.0.0.1:3306/b"
        );
        assert_eq!(
            with_database("postgres://h/x?sslmode=disable", "b"),
            "postgres://h/b?sslmode=disable"
        );
    }
}
