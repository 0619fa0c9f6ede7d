//! The shapes the repository reads and writes: a session row and the one
//! query that reads it live, the expiry cutoffs that make a row live, what
//! a write under lock does with the row it read, and how a renew ended.

use diesel::prelude::*;

use super::statements::SelectLive;
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

/// Rows count as live while `updated_at > idle` and `created_at > lifetime`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cutoffs {
    pub idle: i64,
    pub lifetime: i64,
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
        idle: cut.idle,
        lifetime: cut.lifetime,
    }
    .get_result::<Row>(conn)
    .optional()
    .map_err(Error::from)
}
