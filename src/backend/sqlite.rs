//! SQLite: WAL journal, `busy_timeout`, immediate write transactions.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::SqliteConnection;

use super::dialect::backend_impls;
use super::pool::PoolOptions;
use crate::error::{Error, Result};

/// An r2d2 pool of SQLite connections.
pub type SqlitePool = Pool<ConnectionManager<SqliteConnection>>;

backend_impls!(
    SqliteConnection,
    "migrations/sqlite",
    "length(data)",
    immediate_transaction,
    false,
    false
);

/// Sets up every new connection: WAL (readers never block the writer),
/// a busy timeout (writers wait instead of failing with `SQLITE_BUSY`),
/// `synchronous = NORMAL` (durable at checkpoints, safe with WAL).
#[derive(Debug)]
struct Setup {
    busy_timeout_ms: u128,
    memory: bool,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Setup {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        let mut sql = format!("PRAGMA busy_timeout = {};", self.busy_timeout_ms);
        if !self.memory {
            sql.push_str("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
        }
        conn.batch_execute(&sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `sqlite://path`, `sqlite:path`, `file:…` URIs, `sqlite::memory:`,
/// `:memory:` or a plain path.
pub(super) fn open(url: &str, options: &PoolOptions) -> Result<SqlitePool> {
    let (target, memory) = target(url);
    let mut builder = Pool::builder()
        .max_size(if memory { 1 } else { options.max_size.max(1) })
        .min_idle(Some(1))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(Setup {
            busy_timeout_ms: options.sqlite_busy_timeout.as_millis(),
            memory,
        }));
    if memory {
        // An in-memory database lives as long as its last connection: never
        // let the pool recycle the one connection.
        builder = builder.max_lifetime(None).idle_timeout(None);
    }
    builder
        .build(ConnectionManager::new(target))
        .map_err(|e| Error::PoolTimeout {
            timeout: options.acquire_timeout,
            message: format!("could not open the SQLite database: {e}"),
        })
}

fn target(url: &str) -> (String, bool) {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if rest == ":memory:" || rest.is_empty() {
        // A private, shared-cache in-memory database per store.
        let name = crate::id::SessionId::generate().stored_id().to_string()[3..19].to_owned();
        return (
            format!("file:stored-session-{name}?mode=memory&cache=shared"),
            true,
        );
    }
    let memory = rest.contains("mode=memory");
    (rest.to_owned(), memory)
}

#[cfg(test)]
mod tests {
    use super::target;

    #[test]
    fn url_forms() {
        assert_eq!(target("sqlite://data/s.db").0, "data/s.db");
        assert_eq!(target("sqlite:///tmp/s.db").0, "/tmp/s.db");
        assert_eq!(target("s.db").0, "s.db");
        assert!(target("sqlite::memory:").1);
        assert!(target(":memory:").1);
        assert_ne!(target(":memory:").0, target(":memory:").0);
    }
}
