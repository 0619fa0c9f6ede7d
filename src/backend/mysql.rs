//! MySQL and MariaDB: strict `sql_mode` on every connection, so an oversized
//! or malformed value is an error rather than silently truncated, and the
//! statement and lock timeouts.

use std::sync::{Arc, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, MysqlConnection, RunQueryDsl};

use super::database::Backend;
use super::dialect::backend_impls;
use super::pool::{checked, first_connection, millis, whole_seconds, PoolOptions, Shared};
use crate::error::{Error, Result};
use crate::redact::url as redact_url;

/// An r2d2 pool of MySQL / MariaDB connections.
pub type MysqlPool = Pool<ConnectionManager<MysqlConnection>>;

/// The session `sql_mode` set on every connection the store opens. Diesel
/// needs `PIPES_AS_CONCAT`; the rest makes bad data an error. Set it in the
/// connection customizer of a pool you build yourself (`SET SESSION
/// sql_mode = '…'`).
pub const STRICT_SQL_MODE: &str = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY,PIPES_AS_CONCAT";

backend_impls!(
    MysqlConnection,
    "migrations/mysql",
    "CAST(LENGTH(data) AS SIGNED)",
    transaction,
    true,
    true
);

/// Sets up every new connection: strict `sql_mode`, READ COMMITTED, and
/// the timeouts of the [`PoolOptions`] the pool was opened with.
#[derive(Debug)]
struct Strict {
    statement_timeout: Option<std::time::Duration>,
    lock_timeout: Option<std::time::Duration>,
    /// Whether the server is MariaDB (asked once, on the first connection).
    mariadb: OnceLock<bool>,
}

impl Strict {
    /// The setup statements, for MariaDB or MySQL.
    fn sql(&self, mariadb: bool) -> String {
        // READ COMMITTED: no gap locks, so a logout's DELETE and a renew's
        // DELETE + INSERT of neighbouring keys rarely deadlock (every session
        // write is a single-row compare-and-swap; nothing relies on
        // repeatable reads).
        let mut sql = format!(
            "SET SESSION sql_mode = '{STRICT_SQL_MODE}'; \
             SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
        );
        if let Some(t) = self.statement_timeout {
            if mariadb {
                // Seconds, fractional; every statement. A transaction left
                // idle that long is ended, releasing its row locks.
                let ms = millis(t);
                sql.push_str(&format!(
                    "; SET SESSION max_statement_time = {}.{:03}; \
                     SET SESSION idle_transaction_timeout = {}",
                    ms / 1000,
                    ms % 1000,
                    whole_seconds(t)
                ));
            } else {
                // Milliseconds; MySQL applies it to SELECTs only.
                sql.push_str(&format!("; SET SESSION max_execution_time = {}", millis(t)));
            }
        }
        if let Some(t) = self.lock_timeout {
            let s = whole_seconds(t);
            sql.push_str(&format!(
                "; SET SESSION innodb_lock_wait_timeout = {s}; SET SESSION lock_wait_timeout = {s}"
            ));
        }
        sql
    }
}

impl CustomizeConnection<MysqlConnection, diesel::r2d2::Error> for Strict {
    fn on_acquire(&self, conn: &mut MysqlConnection) -> Result<(), diesel::r2d2::Error> {
        let mariadb = match self.mariadb.get() {
            Some(known) => *known,
            None if self.statement_timeout.is_none() => false,
            None => {
                let version: String =
                    diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>("VERSION()"))
                        .get_result(conn)
                        .map_err(diesel::r2d2::Error::QueryError)?;
                *self
                    .mariadb
                    .get_or_init(|| version.to_ascii_lowercase().contains("mariadb"))
            }
        };
        conn.batch_execute(&self.sql(mariadb))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

pub(super) fn open(url: &str, options: &PoolOptions) -> Result<MysqlPool> {
    let given = url;
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let setup = Arc::new(Strict {
        statement_timeout: options.statement_timeout,
        lock_timeout: options.lock_timeout,
        mariadb: OnceLock::new(),
    });
    first_connection::<MysqlConnection, _>(&url, &setup, options.connect_timeout).map_err(
        |message| Error::Connection {
            backend: Backend::Mysql,
            target: redact_url(given),
            message: with_os_error(&message),
        },
    )?;
    let pool = Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(Shared(setup)))
        .build_unchecked(ConnectionManager::new(url.as_str()));
    checked(pool, options.acquire_timeout, || {
        format!("could not connect to MySQL at {}", redact_url(given))
    })
}

/// libmysqlclient ends "Can't connect to MySQL server on 'host:port'
/// (111)" with the system's error number alone: add what it means
/// ("(111: Connection refused)").
fn with_os_error(message: &str) -> String {
    let code = message
        .strip_suffix(')')
        .and_then(|m| m.rsplit_once('('))
        .filter(|(head, _)| head.contains("Can't connect"))
        .and_then(|(head, code)| Some((head, code.parse::<i32>().ok()?)));
    match code {
        Some((head, code)) if code > 0 => {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            let text = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text);
            format!("{head}({code}: {text})")
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn system_error_numbers_are_explained() {
        let out = with_os_error("Can't connect to MySQL server on '127.0.0.1:1' (111)");
        assert!(
            out.starts_with("Can't connect to MySQL server on '127.0.0.1:1' (111: "),
            "{out}"
        );
        assert!(out.ends_with(')') && out.len() > 60, "{out}");
        for unchanged in [
            "Access denied for user 'x'@'localhost' (using password: YES)",
            "Unknown database 'x'",
            "Can't connect to MySQL server on 'h' (x)",
            "",
        ] {
            assert_eq!(with_os_error(unchanged), unchanged);
        }
    }

    #[test]
    fn setup_sql() {
        let strict = Strict {
            statement_timeout: Some(Duration::from_millis(1500)),
            lock_timeout: Some(Duration::from_millis(1500)),
            mariadb: OnceLock::new(),
        };
        let maria = strict.sql(true);
        assert!(
            maria.contains("SET SESSION max_statement_time = 1.500;"),
            "{maria}"
        );
        assert!(
            maria.contains("SET SESSION idle_transaction_timeout = 2;"),
            "{maria}"
        );
        assert!(maria.contains("innodb_lock_wait_timeout = 2; SET SESSION lock_wait_timeout = 2"));
        assert!(!maria.contains("max_execution_time"));
        let mysql = strict.sql(false);
        assert!(
            mysql.contains("SET SESSION max_execution_time = 1500;"),
            "{mysql}"
        );
        assert!(!mysql.contains("max_statement_time"));
        let none = Strict {
            statement_timeout: None,
            lock_timeout: None,
            mariadb: OnceLock::new(),
        };
        assert!(!none.sql(false).contains("timeout"));
    }
}
