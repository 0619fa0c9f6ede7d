//! What one page of a user's sessions costs when the user has 20,000
//! sessions: wall time and bytes allocated by `sessions_of` (and by
//! `stats` over the same table), on every enabled backend. Ignored by default (seeding takes a minute on the
//! server backends); run with:
//!
//! ```sh
//! TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres \
//! TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//! cargo test --release --all-features --test listing_cost -- --ignored --nocapture
//! ```

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Harness;
use stored_session::{Page, SessionStore};

/// Counts the bytes every allocation asks for.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SESSIONS: usize = 20_000;

fn seed(store: &SessionStore) {
    for i in 0..SESSIONS {
        let mut s = store.load(None).unwrap();
        s.set_user("heavy");
        s.set_meta("device", Some(&format!("device {i}")));
        s.set_meta(
            "user_agent",
            Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
        );
        s.insert("cart", &vec![1u32; 8]).unwrap();
        let _ = store.save(&mut s).unwrap();
    }
}

fn measure(h: &Harness) {
    let store = h.store();
    let started = Instant::now();
    seed(&store);
    eprintln!(
        "{:?}: seeded {SESSIONS} sessions in {:?}",
        h.backend,
        started.elapsed()
    );
    // What autovacuum (PostgreSQL) and InnoDB's persistent statistics do
    // on their own once a table has grown: without statistics PostgreSQL
    // guesses the user has a dozen rows and may sort all of them.
    analyze(h, store.database());
    let mut runs: Vec<(Duration, u64, usize)> = (0..9)
        .map(|_| {
            let bytes = ALLOCATED.load(Ordering::Relaxed);
            let started = Instant::now();
            let page = store.sessions_of("heavy", None, Page::default()).unwrap();
            let took = started.elapsed();
            let bytes = ALLOCATED.load(Ordering::Relaxed) - bytes;
            assert!(page.next.is_some());
            (took, bytes, page.sessions.len())
        })
        .collect();
    runs.sort();
    let (median, bytes, rows) = runs[runs.len() / 2];
    println!(
        "{:?}: first page of {rows} of {SESSIONS} sessions: median {median:?} (min {:?}, max {:?}), {bytes} bytes allocated",
        h.backend,
        runs[0].0,
        runs[runs.len() - 1].0
    );
    let mut runs: Vec<(Duration, u64)> = (0..5)
        .map(|_| {
            let bytes = ALLOCATED.load(Ordering::Relaxed);
            let started = Instant::now();
            let stats = store.stats().unwrap();
            let took = started.elapsed();
            assert_eq!(stats.live, SESSIONS as u64);
            (took, ALLOCATED.load(Ordering::Relaxed) - bytes)
        })
        .collect();
    runs.sort();
    let (median, bytes) = runs[runs.len() / 2];
    println!(
        "{:?}: stats over {SESSIONS} sessions: median {median:?}, {bytes} bytes allocated",
        h.backend
    );
}

fn analyze(h: &Harness, db: &stored_session::Database) {
    use diesel::RunQueryDsl;
    let sql = match h.backend {
        stored_session::Backend::Postgres => "ANALYZE stored_sessions",
        stored_session::Backend::Mysql => "ANALYZE TABLE stored_sessions",
        _ => "ANALYZE",
    };
    with_conn!(db, |c| diesel::sql_query(sql).execute(c).unwrap());
}

#[test]
#[ignore = "seeds 20,000 sessions per backend; run by hand (see the file's header)"]
fn first_page_with_20000_sessions() {
    #[cfg(feature = "sqlite")]
    if let Some(h) = Harness::sqlite() {
        measure(&h);
    }
    #[cfg(feature = "postgres")]
    if let Some(h) = Harness::postgres() {
        measure(&h);
    }
    #[cfg(feature = "mysql")]
    if let Some(h) = Harness::mysql() {
        measure(&h);
    }
}
