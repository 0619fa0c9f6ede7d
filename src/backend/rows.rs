//! The shapes the repository reads and writes: a session row and the one
//! query that reads it live, the expiry cutoffs that make a row live, what
//! a write under lock does with the row it read, and how a renew ended.

use diesel::prelude::*;

use super::statements::{Live, SelectLive};
use crate::crypto::Salt;
use crate::error::{Error, Result};
use crate::id::{SessionId, StoredId};

/// A row as the store reads it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct Row {
    pub data: Vec<u8>,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What makes a row live at `now`: `created_at > lifetime` (the store's
/// absolute lifetime caps every session), and its own deadline
/// `expires_at > now`; a row without one (`expires_at IS NULL`: last
/// written before the `expires_at` column existed, or no limit applies)
/// lives under the store's idle timeout, `updated_at > idle`.
///
/// `i64::MIN` as `idle` or `lifetime` disables that rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoffs {
    pub idle: i64,
    pub lifetime: i64,
    pub now: i64,
}

/// The idle window of a disabled idle rule: far beyond any time, yet
/// small enough that `updated_at + window` never overflows a BIGINT.
const NO_IDLE_LIMIT: i64 = 1 << 62;

impl Cutoffs {
    /// The store's idle window (`now - idle`), as the hot statements bind
    /// it: a row without its own deadline is live while
    /// `updated_at + window > now`.
    pub(crate) fn idle_window(&self) -> i64 {
        if self.idle == i64::MIN {
            NO_IDLE_LIMIT
        } else {
            self.now.saturating_sub(self.idle).min(NO_IDLE_LIMIT)
        }
    }

    /// The bind values of the hot statements' liveness test.
    pub(crate) fn live(&self) -> Live {
        Live {
            lifetime: self.lifetime,
            idle_window: self.idle_window(),
            now: self.now,
        }
    }
}

/// How an attempted renew ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenewResult {
    Done,
    /// The old row's version moved or the row is gone; nothing changed.
    Conflict,
}

/// What to do with a row read under lock (see [`Database::locked`](super::Database::locked)).
#[derive(Debug)]
pub(crate) enum Plan {
    /// Leave it (gone, or unreadable).
    Nothing,
    /// Replace its data.
    Update {
        data: Vec<u8>,
        /// The version read under the lock; the write stores the next one.
        version: i64,
        now: i64,
        /// The row's new deadline (the idle clock moves to `now`).
        expires_at: Option<i64>,
        user_key: Option<[u8; 32]>,
    },
    /// Delete it.
    Delete,
    /// Delete it and insert this row instead (under `id`'s stored id, its
    /// envelope sealed under `salt`; both come back in
    /// [`Applied::Renewed`]).
    Renew {
        id: SessionId,
        salt: Salt,
        data: Vec<u8>,
        user_key: Option<[u8; 32]>,
        /// The session's creation time, which renewing keeps.
        created_at: i64,
        now: i64,
        /// The new row's deadline.
        expires_at: Option<i64>,
    },
}

/// What [`Database::locked`](super::Database::locked) applied: the plan the
/// caller made, with the rows it affected.
#[derive(Debug)]
pub(crate) enum Applied {
    /// Nothing (the row was gone or unreadable).
    Nothing,
    /// The data was replaced; the row is now at `version`.
    Updated { version: i64, rows: usize },
    /// The row was deleted.
    Deleted { rows: usize },
    /// The row was replaced by one under `id`, sealed under `salt`.
    Renewed { id: SessionId, salt: Salt },
}

/// The live row of `sid`, if any (see [`SelectLive`]); `LOCK` reads it
/// `FOR UPDATE`.
pub(crate) fn live_row<const LOCK: bool, C>(
    conn: &mut C,
    sid: &StoredId,
    cut: Cutoffs,
) -> Result<Option<Row>>
where
    C: Connection,
    for<'a> SelectLive<'a, LOCK>: diesel::query_dsl::LoadQuery<'a, C, Row>,
{
    SelectLive::<LOCK> {
        sid: sid.as_bytes(),
        live: cut.live(),
    }
    .get_result::<Row>(conn)
    .optional()
    .map_err(Error::from)
}
