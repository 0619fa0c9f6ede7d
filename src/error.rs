//! The crate's one error type.

use std::fmt;
use std::time::Duration;

use crate::backend::Backend;

/// Everything that can go wrong in a store operation.
///
/// Invalid, unknown, expired or tampered input is **not** an error: loading
/// such a cookie yields a fresh session (and a `session_rejected` event).
/// Errors are reserved for failures the application must hear about: the
/// database, the pool, a payload over the configured cap, a value that cannot
/// be encoded or decoded, a bad configuration, and the rare failures of the
/// machinery around them (no unused id, a lost worker task, a failed random
/// generator). Each variant documents when it happens.
///
/// `Display` is one readable sentence, and so is `Debug` (followed by any
/// underlying cause it does not already name), so that
/// `fn main() -> Result<(), stored_session::Error>` and `.expect(..)`
/// print a line a person can act on; the alternate form `{:#?}` shows the
/// variant and its fields. Neither form contains a password or a key.
///
/// ```
/// use stored_session::Keyring;
///
/// let err = Keyring::parse("").unwrap_err();
/// assert_eq!(format!("{err:?}"), err.to_string());
/// assert!(err.to_string().starts_with("configuration error: "));
/// assert!(format!("{err:#?}").starts_with("Config("));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement or the connection failed mid-way.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

    /// The database could not be opened:
    /// [`Database::open`](crate::Database::open) (and so
    /// [`StoreBuilder::open`](crate::StoreBuilder::open)) makes one
    /// connection right away, and it failed, or did not complete within
    /// [`PoolOptions::connect_timeout`](crate::PoolOptions). Returned as
    /// soon as the driver gives up, without waiting for the acquire timeout.
    /// `message` says why: an unknown database or role, a wrong password, a
    /// refused connection, a SQLite file whose directory does not exist or
    /// that is not a database.
    ///
    /// ```text
    /// could not connect to PostgreSQL at postgres://app:***@db/app: FATAL:  password authentication failed for user "app"
    /// could not open the SQLite database at data/sessions.db: unable to open database file (the directory data does not exist)
    /// ```
    #[error("{}", connection_line(*.backend, .target, .message))]
    Connection {
        /// The kind of database that was being opened.
        backend: Backend,
        /// Where: the URL with each password it holds replaced by `***`
        /// (a URL without one is shown as given), or the SQLite path.
        target: String,
        /// Why, as the driver reported it, on one line and without the
        /// URL's passwords.
        message: String,
    },

    /// No pooled connection became free within the pool's acquire timeout.
    #[error("no database connection available within {timeout:?}: {message}")]
    PoolTimeout {
        /// The pool's configured acquire timeout.
        timeout: Duration,
        /// What r2d2 reported (usually the last connection error).
        message: String,
    },

    /// The database did not answer an operation within the client-side
    /// deadline ([`PoolOptions::operation_timeout`](crate::PoolOptions)):
    /// the server, or the network in between, stopped answering. The call
    /// returned without waiting further; its connection is abandoned (the
    /// pool drops it once its socket answers or breaks). A write may still
    /// have been applied by the server; a timed-out operation is never
    /// retried by the store.
    #[error("the session database did not answer within {timeout:?}")]
    Timeout {
        /// The deadline that passed.
        timeout: Duration,
    },

    /// The encrypted session is larger than [`Config::max_payload`](crate::Config).
    /// Nothing was written.
    #[error("session payload of {size} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Size of the encrypted envelope that would have been written.
        size: usize,
        /// The configured maximum.
        max: usize,
    },

    /// A value could not be serialized to MessagePack (on `Session::insert`).
    #[error("could not encode session value: {0}")]
    Encode(#[from] rmp_serde::encode::Error),

    /// A stored value could not be deserialized into the requested type (on
    /// `Session::get`): the key holds a value of another type.
    #[error("could not decode session value for key {key:?}: {source}")]
    Decode {
        /// The session key that was read.
        key: String,
        /// What MessagePack reported.
        #[source]
        source: rmp_serde::decode::Error,
    },

    /// The store or a key was configured wrongly (bad URL, key length, base64, …).
    #[error("configuration error: {0}")]
    Config(String),

    /// Running the embedded migrations failed.
    #[error("migration error: {0}")]
    Migration(String),

    /// Every freshly drawn session id was already taken: a commit that
    /// inserts or renews a session drew a new random 256-bit id several
    /// times and the database held each one. With a working random
    /// generator this does not happen; it points at a broken generator or a
    /// database that reports every insert as a duplicate. Nothing was
    /// written.
    #[error("could not draw an unused session id")]
    IdsExhausted,

    /// A thread or task that ran the operation for the caller ended without
    /// an answer: a Rocket adapter's blocking task panicked or was
    /// cancelled, or a database worker thread (see
    /// [`PoolOptions::operation_timeout`](crate::PoolOptions)) ended before
    /// it replied. The operation may or may not have been applied.
    #[error("the task running the session operation ended without an answer: {0}")]
    TaskAborted(&'static str),

    /// The operating system's random number generator failed (the admin
    /// page could not draw a CSRF nonce). Nothing was changed.
    #[error("the operating system's random number generator failed")]
    Random,

    /// A page [`Cursor`](crate::Cursor) that this store did not issue for
    /// this user under its current key (garbage, tampered, another user's,
    /// or minted before a key rotation). Nothing was read; start again from
    /// the first page. A web application answers it with `400 Bad Request`.
    #[error("invalid page cursor: start again from the first page")]
    InvalidCursor,

    /// The `stored_sessions` table does not exist (found by
    /// [`SessionStore::check`](crate::SessionStore::check), which
    /// [`StoreBuilder::open`](crate::StoreBuilder::open) runs): the
    /// migrations have not run on this database, or the URL names another
    /// database than intended. Run them with `stored-session migrate`,
    /// [`SessionStore::run_migrations`](crate::SessionStore::run_migrations)
    /// or [`StoreBuilder::open_migrated`](crate::StoreBuilder::open_migrated).
    #[error(
        "the stored_sessions table does not exist: run `stored-session migrate` or `store.run_migrations()`"
    )]
    MissingTable,

    /// The store's keyring cannot open most of the recently active
    /// sessions (found by [`SessionStore::check`](crate::SessionStore::check),
    /// which [`StoreBuilder::open`](crate::StoreBuilder::open) runs): almost
    /// always the keys were changed (a new `STORED_SESSION_KEYS` without the
    /// key that sealed them). The report says how many were sealed under
    /// keys not on the ring, and which key ids those are. Nothing was
    /// changed: the sessions open again once their key is back on the ring.
    #[error("{}", keyring_mismatch(.0))]
    KeyringMismatch(crate::CheckReport),
}

