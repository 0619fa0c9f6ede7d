//! PostgreSQL: connection parameters (connect timeout, TCP keepalive) in
//! the URL, and the statement, lock and idle-in-transaction timeouts set on
//! every new connection.
//!
//! A libpq multi-host URL (`postgres://app@db1:5432,db2:5432/app`, or
//! `?host=db1,db2`) names a primary and its standbys: libpq tries the
//! hosts in order, each within `connect_timeout`, and keeps the first that
//! accepts the session. The store writes on every operation, so it adds
//! `target_session_attrs=read-write` to such a URL unless the URL sets it:
//! a new connection then skips a standby (and, after a failover, the
//! promoted standby is the one it finds). A connection to a primary that
//! went away breaks; the pool discards it and the operation runs once more
//! on a new connection (see `runner`).

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
/// only when the URL does not set it already; for a URL naming several
/// hosts, also `target_session_attrs=read-write` (see the module docs).
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
    if hosts(url) > 1 {
        params.push(("target_session_attrs", "read-write".to_owned()));
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
    // The pool's first connection may take as long as the one above (a
    // multi-host URL whose first hosts do not answer), even when the
    // acquire timeout is shorter.
    checked(pool, options.acquire_timeout.max(wait), || {
        format!("could not connect to PostgreSQL at {}", redact_url(given))
    })
}

/// How long `open` waits for its first connection: a little longer than
/// libpq's `connect_timeout` in `url` (whole seconds, at least 2), or than
/// `default` when the URL sets none or 0 (no limit, for libpq), for each
/// host the URL names: libpq applies the timeout to each host in turn, so
/// a first host that does not answer costs a whole timeout before the
/// next one is tried.
fn connect_wait(url: &str, default: Duration) -> Duration {
    let set = parameter(url, "connect_timeout")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .filter(|&seconds| seconds > 0);
    let seconds = set.unwrap_or_else(|| whole_seconds(default)).max(2);
    let hosts = u64::try_from(hosts(url)).unwrap_or(u64::MAX);
    Duration::from_secs(seconds.saturating_mul(hosts)) + Duration::from_millis(500)
}

/// The last value of the query parameter `name` in `url`, if any.
fn parameter<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let base = url.split('#').next().unwrap_or(url);
    base.split_once('?')
        .map_or("", |(_, query)| query)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .next_back()
}

