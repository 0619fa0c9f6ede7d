//! The session-row operations the store runs: load, the locked
//! read-decide-write, insert, compare-and-swap update, touch, delete and
//! renew. Each runs on whichever backend the [`Database`] is, inside the
//! writer gate when it writes.

use diesel::prelude::*;

use super::database::{with_connection, Database};
use super::dialect::WriteTransaction;
use super::rows::{live_row, Applied, Cutoffs, Plan, RenewResult, Row};
use super::runner::is_unique_violation;
use super::statements::{CasUpdate, NewRow, Touch};
use super::user_lock::{UserLock, UserLocking};
use crate::error::{Error, Result};
use crate::id::StoredId;
use crate::schema::stored_sessions::dsl as t;

/// What a compare-and-swap update does with the indexed user-binding column.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Binding {
    /// Leave it alone (the common case: no HMAC, no index rewrite).
    Keep,
    /// Set it to this user key (`None`: unbound).
    Set(Option<[u8; 32]>),
}

impl Database {
    /// One indexed SELECT by `sid` that already filters out expired rows.
    pub(crate) fn load(&self, sid: &StoredId, cut: Cutoffs) -> Result<Option<Row>> {
        let sid = *sid;
        with_connection!(self, |conn| live_row::<false, _>(conn, &sid, cut))
    }