/// The text of [`Error::KeyringMismatch`]: what was found, and what to do.
fn keyring_mismatch(report: &crate::CheckReport) -> String {
    format!(
        "{report}; if the keys were changed, put the key that sealed them back on the ring \
         (STORED_SESSION_KEYS: the current key first, then older keys); \
         the sessions are kept and open again once their key is back"
    )
}

/// The text of [`Error::Connection`].
fn connection_line(backend: Backend, target: &str, message: &str) -> String {
    match backend {
        Backend::Sqlite => format!("could not open the SQLite database at {target}: {message}"),
        Backend::Postgres => format!("could not connect to PostgreSQL at {target}: {message}"),
        Backend::Mysql => format!("could not connect to MySQL at {target}: {message}"),
    }
}

/// The readable line of `Display`, then each underlying cause that line
/// does not already contain (as `anyhow` prints an error): what
/// `fn main() -> Result<(), Error>` and `.expect(..)` print. `{:#?}` shows
/// the variant and its fields instead.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            return self.fields(f);
        }
        let line = self.to_string();
        f.write_str(&line)?;
        let mut heading = false;
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !line.contains(&text) {
                if !heading {
                    f.write_str("\n\nCaused by:")?;
                    heading = true;
                }
                write!(f, "\n    {text}")?;
            }
            cause = error.source();
        }
        Ok(())
    }
}

