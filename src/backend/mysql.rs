//! MySQL and MariaDB: strict `sql_mode` on every connection, so an oversized
//! or malformed value is an error rather than silently truncated, the
//! statement and lock timeouts, and causal reads on a Galera cluster.
//!
//! # MariaDB Galera (and Percona XtraDB Cluster)
//!
//! What the server is, is asked once per pool, on its first connection
//! (`SHOW VARIABLES` for `version` and `wsrep_on`). On a Galera node every
//! connection of the store also gets `SET SESSION wsrep_sync_wait =`
//! [`GALERA_SYNC_WAIT`]: a node applies the other nodes' commits
//! asynchronously, so without it a visitor whose next request lands on
//! another node can read the session as it was before its own last write
//! (measured on a 3-node cluster on one machine: 82 stale reads of 500 with
//! the default 0, none with 1). The value is 3, both of:
//!
//! * 1, reads: every `SELECT` and every `BEGIN` first waits until the node
//!   has applied everything the cluster committed before it. A load sees
//!   the visitor's last write wherever it was made, and a transaction
//!   (a renew, a revocation, the locked write) starts from that state.
//! * 2, `UPDATE` and `DELETE` outside a transaction: a logout (`DELETE` by
//!   id) or an idle-clock touch sent to a node that has not yet applied the
//!   session's creation on another node would otherwise find no row and
//!   report it gone, although it is live cluster-wide (a logout that
//!   silently leaves the session alive). A compare-and-swap `UPDATE` on a
//!   stale row would fail certification and be retried anyway; the wait
//!   spares those retries.
//!
//! Inserts (bit 4) need no wait: a new row's id is random and never read
//! first. What it costs is measured in `tests/galera.rs`
//! (`latency_of_causal_reads`, `causal_wait_bits`). A pool built by the
//! application (passed to [`StoreBuilder::build`](crate::StoreBuilder::build))
//! gets none of this (neither the causal reads nor the longer retrying of
//! conflicts): set `wsrep_sync_wait` in its connection customizer.
//!
//! Write conflicts between nodes surface as error 1213 (certification
//! failure, at `COMMIT` or at the next statement, autocommit statements
//! included), which the store retries like an InnoDB deadlock, only more
//! times (about 1.8 s of pauses rather than 0.13 s); a node that
//! is joining or has lost its quorum answers 1047, which the store retries
//! on another connection within its timeouts (see
//! [`runner`](super::runner)). `GET_LOCK` and `SELECT … FOR UPDATE` lock
//! only on their own node: see [`user_lock`](super::user_lock) for why the
//! store stays correct across nodes.

use std::sync::{Arc, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, MysqlConnection, RunQueryDsl};

use super::database::Backend;
use super::deadline::Connections;
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

/// The `wsrep_sync_wait` bitmask the store sets on its connections to a
/// Galera node: causal `SELECT`/`BEGIN` (1) and `UPDATE`/`DELETE` (2). See
/// the [module docs](self).
pub(crate) const GALERA_SYNC_WAIT: u32 = 3;

/// What the server behind a pool is, asked once, on its first connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Server {
    /// MariaDB rather than MySQL (the statement timeout differs).
    mariadb: bool,
    /// A Galera cluster node (`wsrep_on` is `ON`).
    galera: bool,
}

impl Server {
    /// Reads `SHOW VARIABLES` rows (`version`, `wsrep_on`).
    fn from_variables<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str)>) -> Server {
        let mut server = Server::default();
        for (name, value) in rows {
            match name.to_ascii_lowercase().as_str() {
                "version" => server.mariadb = value.to_ascii_lowercase().contains("mariadb"),
                "wsrep_on" => server.galera = value.eq_ignore_ascii_case("on") || value == "1",
                _ => {}
            }
        }
        server
    }

    /// Asks the server (works on MySQL, MariaDB and on a Galera node that
    /// is not ready: `SHOW` needs no table).
    fn ask(conn: &mut MysqlConnection) -> diesel::QueryResult<Server> {
        #[derive(diesel::QueryableByName)]
        struct Variable {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = Variable_name)]
            name: String,
            #[diesel(sql_type = diesel::sql_types::Text, column_name = Value)]
            value: String,
        }
        let rows: Vec<Variable> =
            diesel::sql_query("SHOW VARIABLES WHERE Variable_name IN ('version', 'wsrep_on')")
                .load(conn)?;
        Ok(Server::from_variables(
            rows.iter().map(|v| (v.name.as_str(), v.value.as_str())),
        ))
    }
}

