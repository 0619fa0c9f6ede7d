//! Table statistics for operators (`stored-session stats`), from a store
//! or from a bare [`Database`] (no keys needed).

use chrono::{DateTime, Utc};

use crate::backend::{Bucket, Database, Ranked};
use crate::config::Config;
use crate::crypto::key_id_of_field;
use crate::error::Result;
use crate::store::SessionStore;

/// Distribution of a quantity over sessions (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Percentiles {
    /// The nearest rank of the `p`th percentile among `n` values:
    /// `ceil(p * n / 100)`, at least 1 (integer arithmetic, as the SQL does).
    pub(crate) fn rank(p: u64, n: u64) -> u64 {
        (p * n).div_ceil(100).max(1)
    }

    /// Percentiles of `count` values, given the value at each needed rank.
    fn from_ranks(count: u64, at: impl Fn(u64) -> u64) -> Self {
        if count == 0 {
            return Percentiles::default();
        }
        Percentiles {
            count,
            min: at(1),
            p50: at(Self::rank(50, count)),
            p90: at(Self::rank(90, count)),
            p99: at(Self::rank(99, count)),
            max: at(count),
        }
    }

    /// Percentiles from the database's nearest-rank rows (see
    /// `Database::aggregates`).
    fn from_ranked(rows: &[Ranked]) -> Self {
        let count = rows.first().map_or(0, |r| r.cnt.max(0) as u64);
        Self::from_ranks(count, |rank| {
            rows.iter()
                .find(|r| r.rn == rank as i64)
                .map_or(0, |r| r.v.max(0) as u64)
        })
    }

    /// Percentiles of values sorted ascending (the reference the SQL is
    /// tested against).
    #[cfg(test)]
    pub(crate) fn of_sorted(values: &[u64]) -> Self {
        Self::from_ranks(values.len() as u64, |rank| values[rank as usize - 1])
    }
}

/// How many live sessions were sealed under one key, as their envelope
/// headers say (see [`Stats::sessions_by_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyUsage {
    /// The key's public id ([`Key::id`](crate::Key::id)); never key material.
    pub key_id: u32,
    /// Live sessions whose envelope names it.
    pub sessions: u64,
}

/// A snapshot of the sessions table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sessions a load would still accept.
    pub live: u64,
    /// Expired sessions waiting to be trimmed.
    pub expired: u64,
    /// Least recent activity among live sessions.
    pub oldest_activity: Option<DateTime<Utc>>,
    /// Most recent activity among live sessions.
    pub newest_activity: Option<DateTime<Utc>>,
    /// Stored (encrypted) size of live sessions, in bytes.
    pub payload_bytes: Percentiles,
    /// Users with at least one live session.
    pub users: u64,
    /// Live sessions per user, over users with at least one.
    pub sessions_per_user: Percentiles,
    /// Live sessions created in each of the last 24 hours, oldest hour
    /// first (index 23 is the hour up to now).
    pub created_per_hour: [u64; 24],
    /// Live sessions last active in each of the last 24 hours, oldest first.
    pub active_per_hour: [u64; 24],
    /// Live sessions per key id named in their envelope header, most used
    /// first (ties by key id). Envelopes too short to name a key are not
    /// listed. Read from the headers by the database (no key needed), so
    /// after a rotation it shows when no live session uses the old key.
    pub sessions_by_key: Vec<KeyUsage>,
    /// Of the `live` sessions, how many the store's keyring cannot open
    /// because their envelope names a key that is not on the ring (or none
    /// at all): `Some` from [`SessionStore::stats`], `None` from
    /// [`Database::stats`], which has no keys to compare with. Counted from
    /// the envelope headers, without decrypting: an envelope that names a
    /// key on the ring but was tampered with is not counted here
    /// ([`SessionStore::check`] decrypts a sample).
    pub unreadable: Option<u64>,
}

impl SessionStore {
    /// Counts and distributions over the table, under the store's expiry
    /// settings and clock: [`Database::stats`] with the store's
    /// [`Config`]. Computed by the database as aggregates (counts, minimum
    /// and maximum, a `GROUP BY` per hour, percentiles ranked with window
    /// functions): the store receives a few dozen rows however large the
    /// table, and decrypts nothing. The database still scans every live row
    /// (to count them, rank their sizes and group them by the key id in
    /// their envelope header): meant for operators and admin pages, not for
    /// every request.
    ///
    /// Unlike [`Database::stats`], it reports
    /// [`unreadable`](Stats::unreadable): the live sessions whose envelope
    /// names a key that is not on this store's keyring.
    ///
    /// # Errors
    ///
    /// Database and pool failures (MySQL before 8.0 and MariaDB before 10.2
    /// lack the window functions the percentiles need).
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.insert("k", "v")?;
    /// let _ = store.save(&mut session)?;
    /// let stats = store.stats()?;
    /// assert_eq!((stats.live, stats.expired, stats.unreadable), (1, 0, Some(0)));
    /// assert!(stats.payload_bytes.max > 0);
    /// assert_eq!(stats.sessions_by_key[0].key_id, store.keyring().current().id());
    ///
    /// // Another keyring on the same table cannot open that session.
    /// let other = SessionStore::builder(Keyring::generate()).build(store.database().clone());
    /// assert_eq!(other.stats()?.unreadable, Some(1));
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let mut stats = self.database().stats(self.config())?;
        let on_ring = stats
            .sessions_by_key
            .iter()
            .filter(|k| self.sealer().knows(k.key_id))
            .map(|k| k.sessions)
            .sum::<u64>();
        stats.unreadable = Some(stats.live.saturating_sub(on_ring));
        Ok(stats)
    }
}

