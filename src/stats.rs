//! Table statistics for operators (`stored-session stats`).

use chrono::{DateTime, Utc};

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
    /// Percentiles of values sorted ascending.
    pub(crate) fn of_sorted(values: &[u64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        let rank = |p: f64| {
            let idx = ((p / 100.0) * values.len() as f64).ceil() as usize;
            values[idx.clamp(1, values.len()) - 1]
        };
        Percentiles {
            count: values.len() as u64,
            min: values[0],
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: values[values.len() - 1],
        }
    }
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
}

impl SessionStore {
    /// Counts and distributions over the table, under the store's expiry
    /// settings. Reads every live row's size: meant for operators, not for
    /// every request.
    ///
    /// # Errors
    ///
    /// Database and pool failures.
    ///
    /// ```
    /// # use stored_session::{Keyring, SessionStore};
    /// # let store = SessionStore::builder(Keyring::generate()).open_migrated("sqlite::memory:")?;
    /// let mut session = store.load(None)?;
    /// session.insert("k", "v")?;
    /// let _ = store.commit(&mut session)?;
    /// let stats = store.stats()?;
    /// assert_eq!((stats.live, stats.expired), (1, 0));
    /// assert!(stats.payload_bytes.max > 0);
    /// # Ok::<(), stored_session::Error>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let cut = self.cutoffs(self.now());
        let db = self.database();
        let (oldest, newest) = db.activity_range(cut)?;
        let sizes: Vec<u64> = db
            .payload_lengths(cut)?
            .into_iter()
            .map(|n| n.max(0) as u64)
            .collect();
        let at = |t: Option<i64>| t.and_then(|t| DateTime::from_timestamp(t, 0));
        let mut per_user: Vec<u64> = db
            .sessions_per_user(cut)?
            .into_iter()
            .map(|n| n.max(0) as u64)
            .collect();
        per_user.sort_unstable();
        let now = self.now();
        let since = now - 24 * 3600 + 1;
        let hourly = |times: Vec<i64>| {
            let mut buckets = [0u64; 24];
            for t in times {
                let age = (now - t).clamp(0, 24 * 3600 - 1) / 3600;
                buckets[23 - age as usize] += 1;
            }
            buckets
        };
        Ok(Stats {
            users: per_user.len() as u64,
            sessions_per_user: Percentiles::of_sorted(&per_user),
            created_per_hour: hourly(db.times_since(true, since, cut)?),
            active_per_hour: hourly(db.times_since(false, since, cut)?),
            live: db.count_live(cut)?,
            expired: db.count_expired(cut)?,
            oldest_activity: at(oldest),
            newest_activity: at(newest),
            payload_bytes: Percentiles::of_sorted(&sizes),
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
    }
}
