//! Load: 8 workers doing load+commit on 10,000 sessions for 60 s on each
//! backend (`--ignored`; CI runs 500 sessions for 2 s), with 0 errors and
//! 0 lost writes; reports throughput.
//!
//! Each worker picks sessions at random; half its requests only read, half
//! increment the worker's own key in that session (`w<n>`, so two workers
//! in one session at once exercise the per-key merge). A worker checks on
//! every load that its key holds exactly the count it last committed there
//! (read-your-writes: a lost or stale write fails at once), and at the end
//! every session is checked against every worker's counts.

mod common;
mod reliability_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{count, Harness};
use reliability_support::{cookie_of, Rng};
use stored_session::CookieAction;
use stored_session::PoolOptions;

struct Outcome {
    reads: u64,
    writes: u64,
    errors: Vec<String>,
    counts: HashMap<usize, u64>,
}

fn load_run(h: &Harness, sessions: usize, workers: usize, duration: Duration) {
    let store = h.store_with(
        h.builder()
            .pool(PoolOptions::default().max_size(workers as u32)),
    );
    let setup = Instant::now();
    let cookies: Vec<String> = (0..sessions)
        .map(|i| {
            let mut s = store.load(None).unwrap();
            s.insert("i", &i).unwrap();
            cookie_of(store.save(&mut s).unwrap())
        })
        .collect();
    let setup = setup.elapsed();
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (store, cookies, stop) = (&store, &cookies, &stop);
                scope.spawn(move || {
                    let mut rng = Rng::new(0x10ad_0000 + w as u64);
                    let key = format!("w{w}");
                    let mut out = Outcome {
                        reads: 0,
                        writes: 0,
                        errors: Vec::new(),
                        counts: HashMap::new(),
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let i = rng.below(cookies.len());
                        let write = rng.below(2) == 0;
                        let expected = out.counts.get(&i).copied().unwrap_or(0);
                        let result = store.load(Some(&cookies[i])).and_then(|mut s| {
                            assert!(!s.is_new(), "worker {w}: session {i} vanished");
                            assert_eq!(s.get::<usize>("i")?, Some(i));
                            let seen = s.get::<u64>(&key)?.unwrap_or(0);
                            assert_eq!(seen, expected, "worker {w}: session {i} lost a write");
                            if write {
                                s.insert(key.clone(), &(seen + 1))?;
                            }
                            store.save(&mut s)
                        });
                        match result {
                            Ok(CookieAction::Keep) if write => {
                                out.writes += 1;
                                *out.counts.entry(i).or_insert(0) += 1;
                            }
                            Ok(CookieAction::Keep) => out.reads += 1,
                            Ok(other) => panic!("worker {w}: unexpected {other:?}"),
                            Err(e) => out.errors.push(e.to_string()),
                        }
                    }
                    out
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    let errors: Vec<&String> = outcomes.iter().flat_map(|o| &o.errors).collect();
    assert!(
        errors.is_empty(),
        "{} errors (first: {:?})",
        errors.len(),
        errors.first()
    );
    // Every acknowledged write is there, in every session.
    let mut checked = 0u64;
    for (i, cookie) in cookies.iter().enumerate() {
        let s = store.load(Some(cookie)).unwrap();
        for (w, o) in outcomes.iter().enumerate() {
            let expected = o.counts.get(&i).copied().unwrap_or(0);
            let stored = s.get::<u64>(&format!("w{w}")).unwrap().unwrap_or(0);
            assert_eq!(stored, expected, "session {i}, worker {w}");
            checked += expected;
        }
    }
    assert_eq!(count(store.database()), sessions);
    let reads: u64 = outcomes.iter().map(|o| o.reads).sum();
    let writes: u64 = outcomes.iter().map(|o| o.writes).sum();
    assert_eq!(checked, writes);
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "{:?}: {workers} workers, {sessions} sessions, {secs:.1} s: {} requests \
         ({reads} read-only, {writes} writes), 0 errors, 0 lost writes; \
         {:.0} requests/s ({:.0} writes/s); setup {:.1} s",
        h.backend,
        reads + writes,
        (reads + writes) as f64 / secs,
        writes as f64 / secs,
        setup.as_secs_f64()
    );
}

fn load_ci(h: &Harness) {
    load_run(h, 500, 8, Duration::from_secs(2));
}

backend_suite!(load_ci);

/// `cargo test --features sqlite,postgres,mysql --test reliability_load -- --ignored --test-threads 1`
mod long {
    use super::*;

    #[cfg(feature = "sqlite")]
    #[test]
    #[ignore = "long run: 60 s"]
    fn sqlite_60s() {
        load_run(
            &Harness::sqlite().unwrap(),
            10_000,
            8,
            Duration::from_secs(60),
        );
    }

    #[cfg(feature = "postgres")]
    #[test]
    #[ignore = "long run: 60 s"]
    fn postgres_60s() {
        if let Some(h) = Harness::postgres() {
            load_run(&h, 10_000, 8, Duration::from_secs(60));
        }
    }

    #[cfg(feature = "mysql")]
    #[test]
    #[ignore = "long run: 60 s"]
    fn mysql_60s() {
        if let Some(h) = Harness::mysql() {
            load_run(&h, 10_000, 8, Duration::from_secs(60));
        }
    }
}
