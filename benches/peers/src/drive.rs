//! Running one measured cell (one contender, one operation, N workers, a time
//! budget) and summarising its per-operation latencies, with what the
//! scheduler did to the process meanwhile (to tell disturbed cells apart).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// When a cell ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this much wall time (every operation timed).
    After(Duration),
    /// After this many operations per worker, untimed, on the calling
    /// thread when there is one worker (for instruction counts).
    Ops(usize),
}

/// The raw outcome of one cell: every operation's latency and the wall time.
#[derive(Debug, Default)]
pub struct Cell {
    pub lat_ns: Vec<u64>,
    pub wall: Duration,
    /// Operations done (also counted when untimed).
    pub ops: usize,
    /// CPU time of the process during the cell (ns), precise
    /// (`CLOCK_PROCESS_CPUTIME_ID`, read once the process is quiet again).
    pub cpu_ns: u64,
    /// Time the process's threads spent runnable but waiting for a CPU
    /// during the cell (ns): what other load (or the cell's own surplus
    /// of threads over cores) took from it.
    pub delay_ns: u64,
    /// The part of `delay_ns` of the cell's own worker threads (zero for
    /// tasks on a runtime).
    pub worker_delay_ns: u64,
    /// How long the process took to go quiet after the cell (ns).
    pub settle_ns: u64,
}

impl Cell {
    /// Adds `other`'s operations to this one (pooling cells of a contender).
    pub fn absorb(&mut self, other: &Cell) {
        self.lat_ns.extend_from_slice(&other.lat_ns);
        self.wall += other.wall;
        self.ops += other.ops;
        self.cpu_ns += other.cpu_ns;
        self.delay_ns += other.delay_ns;
        self.worker_delay_ns += other.worker_delay_ns;
        self.settle_ns += other.settle_ns;
    }

    /// Run-queue delay over wall time (summed over threads, so it can
    /// exceed 1 when there are more runnable threads than cores).
    pub fn delay_frac(&self) -> f64 {
        self.delay_ns as f64 / self.wall.as_nanos().max(1) as f64
    }
}

/// The process's CPU time (ns): every thread's, the exited ones included.
pub fn process_cpu() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `/proc/<...>/schedstat`: time on a CPU and time waiting for one (ns).
fn schedstat(path: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// The calling thread's (CPU ns, run-queue delay ns); zeros where the
/// kernel does not keep them.
pub fn thread_sched() -> (u64, u64) {
    schedstat("/proc/thread-self/schedstat").unwrap_or_default()
}

/// Every thread of the process: id -> (CPU ns, run-queue delay ns).
pub fn process_sched() -> HashMap<u32, (u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return HashMap::new();
    };
    dir.filter_map(|e| {
        let name = e.ok()?.file_name();
        let tid: u32 = name.to_str()?.parse().ok()?;
        Some((tid, schedstat(&format!("/proc/self/task/{tid}/schedstat"))?))
    })
    .collect()
}

/// Waits (up to 50 ms) until no other thread of the process is running or
/// runnable, so that the next cell does not share the CPUs with what the
/// last one left behind (a runtime's workers spinning before they park, a
/// driver's worker thread finishing); returns how long that took.
pub fn settle() -> Duration {
    let start = Instant::now();
    let me = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
    while start.elapsed() < Duration::from_millis(50) {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
            break;
        };
        let busy = dir.filter_map(|e| e.ok()).any(|e| {
            let tid = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok());
            tid != me
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|stat| {
                    // The state follows the command name in parentheses.
                    stat.rsplit_once(") ")
                        .is_some_and(|(_, rest)| rest.starts_with('R'))
                })
        });
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    start.elapsed()
}

