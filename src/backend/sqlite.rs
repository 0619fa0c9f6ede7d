//! SQLite: WAL journal, `busy_timeout`, immediate write transactions.

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, SqliteConnection};

use super::database::Backend;
use super::dialect::backend_impls;
use super::pool::{one_line, PoolOptions};
use crate::error::{Error, Result};
use crate::redact::url as redact_url;

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
///
/// One connection is opened and set up first, on the caller's thread, so
/// that a file that cannot be opened (a missing directory, no permission,
/// not a database) fails at once with [`Error::Connection`] naming it,
/// rather than after r2d2's retries until the acquire timeout.
pub(super) fn open(url: &str, options: &PoolOptions) -> Result<SqlitePool> {
    let (target, memory) = target(url);
    let shown = shown(url);
    let setup = || Setup {
        busy_timeout_ms: options.sqlite_busy_timeout.as_millis(),
        memory,
    };
    let first = SqliteConnection::establish(&target)
        .map_err(diesel::r2d2::Error::ConnectionError)
        .and_then(|mut conn| setup().on_acquire(&mut conn));
    if let Err(e) = first {
        let mut message = one_line(&e.to_string());
        if !memory {
            message.push_str(&why_not(&target));
        }
        return Err(Error::Connection {
            backend: Backend::Sqlite,
            target: shown,
            message,
        });
    }
    let mut builder = Pool::builder()
        .max_size(if memory { 1 } else { options.max_size.max(1) })
        .min_idle(Some(1))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(setup()));
    if memory {
        // An in-memory database lives as long as its last connection: never
        // let the pool recycle the one connection.
        builder = builder.max_lifetime(None).idle_timeout(None);
    }
    builder
        .build(ConnectionManager::new(target))
        .map_err(|e| Error::PoolTimeout {
            timeout: options.acquire_timeout,
            message: format!("could not open the SQLite database at {shown}: {e}"),
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

/// The database as the caller named it, for messages: the path or URI
/// without the `sqlite://` prefix.
fn shown(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    redact_url(if rest.is_empty() { url } else { rest })
}

/// A hint for the two mistakes SQLite's "unable to open database file"
/// does not name: a directory that does not exist, and a path that is a
/// directory. Empty otherwise (and for `file:` URIs).
fn why_not(target: &str) -> String {
    if target.starts_with("file:") {
        return String::new();
    }
    let path = Path::new(target);
    if path.is_dir() {
        return " (it is a directory)".into();
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => {
            format!(" (the directory {} does not exist)", dir.display())
        }
        _ => String::new(),
    }
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

    #[test]
    fn messages_name_the_database_as_given() {
        assert_eq!(super::shown("sqlite://data/s.db"), "data/s.db");
        assert_eq!(super::shown("sqlite:typo.db"), "typo.db");
        assert_eq!(super::shown("typo.db"), "typo.db");
        assert_eq!(super::shown("sqlite::memory:"), ":memory:");
        assert_eq!(super::shown("sqlite://"), "sqlite://");
    }

    #[test]
    fn hints_for_what_sqlite_does_not_say() {
        let dir = std::env::temp_dir();
        assert_eq!(
            super::why_not(&dir.display().to_string()),
            " (it is a directory)"
        );
        let missing = dir.join("ss-no-such-dir-4b1f").join("x.db");
        let hint = super::why_not(&missing.display().to_string());
        assert!(
            hint.ends_with("ss-no-such-dir-4b1f does not exist)"),
            "{hint}"
        );
        assert_eq!(super::why_not("x.db"), "");
        assert_eq!(super::why_not("file:x.db?mode=ro"), "");
    }
}
