//! Per-user locks that serialise a renew against a revocation of the same
//! user, so that revocation wins every race.
//!
//! The race: a renew deletes the old row and inserts the new one in one
//! transaction; a concurrent "sign out everywhere" deletes every row whose
//! `user_key` matches. On PostgreSQL under READ COMMITTED, the revoking
//! `DELETE` waits for the renew's lock on the old row, then finds it gone,
//! and never sees the new row (it was not committed when the statement took
//! its snapshot): the renewed session would live on after the revocation
//! returned. On MySQL/MariaDB the two transactions deadlock instead.
//!
//! So both take one lock per user first, for as long as their transaction
//! runs: PostgreSQL `pg_advisory_xact_lock` (released at commit or
//! rollback), MySQL/MariaDB `GET_LOCK` (released right after the
//! transaction; the server releases it too if the connection dies). SQLite
//! needs none: the store's writes there are already serialised. The lock is
//! named by the user binding under the current key, so neither the user id
//! nor its HMAC reaches the server, and two users sharing a lock (a 1 in
//! 2^32 chance) only wait for each other. Only renews and revocations take
//! it: loads and ordinary writes never wait.
//!
//! # On a MariaDB Galera cluster
//!
//! `GET_LOCK` is node-local there, and so is `SELECT … FOR UPDATE`
//! (measured on MariaDB 10.11 with Galera 26.4: while node 1 holds a
//! `GET_LOCK`, node 2 takes the same lock at once and without an error; a
//! second taker on node 1 waits). The lock still serialises a renew and a
//! revocation that reach the same node. Across nodes the store is correct
//! through three things instead: certification, which commits the first of
//! two transactions that wrote the same row (in the cluster's one commit
//! order) and fails the other with 1213; the store running that one again
//! (see [`runner`](super::runner)); and causal reads (`wsrep_sync_wait`,
//! see [`mysql`](super::mysql)), so that a `BEGIN` or a `SELECT` first waits
//! until its node has applied every transaction the cluster committed
//! before it.
//!
//! * Renew against revocation, on two nodes. When the renewed session is
//!   bound to the user (a privilege change, a periodic renew), both delete
//!   its old row, so one of them fails certification and runs again. A
//!   revocation run again begins (causally) after the renew, sees its new
//!   row and deletes it; a renew run again finds its old row gone and ends
//!   the session, as on one server. When the old row is not bound to the
//!   user (the renew of a login, from an anonymous session), the two share
//!   no row and both commit: the revocation did not see the new row, so it
//!   ran as if before the login, which is a valid order for two requests
//!   that overlapped; a revocation that starts after the login returned
//!   begins causally and deletes the new session.
//! * The locked write (the per-key merge after a conflict): writers on one
//!   node queue on `FOR UPDATE`; writers on different nodes both update the
//!   row and one fails certification. It runs again from a new, causal
//!   `BEGIN`, reads the winner's row, and merges its own keys into it, so
//!   no key is lost.
//!
//! `tests/galera.rs` runs both races across nodes on a real cluster, and
//! eight writers of one session on three nodes.

use super::dialect::WriteTransaction;
use crate::error::Result;

/// The lock of one user: the first eight bytes of the user's binding under
/// the current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UserLock(i64);

impl UserLock {
    /// The lock for a user binding (`user_key` column value, current key).
    pub(crate) fn of(user_key: &[u8; 32]) -> Self {
        let mut first = [0u8; 8];
        first.copy_from_slice(&user_key[..8]);
        UserLock(i64::from_be_bytes(first))
    }
}

/// How long a MySQL/MariaDB `GET_LOCK` waits, in seconds (PostgreSQL's
/// advisory lock waits as long as the connection's `lock_timeout` allows).
#[cfg(feature = "mysql")]
const MYSQL_LOCK_WAIT_SECS: i32 = 10;

/// The class of the store's PostgreSQL advisory locks (two-key form), so
/// they cannot collide with the application's single-key locks: "SSLK".
#[cfg(feature = "postgres")]
const PG_LOCK_CLASS: i32 = 0x5353_4C4B;

/// Runs a write transaction holding a user's lock (see the module docs).
pub(crate) trait UserLocking: WriteTransaction {
    /// [`write_transaction`](super::dialect::WriteTransaction::write_transaction),
    /// holding `lock` (when given) from before its first statement until it
    /// has ended.
    fn user_transaction<T>(
        &mut self,
        lock: Option<UserLock>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T>;
}

#[cfg(feature = "sqlite")]
impl UserLocking for diesel::SqliteConnection {
    fn user_transaction<T>(
        &mut self,
        _lock: Option<UserLock>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        // Writers are serialised by the write gate and `BEGIN IMMEDIATE`.
        self.write_transaction(f)
    }
}

#[cfg(feature = "postgres")]
impl UserLocking for diesel::PgConnection {
    fn user_transaction<T>(
        &mut self,
        lock: Option<UserLock>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        use diesel::sql_types::Integer;
        use diesel::RunQueryDsl;
        self.write_transaction(|conn| {
            if let Some(UserLock(value)) = lock {
                // The low 32 bits as the second key (the cast keeps them).
                diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind::<Integer, _>(PG_LOCK_CLASS)
                    .bind::<Integer, _>(value as i32)
                    .execute(conn)?;
            }
            f(conn)
        })
    }
}

#[cfg(feature = "mysql")]
diesel::define_sql_function! {
    /// MySQL's `GET_LOCK(name, timeout)`: 1 when taken, 0 on timeout.
    fn get_lock(name: diesel::sql_types::Text, timeout: diesel::sql_types::Integer) -> diesel::sql_types::Nullable<diesel::sql_types::Integer>;
}

#[cfg(feature = "mysql")]
diesel::define_sql_function! {
    /// MySQL's `RELEASE_LOCK(name)`.
    fn release_lock(name: diesel::sql_types::Text) -> diesel::sql_types::Nullable<diesel::sql_types::Integer>;
}

#[cfg(feature = "mysql")]
impl UserLocking for diesel::MysqlConnection {
    fn user_transaction<T>(
        &mut self,
        lock: Option<UserLock>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        use diesel::RunQueryDsl;
        let Some(UserLock(value)) = lock else {
            return self.write_transaction(f);
        };
        let name = format!("stored_session.user.{value:016x}");
        let taken: Option<i32> =
            diesel::select(get_lock(&name, MYSQL_LOCK_WAIT_SECS)).get_result(self)?;
        if taken != Some(1) {
            return Err(crate::error::Error::Database(
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::Unknown,
                    Box::new(format!(
                        "timed out after {MYSQL_LOCK_WAIT_SECS} s waiting for a user's session lock"
                    )),
                ),
            ));
        }
        let result = self.write_transaction(f);
        // A failed release leaves the lock to the connection's end; the
        // transaction's outcome is what the caller needs.
        let released: diesel::QueryResult<Option<i32>> =
            diesel::select(release_lock(&name)).get_result(self);
        if let Err(e) = released {
            log::warn!(target: "stored_session", "could not release a user's session lock: {e}");
        }
        result
    }
}
