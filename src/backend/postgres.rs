//! PostgreSQL: connection parameters (connect timeout, TCP keepalive) in
//! the URL, and the statement, lock and idle-in-transaction timeouts set on
//! every new connection.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, PgConnection};

use super::dialect::backend_impls;
use super::pool::{checked, millis, whole_seconds, PoolOptions};
use crate::error::Result;
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
    let url = with_parameters(url, options);
    let mut builder = Pool::builder()
        .max_size(options.max_size.max(1))
        .min_idle(Some(0))
        .connection_timeout(options.acquire_timeout)
        .test_on_check_out(false);
    let sql = limits_sql(options);
    if !sql.is_empty() {
        builder = builder.connection_customizer(Box::new(Limits { sql }));
    }
    let pool = builder.build_unchecked(ConnectionManager::new(url.as_str()));
    checked(pool, options.acquire_timeout, || {
        format!("could not connect to PostgreSQL at {}", redact_url(&url))
    })
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