impl Error {
    /// The variant and its fields, for `{:#?}`.
    fn fields(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Database(e) => f.debug_tuple("Database").field(e).finish(),
            Error::Connection {
                backend,
                target,
                message,
            } => f
                .debug_struct("Connection")
                .field("backend", backend)
                .field("target", target)
                .field("message", message)
                .finish(),
            Error::PoolTimeout { timeout, message } => f
                .debug_struct("PoolTimeout")
                .field("timeout", timeout)
                .field("message", message)
                .finish(),
            Error::Timeout { timeout } => {
                f.debug_struct("Timeout").field("timeout", timeout).finish()
            }
            Error::PayloadTooLarge { size, max } => f
                .debug_struct("PayloadTooLarge")
                .field("size", size)
                .field("max", max)
                .finish(),
            Error::Encode(e) => f.debug_tuple("Encode").field(e).finish(),
            Error::Decode { key, source } => f
                .debug_struct("Decode")
                .field("key", key)
                .field("source", source)
                .finish(),
            Error::Config(m) => f.debug_tuple("Config").field(m).finish(),
            Error::Migration(m) => f.debug_tuple("Migration").field(m).finish(),
            Error::IdsExhausted => f.write_str("IdsExhausted"),
            Error::TaskAborted(m) => f.debug_tuple("TaskAborted").field(m).finish(),
            Error::Random => f.write_str("Random"),
            Error::InvalidCursor => f.write_str("InvalidCursor"),
            Error::MissingTable => f.write_str("MissingTable"),
            Error::KeyringMismatch(report) => {
                f.debug_tuple("KeyringMismatch").field(report).finish()
            }
        }
    }
}

/// Shorthand for `Result<T, stored_session::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status a web page answers this failure with, the one
    /// mapping used by the framework adapters' default error response and
    /// the admin page:
    ///
    /// * `503` when retrying later may work: no pooled connection came
    ///   free in time, the database did not answer in time, or the
    ///   connection to it was lost mid-way;
    /// * `413` for a session over [`Config::max_payload`](crate::Config);
    /// * `400` for a page cursor this store did not issue;
    /// * `500` otherwise.
    #[cfg(any(feature = "adapters", feature = "admin"))]
    pub(crate) fn http_status(&self) -> u16 {
        // Exhaustive on purpose: a new variant needs a decision here.
        match self {
            Error::Connection { .. } | Error::PoolTimeout { .. } | Error::Timeout { .. } => 503,
            Error::Database(_) if self.is_connection_failure() => 503,
            // A write conflict the store kept losing after its retries
            // (SQLSTATE 40001, a deadlock, a Galera certification
            // failure): the same request a moment later succeeds.
            Error::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                _,
            )) => 503,
            Error::PayloadTooLarge { .. } => 413,
            Error::InvalidCursor => 400,
            Error::Database(_)
            | Error::Encode(_)
            | Error::Decode { .. }
            | Error::Config(_)
            | Error::Migration(_)
            | Error::IdsExhausted
            | Error::TaskAborted(_)
            | Error::Random
            | Error::MissingTable
            | Error::KeyringMismatch(_) => 500,
        }
    }

    /// The error with the passwords of `url` removed from its text (see
    /// `redact`): for errors raised while opening a connection to `url`.
    pub(crate) fn scrubbed(self, url: &str) -> Self {
        match self {
            Error::PoolTimeout { timeout, message } => Error::PoolTimeout {
                timeout,
                message: crate::redact::scrub(&message, url),
            },
            // The target is already `redact_url`'s form of the URL (only
            // its passwords masked, so it stays recognisable).
            Error::Connection {
                backend,
                target,
                message,
            } => Error::Connection {
                backend,
                target,
                message: crate::redact::scrub(&message, url),
            },
            Error::Config(message) => Error::Config(crate::redact::scrub(&message, url)),
            Error::Migration(message) => Error::Migration(crate::redact::scrub(&message, url)),
            other => other,
        }
    }

    /// Whether the error means the connection itself is unusable (so the
    /// operation may be retried once on a fresh connection).
    pub(crate) fn is_connection_failure(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match self {
            Error::Database(D::DatabaseError(kind, info)) => {
                matches!(
                    kind,
                    DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand
                ) || {
                    let m = info.message().to_ascii_lowercase();
                    m.contains("server closed the connection")
                        || m.contains("terminating connection")
                        || m.contains("server has gone away")
                        || m.contains("lost connection")
                        || m.contains("connection was killed")
                        || m.contains("no connection to the server")
                }
            }
            Error::Database(D::BrokenTransactionManager) => true,
            _ => false,
        }
    }
}

#[cfg(all(test, any(feature = "adapters", feature = "admin")))]
mod tests {
    use super::*;

