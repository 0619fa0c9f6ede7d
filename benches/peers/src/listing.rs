//! The per-user listing ("where you're signed in"): what
//! `SessionStore::sessions_of` costs for a user with 1, 100 and 10,000
//! sessions. The first page (the default 50 sessions, newest first) should
//! cost the same however many sessions the user has: one indexed range read
//! of at most 51 rows, and only the page's rows are decrypted. Walking every
//! page grows with the sessions, by design.

use std::time::{Duration, Instant};

use stored_session::{Page, SessionStore};

use crate::drive::{drive_threads, Cell, Stop, Summary};
use crate::setup::{Backend, Bench};
use crate::stats::{paired, Estimate};
use crate::Options;

#[derive(Debug, Clone)]
pub struct ListingPoint {
    pub backend: Backend,
    /// Sessions the user has.
    pub sessions: usize,
    /// Sessions on the first page.
    pub page_len: usize,
    /// The first page's latencies, pooled over the rounds.
    pub first_page: Summary,
    /// The first page's typical time over that of the user with the
    /// fewest sessions that fill a page, paired per round.
    pub vs_full: Estimate,
    /// Walking every page (50 each): the median time over a few walks.
    pub walk: Duration,
    pub pages: usize,
    /// Seconds it took to create the user's sessions (8 threads).
    pub seed_secs: f64,
}

fn user(count: usize) -> String {
    format!("listing-{count}")
}

/// Creates `count` sessions bound to `user`, with the metadata a listing
/// shows (device, user agent), on 8 threads.
fn seed(store: &SessionStore, user: &str, count: usize) {
    std::thread::scope(|scope| {
        for t in 0..8 {
            scope.spawn(move || {
                for i in (t..count).step_by(8) {
                    let mut s = store.load(None).expect("load");
                    s.set_user(user);
                    s.set_meta("device", Some(&format!("device {i}")));
                    s.set_meta(
                        "user_agent",
                        Some("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Firefox/128.0"),
                    );
                    s.insert("cart", &vec![1u32; 8]).expect("encode");
                    let _ = store.save(&mut s).expect("save");
                }
            });
        }
    });
}

/// Every page of `user`'s sessions: (pages, sessions).
fn walk(store: &SessionStore, user: &str) -> (usize, usize) {
    let (mut pages, mut seen) = (0, 0);
    let mut after = None;
    loop {
        let page = store
            .sessions_of(user, None, Page { limit: 50, after })
            .expect("sessions_of");
        pages += 1;
        seen += page.sessions.len();
        after = page.next;
        if after.is_none() {
            return (pages, seen);
        }
    }
}

pub fn measure(bench: &mut Bench, o: &Options) -> Vec<ListingPoint> {
    let store = &bench.ss.store;
    let mut counts = o.listing_users.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut seeded = Vec::new();
    for &count in &counts {
        let started = Instant::now();
        seed(store, &user(count), count);
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "  {} listing: {count} sessions of one user seeded in {secs:.1} s",
            bench.backend.name()
        );
        seeded.push(secs);
    }
    // What autovacuum and InnoDB's persistent statistics do on their own
    // once a table has grown.
    bench.floor.pool.analyze();

    let budget = o.growth_cell;
    let mut pooled: Vec<Cell> = counts.iter().map(|_| Cell::default()).collect();
    let mut typical: Vec<Vec<f64>> = Vec::new();
    let mut page_len = vec![0; counts.len()];
    for round in 0..=o.growth_rounds {
        let mut t = vec![f64::NAN; counts.len()];
        for k in 0..counts.len() {
            let i = (k + round) % counts.len();
            let name = user(counts[i]);
            let want = counts[i].min(Page::DEFAULT_LIMIT as usize);
            let (cell, _) = drive_threads(vec![()], Stop::After(budget), |_, _| {
                let page = store
                    .sessions_of(&name, None, Page::default())
                    .expect("sessions_of");
                assert_eq!(page.sessions.len(), want, "a full first page");
                true
            });
            page_len[i] = want;
            if round > 0 {
                t[i] = cell.summary_ref().iqm_us;
                pooled[i].absorb(&cell);
            }
        }
        if round > 0 {
            typical.push(t);
        }
    }
    let full = counts
        .iter()
        .position(|c| *c >= Page::DEFAULT_LIMIT as usize)
        .unwrap_or(0);
    let mut points = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let name = user(count);
        let mut walks: Vec<(Duration, usize)> = (0..3)
            .map(|_| {
                let started = Instant::now();
                let (pages, seen) = walk(store, &name);
                assert_eq!(seen, count, "the walk returns every session once");
                (started.elapsed(), pages)
            })
            .collect();
        walks.sort();
        let (walk, pages) = walks[1];
        points.push(ListingPoint {
            backend: bench.backend,
            sessions: count,
            page_len: page_len[i],
            first_page: std::mem::take(&mut pooled[i]).summary(),
            vs_full: paired(
                &typical
                    .iter()
                    .map(|t| (0, t[i] / t[full]))
                    .collect::<Vec<_>>(),
            ),
            walk,
            pages,
            seed_secs: seeded[i],
        });
        eprintln!(
            "  {} listing: {count} sessions: first page {:.0} µs, all {pages} pages {:.1} ms",
            bench.backend.name(),
            points[i].first_page.iqm_us,
            walk.as_secs_f64() * 1e3
        );
    }
    points
}
