//! Running one measured cell (one contender, one operation, N workers, a time
//! budget) and summarising its per-operation latencies.

use std::future::Future;
use std::time::{Duration, Instant};

/// The raw outcome of one cell: every operation's latency and the wall time.
#[derive(Debug, Default)]
pub struct Cell {
    pub lat_ns: Vec<u64>,
    pub wall: Duration,
}

/// One cell, summarised.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub ops: usize,
    pub ops_per_s: f64,
    /// Mean time per operation (µs), tails included.
    pub mean_us: f64,
    /// Interquartile mean (µs): the mean of the middle half of the
    /// latencies, the typical time per operation that the ratios compare. It
    /// ignores the rare multi-millisecond stalls of a shared machine (which
    /// swing a mean) but, unlike the median, follows a two-humped
    /// distribution such as commits waiting on the disk's flush.
    pub iqm_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Cell {
    pub fn summary(mut self) -> Summary {
        let ops = self.lat_ns.len();
        if ops == 0 {
            return Summary::default();
        }
        self.lat_ns.sort_unstable();
        let pct = |p: f64| {
            let rank = ((p * ops as f64).ceil() as usize).clamp(1, ops);
            self.lat_ns[rank - 1] as f64 / 1e3
        };
        Summary {
            ops,
            ops_per_s: ops as f64 / self.wall.as_secs_f64(),
            mean_us: self.lat_ns.iter().sum::<u64>() as f64 / ops as f64 / 1e3,
            iqm_us: {
                let middle = &self.lat_ns[ops / 4..(ops - ops / 4).max(ops / 4 + 1)];
                middle.iter().sum::<u64>() as f64 / middle.len() as f64 / 1e3
            },
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        }
    }
}

/// Runs `op` on one OS thread per worker state until `budget` has passed or
/// every worker's `op` returned `false` (nothing left to do). Each call is
/// timed on its own; the states come back afterwards.
pub fn drive_threads<W, F>(workers: Vec<W>, budget: Duration, op: F) -> (Cell, Vec<W>)
where
    W: Send,
    F: Fn(&mut W, usize) -> bool + Sync,
{
    let op = &op;
    let start = Instant::now();
    let deadline = start + budget;
    let results: Vec<(W, Vec<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut state| {
                scope.spawn(move || {
                    let mut lat = Vec::with_capacity(4096);
                    let mut i = 0;
                    loop {
                        let t = Instant::now();
                        if t >= deadline || !op(&mut state, i) {
                            break;
                        }
                        lat.push(t.elapsed().as_nanos() as u64);
                        i += 1;
                    }
                    (state, lat)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark worker panicked"))
            .collect()
    });
    collect(results, start)
}

/// The async counterpart of [`drive_threads`]: one spawned task per worker
/// state on `rt`. `op` takes the state and gives it back with whether it did
/// anything.
pub fn drive_tasks<W, F, Fut>(
    rt: &tokio::runtime::Runtime,
    workers: Vec<W>,
    budget: Duration,
    op: F,
) -> (Cell, Vec<W>)
where
    W: Send + 'static,
    F: Fn(W, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (W, bool)> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + budget;
    let results = rt.block_on(async move {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut state| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(4096);
                    let mut i = 0;
                    loop {
                        let t = Instant::now();
                        if t >= deadline {
                            break;
                        }
                        let (back, did) = op(state, i).await;
                        state = back;
                        if !did {
                            break;
                        }
                        lat.push(t.elapsed().as_nanos() as u64);
                        i += 1;
                    }
                    (state, lat)
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("benchmark task panicked"));
        }
        out
    });
    collect(results, start)
}

fn collect<W>(results: Vec<(W, Vec<u64>)>, start: Instant) -> (Cell, Vec<W>) {
    let wall = start.elapsed();
    let mut cell = Cell {
        lat_ns: Vec::new(),
        wall,
    };
    let mut states = Vec::with_capacity(results.len());
    for (state, lat) in results {
        cell.lat_ns.extend(lat);
        states.push(state);
    }
    (cell, states)
}

/// Deals `items` round-robin into `parts` piles.
pub fn deal<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let mut piles: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        piles[i % parts].push(item);
    }
    piles
}