    #[test]
    fn http_status_of_every_variant() {
        let waits = Duration::from_secs(5);
        let lost = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        );
        let retry_later = [
            Error::PoolTimeout {
                timeout: waits,
                message: "timed out".into(),
            },
            Error::Timeout { timeout: waits },
            Error::Connection {
                backend: Backend::Postgres,
                target: "postgres://db/app".into(),
                message: "connection refused".into(),
            },
            Error::Database(lost),
            Error::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                Box::new("could not serialize access due to concurrent update".to_owned()),
            )),
        ];
        let failed = [
            Error::Database(diesel::result::Error::NotFound),
            Error::Encode(rmp_serde::encode::Error::Syntax("x".into())),
            Error::Decode {
                key: "k".into(),
                source: rmp_serde::decode::Error::Syntax("x".into()),
            },
            Error::Config("x".into()),
            Error::Migration("x".into()),
            Error::IdsExhausted,
            Error::TaskAborted("x"),
            Error::Random,
            Error::MissingTable,
            Error::KeyringMismatch(crate::CheckReport::default()),
        ];
        for error in &retry_later {
            assert_eq!(error.http_status(), 503, "{error:?}");
        }
        for error in &failed {
            assert_eq!(error.http_status(), 500, "{error:?}");
        }
        assert_eq!(
            Error::PayloadTooLarge { size: 2, max: 1 }.http_status(),
            413
        );
        assert_eq!(Error::InvalidCursor.http_status(), 400);
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    /// What `fn main() -> Result<(), Error>` prints (`Termination` uses
    /// `Debug`) and what `.expect(..)` appends: the readable line.
    #[test]
    fn debug_is_the_readable_line() {
        let config = Error::Config("a key must be 32 bytes".into());
        assert_eq!(
            format!("Error: {config:?}"),
            "Error: configuration error: a key must be 32 bytes"
        );
        let connection = Error::Connection {
            backend: Backend::Sqlite,
            target: "typo/x.db".into(),
            message: "unable to open database file".into(),
        };
        assert_eq!(
            format!("{connection:?}"),
            "could not open the SQLite database at typo/x.db: unable to open database file"
        );
        assert_eq!(format!("{connection:?}"), connection.to_string());
        let timeout = Error::PoolTimeout {
            timeout: Duration::from_secs(5),
            message: "timed out".into(),
        };
        assert_eq!(
            format!("{timeout:?}"),
            "no database connection available within 5s: timed out"
        );
    }

    /// A cause the line already names is not repeated; `{:#?}` keeps the
    /// variant and fields for debugging.
    #[test]
    fn causes_are_not_repeated_and_alternate_shows_fields() {
        let decode = Error::Decode {
            key: "cart".into(),
            source: rmp_serde::decode::Error::Syntax("bad".into()),
        };
        let text = format!("{decode:?}");
        assert_eq!(text, decode.to_string());
        assert!(!text.contains("Caused by"), "{text}");
        let fields = format!("{decode:#?}");
        assert!(fields.starts_with("Decode {"), "{fields}");
        assert!(fields.contains("\"cart\""), "{fields}");
        let config = format!("{:#?}", Error::Config("x".into()));
        assert!(config.starts_with("Config("), "{config}");
        assert_eq!(
            format!("{:?}", Error::IdsExhausted),
            "could not draw an unused session id"
        );
    }

    /// A driver that echoes the password loses it; the shown URL keeps
    /// its form, `***` where the password was.
    #[test]
    fn connection_errors_are_scrubbed() {
        let url = "postgres://app:hunter22@db/test?sslmode=require";
        let error = Error::Connection {
            backend: Backend::Postgres,
            target: crate::redact::url(url),
            message: "password hunter22 rejected for app on test".into(),
        }
        .scrubbed(url);
        let text = error.to_string();
        assert_eq!(
            text,
            "could not connect to PostgreSQL at postgres://app:***@db/test?sslmode=require: \
             password *** rejected for app on test"
        );
        assert_eq!(format!("{error:?}"), text);
        assert!(!format!("{error:#?}").contains("hunter22"));
    }

    /// A cause that the line does not contain is listed under it, once.
    #[test]
    fn unnamed_causes_are_listed() {
        #[derive(Debug)]
        struct Deeper;
        impl fmt::Display for Deeper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the deeper cause")
            }
        }
        impl std::error::Error for Deeper {}
        #[derive(Debug)]
        struct Inner(Deeper);
        impl fmt::Display for Inner {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("the inner cause")
            }
        }
        impl std::error::Error for Inner {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let diesel = diesel::result::Error::SerializationError(Box::new(Inner(Deeper)));
        let error = Error::Database(diesel);
        let text = format!("{error:?}");
        assert!(text.starts_with(&error.to_string()), "{text}");
        assert_eq!(text.matches("the inner cause").count(), 1, "{text}");
        assert!(
            text.ends_with("\n\nCaused by:\n    the deeper cause"),
            "{text}"
        );
    }
}