    /// The slow path after a write conflict: in one write transaction, read
    /// the row under lock, let `plan` decide (it merges and seals), and apply
    /// the plan. Concurrent writers of the same session queue on the lock, so
    /// this always makes progress. Returns what was applied.
    ///
    /// `lock` is the user lock to hold when the plan may renew (see
    /// [`user_lock`](super::user_lock)).
    pub(crate) fn locked(
        &self,
        sid: &StoredId,
        cut: Cutoffs,
        lock: Option<UserLock>,
        plan: &mut dyn FnMut(Option<Row>) -> Result<Plan>,
    ) -> Result<Applied> {
        let _gate = self.write_gate()?;
        let sid = *sid;
        // The plan runs on the caller's thread; a worker asks for it.
        with_connection!(self, Some(plan), |conn, ask| {
            conn.user_transaction(lock, |conn| {
                let row = conn.load_locked(&sid, cut)?;
                let target = t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()));
                Ok(match ask(row)? {
                    Plan::Nothing => Applied::Nothing,
                    Plan::Update {
                        data,
                        version,
                        now,
                        expires_at,
                        user_key,
                    } => Applied::Updated {
                        version: version + 1,
                        rows: CasUpdate::<true, true> {
                            sid: sid.as_bytes(),
                            data: &data,
                            version,
                            next_version: version + 1,
                            updated_at: now,
                            expires_at,
                            user_key: user_key.as_ref().map(|k| k.as_slice()),
                            live: cut.live(),
                        }
                        .execute(conn)?,
                    },
                    Plan::Delete => Applied::Deleted {
                        rows: diesel::delete(target).execute(conn)?,
                    },
                    Plan::Renew {
                        id,
                        salt,
                        data,
                        user_key,
                        created_at,
                        now,
                        expires_at,
                    } => {
                        diesel::delete(target).execute(conn)?;
                        NewRow {
                            sid: id.stored_id().as_bytes(),
                            data: &data,
                            version: 1,
                            user_key: user_key.as_ref().map(|k| k.as_slice()),
                            created_at,
                            updated_at: now,
                            expires_at,
                        }
                        .execute(conn)?;
                        Applied::Renewed { id, salt }
                    }
                })
            })
        })
    }

    /// INSERT; `Ok(false)` when the sid already exists.
    pub(crate) fn insert(&self, row: &NewRow<'_>) -> Result<bool> {
        let _gate = self.write_gate()?;
        let row = OwnedRow::from(row);
        let result = with_connection!(self, |conn| {
            row.as_new_row().execute(conn).map_err(Error::from)
        });
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Compare-and-swap UPDATE of the data; 0 rows when the version moved,
    /// the row is gone or it expired. `touch` is `Some((now, expires_at))`
    /// to move the idle clock and the deadline too, `None` to leave
    /// `updated_at` and `expires_at` (and their index entries) alone.
    /// `binding` says whether the indexed user-binding column moves.
    pub(crate) fn update(
        &self,
        sid: &StoredId,
        version: i64,
        data: Vec<u8>,
        touch: Option<(i64, Option<i64>)>,
        binding: Binding,
        cut: Cutoffs,
    ) -> Result<usize> {
        let _gate = self.write_gate()?;
        let sid = *sid;
        let (rebind, user_key) = match binding {
            Binding::Keep => (false, None),
            Binding::Set(key) => (true, key),
        };
        // One prepared statement per combination of optional columns.
        with_connection!(self, |conn| {
            let cas = CasUpdate::<false, false> {
                sid: sid.as_bytes(),
                data: &data,
                version,
                next_version: version + 1,
                updated_at: touch.map_or(0, |(now, _)| now),
                expires_at: touch.and_then(|(_, expires_at)| expires_at),
                user_key: user_key.as_ref().map(|k| k.as_slice()),
                live: cut.live(),
            };
            match (touch.is_some(), rebind) {
                (false, false) => cas.execute(conn),
                (true, false) => cas.shaped::<true, false>().execute(conn),
                (false, true) => cas.shaped::<false, true>().execute(conn),
                (true, true) => cas.shaped::<true, true>().execute(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Refreshes `updated_at` and the deadline only, never `data`, and
    /// only on a live row.
    pub(crate) fn touch(
        &self,
        sid: &StoredId,
        now: i64,
        expires_at: Option<i64>,
        cut: Cutoffs,
    ) -> Result<usize> {
        let _gate = self.write_gate()?;
        let sid = *sid;
        with_connection!(self, |conn| {
            Touch {
                sid: sid.as_bytes(),
                now,
                expires_at,
                live: cut.live(),
            }
            .execute(conn)
            .map_err(Error::from)
        })
    }

    /// DELETE by sid, optionally only at a given version.
    pub(crate) fn delete(&self, sid: &StoredId, version: Option<i64>) -> Result<usize> {
        let _gate = self.write_gate()?;
        let sid = *sid;
        with_connection!(self, |conn| {
            let target = t::stored_sessions.filter(t::sid.eq(sid.as_bytes().as_slice()));
            match version {
                Some(v) => diesel::delete(target.filter(t::version.eq(v))).execute(conn),
                None => diesel::delete(target).execute(conn),
            }
            .map_err(Error::from)
        })
    }

    /// Deletes the old row (at its version) and inserts the new one in one
    /// transaction, holding the user's lock when the new row is bound to a
    /// user (so a concurrent revocation of that user cannot miss it). A
    /// unique violation on the new sid is returned as an error (and rolls
    /// the delete back).
    pub(crate) fn renew(
        &self,
        old: &StoredId,
        version: i64,
        new: &NewRow<'_>,
        lock: Option<UserLock>,
    ) -> Result<RenewResult> {
        let _gate = self.write_gate()?;
        let old = *old;
        let new = OwnedRow::from(new);
        with_connection!(self, |conn| {
            conn.user_transaction(lock, |conn| {
                let deleted = diesel::delete(
                    t::stored_sessions
                        .filter(t::sid.eq(old.as_bytes().as_slice()))
                        .filter(t::version.eq(version)),
                )
                .execute(conn)?;
                if deleted == 0 {
                    return Ok(RenewResult::Conflict);
                }
                new.as_new_row().execute(conn)?;
                Ok(RenewResult::Done)
            })
        })
    }
}

/// A [`NewRow`] that owns its bytes, for an operation that may run on
/// another thread.
#[derive(Debug, Clone)]
struct OwnedRow {
    sid: Vec<u8>,
    data: Vec<u8>,
    version: i64,
    user_key: Option<Vec<u8>>,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
}

impl OwnedRow {
    fn from(row: &NewRow<'_>) -> OwnedRow {
        OwnedRow {
            sid: row.sid.to_vec(),
            data: row.data.to_vec(),
            version: row.version,
            user_key: row.user_key.map(<[u8]>::to_vec),
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
        }
    }

    fn as_new_row(&self) -> NewRow<'_> {
        NewRow {
            sid: &self.sid,
            data: &self.data,
            version: self.version,
            user_key: self.user_key.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        }
    }
}
