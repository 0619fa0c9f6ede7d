//! The crate's one error type.

use std::time::Duration;

/// Everything that can go wrong in a store operation.
///
/// Invalid, unknown, expired or tampered input is **not** an error: loading
/// such a cookie yields a fresh session (and a `session_rejected` event).
/// Errors are reserved for failures the application must hear about: the
/// database, the pool, a payload over the configured cap, a value that cannot
/// be encoded or decoded, a bad configuration, and the rare failures of the
/// machinery around them (no unused id, a lost worker task, a failed random
/// generator). Each variant documents when it happens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database rejected a statement or the connection failed mid-way.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),

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

/// Shorthand for `Result<T, stored_session::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The HTTP status a web page answers this failure with: `503` when no
    /// pooled connection came free in time or the database did not answer
    /// in time (retrying later may work), `500` otherwise. The one mapping,
    /// used by the framework adapters and the admin page.
    #[cfg(any(feature = "adapters", feature = "admin"))]
    pub(crate) fn http_status(&self) -> u16 {
        // Exhaustive on purpose: a new variant needs a decision here.
        match self {
            Error::PoolTimeout { .. } | Error::Timeout { .. } => 503,
            Error::Database(_)
            | Error::PayloadTooLarge { .. }
            | Error::Encode(_)
            | Error::Decode { .. }
            | Error::Config(_)
            | Error::Migration(_)
            | Error::IdsExhausted
            | Error::TaskAborted(_)
            | Error::Random
            | Error::InvalidCursor
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
        let retry_later = [
            Error::PoolTimeout {
                timeout: waits,
                message: "timed out".into(),
            },
            Error::Timeout { timeout: waits },
        ];
        let failed = [
            Error::Database(diesel::result::Error::NotFound),
            Error::PayloadTooLarge { size: 2, max: 1 },
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
            Error::InvalidCursor,
            Error::MissingTable,
            Error::KeyringMismatch(crate::CheckReport::default()),
        ];
        for error in &retry_later {
            assert_eq!(error.http_status(), 503, "{error:?}");
        }
        for error in &failed {
            assert_eq!(error.http_status(), 500, "{error:?}");
        }
    }
}
