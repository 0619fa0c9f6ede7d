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
}

impl Backend {
    pub fn parse(text: &str) -> Option<Backend> {
        match text.trim() {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            "mysql" | "mariadb" => Some(Backend::Mysql),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::Mysql => "mysql",
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
    pub peer: TowerSqlx,
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

impl Bench {
    /// Drops and recreates the benchmark database, then opens the three
    /// contenders on it (stored-session first: it runs its migrations).
    pub fn open(backend: Backend, o: &Options, rt: Arc<Runtime>) -> Bench {
        let db = &o.database;
        match backend {
            Backend::Sqlite => {
                let path = sqlite_path(o);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("target dir");
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
                let text = path.to_str().expect("utf-8 path");
                let ss = StoredSession::open(&format!("sqlite://{text}"));
                let floor = Floor::new(FloorPool::sqlite(text));
                let sql = Floor::store_sql(FloorPool::sqlite(text));
                let peer = TowerSqlx::sqlite(rt, &path);
                let server = format!("SQLite {} (file, WAL)", floor.pool.version());
                Bench {
                    backend,
                    server,
                    ss,
                    peer,
                    floor,
                    sql,
                }
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
                let url = with_database(&o.postgres_admin, db);
                let ss = StoredSession::open(&url);
                let floor = Floor::new(FloorPool::postgres(&url));
                let sql = Floor::store_sql(FloorPool::postgres(&url));
                let peer = TowerSqlx::postgres(rt, &url);
                let server = floor.pool.version();
                Bench {
                    backend,
                    server,
                    ss,
                    peer,
                    floor,
                    sql,
                }
            }
            Backend::Mysql => {
                let mut admin =
                    MysqlConnection::establish(&o.mysql_admin).expect("connect to MySQL");
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {db}"))
                    .execute(&mut admin)
                    .expect("drop benchmark database");
                diesel::sql_query(format!("CREATE DATABASE {db}"))
                    .execute(&mut admin)
                    .expect("create benchmark database");
                let url = with_database(&o.mysql_admin, db);
                let ss = StoredSession::open(&url);
                let floor = Floor::new(FloorPool::mysql(&url));
                let sql = Floor::store_sql(FloorPool::mysql(&url));
                let peer = TowerSqlx::mysql(rt, &url, db);
                let server = format!("MariaDB/MySQL {}", floor.pool.version());
                Bench {
                    backend,
                    server,
                    ss,
                    peer,
                    floor,
                    sql,
                }
            }
        }
    }

    /// Contender by index: 0 stored-session, 1 the peer, 2 the floor, 3 the
    /// store's SQL without its crypto.
    pub fn contender(&mut self, idx: usize) -> &mut dyn Contender {
        match idx {
            0 => &mut self.ss,
            1 => &mut self.peer,
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
        self.peer.prepare(n, shape);
        self.floor.prepare(n, shape);
        self.sql.prepare(n, shape);
        shape
    }
}

impl FloorPool {
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
    use super::with_database;

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
