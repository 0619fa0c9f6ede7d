//! The start-up check ([`SessionStore::check`]): the table exists, and the
//! keyring opens the most recently active sessions. A wrong key is a
//! configuration error, found before the first visitor is turned away.

use std::fmt;

use crate::backend::{Row, SampleRow};
use crate::error::{Error, Result};
use crate::events::RejectReason;
use crate::id::StoredId;
use crate::store::SessionStore;

/// How many of the most recently active live sessions the check opens.
pub(crate) const CHECK_SAMPLE: usize = 32;

/// What [`StoreBuilder::open`](crate::StoreBuilder::open) and
/// [`open_migrated`](crate::StoreBuilder::open_migrated) do with the
/// start-up check ([`SessionStore::check`]), set with
/// [`Config::startup_check`](crate::Config::startup_check).
/// [`StoreBuilder::build`](crate::StoreBuilder::build) never runs it (it
/// cannot fail): call [`SessionStore::check`] yourself after it.
///
/// ```
/// use stored_session::{Config, Error, Keyring, SessionStore, StartupCheck};
///
/// // `Fail`: a database without the table is refused at start-up.
/// let missing = SessionStore::builder(Keyring::generate())
///     .config(Config::default().startup_check(StartupCheck::Fail))
///     .open("sqlite::memory:");
/// assert!(matches!(missing, Err(Error::MissingTable)));
///
/// // `Warn` (the default): the same store opens, with a warning logged.
/// let store = SessionStore::builder(Keyring::generate()).open("sqlite::memory:")?;
/// store.run_migrations()?;
/// # Ok::<(), stored_session::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartupCheck {
    /// Do not run the check.
    Off,
    /// Run it and log what it finds (target `stored_session`): `error` when
    /// the keyring opens fewer than half of the sampled sessions
    /// ([`Error::KeyringMismatch`]), `warn` when some could not be opened,
    /// when the table is missing (`open` may be followed by
    /// [`run_migrations`](SessionStore::run_migrations)) or when the check
    /// itself failed, `info` when all is well. Opening never fails because
    /// of it.
    #[default]
    Warn,
    /// Run it and fail opening with its error: [`Error::MissingTable`],
    /// [`Error::KeyringMismatch`], or a database failure. A minority of
    /// unreadable sessions is logged at `warn` and does not fail. With
    /// `Fail`, migrate before opening (or use `open_migrated`).
    Fail,
}

/// What [`SessionStore::check`] found in its sample of the most recently
/// active live sessions.
///
/// Its `Display` is one line for a log: what was sampled and why the
/// unreadable ones did not open, with key ids (public identifiers, never
/// key material).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckReport {
    /// Live sessions sampled: the most recently active ones, at most 32.
    pub sampled: u64,
    /// Of those, how many the keyring opened.
    pub readable: u64,
    /// Sealed under a key that is not on the keyring (a configuration
    /// problem: see [`RejectReason::UnknownKey`]).
    pub unknown_key: u64,
    /// Failed to open under a key on the ring (see [`RejectReason::Tampered`]).
    pub tampered: u64,
    /// Opened, but their content did not decode (see
    /// [`RejectReason::Undecodable`]).
    pub undecodable: u64,
    /// The ids of the keys not on the ring that sealed the `unknown_key`
    /// sessions, in the order first seen.
    pub unknown_key_ids: Vec<u32>,
    /// The ids of the keys on the store's ring, current first.
    pub keyring_ids: Vec<u32>,
}

impl CheckReport {
    /// Sampled sessions the keyring could not open, for any reason.
    pub fn unreadable(&self) -> u64 {
        self.sampled.saturating_sub(self.readable)
    }

    /// Whether the keyring opened fewer than half of the sampled sessions
    /// (what makes [`SessionStore::check`] return
    /// [`Error::KeyringMismatch`]). An empty sample is not.
    ///
    /// ```
    /// use stored_session::CheckReport;
    ///
    /// let mut report = CheckReport::default();
    /// assert!(!report.mostly_unreadable());
    /// (report.sampled, report.readable) = (4, 2);
    /// assert!(!report.mostly_unreadable());
    /// report.readable = 1;
    /// assert!(report.mostly_unreadable());
    /// ```
    pub fn mostly_unreadable(&self) -> bool {
        self.readable.saturating_mul(2) < self.sampled
    }

    fn count(&mut self, reason: RejectReason, key_id: Option<u32>) {
        match reason {
            RejectReason::UnknownKey => {
                self.unknown_key += 1;
                if let Some(id) = key_id {
                    if !self.unknown_key_ids.contains(&id) {
                        self.unknown_key_ids.push(id);
                    }
                }
            }
            RejectReason::Undecodable => self.undecodable += 1,
            _ => self.tampered += 1,
        }
    }
}

/// Key ids as the `Debug` of a [`Key`](crate::Key) shows them.
struct KeyIds<'a>(&'a [u32]);

