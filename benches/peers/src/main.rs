//! Side-by-side benchmark for issue 6: stored-session against
//! `tower-sessions-sqlx-store` (the leading Rust session store) and against a
//! raw-Diesel floor, on SQLite (a file in WAL mode), PostgreSQL and MariaDB,
//! with the same ~1 KiB session (a user id, a CSRF token and a 900-byte
//! string) in the same database.
//!
//! For each backend, every round runs load, update, create and delete with 1
//! worker and with 8 concurrent workers, the contenders alternating in short
//! cells in an order that rotates from round to round, so that machine noise
//! hits all of them alike. A fourth contender, `store-sql`, runs the store's
//! own SQL raw (load and update), to split the gap to the floor into SQL and
//! crypto. Reported per contender, over the pooled latencies of all rounds:
//! ops/s, the typical (interquartile mean), p50, p99 and mean latency, and the
//! ratios of typical time per operation (lower is better) stored-session/floor
//! and stored-session/peer.
//!
//! ```text
//! cargo run --release -- --quick     # < 60 s; last line: the worst ratios
//! cargo run --release                # full run, writes ../../BENCHMARKS.md
//! ```
//!
//! See `--help` for the database URLs and the other options.

mod contender;
mod drive;
mod floor;
mod growth;
mod peer;
mod report;
mod setup;
mod ss;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contender::{Contender, Op, Shape};
use drive::{Cell, Summary};
use setup::{Backend, Bench};

/// How a run is sized.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub budget: Duration,
    pub write_budget: Duration,
    pub prepared: usize,
    pub backends: Vec<Backend>,
    pub postgres_admin: String,
    pub mysql_admin: String,
    pub database: String,
    pub growth: bool,
    pub trim: bool,
    pub trim_rows: Vec<usize>,
    pub out: Option<std::path::PathBuf>,
    pub profile: Option<String>,
    pub verbose: bool,
    /// Where `cargo bench` left criterion's estimates (for the report).
    pub criterion: std::path::PathBuf,
}

const HELP: &str = "\
stored-session-peers: stored-session vs tower-sessions-sqlx-store vs raw Diesel

