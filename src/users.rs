//! Per-user sessions: listing a user's devices and ending sessions ("sign
//! out everywhere", "sign out other devices", revoking one device).
//!
//! A session is bound to a user with [`Session::set_user`]. The table holds
//! only an HMAC of the user id (the `user_key` column, indexed), never the
//! id; the id itself is kept inside the encrypted envelope. Bindings survive
//! [`Session::renew`]. After a key rotation, bindings made under an older
//! key are still found (every key on the ring is tried) and move to the new
//! key when the session is next written or re-encrypted by
//! [`rotate_keys`](crate::rotate_keys); keep an old key on the ring until
//! rotation has run, as for the data itself.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::backend::UserRow;
use crate::error::Result;
use crate::events::EventKind;
use crate::id::StoredId;
use crate::metadata;
use crate::session::Session;
use crate::store::{event, SessionStore};

/// An opaque, URL-safe reference to one stored session, for "end this
/// session" buttons. It is neither the cookie id nor the stored id, it only
/// works together with the user it belongs to, and it changes when the
/// store's current key does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// Wraps handle text received from a form or URL (validated on use).
    pub fn new(text: impl Into<String>) -> Self {
        SessionHandle(text.into())
    }

    /// The handle's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHandle({})", self.0)
    }
}

/// One live session of a user, as shown in a "where you're signed in" list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Reference for [`SessionStore::revoke`].
    pub handle: SessionHandle,
    /// When the session was created (or last renewed, e.g. at login).
    pub created_at: DateTime<Utc>,
    /// Last write or touch (accurate to [`Config::touch_after`](crate::Config)).
    pub last_active: DateTime<Utc>,
    /// The recorded IP address (possibly truncated), if tracked.
    pub ip: Option<String>,
    /// The recorded user agent, if tracked.
    pub user_agent: Option<String>,
    /// The application's own metadata fields.
    pub fields: BTreeMap<String, String>,
    /// Whether this is the session the listing was made from.
    pub current: bool,
}

impl SessionStore {
    /// The live sessions bound to `user_id`, most recently active first.
    /// Pass the requesting session as `current` to have it marked.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// for device in 0..2 {
    ///     let mut s = store.load(None)?;
    ///     s.set_user("alice");
    ///     s.set_meta("device", Some(&format!("laptop {device}")));
    ///     let _ = store.commit(&mut s)?;
    /// }
    /// let list = store.sessions_of("alice", None)?;
    /// assert_eq!(list.len(), 2);
    /// assert!(list.iter().all(|info| !info.current));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn sessions_of(
        &self,
        user_id: &str,
        current: Option<&Session>,
    ) -> Result<Vec<SessionInfo>> {
        let started = self.stopwatch();
        let now = self.now();
        let keys = self.sealer().user_keys(user_id);
        let rows = self.database().rows_for_user(&keys, self.cutoffs(now))?;
        self.emit(event(EventKind::Read, None, started, rows.len() as u64));
        let current = current.and_then(Session::stored_id);
        Ok(rows
            .into_iter()
            .filter_map(|row| self.info(row, user_id, current, now))
            .collect())
    }

    fn info(
        &self,
        row: UserRow,
        user_id: &str,
        current: Option<StoredId>,
        now: i64,
    ) -> Option<SessionInfo> {
        let sid = StoredId::from_bytes(row.sid.as_slice().try_into().ok()?);
        let (payload, _) = self
            .open_row(
                &sid,
                crate::backend::Row {
                    data: row.data,
                    version: row.version,
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                },
                now,
            )
            .ok()?;
        // The HMAC matched; the authenticated user id must match too.
        if payload.user.as_deref() != Some(user_id) {
            return None;
        }
        let mut fields = payload.meta;
        let ip = fields.remove(metadata::IP);
        let user_agent = fields.remove(metadata::USER_AGENT);
        let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        Some(SessionInfo {
            handle: self.handle(&sid),
            created_at: at(row.created_at),
            last_active: at(row.updated_at),
            ip,
            user_agent,
            fields,
            current: current == Some(sid),
        })
    }

    fn handle(&self, sid: &StoredId) -> SessionHandle {
        SessionHandle(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sealer().handle(sid)),
        )
    }

    /// Ends one of `user_id`'s sessions, named by the handle from
    /// [`sessions_of`](SessionStore::sessions_of). Returns whether a session
    /// was ended; a handle that is not one of this user's live sessions ends
    /// nothing.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    pub fn revoke(&self, user_id: &str, handle: &SessionHandle) -> Result<bool> {
        let now = self.now();
        let keys = self.sealer().user_keys(user_id);
        for row in self.database().rows_for_user(&keys, self.cutoffs(now))? {
            let Ok(bytes) = <[u8; 32]>::try_from(row.sid.as_slice()) else {
                continue;
            };
            let sid = StoredId::from_bytes(bytes);
            if self.handle(&sid) == *handle {
                let started = self.stopwatch();
                let rows = self.database().delete(&sid, None)?;
                self.emit(event(EventKind::Delete, Some(sid), started, rows as u64));
                return Ok(rows == 1);
            }
        }
        Ok(false)
    }

    /// Ends every session of `user_id` ("sign out everywhere"; also for a
    /// disabled account). Returns how many were ended.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// # let mut s = store.load(None)?; s.set_user("bob"); let _ = store.commit(&mut s)?;
    /// assert_eq!(store.revoke_user("bob")?, 1);
    /// assert!(store.sessions_of("bob", None)?.is_empty());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn revoke_user(&self, user_id: &str) -> Result<u64> {
        let started = self.stopwatch();
        let keys = self.sealer().user_keys(user_id);
        let rows = self.database().delete_for_user(&keys, None)? as u64;
        self.emit(event(EventKind::Delete, None, started, rows));
        Ok(rows)
    }

    /// Ends every other session of the user `current` is bound to (after a
    /// password change, or "sign out other devices"). Returns how many were
    /// ended; 0 when `current` is bound to no user.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    pub fn revoke_others(&self, current: &Session) -> Result<u64> {
        let (Some(user), Some(keep)) = (current.user_id(), current.stored_id()) else {
            return Ok(0);
        };
        let started = self.stopwatch();
        let keys = self.sealer().user_keys(user);
        let rows = self
            .database()
            .delete_for_user(&keys, Some(keep.as_bytes()))? as u64;
        self.emit(event(EventKind::Delete, None, started, rows));
        Ok(rows)
    }

    /// Ends every session of every user, in batches of 1,000 (after a
    /// breach, or to force everyone to sign in again). Returns how many.
    ///
    /// # Errors
    ///
    /// Database and pool failures; batches already deleted stay deleted.
    pub fn revoke_all(&self) -> Result<u64> {
        let started = self.stopwatch();
        let mut total = 0u64;
        loop {
            let ids = self.database().first_ids(1000)?;
            if ids.is_empty() {
                break;
            }
            total += self.database().delete_ids(&ids)? as u64;
        }
        self.emit(event(EventKind::Delete, None, started, total));
        Ok(total)
    }
}