impl fmt::Display for KeyIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id:08x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the keyring (key ids {}) ", KeyIds(&self.keyring_ids))?;
        if self.sampled == 0 {
            return f.write_str("had no live session to open");
        }
        write!(
            f,
            "opens {} of the {} most recently active sessions",
            self.readable, self.sampled
        )?;
        if self.unknown_key > 0 {
            write!(
                f,
                "; {} sealed under keys not on the ring (key ids {})",
                self.unknown_key,
                KeyIds(&self.unknown_key_ids)
            )?;
        }
        if self.tampered > 0 {
            write!(
                f,
                "; {} failed to open under a key on the ring (tampered)",
                self.tampered
            )?;
        }
        if self.undecodable > 0 {
            write!(f, "; {} did not decode", self.undecodable)?;
        }
        Ok(())
    }
}

impl SessionStore {
    /// Checks that this store can serve its sessions: the `stored_sessions`
    /// table exists (one catalog query), and the keyring opens the most
    /// recently active live sessions (one indexed query reading at most 32
    /// rows, each decrypted and decoded as a load would; nothing is written,
    /// no event is emitted). Returns what the sample showed.
    ///
    /// [`StoreBuilder::open`](crate::StoreBuilder::open) and
    /// [`open_migrated`](crate::StoreBuilder::open_migrated) run it as
    /// [`Config::startup_check`](crate::Config::startup_check) says (by
    /// default they log what it finds); call it yourself after
    /// [`build`](crate::StoreBuilder::build), or from a health check.
    ///
    /// # Errors
    ///
    /// * [`Error::MissingTable`] when the table does not exist (its text
    ///   says to run `stored-session migrate` or `store.run_migrations()`);
    /// * [`Error::KeyringMismatch`] when the keyring opens fewer than half
    ///   of the sampled sessions ([`CheckReport::mostly_unreadable`]):
    ///   almost always the keys were changed; the error carries the report;
    /// * database and pool failures.
    ///
    /// ```
    /// use stored_session::{Error, Keyring, SessionStore, StartupCheck, Config};
    ///
    /// let store = SessionStore::builder(Keyring::generate())
    ///     .config(Config::default().startup_check(StartupCheck::Off))
    ///     .open("sqlite::memory:")?;
    /// assert!(matches!(store.check(), Err(Error::MissingTable)));
    /// store.run_migrations()?;
    ///
    /// let mut session = store.load(None)?;
    /// session.insert("k", &1)?;
    /// let _ = store.save(&mut session)?;
    /// let report = store.check()?;
    /// assert_eq!((report.sampled, report.readable), (1, 1));
    ///
    /// // The same table under another key: nothing opens.
    /// let other = SessionStore::builder(Keyring::generate()).build(store.database().clone());
    /// let Err(Error::KeyringMismatch(report)) = other.check() else { unreachable!() };
    /// assert_eq!((report.sampled, report.unknown_key), (1, 1));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn check(&self) -> Result<CheckReport> {
        let db = self.database();
        if !db.table_exists()? {
            return Err(Error::MissingTable);
        }
        let now = self.now();
        let rows = db.recent_live(CHECK_SAMPLE as i64, self.cutoffs(now))?;
        let mut report = CheckReport {
            keyring_ids: self.keyring().keys().iter().map(|k| k.id()).collect(),
            ..CheckReport::default()
        };
        for row in rows {
            report.sampled += 1;
            match self.open_sample(row, now) {
                Ok(()) => report.readable += 1,
                Err((reason, key_id)) => report.count(reason, key_id),
            }
        }
        if report.mostly_unreadable() {
            return Err(Error::KeyringMismatch(report));
        }
        Ok(report)
    }

    fn open_sample(
        &self,
        row: SampleRow,
        now: i64,
    ) -> std::result::Result<(), (RejectReason, Option<u32>)> {
        let sid = <[u8; 32]>::try_from(row.sid.as_slice())
            .map(StoredId::from_bytes)
            .map_err(|_| (RejectReason::Tampered, None))?;
        let row = Row {
            data: row.data,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        };
        self.open_row(&sid, row, now)
            .map(|_| ())
            .map_err(|e| (e.reason, e.unknown_key))
    }

    /// Runs the start-up check as `policy` says (see [`StartupCheck`]).
    pub(crate) fn startup_check(&self, policy: StartupCheck) -> Result<()> {
        if policy == StartupCheck::Off {
            return Ok(());
        }
        match self.check() {
            Ok(report) => {
                if report.unreadable() > 0 {
                    log::warn!(target: "stored_session", "start-up check: {report}");
                } else {
                    log::info!(target: "stored_session", "start-up check: {report}");
                }
                Ok(())
            }
            Err(e) if policy == StartupCheck::Fail => Err(e),
            Err(e @ Error::KeyringMismatch(_)) => {
                log::error!(
                    target: "stored_session",
                    "start-up check: {e}; until then every visitor with a cookie gets a fresh session"
                );
                Ok(())
            }
            Err(e @ Error::MissingTable) => {
                log::warn!(
                    target: "stored_session",
                    "start-up check: {e} before the first request (StoreBuilder::open_migrated does both)"
                );
                Ok(())
            }
            Err(e) => {
                log::warn!(target: "stored_session", "start-up check could not run: {e}");
                Ok(())
            }
        }
    }
}