USAGE: cargo run --release -- [OPTIONS]

  --quick                  regression check in under 60 s: 3 short rounds, no curves,
                           nothing written; the last line holds the worst ratios
  --rounds N               rounds per backend (default 30; quick 8)
  --cell-ms MS             time budget of one load cell, writes get 8/3 of it
                           (default 100; quick 15)
  --backends LIST          comma-separated subset of sqlite,postgres,mysql
  --postgres URL           PostgreSQL server to use (default
                           postgres://postgres@127.0.0.1:5432/postgres; env BENCH_POSTGRES_URL)
  --mysql URL              MySQL/MariaDB server to use (default
                           mysql://root@127.0.0.1:3306/test; env BENCH_MYSQL_URL)
  --database NAME          benchmark database, dropped and recreated (default ss_bench)
  --no-growth              skip the session-size curves
  --no-trim                skip the trimming curve
  --trim-rows LIST         row counts for the trimming curve (default 10000,100000,1000000)
  --out PATH               where the full report goes (default: ../../BENCHMARKS.md)
  --criterion DIR          criterion's output of `cargo bench` in the main crate, quoted in
                           the report (default: $CARGO_TARGET_DIR/criterion or ../../target/criterion)
  -v, --verbose            print every measured cell on stderr
  --profile B:C:OP:SECS    prepare, then run one cell for SECS seconds with 1 worker, for a
                           profiler (B: sqlite|postgres|mysql, C: stored-session|tower-sqlx|floor|
                           store-sql, OP: load|update|create|delete)
";

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        quick: false,
        rounds: 0,
        budget: Duration::ZERO,
        write_budget: Duration::ZERO,
        prepared: 1000,
        backends: vec![Backend::Sqlite, Backend::Postgres, Backend::Mysql],
        postgres_admin: std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        mysql_admin: std::env::var("BENCH_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        database: "ss_bench".into(),
        growth: true,
        trim: true,
        trim_rows: vec![10_000, 100_000, 1_000_000],
        out: None,
        profile: None,
        verbose: false,
        criterion: std::env::var_os("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
            })
            .join("criterion"),
    };
    let mut rounds = None;
    let mut cell_ms = None;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => rounds = Some(number(&value("--rounds"))),
            "--cell-ms" => cell_ms = Some(number(&value("--cell-ms"))),
            "--backends" => {
                o.backends = value("--backends")
                    .split(',')
                    .map(|b| Backend::parse(b).unwrap_or_else(|| fail("unknown backend")))
                    .collect()
            }
            "--postgres" => o.postgres_admin = value("--postgres"),
            "--mysql" => o.mysql_admin = value("--mysql"),
            "--database" => o.database = value("--database"),
            "--no-growth" => o.growth = false,
            "--no-trim" => o.trim = false,
            "--trim-rows" => {
                o.trim_rows = value("--trim-rows").split(',').map(number).collect();
            }
            "--out" => o.out = Some(value("--out").into()),
            "--criterion" => o.criterion = value("--criterion").into(),
            "--profile" => o.profile = Some(value("--profile")),
            "-v" | "--verbose" => o.verbose = true,
            "-h" | "--help" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            other => fail(&format!("unknown argument {other:?} (see --help)")),
        }
    }
    if o.database.starts_with("ss_test_") {
        fail("databases named ss_test_* belong to the test suites");
    }
    if o.quick {
        o.growth = false;
        o.trim = false;
        o.prepared = 256;
    }
    o.rounds = rounds.unwrap_or(if o.quick { 8 } else { 30 }).max(1);
    let cell_ms = cell_ms.unwrap_or(if o.quick { 15 } else { 100 }) as u64;
    o.budget = Duration::from_millis(cell_ms);
    // Writes wait on the disk (a commit on PostgreSQL or MariaDB is a flush,
    // a few milliseconds here): longer cells, for enough samples.
    o.write_budget = Duration::from_millis(cell_ms * 8 / 3);
    o
}

fn number(text: &str) -> usize {
    text.trim()
        .replace('_', "")
        .parse()
        .unwrap_or_else(|_| fail(&format!("not a number: {text:?}")))
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// Concurrency levels measured: sequential, and 8 concurrent workers.
pub const WORKERS: [usize; 2] = [1, 8];

/// Contender names by index (see [`Bench::contender`]).
pub const NAMES: [&str; 4] = ["stored-session", "tower-sqlx", "floor", "store-sql"];

/// Which contenders take part in an operation: the store-SQL reference runs
/// load and update only.
pub fn contenders_of(op: Op) -> &'static [usize] {
    match op {
        Op::Load | Op::Update => &[0, 1, 2, 3],
        Op::Create | Op::Delete => &[0, 1, 2],
    }
}

/// stored-session's typical time per operation over another contender's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ratios {
    pub vs_floor: f64,
    pub vs_peer: f64,
    /// Over the store's own SQL without crypto: its hashing, encryption and
    /// encoding (NaN for create and delete).
    pub vs_sql: f64,
}

