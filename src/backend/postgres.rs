//! PostgreSQL: connection parameters (connect timeout, TCP keepalive) in
//! the URL, and the statement, lock and idle-in-transaction timeouts set on
//! every new connection.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, PgConnection};

use super::database::Backend;
use super::dialect::backend_impls;
use super::pool::{checked, first_connection, millis, whole_seconds, PoolOptions, Shared};
use crate::error::{Error, Result};
use crate::redact::url as redact_url;

/// An r2d2 pool of PostgreSQL connections.
pub type PgPool = Pool<ConnectionManager<PgConnection>>;

backend_impls!(
    PgConnection,
    "migrations/postgres",
    "octet_length(data)::BIGINT",
    transaction,
    true,
    false
);

/// The session timeouts, set on each new connection (one round trip).
#[derive(Debug)]
struct Limits {
    sql: String,
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for Limits {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        if self.sql.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&self.sql)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The `SET` statements for `options`' server-side timeouts (empty when
/// there are none).
fn limits_sql(options: &PoolOptions) -> String {
    let mut sql = String::new();
    if let Some(t) = options.statement_timeout {
        let ms = millis(t);
        sql.push_str(&format!(
            "SET statement_timeout = {ms}; SET idle_in_transaction_session_timeout = {ms};"
        ));
    }
    if let Some(t) = options.lock_timeout {
        sql.push_str(&format!("SET lock_timeout = {};", millis(t)));
    }
    sql
}

/// `url` with the libpq connection parameters for `options` added, each
/// only when the URL does not set it already.
fn with_parameters(url: &str, options: &PoolOptions) -> String {
    let mut params = vec![(
        "connect_timeout",
        whole_seconds(options.connect_timeout).max(2).to_string(),
    )];
    if let Some(idle) = options.tcp_keepalive {
        let idle_s = whole_seconds(idle);
        let interval = (idle_s / 3).max(1);
        let count = 3;
        params.extend([
            ("keepalives", "1".to_owned()),
            ("keepalives_idle", idle_s.to_string()),
            ("keepalives_interval", interval.to_string()),
            ("keepalives_count", count.to_string()),
            // Unacknowledged data, or unanswered probes (with keepalive
            // on, Linux uses this instead of the count), for 2x idle.
            ("tcp_user_timeout", (idle_s * 2 * 1000).to_string()),
        ]);
    }
    let (base, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let query = base.split_once('?').map_or("", |(_, q)| q);
    let present: Vec<&str> = query
        .split('&')
        .filter_map(|pair| pair.split('=').next())
        .collect();
    let mut out = base.to_owned();
    let mut sep = if base.contains('?') {
        if base.ends_with('?') || base.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (key, value) in params {
        if !present.contains(&key) {
            out.push_str(sep);
            out.push_str(key);
            out.push('=');
            out.push_str(&value);
            sep = "&";
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

pub(super) fn open(url: &str, options: &PoolOptions) -> Result<PgPool> {
    let given = url;
    let url = with_parameters(url, options);
    let setup = Arc::new(Limits {
        sql: limits_sql(options),
    });
    // The connection timeout is libpq's (in the URL); the helper
    // thread's wait is a backstop a little past it.
    let wait = connect_wait(&url, options.connect_timeout);
    first_connection::<PgConnection, _>(&url, &setup, wait).map_err(|message| {
        Error::Connection {
            backend: Backend::Postgres,
            target: redact_url(given),
            message,
        }
    })?;
    let pool = Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(Shared(setup)))
        .build_unchecked(ConnectionManager::new(url.as_str()));
    checked(pool, options.acquire_timeout, || {
        format!("could not connect to PostgreSQL at {}", redact_url(given))
    })
}

/// How long `open` waits for its first connection: a little longer than
/// libpq's `connect_timeout` in `url` (whole seconds, at least 2), or than
/// `default` when the URL sets none or 0 (no limit, for libpq).
fn connect_wait(url: &str, default: Duration) -> Duration {
    let base = url.split('#').next().unwrap_or(url);
    let set = base
        .split_once('?')
        .map_or("", |(_, query)| query)
        .split('&')
        .filter_map(|pair| pair.strip_prefix("connect_timeout="))
        .filter_map(|value| value.trim().parse::<u64>().ok())
        .next_back()
        .filter(|&seconds| seconds > 0);
    let seconds = set.unwrap_or_else(|| whole_seconds(default)).max(2);
    Duration::from_secs(seconds) + Duration::from_millis(500)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parameters_are_added_unless_set() {
        let o = PoolOptions::default();
        assert_eq!(
            with_parameters("postgres://u@h/db", &o),
            "postgres://u@h/db?connect_timeout=5&keepalives=1&keepalives_idle=30\
             &keepalives_interval=10&keepalives_count=3&tcp_user_timeout=60000"
        );
        assert_eq!(
            with_parameters(
                "postgres://u@h/db?sslmode=require&connect_timeout=9&keepalives=0",
                &o
            ),
            "postgres://u@h/db?sslmode=require&connect_timeout=9&keepalives=0&keepalives_idle=30\
             &keepalives_interval=10&keepalives_count=3&tcp_user_timeout=60000"
        );
        let o = PoolOptions {
            tcp_keepalive: None,
            connect_timeout: Duration::from_millis(300),
            ..PoolOptions::default()
        };
        assert_eq!(
            with_parameters("postgresql://h/db?", &o),
            "postgresql://h/db?connect_timeout=2"
        );
    }

    #[test]
    fn the_first_connection_waits_past_libpqs_timeout() {
        let five = Duration::from_secs(5);
        let wait = |url| connect_wait(url, five).as_millis();
        assert_eq!(wait("postgres://h/db?connect_timeout=9&x=1"), 9_500);
        assert_eq!(wait("postgres://h/db?connect_timeout=1"), 2_500);
        assert_eq!(wait("postgres://h/db?connect_timeout=0"), 5_500);
        assert_eq!(wait("postgres://h/db"), 5_500);
        assert_eq!(
            connect_wait("postgres://h/db", Duration::from_millis(10)).as_millis(),
            2_500
        );
    }

    #[test]
    fn limits() {
        let mut o = PoolOptions::default();
        assert_eq!(
            limits_sql(&o),
            "SET statement_timeout = 5000; SET idle_in_transaction_session_timeout = 5000;\
             SET lock_timeout = 5000;"
        );
        o.statement_timeout = None;
        o.lock_timeout = Some(Duration::from_micros(10));
        assert_eq!(limits_sql(&o), "SET lock_timeout = 1;");
        o.lock_timeout = None;
        assert_eq!(limits_sql(&o), "");
    }
}
