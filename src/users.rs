//! Per-user sessions: listing a user's devices and ending sessions ("sign
//! out everywhere", "sign out other devices", revoking one device).
//!
//! Every per-request operation here is bounded, however many sessions a
//! user has: [`SessionStore::sessions_of`] reads and decrypts one page
//! (50 by default, newest first, with an authenticated [`Cursor`] to the
//! next), [`SessionStore::revoke`] resolves its handle with a primary-key
//! lookup, and the optional cap on live sessions per user
//! ([`Config::max_sessions_per_user`](crate::Config::max_sessions_per_user))
//! costs one bounded read and one ranged delete at login.
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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::backend::{Database, UserRow};
use crate::error::{Error, Result};
use crate::events::{Event, EventKind};
use crate::id::StoredId;
use crate::metadata::{self, Location};
use crate::session::Session;
use crate::store::SessionStore;

/// An opaque, URL-safe reference to one stored session, for "end this
/// session" buttons. It is neither the cookie id nor the stored id, it only
/// works together with the user it belongs to, and it changes when the
/// store's current key does.
///
/// It is 32 characters: a 16-byte tag (HMAC of the stored id under a key
/// derived from the current key) and the row's position, masked under the
/// same key, so [`SessionStore::revoke`] finds the row by its primary key
/// instead of reading the user's sessions, and a handle cannot be forged or
/// pointed at another row (the tag must match the row found).
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

/// Where the next page of a user's sessions starts: an opaque, URL-safe
/// string (32 characters) taken from [`SessionPage::next`] and handed back
/// in [`Page::after`], e.g. through a `?after=` query parameter.
///
/// It names a position in one user's list, authenticated under a key
/// derived from the store's current key and bound to the user: a cursor
/// that was altered, made up, issued for another user or issued before a
/// key rotation is refused with [`Error::InvalidCursor`](crate::Error::InvalidCursor).
/// It does not reveal the position in clear and it grants nothing: it can
/// only select which of the same user's sessions a listing shows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps cursor text received from a URL or form (verified on use).
    pub fn new(text: impl Into<String>) -> Self {
        Cursor(text.into())
    }

    /// The cursor's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({})", self.0)
    }
}

/// Which page of a user's sessions [`SessionStore::sessions_of`] reads:
/// at most `limit` sessions, starting after `after` (the first page when
/// `None`).
///
/// ```
/// use stored_session::{Cursor, Page};
///
/// let first = Page::default();
/// assert_eq!((first.limit, first.after), (Page::DEFAULT_LIMIT, None));
/// let next = Page { limit: 20, after: Some(Cursor::new("…from SessionPage::next…")) };
/// # let _ = next;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Most sessions on the page, clamped to `1..=`[`Page::MAX_LIMIT`].
    pub limit: u32,
    /// The previous page's [`SessionPage::next`], or `None` for the first page.
    pub after: Option<Cursor>,
}

impl Page {
    /// The default page size: 50.
    pub const DEFAULT_LIMIT: u32 = 50;
    /// The largest page size: 1,000 (a larger `limit` reads this many).
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page, with at most `limit` sessions.
    pub fn first(limit: u32) -> Self {
        Page { limit, after: None }
    }
}

impl Default for Page {
    /// The first page of [`Page::DEFAULT_LIMIT`] sessions.
    fn default() -> Self {
        Page::first(Page::DEFAULT_LIMIT)
    }
}

/// One page of a user's live sessions, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionPage {
    /// The sessions, newest first (see [`SessionStore::sessions_of`] for
    /// the order). At most the page's limit; occasionally fewer when a row
    /// on the page could not be opened (it is skipped, never shown).
    pub sessions: Vec<SessionInfo>,
    /// Where the next page starts, or `None` when this page is the last.
    pub next: Option<Cursor>,
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
    /// The device, e.g. `Firefox on Linux` or `Safari on iPhone`, parsed
    /// from the user agent when the session was created or at its last
    /// login (feature `devices` with [`Config::devices`](crate::Config)).
    pub device: Option<String>,
    /// Where the client was when the session was created, at its last
    /// login, or when it last moved to another network (feature `geoip`
    /// with a database, see [`Config`](crate::Config)); `None` when not
    /// recorded or not known.
    pub location: Option<Location>,
    /// The application's own metadata fields (those set with
    /// [`Session::set_meta`]).
    pub fields: BTreeMap<String, String>,
    /// Whether this is the session the listing was made from.
    pub current: bool,
}