/// Everything measured on one backend with the 1 KiB session.
#[derive(Debug, Default)]
pub struct BackendResult {
    pub backend: Option<Backend>,
    pub server: String,
    pub envelope_len: usize,
    /// Median summaries by (workers, op, contender name).
    pub cells: HashMap<(usize, Op, &'static str), Summary>,
    /// Per (workers, op): ratios of the interquartile means of the pooled
    /// latencies (the headline figures).
    pub ratios: HashMap<(usize, Op), Ratios>,
}

/// Runs every round of the 1 KiB matrix on one backend.
///
/// Cells are short and the contenders alternate cell by cell (in an order
/// that rotates every round), so that the noise of a shared machine falls on
/// all of them alike; each contender's latencies are pooled over the rounds
/// and summarised once.
fn measure(bench: &mut Bench, o: &Options) -> BackendResult {
    let shape = bench.prepare_all(o.prepared, 900);
    let mut result = BackendResult {
        backend: Some(bench.backend),
        server: bench.server.clone(),
        envelope_len: shape.blob_len,
        ..Default::default()
    };
    let mut pooled: HashMap<(usize, Op, usize), Cell> = HashMap::new();
    // One unrecorded round first: connections, statement caches, key cache.
    for round in 0..=o.rounds {
        let warm_up = round == 0;
        for workers in WORKERS {
            for op in Op::ALL {
                let budget = match op {
                    Op::Load => o.budget,
                    _ => o.write_budget,
                };
                let who = contenders_of(op);
                for k in 0..who.len() {
                    let idx = who[(k + round) % who.len()];
                    let cell = bench.contender(idx).run(op, workers, budget);
                    if !warm_up {
                        let into = pooled.entry((workers, op, idx)).or_default();
                        into.lat_ns.extend(cell.lat_ns);
                        into.wall += cell.wall;
                    }
                }
            }
        }
        if round % 5 == 0 || round == o.rounds {
            eprintln!("  {} round {round}/{}", bench.backend.name(), o.rounds);
        }
    }
    let mut typical: HashMap<(usize, Op, usize), f64> = HashMap::new();
    for ((workers, op, idx), cell) in pooled {
        let summary = cell.summary();
        if o.verbose {
            eprintln!(
                "    {} w{workers} {:<6} {:<14} n={:<7} iqm {:>8.2} p50 {:>8.2} mean {:>8.2} p99 {:>9.2} µs",
                bench.backend.name(),
                op.name(),
                NAMES[idx],
                summary.ops,
                summary.iqm_us,
                summary.p50_us,
                summary.mean_us,
                summary.p99_us
            );
        }
        typical.insert((workers, op, idx), summary.iqm_us);
        result.cells.insert((workers, op, NAMES[idx]), summary);
    }
    for workers in WORKERS {
        for op in Op::ALL {
            let t = |idx| {
                typical
                    .get(&(workers, op, idx))
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            result.ratios.insert(
                (workers, op),
                Ratios {
                    vs_floor: t(0) / t(2),
                    vs_peer: t(0) / t(1),
                    vs_sql: t(0) / t(3),
                },
            );
        }
    }
    result
}

/// The four headline ratios of one backend: the worse of sequential and 8 workers.
pub fn headline(r: &BackendResult) -> [f64; 4] {
    let worst = |op, f: fn(&Ratios) -> f64| {
        WORKERS
            .iter()
            .map(|w| f(&r.ratios[&(*w, op)]))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    [
        worst(Op::Load, |x| x.vs_floor),
        worst(Op::Update, |x| x.vs_floor),
        worst(Op::Load, |x| x.vs_peer),
        worst(Op::Update, |x| x.vs_peer),
    ]
}

fn profile(spec: &str, o: &Options) {
    let parts: Vec<&str> = spec.split(':').collect();
    let [b, c, op, secs] = parts[..] else {
        fail("--profile takes BACKEND:CONTENDER:OP:SECONDS");
    };
    let backend = Backend::parse(b).unwrap_or_else(|| fail("unknown backend"));
    let op = Op::ALL
        .into_iter()
        .find(|x| x.name() == op)
        .unwrap_or_else(|| fail("unknown op"));
    let rt = Arc::new(setup::runtime());
    let mut bench = Bench::open(backend, o, rt);
    let idx = (0..4)
        .find(|i| NAMES[*i] == c)
        .unwrap_or_else(|| fail("unknown contender"));
    // Only the profiled contender gets the full set of sessions.
    bench
        .ss
        .prepare(if idx == 0 { o.prepared } else { 1 }, shape(900, 0));
    let blob_len = bench.floor.pool.data_of(&bench.ss.stored_id(0)).len();
    bench
        .contender(idx)
        .prepare(o.prepared, shape(900, blob_len));
    let secs: f64 = secs.parse().unwrap_or_else(|_| fail("bad seconds"));
    if op == Op::Delete {
        bench
            .contender(idx)
            .run(Op::Create, 1, Duration::from_secs_f64(secs));
    }
    eprintln!("profiling {b} {c} {} for {secs} s", op.name());
    let io_before = proc_io();
    let s = bench
        .contender(idx)
        .run(op, 1, Duration::from_secs_f64(secs))
        .summary();
    let io_after = proc_io();
    for (name, before) in &io_before {
        if let Some((_, after)) = io_after.iter().find(|(n, _)| n == name) {
            eprintln!(
                "  {name} per op: {:.2}",
                (after - before) as f64 / s.ops as f64
            );
        }
    }
    println!(
        "{b} {c} {}: {} ops, {:.0} ops/s, mean {:.2} µs, p50 {:.2} µs, p99 {:.2} µs",
        op.name(),
        s.ops,
        s.ops_per_s,
        s.mean_us,
        s.p50_us,
        s.p99_us
    );
}

/// Runs `f`; if it panics (a shared database server restarted under it,
/// say), notes that `what` is missing from the report and returns `None`.
fn guarded<T>(what: &str, notes: &mut Vec<String>, f: impl FnOnce() -> T) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            let note = format!(
                "The {what} failed (a shared database server restarted during the run?); \
                 its results are missing or partial."
            );
            eprintln!("{note}");
            notes.push(note);
            None
        }
    }
}