/// How many hosts a URL names (at least 1): its `host` (or `hostaddr`)
/// parameter, which libpq prefers to the URL's authority, else the
/// comma-separated hosts of the authority
/// (`postgres://user:pw@h1:5432,h2:5433/db`).
fn hosts(url: &str) -> usize {
    let count = |list: &str| list.split(',').filter(|h| !h.trim().is_empty()).count();
    for name in ["host", "hostaddr"] {
        if let Some(list) = parameter(url, name) {
            return count(list).max(1);
        }
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    count(hosts).max(1)
}

/// PostgreSQL 15's message for SQLSTATE 40P01, `deadlock detected`, in
/// English and in each language of its message catalogs
/// (`/usr/share/locale/*/LC_MESSAGES/postgres-15.mo`: de, es, fr, it, ja,
/// ka, ko, ru, sv, uk, zh_CN, zh_TW).
const DEADLOCK_MESSAGES: &[&str] = &[
    "deadlock detected",
    "Verklemmung (Deadlock) entdeckt",
    "se ha detectado un deadlock",
    "interblocage (deadlock) détecté",
    "rilevato deadlock",
    "デッドロックを検出しました",
    "ნაპოვნია ურთიერთბლოკირება",
    "deadlock 발생했음",
    "обнаружена взаимоблокировка",
    "deadlock upptäckt",
    "виявлено взаємне блокування",
    "检测到死锁",
    "發現死結",
];

/// The lock modes PostgreSQL names in a deadlock's detail ("Process 12
/// waits for ShareLock on transaction 34; blocked by process 56."); they
/// are not translated.
const LOCK_MODES: &[&str] = &[
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// Whether a message (and detail) is PostgreSQL's `deadlock detected`
/// (SQLSTATE 40P01), in whatever language the server speaks: the message
/// as each of PostgreSQL 15's catalogs has it ([`DEADLOCK_MESSAGES`]; the
/// server sends it in its `lc_messages`), or a detail that names the lock
/// modes each process waits for (`ShareLock`, …), which PostgreSQL never
/// translates. Diesel 2.3 reports 40P01 without its SQLSTATE, so the text
/// is all there is; the runner retries such an error as a deadlock.
pub(super) fn is_deadlock(message: &str, detail: Option<&str>) -> bool {
    let message = message.trim();
    DEADLOCK_MESSAGES.contains(&message)
        || detail.is_some_and(|detail| {
            // At least two processes each waiting for a lock mode.
            let waits = detail
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|word| LOCK_MODES.contains(word))
                .count();
            waits >= 2 && detail.lines().count() >= 2
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
    fn multi_host_urls_get_the_parameters_and_read_write() {
        let o = PoolOptions {
            tcp_keepalive: None,
            ..PoolOptions::default()
        };
        assert_eq!(
            with_parameters("postgres://app:pw@10.0.0.1:5433,10.0.0.2:5434/db", &o),
            "postgres://app:pw@10.0.0.1:5433,10.0.0.2:5434/db?connect_timeout=5\
             &target_session_attrs=read-write"
        );
        // The user's choice stands (`any`, `primary`, …).
        assert_eq!(
            with_parameters(
                "postgres://h1,h2/db?target_session_attrs=primary&connect_timeout=3",
                &o
            ),
            "postgres://h1,h2/db?target_session_attrs=primary&connect_timeout=3"
        );
        assert_eq!(
            with_parameters("postgresql:///db?host=h1,h2&port=5433,5434#x", &o),
            "postgresql:///db?host=h1,h2&port=5433,5434&connect_timeout=5\
             &target_session_attrs=read-write#x"
        );
        assert_eq!(
            with_parameters("postgres://[::1]:5433,[::1]:5434/db", &o),
            "postgres://[::1]:5433,[::1]:5434/db?connect_timeout=5&target_session_attrs=read-write"
        );
        // One host: left alone.
        assert_eq!(
            with_parameters("postgres://u:a,b@h/db", &o),
            "postgres://u:a,b@h/db?connect_timeout=5"
        );
    }

    #[test]
    fn hosts_are_counted_as_libpq_reads_them() {
        for (url, n) in [
            ("postgres://h/db", 1),
            ("postgres:///db", 1),
            ("postgres://u:p@h1:1,h2:2,h3:3/db", 3),
            ("postgres://u:p,w@h1/db", 1),
            ("postgres://h1,h2", 2),
            ("postgres://[::1]:1,[::1]:2/db?sslmode=disable", 2),
            ("postgres://ignored/db?host=a,b,c&port=1,2,3", 3),
            ("postgres://a,b/db?hostaddr=10.0.0.1", 1),
            ("postgres://a,/db", 1),
        ] {
            assert_eq!(hosts(url), n, "{url}");
        }
    }

    #[test]
    fn the_first_connection_waits_for_every_host_in_turn() {
        let five = Duration::from_secs(5);
        let wait = |url| connect_wait(url, five).as_millis();
        assert_eq!(wait("postgres://h1:1,h2:2/db?connect_timeout=2"), 4_500);
        assert_eq!(wait("postgres://h1,h2,h3/db"), 15_500);
        assert_eq!(wait("postgres:///db?host=a,b&connect_timeout=3"), 6_500);
    }

    /// What a failed open reports for a multi-host URL: the URL with its
    /// password masked, and why each host failed, on one line, without the
    /// password.
    #[test]
    fn a_multi_host_url_that_fails_is_named_without_its_password() {
        // Two ports nothing listens on: bound, then freed.
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.local_addr().unwrap().port()
            })
            .collect();
        let url = format!(
            "postgres://app:s3cret-9f2c@127.0.0.1:{},127.0.0.1:{}/db",
            ports[0], ports[1]
        );
        let options = PoolOptions::default().connect_timeout(Duration::from_secs(2));
        let err = open(&url, &options).expect_err("nothing listens");
        let Error::Connection {
            backend,
            target,
            message,
        } = &err
        else {
            panic!("expected Error::Connection, got {err:#?}");
        };
        assert_eq!(*backend, Backend::Postgres);
        assert_eq!(
            target,
            &format!(
                "postgres://app:***@127.0.0.1:{},127.0.0.1:{}/db",
                ports[0], ports[1]
            )
        );
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        for port in &ports {
            assert!(
                message.contains(&format!("port {port} failed")),
                "{message}"
            );
        }
    }

    /// An error as libpq reports it through Diesel: kind, message, detail.
    struct Reported(&'static str, Option<&'static str>);

    impl diesel::result::DatabaseErrorInformation for Reported {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            self.1
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn reported(
        kind: diesel::result::DatabaseErrorKind,
        message: &'static str,
        detail: Option<&'static str>,
    ) -> Error {
        Error::Database(diesel::result::Error::DatabaseError(
            kind,
            Box::new(Reported(message, detail)),
        ))
    }

    /// Whether the runner runs the operation again after `e`.
    fn retried(e: &Error) -> bool {
        super::super::runner::Retries::default().next(e).is_some()
    }

    #[test]
    fn serialization_failures_are_retried_by_code_in_any_language() {
        // SQLSTATE 40001 as Diesel classifies it: the text does not matter.
        for message in [
            "could not serialize access due to concurrent update",
            "не удалось сериализовать доступ из-за параллельного изменения",
            "canceling statement due to conflict with recovery",
            "",
        ] {
            let e = reported(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                message,
                None,
            );
            assert!(retried(&e), "{message}");
        }
    }

    #[test]
    fn deadlocks_are_recognised_in_every_shipped_language() {
        use diesel::result::DatabaseErrorKind::Unknown;
        for &message in DEADLOCK_MESSAGES {
            assert!(retried(&reported(Unknown, message, None)), "{message}");
        }
        // A language added later: the untranslated lock modes of the detail.
        let e = reported(
            Unknown,
            "kilitlenme algılandı",
            Some(
                "Süreç 101, ShareLock bekliyor: işlem 7; süreç 102 tarafından engellendi.\n\
                 Süreç 102, ExclusiveLock bekliyor: işlem 8; süreç 101 tarafından engellendi.",
            ),
        );
        assert!(retried(&e));
        // The German detail glues a suffix to the mode; Chinese puts no
        // spaces around it.
        assert!(is_deadlock(
            "x",
            Some(
                "Prozess 1 wartet auf ShareLock-Sperre auf Transaktion 5; blockiert von Prozess 2.\n\
                 Prozess 2 wartet auf ShareLock-Sperre auf Transaktion 6; blockiert von Prozess 1."
            )
        ));
        assert!(is_deadlock(
            "x",
            Some(
                "进程 1 正在等待 事务 5 上的 ShareLock；被进程 2 阻塞。\n\
                 进程 2 正在等待 事务 6 上的 ExclusiveLock；被进程 1 阻塞。"
            )
        ));
    }

    #[test]
    fn other_errors_are_not_taken_for_deadlocks() {
        use diesel::result::DatabaseErrorKind::{UniqueViolation, Unknown};
        let cases = [
            reported(Unknown, "division by zero", None),
            reported(Unknown, "canceling statement due to lock timeout", None),
            reported(Unknown, "обнаружена ошибка", None),
            reported(
                UniqueViolation,
                "duplicate key value violates unique constraint",
                Some("Key (sid)=(\\x00) already exists."),
            ),
            // One lock mode on one line is not a deadlock's detail.
            reported(Unknown, "x", Some("waiting for ShareLock")),
            Error::Database(diesel::result::Error::NotFound),
            Error::Timeout {
                timeout: Duration::from_secs(1),
            },
        ];
        for e in &cases {
            assert!(!retried(e), "{e}");
        }
    }

    #[test]
    fn deadlock_retries_are_bounded() {
        let e = reported(
            diesel::result::DatabaseErrorKind::Unknown,
            "обнаружена взаимоблокировка",
            None,
        );
        let mut retries = super::super::runner::Retries::default();
        let mut n = 0;
        while retries.next(&e).is_some() {
            n += 1;
            assert!(n < 100, "never gives up");
        }
        assert!(n >= 3, "only {n} retries");
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