/// PRF contexts of the references (see `Macs::reference_prf`); each
/// input is context + data, never 32 bytes long.
const CURSOR_TAG: &[u8] = b"stored-session v1 page cursor\0";
const CURSOR_MASK: &[u8] = b"stored-session v1 cursor id mask\0";
const HANDLE_MASK: &[u8] = b"stored-session v1 handle id mask\0";

/// Bytes in a handle or cursor: a 16-byte tag and an 8-byte masked id.
const REFERENCE_LEN: usize = 24;

impl SessionStore {
    /// One page of the live sessions bound to `user_id`, newest first.
    /// Pass the requesting session as `current` to have it marked.
    ///
    /// **Order.** Newest row first: the session most recently created or
    /// renewed (a login with [`Session::renew`] makes a new row) comes
    /// first. The order is by the row's immutable `id`, not by last
    /// activity, so it is stable while you page: requests that touch or
    /// write sessions between two page reads move nothing, and walking the
    /// pages with [`SessionPage::next`] returns every session that existed
    /// before the walk and still exists, exactly once. Sessions created (or
    /// renewed) during the walk appear on a new first page instead.
    ///
    /// **Cost.** One indexed range read of at most `limit + 1` rows per key
    /// on the ring (one key except during a rotation), and only the rows of
    /// the page are decrypted, however many sessions the user has.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidCursor`](crate::Error::InvalidCursor) when
    /// `page.after` is not a cursor this store issued for `user_id` under
    /// its current key (nothing is read); database and pool failures.
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// use stored_session::{Page, Cursor, Error};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// for device in 0..5 {
    ///     let mut s = store.load(None)?;
    ///     s.set_user("alice");
    ///     s.set_meta("device", Some(&format!("laptop {device}")));
    ///     let _ = store.save(&mut s)?;
    /// }
    /// let first = store.sessions_of("alice", None, Page::first(2))?;
    /// assert_eq!(first.sessions.len(), 2);
    /// assert_eq!(first.sessions[0].fields["device"], "laptop 4"); // newest first
    ///
    /// // Walk the rest with the cursor (e.g. a `?after=` link).
    /// let mut seen = first.sessions.len();
    /// let mut next = first.next;
    /// while let Some(cursor) = next {
    ///     let page = store.sessions_of("alice", None, Page { limit: 2, after: Some(cursor) })?;
    ///     seen += page.sessions.len();
    ///     next = page.next;
    /// }
    /// assert_eq!(seen, 5);
    ///
    /// // A cursor that was not issued for this user is refused.
    /// let bad = Page { limit: 2, after: Some(Cursor::new("garbage")) };
    /// assert!(matches!(store.sessions_of("alice", None, bad), Err(Error::InvalidCursor)));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn sessions_of(
        &self,
        user_id: &str,
        current: Option<&Session>,
        page: Page,
    ) -> Result<SessionPage> {
        let started = self.stopwatch();
        let now = self.now();
        let limit = page.limit.clamp(1, Page::MAX_LIMIT) as usize;
        let keys = self.macs().user_keys(user_id);
        let before = match &page.after {
            Some(cursor) => self
                .cursor_position(&keys[0], cursor)
                .ok_or(Error::InvalidCursor)?,
            None => i64::MAX,
        };
        let cut = self.cutoffs(now);
        let mut rows = Vec::with_capacity(limit + 1);
        for key in &keys {
            rows.extend(
                self.database()
                    .user_page(key, before, limit as i64 + 1, cut)?,
            );
        }
        rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.id));
        let next = if rows.len() > limit {
            rows.truncate(limit);
            Some(self.cursor(&keys[0], rows[limit - 1].id))
        } else {
            None
        };
        self.emit(Event::new(
            EventKind::Read,
            None,
            started.elapsed(),
            rows.len() as u64,
        ));
        let current = current.and_then(Session::stored_id);
        let sessions = rows
            .into_iter()
            .filter_map(|row| self.info(row, user_id, current, now))
            .collect();
        Ok(SessionPage { sessions, next })
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
        let location = Location::from_meta(&fields);
        let ip = fields.remove(metadata::IP);
        let user_agent = fields.remove(metadata::USER_AGENT);
        let device = fields.remove(metadata::DEVICE);
        fields.retain(|name, _| !metadata::is_reserved(name));
        let at = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        Some(SessionInfo {
            handle: self.handle(&sid, row.id),
            created_at: at(row.created_at),
            last_active: at(row.updated_at),
            ip,
            user_agent,
            device,
            location,
            fields,
            current: current == Some(sid),
        })
    }

    /// `tag || (id XOR mask(tag))`, base64url: the id is readable only with
    /// the key, and the tag authenticates what it is bound to.
    fn reference(&self, tag: [u8; 16], id: i64, mask_context: &[u8]) -> String {
        let mask = self.macs().reference_prf(mask_context, &tag);
        let mut bytes = [0u8; REFERENCE_LEN];
        bytes[..16].copy_from_slice(&tag);
        for (i, b) in id.to_be_bytes().iter().enumerate() {
            bytes[16 + i] = b ^ mask[i];
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The tag and the unmasked id of a reference, if it is well-formed
    /// (not yet authenticated: the caller checks the tag).
    fn open_reference(&self, text: &str, mask_context: &[u8]) -> Option<([u8; 16], i64)> {
        if text.len() != 32 {
            return None;
        }
        let bytes: [u8; REFERENCE_LEN] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&bytes[..16]);
        let mask = self.macs().reference_prf(mask_context, &tag);
        let mut id = [0u8; 8];
        for (i, b) in id.iter_mut().enumerate() {
            *b = bytes[16 + i] ^ mask[i];
        }
        Some((tag, i64::from_be_bytes(id)))
    }

    fn handle(&self, sid: &StoredId, id: i64) -> SessionHandle {
        SessionHandle(self.reference(self.macs().handle(sid), id, HANDLE_MASK))
    }

    fn cursor_tag(&self, user_key: &[u8; 32], id: i64) -> [u8; 16] {
        let mut data = [0u8; 40];
        data[..32].copy_from_slice(user_key);
        data[32..].copy_from_slice(&id.to_be_bytes());
        let full = self.macs().reference_prf(CURSOR_TAG, &data);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    fn cursor(&self, user_key: &[u8; 32], id: i64) -> Cursor {
        Cursor(self.reference(self.cursor_tag(user_key, id), id, CURSOR_MASK))
    }

    /// The id a cursor stands for, if this store issued it for `user_key`.
    fn cursor_position(&self, user_key: &[u8; 32], cursor: &Cursor) -> Option<i64> {
        let (tag, id) = self.open_reference(cursor.as_str(), CURSOR_MASK)?;
        same(&tag, &self.cursor_tag(user_key, id)).then_some(id)
    }

    /// Ends one of `user_id`'s sessions, named by the handle from
    /// [`sessions_of`](SessionStore::sessions_of). Returns whether a session
    /// was ended; a handle that is not one of this user's live sessions
    /// (garbage, another user's, already ended, or from before a key
    /// rotation) ends nothing.
    ///
    /// Bounded: the handle names its row, so this is one primary-key read
    /// and one delete by `sid`, however many sessions the user has.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    pub fn revoke(&self, user_id: &str, handle: &SessionHandle) -> Result<bool> {
        let Some((tag, id)) = self.open_reference(handle.as_str(), HANDLE_MASK) else {
            return Ok(false);
        };
        let now = self.now();
        let Some(row) = self.database().row_for_handle(id, self.cutoffs(now))? else {
            return Ok(false);
        };
        let Ok(bytes) = <[u8; 32]>::try_from(row.sid.as_slice()) else {
            return Ok(false);
        };
        let sid = StoredId::from_bytes(bytes);
        let bound = row.user_key.as_deref().is_some_and(|key| {
            self.macs()
                .user_keys(user_id)
                .iter()
                .any(|k| k.as_slice() == key)
        });
        if !bound || !same(&tag, &self.macs().handle(&sid)) {
            return Ok(false);
        }
        self.delete_row(sid)
    }

    /// After a commit that bound `session` to a user: revokes the user's
    /// oldest live sessions beyond [`Config::max_sessions_per_user`]
    /// (nothing when it is `None`). Logs a failure instead of returning it:
    /// the commit it follows has succeeded.
    ///
    /// [`Config::max_sessions_per_user`]: crate::Config::max_sessions_per_user
    pub(crate) fn enforce_session_cap(&self, session: &Session) {
        let Some(cap) = self.config().max_sessions_per_user else {
            return;
        };
        let (Some(user), Some(sid)) = (session.user_id(), session.stored_id()) else {
            return;
        };
        if let Err(e) = self.cap_sessions(user, &sid, cap.max(1)) {
            log::warn!(target: "stored_session", "max_sessions_per_user not enforced after a login: {e}");
        }
    }

    /// Keeps `current` and the `cap - 1` newest other live sessions of
    /// `user`; deletes the older ones, never one newer than `current`.
    fn cap_sessions(&self, user: &str, current: &StoredId, cap: u32) -> Result<u64> {
        let started = self.stopwatch();
        let db = self.database();
        let Some(current_id) = db.row_id(current.as_bytes())? else {
            return Ok(0);
        };
        let keep = cap as usize - 1;
        let keys = self.macs().user_keys(user);
        let cut = self.cutoffs(self.now());
        let mut others = Vec::new();
        for key in &keys {
            others.extend(db.user_ids(key, keep as i64 + 2, cut)?);
        }
        others.retain(|&id| id != current_id);
        others.sort_unstable_by_key(|&id| std::cmp::Reverse(id));
        let Some(&newest_to_go) = others.get(keep) else {
            return Ok(0);
        };
        let rows = db.delete_user_up_to(&keys, newest_to_go.min(current_id - 1))? as u64;
        self.emit(Event::new(EventKind::Delete, None, started.elapsed(), rows));
        Ok(rows)
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
    /// # let mut s = store.load(None)?; s.set_user("bob"); let _ = store.save(&mut s)?;
    /// assert_eq!(store.revoke_user("bob")?, 1);
    /// assert!(store.sessions_of("bob", None, Default::default())?.sessions.is_empty());
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn revoke_user(&self, user_id: &str) -> Result<u64> {
        let started = self.stopwatch();
        let keys = self.macs().user_keys(user_id);
        let rows = self.database().delete_for_user(&keys, None)? as u64;
        self.emit(Event::new(EventKind::Delete, None, started.elapsed(), rows));
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
        let keys = self.macs().user_keys(user);
        let rows = self
            .database()
            .delete_for_user(&keys, Some(keep.as_bytes()))? as u64;
        self.emit(Event::new(EventKind::Delete, None, started.elapsed(), rows));
        Ok(rows)
    }

    /// Ends every session of every user, in batches of 1,000 (after a
    /// breach, or to force everyone to sign in again): [`Database::revoke_all`]
    /// on the store's database, plus one
    /// [`EventKind::Delete`](crate::EventKind::Delete) event to the store's
    /// subscribers. Returns how many.
    ///
    /// # Errors
    ///
    /// Database and pool failures; batches already deleted stay deleted.
    pub fn revoke_all(&self) -> Result<u64> {
        let started = self.stopwatch();
        let total = self.database().revoke_all()?;
        self.emit(Event::new(
            EventKind::Delete,
            None,
            started.elapsed(),
            total,
        ));
        Ok(total)
    }
}

impl Database {
    /// Ends every session of every user, without a store or keys: deletes
    /// every row of the table, live or expired, in batches of 1,000 by
    /// primary key (each its own short statement). Returns how many rows
    /// were deleted. No event is emitted (there is no store);
    /// [`SessionStore::revoke_all`] does the same and emits one.
    ///
    /// # Errors
    ///
    /// Database and pool failures; batches already deleted stay deleted.
    ///
    /// ```
    /// use stored_session::{Database, Keyring, PoolOptions, SessionStore};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// db.run_migrations()?;
    /// // An application's store writes a session…
    /// let store = SessionStore::builder(Keyring::generate()).build(db.clone());
    /// let mut session = store.load(None)?;
    /// session.insert("k", "v")?;
    /// let _ = store.save(&mut session)?;
    /// // …and maintenance, holding no keys, ends it.
    /// assert_eq!(db.revoke_all()?, 1);
    /// assert_eq!(db.revoke_all()?, 0);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn revoke_all(&self) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let ids = self.first_ids(REVOKE_ALL_BATCH)?;
            if ids.is_empty() {
                break;
            }
            total += self.delete_ids(&ids)? as u64;
        }
        Ok(total)
    }
}

/// Rows per statement of [`Database::revoke_all`].
const REVOKE_ALL_BATCH: i64 = 1000;

/// Equality of two tags without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