/// Counters of `/proc/self/io` (read/write syscalls and bytes).
fn proc_io() -> Vec<(String, u64)> {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn main() {
    let o = parse_args();
    if let Some(spec) = &o.profile {
        profile(spec, &o);
        return;
    }
    let started = Instant::now();
    let rt = Arc::new(setup::runtime());
    let mut results = Vec::new();
    let mut curves = growth::Curves::default();
    for backend in &o.backends {
        // The servers are shared: if one restarts mid-cell, measure the
        // backend again from a fresh database (once).
        for attempt in 1..=2 {
            eprintln!("{}: setting up", backend.name());
            let what = format!("{} matrix (attempt {attempt})", backend.name());
            if let Some(r) = guarded(&what, &mut curves.notes, || {
                measure(&mut Bench::open(*backend, &o, rt.clone()), &o)
            }) {
                results.push(r);
                break;
            }
        }
    }
    if o.growth {
        for backend in &o.backends {
            let what = format!("{} session-size curve", backend.name());
            let mut sizes = growth::Curves::default();
            guarded(&what, &mut curves.notes, || {
                growth::sizes(&mut Bench::open(*backend, &o, rt.clone()), &o, &mut sizes)
            });
            curves.sizes.append(&mut sizes.sizes);
            curves.notes.append(&mut sizes.notes);
        }
    }
    if o.trim {
        for backend in &o.backends {
            let blob_len = results
                .iter()
                .find(|r| r.backend == Some(*backend))
                .map_or(1044, |r| r.envelope_len);
            let what = format!("{} trimming curve", backend.name());
            let mut trims = growth::Curves::default();
            guarded(&what, &mut curves.notes, || {
                growth::trim(
                    &Bench::open(*backend, &o, rt.clone()),
                    &o,
                    blob_len,
                    &mut trims,
                )
            });
            curves.trims.append(&mut trims.trims);
        }
    }
    let elapsed = started.elapsed();

    let mut worst = [f64::NEG_INFINITY; 4];
    for r in &results {
        let h = headline(r);
        for (w, x) in worst.iter_mut().zip(h) {
            *w = w.max(x);
        }
        println!(
            "{}: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}",
            r.backend.expect("backend").name(),
            h[0],
            h[1],
            h[2],
            h[3]
        );
    }
    if !o.quick {
        let path = o.out.clone().unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md")
        });
        report::write(&path, &o, &results, &curves, worst, elapsed);
        eprintln!("wrote {} in {:.0} s", path.display(), elapsed.as_secs_f64());
    } else {
        eprintln!("quick run took {:.1} s", elapsed.as_secs_f64());
    }
    println!(
        "ratios: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}",
        worst[0], worst[1], worst[2], worst[3]
    );
}

/// The shape of the session whose free text is `note_len` bytes, with the
/// floor's blob as long as stored-session's envelope for it.
pub fn shape(note_len: usize, blob_len: usize) -> Shape {
    Shape { note_len, blob_len }
}