/// Sets up every new connection: strict `sql_mode`, READ COMMITTED, the
/// timeouts of the [`PoolOptions`] the pool was opened with, and causal
/// reads on a Galera node.
#[derive(Debug)]
struct Strict {
    statement_timeout: Option<std::time::Duration>,
    lock_timeout: Option<std::time::Duration>,
    /// What the server is (asked once, on the first connection).
    server: OnceLock<Server>,
}

impl Strict {
    /// The setup statements for this kind of server.
    fn sql(&self, server: Server) -> String {
        let mariadb = server.mariadb;
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
        if server.galera {
            sql.push_str(&format!(
                "; SET SESSION wsrep_sync_wait = {GALERA_SYNC_WAIT}"
            ));
        }
        sql
    }
}

impl CustomizeConnection<MysqlConnection, diesel::r2d2::Error> for Strict {
    fn on_acquire(&self, conn: &mut MysqlConnection) -> Result<(), diesel::r2d2::Error> {
        let server = match self.server.get() {
            Some(known) => *known,
            None => {
                let asked = Server::ask(conn).map_err(diesel::r2d2::Error::QueryError)?;
                if asked.galera {
                    log::info!(target: "stored_session", "the session database is a Galera cluster node: causal reads on (wsrep_sync_wait = {GALERA_SYNC_WAIT})");
                }
                *self.server.get_or_init(|| asked)
            }
        };
        conn.batch_execute(&self.sql(server))
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Opens the pool, with the client-side deadline of `options`; on a Galera
/// node the pool also retries more conflicts (see
/// [`Connections::on_galera`]).
pub(super) fn open(url: &str, options: &PoolOptions) -> Result<Connections<MysqlConnection>> {
    let given = url;
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let setup = Arc::new(Strict {
        statement_timeout: options.statement_timeout,
        lock_timeout: options.lock_timeout,
        server: OnceLock::new(),
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
        .connection_customizer(Box::new(Shared(Arc::clone(&setup))))
        .build_unchecked(ConnectionManager::new(url.as_str()));
    let pool = checked(pool, options.acquire_timeout, || {
        format!("could not connect to MySQL at {}", redact_url(given))
    })?;
    // The first connection (above) asked what the server is.
    let galera = setup.server.get().is_some_and(|server| server.galera);
    Ok(Connections::new(pool, options.operation_timeout).on_galera(galera))
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
            server: OnceLock::new(),
        };
        let mariadb = Server {
            mariadb: true,
            galera: false,
        };
        let maria = strict.sql(mariadb);
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
        assert!(!maria.contains("wsrep"), "{maria}");
        let mysql = strict.sql(Server::default());
        assert!(
            mysql.contains("SET SESSION max_execution_time = 1500;"),
            "{mysql}"
        );
        assert!(!mysql.contains("max_statement_time"));
        let galera = strict.sql(Server {
            mariadb: true,
            galera: true,
        });
        assert!(
            galera.starts_with(&maria) && galera.ends_with("; SET SESSION wsrep_sync_wait = 3"),
            "{galera}"
        );
        let none = Strict {
            statement_timeout: None,
            lock_timeout: None,
            server: OnceLock::new(),
        };
        assert!(!none.sql(Server::default()).contains("timeout"));
        assert!(none
            .sql(Server {
                mariadb: false,
                galera: true
            })
            .ends_with("READ COMMITTED; SET SESSION wsrep_sync_wait = 3"));
    }

    #[test]
    fn servers_are_told_apart_by_their_variables() {
        let cases: [(&[(&str, &str)], Server); 5] = [
            (
                &[
                    ("version", "10.11.19-MariaDB-0+deb12u1"),
                    ("wsrep_on", "ON"),
                ],
                Server {
                    mariadb: true,
                    galera: true,
                },
            ),
            (
                &[
                    ("version", "10.11.19-MariaDB-0+deb12u1"),
                    ("wsrep_on", "OFF"),
                ],
                Server {
                    mariadb: true,
                    galera: false,
                },
            ),
            // MySQL has no wsrep_on; Percona XtraDB Cluster has.
            (&[("version", "8.0.36")], Server::default()),
            (
                &[("VERSION", "8.0.35-27.1"), ("wsrep_on", "ON")],
                Server {
                    mariadb: false,
                    galera: true,
                },
            ),
            (&[], Server::default()),
        ];
        for (rows, expected) in cases {
            assert_eq!(
                Server::from_variables(rows.iter().copied()),
                expected,
                "{rows:?}"
            );
        }
    }
}