impl Database {
    /// Counts and distributions over the table, without a store or keys:
    /// a session counts as live or expired by its own deadline (the
    /// `expires_at` column, see [`Expiry`](crate::Expiry)) and under
    /// `config`'s expiry settings ([`Config::max_lifetime`] for every row,
    /// [`Config::idle_timeout`] for rows without a deadline, written before
    /// that column existed) at the time of its [`Config::clock`]; its other
    /// fields are not used. Pass a store's
    /// [`config`](SessionStore::config) for the numbers that store sees
    /// (what [`SessionStore::stats`] does), or [`Config::default`] for the
    /// default 30-day limits (what `stored-session stats` does).
    ///
    /// Computed by the database as aggregates (see [`SessionStore::stats`]):
    /// a few dozen rows reach the client however large the table, and
    /// nothing is decrypted. Without keys it cannot tell which sessions are
    /// unreadable ([`Stats::unreadable`] is `None`), but it lists the key
    /// ids in use ([`Stats::sessions_by_key`]).
    ///
    /// # Errors
    ///
    /// Database and pool failures (MySQL before 8.0 and MariaDB before 10.2
    /// lack the window functions the percentiles need).
    ///
    /// ```
    /// use std::time::Duration;
    /// use stored_session::{Config, Database, PoolOptions};
    ///
    /// let db = Database::open("sqlite::memory:", &PoolOptions::default())?;
    /// db.run_migrations()?;
    /// let stats = db.stats(&Config::default().idle_timeout(Some(Duration::from_secs(3600))))?;
    /// assert_eq!((stats.live, stats.expired, stats.users), (0, 0, 0));
    /// assert_eq!(stats.oldest_activity, None);
    /// assert_eq!(stats.unreadable, None); // no keys: unknown
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn stats(&self, config: &Config) -> Result<Stats> {
        let now = config.clock.unix();
        let since = now - 24 * 3600 + 1;
        let raw = self.aggregates(now, since, config.cutoffs(now))?;
        let at = |t: Option<i64>| t.and_then(|t| DateTime::from_timestamp(t, 0));
        // Bucket 23 is the hour up to now; ages are whole hours, 0..=23.
        let hourly = |buckets: &[Bucket]| {
            let mut out = [0u64; 24];
            for b in buckets {
                let age = b.h.clamp(0, 23) as usize;
                out[23 - age] += b.n.max(0) as u64;
            }
            out
        };
        let per_user = Percentiles::from_ranked(&raw.per_user);
        let mut sessions_by_key: Vec<KeyUsage> = raw
            .keys
            .iter()
            .filter_map(|k| {
                Some(KeyUsage {
                    key_id: key_id_of_field(&k.kid)?,
                    sessions: k.n.max(0) as u64,
                })
            })
            .collect();
        sessions_by_key.sort_by(|a, b| b.sessions.cmp(&a.sessions).then(a.key_id.cmp(&b.key_id)));
        Ok(Stats {
            live: raw.live.max(0) as u64,
            expired: raw.expired.max(0) as u64,
            oldest_activity: at(raw.oldest),
            newest_activity: at(raw.newest),
            payload_bytes: Percentiles::from_ranked(&raw.payload),
            users: per_user.count,
            sessions_per_user: per_user,
            created_per_hour: hourly(&raw.created),
            active_per_hour: hourly(&raw.active),
            sessions_by_key,
            unreadable: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Percentiles;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        let p = Percentiles::of_sorted(&v);
        assert_eq!(
            (p.min, p.p50, p.p90, p.p99, p.max, p.count),
            (1, 50, 90, 99, 100, 100)
        );
        assert_eq!(Percentiles::of_sorted(&[7]).p99, 7);
        assert_eq!(Percentiles::of_sorted(&[]), Percentiles::default());
        // Nearest rank is ceil(p * n / 100), in integers.
        assert_eq!(Percentiles::rank(90, 10), 9);
        assert_eq!(Percentiles::rank(99, 10), 10);
        assert_eq!(Percentiles::rank(50, 7), 4);
        assert_eq!(Percentiles::rank(50, 1), 1);
    }
}
