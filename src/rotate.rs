//! Key rotation: re-encrypting stored sessions with the current key.
//!
//! Rotation in three steps:
//!
//! 1. Put the new key first in the keyring (`STORED_SESSION_KEYS="NEW,OLD"`)
//!    and deploy: new writes use it, old sessions still open, and each is
//!    re-encrypted on its next write.
//! 2. Run [`rotate_keys`] (or `stored-session rotate-keys`) to re-encrypt the
//!    rest. It walks the table by primary key in batches, skips rows already
//!    sealed with the current key, and replaces each envelope with a
//!    compare-and-swap on the row's version, so a session written by a
//!    request at the same moment is never overwritten (it is retried). A run
//!    can be stopped and restarted at any time.
//! 3. Drop the old key from the ring.

use std::fmt;
use std::time::{Duration, Instant};

use crate::wipe::WipedBytes;

use crate::codec::Payload;
use crate::crypto::{Macs, Sealer};
use crate::error::Result;
use crate::id::StoredId;
use crate::store::SessionStore;

/// What a rotation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotateReport {
    /// Live rows looked at.
    pub scanned: u64,
    /// Rows re-encrypted with the current key.
    pub rotated: u64,
    /// Rows already sealed with the current key.
    pub current: u64,
    /// Rows no key on the ring can open (left alone; loads reject them and
    /// trimming removes them).
    pub unreadable: u64,
    /// Rows that kept changing under concurrent writes through every retry
    /// (left for their writers or a later run).
    pub busy: u64,
    /// Highest primary key processed: pass it to [`Rotation::resume_after`]
    /// to continue an interrupted run.
    pub last_id: i64,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for RotateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Re-encrypted {} session(s); {} already current, {} unreadable, {} busy",
            self.rotated, self.current, self.unreadable, self.busy
        )
    }
}

/// Re-encrypts every live session not sealed with the keyring's current key.
///
/// # Errors
///
/// Database and pool failures; rows rotated before the failure stay rotated.
///
/// ```
/// use stored_session::{Key, Keyring, SessionStore};
/// # let old = Key::generate();
/// # let store = SessionStore::builder(Keyring::new(old.clone())).open_migrated("sqlite::memory:")?;
/// # let mut s = store.load(None)?; s.insert("k", &1)?; let _ = store.save(&mut s)?;
/// let rotated = SessionStore::builder(Keyring::new(Key::generate()).with_previous(old)?)
///     .build(store.database().clone());
/// let report = stored_session::rotate_keys(&rotated)?;
/// assert_eq!(report.rotated, 1);
/// # Ok::<(), stored_session::Error>(())
/// ```
pub fn rotate_keys(store: &SessionStore) -> Result<RotateReport> {
    Rotation::new().run(store)
}

/// A progress callback, called after every batch with the running totals.
type Progress = Box<dyn FnMut(&RotateReport) + Send>;

/// A configurable rotation run.
#[must_use]
pub struct Rotation {
    batch_size: i64,
    after: i64,
    on_batch: Option<Progress>,
}

impl fmt::Debug for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rotation")
            .field("batch_size", &self.batch_size)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl Default for Rotation {
    fn default() -> Self {
        Self::new()
    }
}

const CONFLICT_RETRIES: usize = 5;

impl Rotation {
    /// Batches of 500 rows, from the start of the table.
    pub fn new() -> Self {
        Rotation {
            batch_size: 500,
            after: 0,
            on_batch: None,
        }
    }

    /// Rows per batch (at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = i64::try_from(rows.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// Starts after this primary key (the `last_id` of an interrupted run).
    pub fn resume_after(mut self, id: i64) -> Self {
        self.after = id;
        self
    }

    /// Called after every batch with the running totals.
    pub fn on_batch(mut self, f: impl FnMut(&RotateReport) + Send + 'static) -> Self {
        self.on_batch = Some(Box::new(f));
        self
    }

    /// Runs the rotation.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    pub fn run(mut self, store: &SessionStore) -> Result<RotateReport> {
        let started = Instant::now();
        let db = store.database();
        let mut report = RotateReport {
            last_id: self.after,
            ..Default::default()
        };
        loop {
            let cut = store.cutoffs(store.now());
            let rows = db.rows_after(report.last_id, self.batch_size, cut)?;
            if rows.is_empty() {
                break;
            }
            for mut row in rows {
                report.scanned += 1;
                report.last_id = row.id;
                let mut tries = 0;
                loop {
                    let Ok(sid) = <[u8; 32]>::try_from(row.sid.as_slice()) else {
                        report.unreadable += 1;
                        break;
                    };
                    match reseal(
                        store.sealer(),
                        store.macs(),
                        &StoredId::from_bytes(sid),
                        row.version,
                        row.data,
                    ) {
                        Reseal::Current => report.current += 1,
                        Reseal::Unreadable => report.unreadable += 1,
                        Reseal::Sealed(data, user_key) => {
                            if db.replace_data(row.id, row.version, &data, user_key.as_ref())? == 1
                            {
                                report.rotated += 1;
                            } else {
                                // Written (or deleted) concurrently: re-read it.
                                tries += 1;
                                match db.rows_after(row.id - 1, 1, cut)?.pop() {
                                    Some(fresh)
                                        if fresh.id == row.id && tries < CONFLICT_RETRIES =>
                                    {
                                        row = fresh;
                                        continue;
                                    }
                                    Some(fresh) if fresh.id == row.id => report.busy += 1,
                                    _ => {} // gone: nothing to rotate
                                }
                            }
                        }
                    }
                    break;
                }
            }
            report.elapsed = started.elapsed();
            if let Some(f) = self.on_batch.as_mut() {
                f(&report);
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// Outcome of re-sealing one envelope.
enum Reseal {
    Current,
    Unreadable,
    Sealed(Vec<u8>, Option<[u8; 32]>),
}

/// Re-seals an envelope read at row version `version` with the current
/// key and format, for version + 1, keeping its salt.
fn reseal(sealer: &Sealer, macs: &Macs, sid: &StoredId, version: i64, envelope: Vec<u8>) -> Reseal {
    let mut envelope = WipedBytes(envelope);
    match sealer.open(sid, version, &mut envelope.0) {
        Ok((_, opened)) if !opened.legacy && sealer.is_current(opened.key_id) => Reseal::Current,
        Ok((plaintext, opened)) => {
            let user_key = Payload::decode(plaintext)
                .and_then(|p| p.user)
                .map(|user| macs.user_key(&user));
            Reseal::Sealed(
                sealer.seal_again(sid, version + 1, &opened.salt, plaintext),
                user_key,
            )
        }
        Err(_) => Reseal::Unreadable,
    }
}