/// What the threads alive at both snapshots used in between, plus the
/// deltas the cell's own (short-lived) worker threads reported.
fn sched_delta(
    before: &HashMap<u32, (u64, u64)>,
    after: &HashMap<u32, (u64, u64)>,
    workers: (u64, u64),
) -> (u64, u64) {
    let mut total = workers;
    for (tid, (cpu, delay)) in after {
        if let Some((cpu0, delay0)) = before.get(tid) {
            total.0 += cpu.saturating_sub(*cpu0);
            total.1 += delay.saturating_sub(*delay0);
        }
    }
    total
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
    /// [`Cell::summary`] of a copy of the latencies.
    pub fn summary_ref(&self) -> Summary {
        Cell {
            lat_ns: self.lat_ns.clone(),
            wall: self.wall,
            ..Cell::default()
        }
        .summary()
    }

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

/// Runs `op` on one OS thread per worker state until the budget has passed
/// (or each worker did its count of operations) or every worker's `op`
/// returned `false` (nothing left to do). Each call is timed on its own;
/// the states come back afterwards. One worker with [`Stop::Ops`] runs on
/// the calling thread, untimed.
pub fn drive_threads<W, F>(workers: Vec<W>, stop: Stop, op: F) -> (Cell, Vec<W>)
where
    W: Send,
    F: Fn(&mut W, usize) -> bool + Sync,
{
    if let (Stop::Ops(count), 1) = (stop, workers.len()) {
        let start = Instant::now();
        let mut states = workers;
        let state = &mut states[0];
        let mut done = 0;
        while done < count && op(state, done) {
            done += 1;
        }
        let cell = Cell {
            wall: start.elapsed(),
            ops: done,
            ..Cell::default()
        };
        return (cell, states);
    }
    let op = &op;
    let before = process_sched();
    let cpu0 = process_cpu();
    let start = Instant::now();
    let deadline = match stop {
        Stop::After(budget) => Some(start + budget),
        Stop::Ops(_) => None,
    };
    let count = match stop {
        Stop::Ops(n) => n,
        Stop::After(_) => usize::MAX,
    };
    let results: Vec<Worked<W>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut state| {
                scope.spawn(move || {
                    let sched0 = thread_sched();
                    let mut lat = Vec::with_capacity(4096);
                    let mut i = 0;
                    while i < count {
                        let t = Instant::now();
                        if deadline.is_some_and(|d| t >= d) || !op(&mut state, i) {
                            break;
                        }
                        lat.push(t.elapsed().as_nanos() as u64);
                        i += 1;
                    }
                    let sched1 = thread_sched();
                    Worked {
                        state,
                        lat,
                        delay_ns: sched1.1.saturating_sub(sched0.1),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark worker panicked"))
            .collect()
    });
    collect(results, start, &before, cpu0)
}

/// What one worker did in a cell.
struct Worked<W> {
    state: W,
    lat: Vec<u64>,
    /// Run-queue delay of the worker's own thread (zero for tasks, whose
    /// runtime threads outlive the cell and are counted from the process
    /// snapshots).
    delay_ns: u64,
}

/// The async counterpart of [`drive_threads`]: one spawned task per worker
/// state on `rt`. `op` takes the state and gives it back with whether it did
/// anything.
pub fn drive_tasks<W, F, Fut>(
    rt: &tokio::runtime::Runtime,
    workers: Vec<W>,
    stop: Stop,
    op: F,
) -> (Cell, Vec<W>)
where
    W: Send + 'static,
    F: Fn(W, usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = (W, bool)> + Send + 'static,
{
    let before = process_sched();
    let cpu0 = process_cpu();
    let start = Instant::now();
    let (deadline, count) = match stop {
        Stop::After(budget) => (Some(start + budget), usize::MAX),
        Stop::Ops(n) => (None, n),
    };
    let results = rt.block_on(async move {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut state| {
                let op = op.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(4096);
                    let mut i = 0;
                    while i < count {
                        let t = Instant::now();
                        if deadline.is_some_and(|d| t >= d) {
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
                    Worked {
                        state,
                        lat,
                        delay_ns: 0,
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("benchmark task panicked"));
        }
        out
    });
    collect(results, start, &before, cpu0)
}

fn collect<W>(
    results: Vec<Worked<W>>,
    start: Instant,
    before: &HashMap<u32, (u64, u64)>,
    cpu0: u64,
) -> (Cell, Vec<W>) {
    let wall = start.elapsed();
    let after = process_sched();
    let mut cell = Cell {
        wall,
        ..Cell::default()
    };
    let mut workers = (0, 0);
    let mut states = Vec::with_capacity(results.len());
    for w in results {
        cell.lat_ns.extend(w.lat);
        workers.1 += w.delay_ns;
        states.push(w.state);
    }
    cell.ops = cell.lat_ns.len();
    cell.worker_delay_ns = workers.1;
    (_, cell.delay_ns) = sched_delta(before, &after, workers);
    cell.settle_ns = settle().as_nanos() as u64;
    cell.cpu_ns = process_cpu().saturating_sub(cpu0);
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
