//! Side-by-side benchmark for issue 6: stored-session against
//! `tower-sessions-sqlx-store` (the leading Rust session store) and against a
//! raw-Diesel floor, on SQLite (a file in WAL mode), PostgreSQL and MariaDB,
//! with the same ~1 KiB session (a user id, a CSRF token and a 900-byte
//! string) in the same database.
//!
//! For each backend, every round runs one *block* per operation (load,
//! update, and in the full run create and delete) with 1 worker and with 8
//! concurrent workers: each contender once, in short cells back to back, in
//! an order that rotates from round to round. A fourth contender,
//! `store-sql`, runs the store's own SQL raw (load and update), to split the
//! gap to the floor into SQL and crypto.
//!
//! The ratios (stored-session's typical time per operation over another
//! contender's, lower is better) are taken **within each block**, so that
//! whatever slows the machine for a moment falls on both sides of the
//! ratio; a block is dropped (and, for load and update, measured again) when
//! the scheduler shows other load took CPU time from the benchmark's threads
//! during it (their run-queue delay, from `/proc/thread-self/schedstat`). The
//! reported ratio is the interquartile mean of the block ratios on a log
//! scale, with a 95% bootstrap interval; `--repeat N` runs everything N times
//! (fresh databases) and prints the spread between runs. Reported per
//! contender, over the pooled latencies of the kept blocks: ops/s, the
//! typical (interquartile mean), p50, p99 and mean latency.
//!
//! `--instructions` counts instructions per operation under callgrind
//! (SQLite; a deterministic measure for the CPU-bound part).
//!
//! ```text
//! cargo run --release -- --quick     # two runs, about a minute; last line: the worst ratios
//! cargo run --release                # full run, writes ../../BENCHMARKS.md
//! ```
//!
//! See `--help` for the database URLs and the other options.

#![forbid(unsafe_code)]

mod contender;
mod drive;
mod floor;
mod growth;
mod instructions;
mod listing;
mod peer;
mod report;
mod setup;
mod ss;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contender::{Contender, Op, Shape};
use drive::{Cell, Stop, Summary};
use setup::{Backend, Bench};
use stats::{paired, Estimate};

/// How a run is sized.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// Rounds (blocks per operation and worker count) per run, at least.
    pub rounds: usize,
    /// ... and more rounds until this much time has passed.
    pub round_time: Duration,
    /// Independent runs (fresh databases each), for the run-to-run spread.
    pub repeat: usize,
    pub budget: Duration,
    pub write_budget: Duration,
    /// Relative half-width of a headline ratio's interval to aim for.
    pub target_ci: f64,
    /// Time per backend and run for more blocks towards that target.
    pub extra: Duration,
    pub prepared: usize,
    pub backends: Vec<Backend>,
    pub postgres_admin: String,
    pub mysql_admin: String,
    /// A node of a MariaDB Galera cluster (its section is skipped without).
    pub galera_admin: Option<String>,
    pub database: String,
    pub growth: bool,
    pub growth_rounds: usize,
    pub growth_cell: Duration,
    pub trim: bool,
    pub trim_rows: Vec<usize>,
    /// The per-user listing section (full run).
    pub listing: bool,
    /// Session counts of the listed users.
    pub listing_users: Vec<usize>,
    /// Instruction counts under callgrind (full run; or alone with `--instructions`).
    pub instructions: bool,
    /// Counted operations per contender under callgrind.
    pub instr_ops: usize,
    /// Internal: run one counted cell (under callgrind), `CONTENDER:OP`.
    pub instr_child: Option<String>,
    /// Whether the 1 KiB matrix runs (off with `--instructions` alone).
    pub matrix: bool,
    pub out: Option<std::path::PathBuf>,
    /// Every measured cell as CSV (for looking into the noise).
    pub dump: Option<std::path::PathBuf>,
    pub profile: Option<String>,
    pub verbose: bool,
    /// Where `cargo bench` left criterion's estimates (for the report).
    pub criterion: std::path::PathBuf,
}

const HELP: &str = "\
stored-session-peers: stored-session vs tower-sessions-sqlx-store vs raw Diesel

USAGE: cargo run --release -- [OPTIONS]

  --quick                  regression check in about a minute per backend: load, update
                           and the 8-worker load-modify-save pair only, two runs of
                           short cells, no curves, nothing written; prints each ratio
                           with its 95% interval, the run-to-run spread and the pairs'
                           throughput; the last line holds the worst ratios
  --repeat N               run everything N times (fresh databases) and print the spread
                           between runs; the ratios printed last pool all runs (default:
                           quick 2, full run 3)
  --rounds N               blocks per operation and worker count in each run (default 30;
                           quick: at least 20, and as many as 6 s per backend and run allow)
  --cell-ms MS             time budget of one load cell, writes get 8/3 of it
                           (default 20; quick 6)
  --target-ci PCT          after the rounds, add load and update blocks where a headline
                           ratio's 95% interval is widest until each is within ±PCT%
                           (default 2.5) ...
  --extra-s SECS           ... or SECS seconds per backend and run are used up (default 20;
                           quick 6)
  --backends LIST          comma-separated subset of sqlite,postgres,mysql,galera
  --postgres URL           PostgreSQL server to use (default
                           postgres://postgres@127.0.0.1:5432/postgres; env BENCH_POSTGRES_URL)
  --mysql URL              MySQL/MariaDB server to use (default
                           mysql://root@127.0.0.1:3306/test; env BENCH_MYSQL_URL)
  --galera URL             a node of a MariaDB Galera cluster (e.g.
                           mysql://root@127.0.0.1:4306/galtest; env BENCH_GALERA_URL): its
                           load and update go next to the single MariaDB server in the full
                           report (the section is skipped with a note without it)
  --database NAME          benchmark database, dropped and recreated (default ss_bench)
  --no-growth              skip the session-size curves
  --growth-rounds N        rounds of the session-size curves and of the listing (default 20)
  --no-trim                skip the trimming curve
  --no-matrix              skip the 1 KiB matrix (to run a curve alone)
  --no-listing             skip the per-user listing costs
  --no-instructions        skip the instruction counts in the full report
  --trim-rows LIST         row counts for the trimming curve (default 10000,100000,1000000)
  --listing-users LIST     session counts of the listed users (default 1,100,10000)
  --instructions           only count instructions per operation under callgrind (SQLite:
                           stored-session, store-sql, floor; load and update) and print the
                           table; deterministic, for a noise-free regression check
  --instr-ops N            counted operations per contender and op (default 2000)
  --out PATH               where the full report goes (default: ../../BENCHMARKS.md)
  --criterion DIR          criterion's output of `cargo bench` in the main crate, quoted in
                           the report (default: $CARGO_TARGET_DIR/criterion or ../../target/criterion)
  --dump PATH              write every measured cell as CSV to PATH
  -v, --verbose            print every contender's pooled latencies on stderr
  --profile B:C:OP:SECS    prepare, then run one cell for SECS seconds with 1 worker, for a
                           profiler (B: sqlite|postgres|mysql|galera, C: stored-session|
                           tower-sqlx|floor|store-sql, OP: load|update|create|delete)
";

fn parse_args() -> Options {
    let mut args = std::env::args().skip(1);
    let mut o = Options {
        quick: false,
        rounds: 0,
        round_time: Duration::ZERO,
        repeat: 0,
        budget: Duration::ZERO,
        write_budget: Duration::ZERO,
        target_ci: 0.025,
        extra: Duration::ZERO,
        prepared: 1000,
        backends: vec![Backend::Sqlite, Backend::Postgres, Backend::Mysql],
        postgres_admin: std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
        mysql_admin: std::env::var("BENCH_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        galera_admin: std::env::var("BENCH_GALERA_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        database: "ss_bench".into(),
        growth: true,
        growth_rounds: 20,
        growth_cell: Duration::from_millis(50),
        trim: true,
        trim_rows: vec![10_000, 100_000, 1_000_000],
        listing: true,
        listing_users: vec![1, 100, 10_000],
        instructions: true,
        instr_ops: 2000,
        instr_child: None,
        matrix: true,
        out: None,
        dump: None,
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
    let mut repeat = None;
    let mut cell_ms = None;
    let mut extra_s = None;
    let mut backends = None;
    let mut only_instructions = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--rounds" => rounds = Some(number(&value("--rounds"))),
            "--repeat" => repeat = Some(number(&value("--repeat"))),
            "--cell-ms" => cell_ms = Some(number(&value("--cell-ms"))),
            "--extra-s" => extra_s = Some(number(&value("--extra-s"))),
            "--target-ci" => {
                o.target_ci = value("--target-ci")
                    .trim()
                    .parse::<f64>()
                    .unwrap_or_else(|_| fail("--target-ci takes a percentage"))
                    / 100.0
            }
            "--backends" => {
                backends = Some(
                    value("--backends")
                        .split(',')
                        .map(|b| Backend::parse(b).unwrap_or_else(|| fail("unknown backend")))
                        .collect::<Vec<_>>(),
                )
            }
            "--postgres" => o.postgres_admin = value("--postgres"),
            "--mysql" => o.mysql_admin = value("--mysql"),
            "--galera" => o.galera_admin = Some(value("--galera")),
            "--database" => o.database = value("--database"),
            "--no-growth" => o.growth = false,
            "--growth-rounds" => o.growth_rounds = number(&value("--growth-rounds")).max(1),
            "--no-trim" => o.trim = false,
            "--no-matrix" => o.matrix = false,
            "--no-listing" => o.listing = false,
            "--no-instructions" => o.instructions = false,
            "--trim-rows" => {
                o.trim_rows = value("--trim-rows").split(',').map(number).collect();
            }
            "--listing-users" => {
                o.listing_users = value("--listing-users").split(',').map(number).collect();
            }
            "--instructions" => only_instructions = true,
            "--instr-ops" => o.instr_ops = number(&value("--instr-ops")).max(1),
            "--instructions-child" => o.instr_child = Some(value("--instructions-child")),
            "--out" => o.out = Some(value("--out").into()),
            "--dump" => o.dump = Some(value("--dump").into()),
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
    if let Some(list) = backends {
        o.backends = list;
    } else if o.galera_admin.is_some() && !o.quick {
        o.backends.push(Backend::Galera);
    }
    if o.backends.contains(&Backend::Galera) && o.galera_admin.is_none() {
        fail("the galera backend needs --galera URL or BENCH_GALERA_URL");
    }
    if o.quick {
        o.growth = false;
        o.trim = false;
        o.listing = false;
        o.instructions = false;
        o.prepared = 256;
    }
    if only_instructions {
        o.matrix = false;
        o.growth = false;
        o.trim = false;
        o.listing = false;
        o.instructions = true;
    }
    o.rounds = rounds.unwrap_or(if o.quick { 20 } else { 30 }).max(1);
    if o.quick && rounds.is_none() {
        o.round_time = Duration::from_secs(6);
    }
    o.repeat = repeat.unwrap_or(if o.quick { 2 } else { 3 }).max(1);
    o.extra = Duration::from_secs(extra_s.unwrap_or(if o.quick { 6 } else { 20 }) as u64);
    let cell_ms = cell_ms.unwrap_or(if o.quick { 6 } else { 20 }) as u64;
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
        Op::Create | Op::Delete | Op::Pair => &[0, 1, 2],
    }
}

/// Whether `op` is measured with `workers`: the load-modify-save pair only
/// with 8 workers (its throughput is the headline's).
pub fn measured_with(op: Op, workers: usize) -> bool {
    op != Op::Pair || workers > 1
}

/// The operations measured on a backend: load and update on a Galera
/// cluster, the load-modify-save pair too in the quick run, create and
/// delete too otherwise.
pub fn ops_of(backend: Backend, o: &Options) -> &'static [Op] {
    if backend == Backend::Galera {
        &[Op::Load, Op::Update]
    } else if o.quick {
        &[Op::Load, Op::Update, Op::Pair]
    } else {
        &[Op::Load, Op::Update, Op::Create, Op::Delete, Op::Pair]
    }
}

/// stored-session's typical time per operation over another contender's
/// (and store-sql's over the floor's), estimated over paired blocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ratios {
    pub vs_floor: Estimate,
    pub vs_peer: Estimate,
    /// Over the store's own SQL without crypto: its hashing, encryption and
    /// encoding (NaN for create and delete).
    pub vs_sql: Estimate,
    /// store-sql over the floor: what the store's SQL costs.
    pub sql_vs_floor: Estimate,
    /// stored-session's operations per second over the peer's (higher is
    /// better; the headline's for the 8-worker load-modify-save pair).
    pub per_s_vs_peer: Estimate,
    /// The same over the floor's.
    pub per_s_vs_floor: Estimate,
}

/// One contender's cell in a block, summarised.
#[derive(Debug, Clone, Copy)]
pub struct CellStat {
    /// Interquartile mean of the cell's latencies (µs).
    pub typical_us: f64,
    pub ops: usize,
    /// Operations per second of wall time (all workers together).
    pub per_s: f64,
    /// Run-queue delay of the process's threads over the cell's wall time.
    pub delay: f64,
    /// CPU time of the process over the cell's wall time (cores used).
    pub cpu: f64,
    /// Other load took CPU time from the benchmark during the cell.
    pub disturbed: bool,
}

impl CellStat {
    /// Run-queue delay per second of CPU time.
    pub fn wait_per_cpu(&self) -> f64 {
        self.delay / self.cpu.max(0.05)
    }
}

/// One block: each contender of an operation once, back to back.
#[derive(Debug, Clone)]
pub struct Block {
    /// The run it belongs to (`--repeat`).
    pub run: usize,
    pub cells: [Option<CellStat>; 4],
}

impl Block {
    /// Contender `a`'s typical time over `b`'s (NaN if either is missing
    /// or was disturbed).
    pub fn ratio(&self, a: usize, b: usize) -> f64 {
        if self.kept(a, b) {
            let (x, y) = (self.cells[a].expect("kept"), self.cells[b].expect("kept"));
            x.typical_us / y.typical_us
        } else {
            f64::NAN
        }
    }

    /// Contender `a`'s operations per second over `b`'s (NaN if either is
    /// missing or was disturbed).
    pub fn throughput(&self, a: usize, b: usize) -> f64 {
        if self.kept(a, b) {
            let (x, y) = (self.cells[a].expect("kept"), self.cells[b].expect("kept"));
            x.per_s / y.per_s
        } else {
            f64::NAN
        }
    }

    /// Whether both cells are there and undisturbed.
    pub fn kept(&self, a: usize, b: usize) -> bool {
        match (self.cells[a], self.cells[b]) {
            (Some(x), Some(y)) => !x.disturbed && !y.disturbed && x.ops > 0 && y.ops > 0,
            _ => false,
        }
    }

    /// The headline's pairs, stored-session with the floor and with the
    /// peer, are both usable.
    pub fn headline_kept(&self) -> bool {
        self.kept(0, 2) && self.kept(0, 1)
    }
}

/// One run's measurements on one backend.
#[derive(Debug, Default)]
pub struct Raw {
    pub backend: Option<Backend>,
    pub server: String,
    pub envelope_len: usize,
    pub blocks: HashMap<(usize, Op), Vec<Block>>,
    /// Each contender's latencies over the kept blocks.
    pub pooled: HashMap<(usize, Op, usize), Cell>,
    /// Cells made longer than the base budget to hold enough operations.
    pub longer_cells: Vec<(usize, Op, Duration)>,
    /// Rounds measured (before the blocks added for precision).
    pub rounds: usize,
}

/// Everything measured on one backend with the 1 KiB session, over all runs.
#[derive(Debug, Default)]
pub struct BackendResult {
    pub backend: Option<Backend>,
    pub server: String,
    pub envelope_len: usize,
    /// Summaries of the pooled latencies by (workers, op, contender name).
    pub cells: HashMap<(usize, Op, &'static str), Summary>,
    /// Per (workers, op): the ratios over every kept block of every run
    /// (the headline figures).
    pub ratios: HashMap<(usize, Op), Ratios>,
    /// The same, per run (for the run-to-run spread).
    pub runs: Vec<HashMap<(usize, Op), Ratios>>,
    /// Blocks whose headline pairs were kept and those dropped as
    /// disturbed, per (workers, op), all runs.
    pub kept: HashMap<(usize, Op), (usize, usize)>,
    /// Cells longer than the base budget (the longest over the runs).
    pub longer_cells: HashMap<(usize, Op), Duration>,
    /// Rounds of each run.
    pub rounds: Vec<usize>,
}

/// Ratios over `blocks` (grouped by run for the bootstrap).
fn ratios_of<'a>(blocks: impl Iterator<Item = &'a Block> + Clone) -> Ratios {
    let of = |a: usize, b: usize| {
        paired(
            &blocks
                .clone()
                .map(|x| (x.run, x.ratio(a, b)))
                .collect::<Vec<_>>(),
        )
    };
    let per_s = |a: usize, b: usize| {
        paired(
            &blocks
                .clone()
                .map(|x| (x.run, x.throughput(a, b)))
                .collect::<Vec<_>>(),
        )
    };
    Ratios {
        vs_floor: of(0, 2),
        vs_peer: of(0, 1),
        vs_sql: of(0, 3),
        sql_vs_floor: of(3, 2),
        per_s_vs_peer: per_s(0, 1),
        per_s_vs_floor: per_s(0, 2),
    }
}

/// Runs one block: each contender of `op` once, in an order rotated by `round`.
fn run_block(
    bench: &mut Bench,
    budget: Duration,
    workers: usize,
    op: Op,
    round: usize,
    run: usize,
) -> (Block, [Option<Cell>; 4]) {
    let who = contenders_of(op);
    let mut block = Block {
        run,
        cells: [None; 4],
    };
    let mut cells: [Option<Cell>; 4] = Default::default();
    for k in 0..who.len() {
        let idx = who[(k + round) % who.len()];
        let cell = bench.contender(idx).run(op, workers, Stop::After(budget));
        block.cells[idx] = Some(CellStat {
            typical_us: cell.summary_ref().iqm_us,
            ops: cell.ops,
            per_s: cell.ops as f64 / cell.wall.as_secs_f64().max(1e-9),
            delay: cell.delay_frac(),
            cpu: cell.cpu_ns as f64 / cell.wall.as_nanos().max(1) as f64,
            disturbed: false,
        });
        cells[idx] = Some(cell);
    }
    (block, cells)
}

/// The blocks of a run so far, with their cells, by (workers, op).
type Pending = HashMap<(usize, Op), Vec<(Block, [Option<Cell>; 4])>>;

/// Per (workers, op, contender): the most run-queue delay per CPU second
/// and the least CPU share an undisturbed cell shows.
type Baselines = HashMap<(usize, Op, usize), (f64, f64)>;

/// The cores of this machine.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// When a cell counts as disturbed, from all cells of its kind (backend,
/// workers, op, contender) in a run. Two figures of the process, read
/// around each cell: its threads' run-queue delay per second of CPU they
/// got (*wait*: 0 for one thread on a quiet machine; unlike the CPU share
/// it does not count waiting on the disk or the network) and its CPU share
/// (CPU time over wall time, in cores). A cell with fewer than 5
/// operations (a stall) is disturbed too.
///
/// On SQLite all the work is the process's own, so these figures see any
/// outside load:
///
/// * As many threads as cores or fewer: disturbed when the wait exceeds
///   that of the kind's quietest quarter of cells (its 25th percentile) by
///   more than 0.1 s per CPU second and by more than a quarter. The
///   baseline is the quiet quarter, not the median, so that a run spent
///   mostly under other load still knows what quiet looks like.
/// * More threads than cores (8 workers here): they wait for each other
///   anyway, and block on each other's locks when one is preempted, which
///   hides outside load from their wait but not from their CPU share. If
///   the operation is CPU-bound (one of the contenders' busiest tenth of
///   cells use at least 3/4 of the cores), a cell is disturbed when it got
///   less than 80% of the share of its contender's busiest tenth (another
///   process held a core); otherwise as for a server below.
///
/// On a server the client mostly waits for replies and its wake-ups
/// compete with the server's own threads, so its wait varies widely on a
/// quiet machine too, and outside load on the server is invisible from
/// here: a cell is disturbed only when its wait exceeds the kind's median
/// by more than a quarter, 0.1 s and 6 median absolute deviations. The
/// pairing within blocks does the rest.
fn baselines(blocks: &Pending, in_process: bool) -> Baselines {
    let mut out = Baselines::new();
    let quantile = |xs: &mut Vec<f64>, q: f64| {
        xs.sort_unstable_by(f64::total_cmp);
        xs[((xs.len() as f64 * q) as usize).min(xs.len() - 1)]
    };
    for ((workers, op), list) in blocks {
        let cells_of = |idx: usize| -> Vec<CellStat> {
            list.iter().filter_map(|(b, _)| b.cells[idx]).collect()
        };
        // The CPU share of each contender's busiest cells (90th percentile).
        let busy: Vec<f64> = (0..4)
            .map(|idx| {
                let mut cpu: Vec<f64> = cells_of(idx).iter().map(|c| c.cpu).collect();
                if cpu.is_empty() {
                    0.0
                } else {
                    quantile(&mut cpu, 0.9)
                }
            })
            .collect();
        let oversubscribed = *workers as f64 > cores();
        let cpu_bound = busy.iter().any(|b| *b >= 0.75 * cores());
        for (idx, busiest) in busy.iter().enumerate() {
            let cells = cells_of(idx);
            if cells.is_empty() {
                continue;
            }
            let mut waits: Vec<f64> = cells.iter().map(CellStat::wait_per_cpu).collect();
            let limits = if !in_process {
                let m = stats::median(&mut waits);
                let mut dev: Vec<f64> = waits.iter().map(|d| (d - m).abs()).collect();
                let mad = stats::median(&mut dev);
                (m + (0.10f64).max(0.25 * m).max(6.0 * mad), 0.0)
            } else if !oversubscribed {
                let quiet = quantile(&mut waits, 0.25);
                (quiet + (0.10f64).max(0.25 * quiet), 0.0)
            } else if cpu_bound {
                (f64::INFINITY, 0.8 * busiest)
            } else {
                let m = stats::median(&mut waits);
                let mut dev: Vec<f64> = waits.iter().map(|d| (d - m).abs()).collect();
                let mad = stats::median(&mut dev);
                (m + (0.10f64).max(0.25 * m).max(6.0 * mad), 0.0)
            };
            out.insert((*workers, *op, idx), limits);
        }
    }
    out
}

fn judge(block: &mut Block, workers: usize, op: Op, base: &Baselines) {
    for (idx, cell) in block.cells.iter_mut().enumerate() {
        if let (Some(c), Some((most_wait, least_cpu))) = (cell, base.get(&(workers, op, idx))) {
            c.disturbed = c.ops < 5 || c.wait_per_cpu() > *most_wait || c.cpu < *least_cpu;
        }
    }
}

/// One run of the 1 KiB matrix on one backend.
///
/// Each round runs one block per (workers, op); a first round is discarded
/// as warm-up (connections, statement caches, key cache). Cells disturbed
/// by other load are dropped; then load and update get more blocks where
/// the headline ratios' intervals are widest, until each is within
/// `--target-ci` or `--extra-s` seconds are used up (so that a busy machine
/// shows as wider intervals rather than an endless run).
fn measure(bench: &mut Bench, o: &Options, run: usize, dump: &mut Dump) -> Raw {
    let shape = bench.prepare_all(o.prepared, 900);
    let ops = ops_of(bench.backend, o);
    let mut raw = Raw {
        backend: Some(bench.backend),
        server: bench.server.clone(),
        envelope_len: shape.blob_len,
        ..Default::default()
    };
    let mut pending: Pending = HashMap::new();
    // Cell budgets: the base budget, longer where the warm-up round shows
    // it would hold fewer than MIN_OPS operations (a commit that waits for
    // the disk's flush takes milliseconds).
    const MIN_OPS: f64 = 20.0;
    let mut budgets: HashMap<(usize, Op), Duration> = HashMap::new();
    let started = Instant::now();
    let mut round = 0;
    while round <= o.rounds || started.elapsed() < o.round_time {
        for workers in WORKERS {
            for &op in ops.iter().filter(|op| measured_with(**op, workers)) {
                let base = match op {
                    Op::Load => o.budget,
                    _ => o.write_budget,
                };
                let budget = budgets.get(&(workers, op)).copied().unwrap_or(base);
                let measured = run_block(bench, budget, workers, op, round, run);
                if round == 0 {
                    // Operations a cell holds: budget x workers / median latency.
                    let slowest = measured
                        .1
                        .iter()
                        .flatten()
                        .map(|c| c.summary_ref().p50_us / 1e6 / workers as f64)
                        .fold(0.0, f64::max);
                    let wanted = Duration::from_secs_f64(slowest * MIN_OPS);
                    budgets.insert((workers, op), wanted.clamp(base, base * 6));
                } else {
                    pending.entry((workers, op)).or_default().push(measured);
                }
            }
        }
        if round % 20 == 0 {
            eprintln!(
                "  {} run {} round {round}/{}",
                bench.backend.name(),
                run + 1,
                o.rounds
            );
        }
        round += 1;
    }
    let rounds = round - 1;
    let base = baselines(&pending, bench.backend == Backend::Sqlite);
    for ((workers, op), list) in pending.iter_mut() {
        for (block, _) in list.iter_mut() {
            judge(block, *workers, *op, &base);
        }
    }
    // More blocks where the headline ratios are least precise (dropped
    // cells, a noisy pair), until every interval is within the target or
    // the time for it is used up.
    let until = Instant::now() + o.extra;
    while Instant::now() < until {
        let widest = WORKERS
            .iter()
            .flat_map(|w| ops.iter().map(move |op| (*w, *op)))
            .filter(|(_, op)| matches!(op, Op::Load | Op::Update))
            .map(|key| {
                let list = &pending[&key];
                let blocks = list.iter().map(|(b, _)| b);
                let r = ratios_of(blocks);
                let width = [r.vs_floor, r.vs_peer]
                    .iter()
                    .map(|e| {
                        if e.n < 10 {
                            f64::INFINITY
                        } else {
                            (e.hi - e.lo) / 2.0 / e.point
                        }
                    })
                    .fold(0.0, f64::max);
                (key, width)
            })
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let Some(((workers, op), width)) = widest else {
            break;
        };
        if width <= o.target_ci {
            break;
        }
        for _ in 0..5 {
            let budget = budgets[&(workers, op)];
            let (mut block, cells) = run_block(bench, budget, workers, op, round, run);
            round += 1;
            judge(&mut block, workers, op, &base);
            pending
                .get_mut(&(workers, op))
                .expect("measured")
                .push((block, cells));
        }
    }
    raw.rounds = rounds;
    eprintln!(
        "  {} run {}: {rounds} rounds, then {} more blocks for precision",
        bench.backend.name(),
        run + 1,
        round - rounds - 1
    );
    for ((workers, op), budget) in &budgets {
        if *budget > o.write_budget.max(o.budget) {
            raw.longer_cells.push((*workers, *op, *budget));
        }
    }
    for ((workers, op), list) in pending {
        let mut blocks = Vec::with_capacity(list.len());
        for (i, (block, cells)) in list.into_iter().enumerate() {
            for (idx, cell) in cells.iter().enumerate() {
                let Some(cell) = cell else { continue };
                let disturbed = block.cells[idx].is_some_and(|c| c.disturbed);
                dump.cell(bench.backend, run, workers, op, i, idx, cell, disturbed);
                if !disturbed {
                    raw.pooled
                        .entry((workers, op, idx))
                        .or_default()
                        .absorb(cell);
                }
            }
            blocks.push(block);
        }
        raw.blocks.insert((workers, op), blocks);
    }
    raw
}

/// The runs of one backend, combined.
fn combine(raws: Vec<Raw>, o: &Options) -> BackendResult {
    let first = &raws[0];
    let mut result = BackendResult {
        backend: first.backend,
        server: first.server.clone(),
        envelope_len: first.envelope_len,
        ..Default::default()
    };
    let mut pooled: HashMap<(usize, Op, usize), Cell> = HashMap::new();
    for raw in &raws {
        result.rounds.push(raw.rounds);
        for (workers, op, budget) in &raw.longer_cells {
            let at = result.longer_cells.entry((*workers, *op)).or_default();
            *at = (*at).max(*budget);
        }
        for (key, cell) in &raw.pooled {
            pooled.entry(*key).or_default().absorb(cell);
        }
        let mut per_run = HashMap::new();
        for (key, blocks) in &raw.blocks {
            per_run.insert(*key, ratios_of(blocks.iter()));
        }
        result.runs.push(per_run);
    }
    for ((workers, op, idx), cell) in pooled {
        let summary = cell.summary();
        if o.verbose {
            eprintln!(
                "    {} w{workers} {:<6} {:<14} n={:<7} iqm {:>8.2} p50 {:>8.2} mean {:>8.2} p99 {:>9.2} µs",
                result.backend.expect("backend").name(),
                op.name(),
                NAMES[idx],
                summary.ops,
                summary.iqm_us,
                summary.p50_us,
                summary.mean_us,
                summary.p99_us
            );
        }
        result.cells.insert((workers, op, NAMES[idx]), summary);
    }
    let keys: Vec<(usize, Op)> = first.blocks.keys().copied().collect();
    for key in keys {
        let all = raws
            .iter()
            .flat_map(|r| r.blocks.get(&key).into_iter().flatten());
        result.ratios.insert(key, ratios_of(all.clone()));
        let dropped = all.clone().filter(|b| !b.headline_kept()).count();
        result.kept.insert(key, (all.count() - dropped, dropped));
    }
    result
}

/// The four headline ratios of one backend (load/floor, update/floor,
/// load/peer, update/peer): the worse of sequential and 8 workers, with the
/// worker count it came from.
pub fn headline_of(ratios: &HashMap<(usize, Op), Ratios>) -> [(Estimate, usize); 4] {
    let worst = |op, f: fn(&Ratios) -> Estimate| {
        WORKERS
            .iter()
            .filter_map(|w| ratios.get(&(*w, op)).map(|r| (f(r), *w)))
            .fold((Estimate::default(), 0), |acc, x| {
                if x.0.point > acc.0.point || !acc.0.point.is_finite() {
                    x
                } else {
                    acc
                }
            })
    };
    [
        worst(Op::Load, |x| x.vs_floor),
        worst(Op::Update, |x| x.vs_floor),
        worst(Op::Load, |x| x.vs_peer),
        worst(Op::Update, |x| x.vs_peer),
    ]
}

/// The headline's throughput on one backend: 8 workers each running
/// load-modify-save pairs on their own sessions.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Pairs per second of stored-session, the peer and the floor.
    pub store: f64,
    pub peer: f64,
    pub floor: f64,
    /// stored-session's pairs per second over the peer's, paired by block.
    pub vs_peer: Estimate,
    /// The same over the floor's.
    pub vs_floor: Estimate,
}

/// [`Throughput`] of a backend, if the pair was measured there.
pub fn throughput(r: &BackendResult) -> Option<Throughput> {
    let workers = WORKERS[WORKERS.len() - 1];
    let ratios = r.ratios.get(&(workers, Op::Pair))?;
    let per_s = |name| r.cells.get(&(workers, Op::Pair, name)).map(|s| s.ops_per_s);
    Some(Throughput {
        store: per_s(NAMES[0])?,
        peer: per_s(NAMES[1])?,
        floor: per_s(NAMES[2])?,
        vs_peer: ratios.per_s_vs_peer,
        vs_floor: ratios.per_s_vs_floor,
    })
}

/// [`headline_of`] the pooled ratios.
pub fn headline(r: &BackendResult) -> [(Estimate, usize); 4] {
    headline_of(&r.ratios)
}

/// The labels of the headline's four ratios.
pub const HEADLINE: [&str; 4] = ["load/floor", "update/floor", "load/peer", "update/peer"];

/// The worst headline over several backends: per ratio, the estimate and
/// where it came from.
pub fn worst_of(
    heads: impl Iterator<Item = (Backend, [(Estimate, usize); 4])>,
) -> [(Estimate, Option<Backend>, usize); 4] {
    let mut worst = [(Estimate::default(), None, 0); 4];
    for (backend, h) in heads {
        for (w, (e, workers)) in worst.iter_mut().zip(h) {
            if w.1.is_none() || e.point > w.0.point {
                *w = (e, Some(backend), workers);
            }
        }
    }
    worst
}

/// The run-to-run spread of the worst headline: per ratio, each run's value.
pub fn runs_headline(results: &[BackendResult], repeat: usize) -> Vec<[f64; 4]> {
    (0..repeat)
        .map(|run| {
            let heads = results
                .iter()
                .filter(|r| r.backend != Some(Backend::Galera))
                .filter_map(|r| Some((r.backend?, headline_of(r.runs.get(run)?))));
            worst_of(heads).map(|(e, _, _)| e.point)
        })
        .collect()
}

/// Every measured cell as CSV (`--dump`), for looking into the noise.
pub struct Dump(Option<std::io::BufWriter<std::fs::File>>);

impl Dump {
    fn open(path: Option<&std::path::Path>) -> Dump {
        Dump(path.map(|p| {
            let f = std::fs::File::create(p).unwrap_or_else(|e| fail(&format!("--dump: {e}")));
            let mut w = std::io::BufWriter::new(f);
            use std::io::Write as _;
            let _ = writeln!(
                w,
                "backend,run,workers,op,block,contender,ops,typical_us,mean_us,p50_us,p99_us,wall_us,cpu_frac,delay_frac,worker_delay_frac,settle_us,disturbed"
            );
            w
        }))
    }

    #[allow(clippy::too_many_arguments)]
    fn cell(
        &mut self,
        backend: Backend,
        run: usize,
        workers: usize,
        op: Op,
        block: usize,
        idx: usize,
        cell: &Cell,
        disturbed: bool,
    ) {
        use std::io::Write as _;
        let Some(w) = &mut self.0 else { return };
        let s = cell.summary_ref();
        let wall = cell.wall.as_nanos() as f64;
        let _ = writeln!(
            w,
            "{},{run},{workers},{},{block},{},{},{:.3},{:.3},{:.3},{:.3},{:.0},{:.3},{:.3},{:.3},{:.0},{}",
            backend.name(),
            op.name(),
            NAMES[idx],
            cell.ops,
            s.iqm_us,
            s.mean_us,
            s.p50_us,
            s.p99_us,
            wall / 1e3,
            cell.cpu_ns as f64 / wall,
            cell.delay_ns as f64 / wall,
            cell.worker_delay_ns as f64 / wall,
            cell.settle_ns as f64 / 1e3,
            u8::from(disturbed)
        );
    }
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
    let stop = Stop::After(Duration::from_secs_f64(secs));
    if op == Op::Delete {
        bench.contender(idx).run(Op::Create, 1, stop);
    }
    eprintln!("profiling {b} {c} {} for {secs} s", op.name());
    let io_before = proc_io();
    let s = bench.contender(idx).run(op, 1, stop).summary();
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

/// The machine's load averages (1, 5, 15 min), as `/proc/loadavg` has them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn where_of(backend: Option<Backend>, workers: usize) -> String {
    format!(
        "{}, {}",
        backend.map_or("?", Backend::name),
        if workers == 1 {
            "sequential".to_owned()
        } else {
            format!("{workers} workers")
        }
    )
}

fn main() {
    let o = parse_args();
    if let Some(spec) = &o.instr_child {
        instructions::child(spec, &o);
        return;
    }
    if let Some(spec) = &o.profile {
        profile(spec, &o);
        return;
    }
    let started = Instant::now();
    let load_before = loadavg();
    let rt = Arc::new(setup::runtime());
    let mut results = Vec::new();
    let mut curves = growth::Curves::default();
    let mut dump = Dump::open(o.dump.as_deref());
    if o.matrix {
        let mut raws: Vec<Vec<Raw>> = o.backends.iter().map(|_| Vec::new()).collect();
        for run in 0..o.repeat {
            for (b, backend) in o.backends.iter().enumerate() {
                // The servers are shared: if one restarts mid-cell, measure
                // the backend again from a fresh database (once).
                for attempt in 1..=2 {
                    eprintln!("{}: setting up (run {})", backend.name(), run + 1);
                    let what = format!(
                        "{} matrix (run {}, attempt {attempt})",
                        backend.name(),
                        run + 1
                    );
                    if let Some(r) = guarded(&what, &mut curves.notes, || {
                        measure(
                            &mut Bench::open(*backend, &o, rt.clone()),
                            &o,
                            run,
                            &mut dump,
                        )
                    }) {
                        raws[b].push(r);
                        break;
                    }
                }
            }
        }
        results = raws
            .into_iter()
            .filter(|r| !r.is_empty())
            .map(|r| combine(r, &o))
            .collect();
    }
    drop(dump);
    if o.growth {
        for backend in o.backends.iter().filter(|b| **b != Backend::Galera) {
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
        for backend in o.backends.iter().filter(|b| **b != Backend::Galera) {
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
    let mut listings = Vec::new();
    if o.listing {
        for backend in o.backends.iter().filter(|b| **b != Backend::Galera) {
            let what = format!("{} per-user listing", backend.name());
            if let Some(mut points) = guarded(&what, &mut curves.notes, || {
                listing::measure(&mut Bench::open(*backend, &o, rt.clone()), &o)
            }) {
                listings.append(&mut points);
            }
        }
    }
    let instructions = o.instructions.then(|| instructions::run(&o));
    let elapsed = started.elapsed();
    let load_after = loadavg();

    if let Some(table) = &instructions {
        print!("{}", instructions::text(table));
        if !o.matrix {
            println!("{}", instructions::last_line(table));
            return;
        }
    }
    print_ratios(&results, &o);
    let worst = worst_of(
        results
            .iter()
            .filter(|r| r.backend != Some(Backend::Galera))
            .map(|r| (r.backend.expect("backend"), headline(r))),
    );
    let runs = runs_headline(&results, o.repeat);
    if !o.quick {
        let path = o.out.clone().unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md")
        });
        let run = report::Run {
            results: &results,
            curves: &curves,
            listings: &listings,
            instructions: instructions.as_ref(),
            worst,
            runs: &runs,
            elapsed,
            load: (load_before.clone(), load_after.clone()),
        };
        report::write(&path, &o, &run);
        eprintln!("wrote {} in {:.0} s", path.display(), elapsed.as_secs_f64());
    } else {
        eprintln!(
            "quick run took {:.1} s; load average before {load_before}, after {load_after}",
            elapsed.as_secs_f64()
        );
    }
    let shown: Vec<String> = worst
        .iter()
        .zip(HEADLINE)
        .map(|((e, b, w), name)| format!("{name}={} ({})", e.show(), where_of(*b, *w)))
        .collect();
    println!("interval (95%, worst cell): {}", shown.join(" "));
    if o.repeat > 1 {
        let shown: Vec<String> = (0..4)
            .map(|k| {
                let xs: Vec<f64> = runs.iter().map(|r| r[k]).collect();
                let (lo, hi, half) = stats::spread(&xs);
                let each: Vec<String> = xs.iter().map(|x| format!("{x:.2}")).collect();
                format!(
                    "{}={lo:.2}-{hi:.2} (±{:.1}%: {})",
                    HEADLINE[k],
                    half * 100.0,
                    each.join(" ")
                )
            })
            .collect();
        println!("spread over {} runs: {}", o.repeat, shown.join(" "));
    }
    let shown: Vec<String> = results
        .iter()
        .filter_map(|r| {
            let t = throughput(r)?;
            Some(format!(
                "{}={} ({:.0} vs {:.0} pairs/s)",
                r.backend.expect("backend").name(),
                t.vs_peer.show(),
                t.store,
                t.peer
            ))
        })
        .collect();
    if !shown.is_empty() {
        println!(
            "throughput store/peer (8 workers, load-modify-save pairs per second, higher is better): {}",
            shown.join(" ")
        );
    }
    println!(
        "ratios: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}",
        worst[0].0.point, worst[1].0.point, worst[2].0.point, worst[3].0.point
    );
}

/// Per backend, worker count and operation: each ratio with its interval,
/// then the per-backend headline lines.
fn print_ratios(results: &[BackendResult], o: &Options) {
    for r in results {
        let backend = r.backend.expect("backend");
        for workers in WORKERS {
            for &op in ops_of(backend, o) {
                let Some(x) = r.ratios.get(&(workers, op)) else {
                    continue;
                };
                let (kept, dropped) = r.kept.get(&(workers, op)).copied().unwrap_or_default();
                let mut line = format!(
                    "  {:<8} {:<6} w{workers}  store/floor {:<18} store/peer {:<18}",
                    backend.name(),
                    op.name(),
                    x.vs_floor.show(),
                    x.vs_peer.show()
                );
                if x.vs_sql.point.is_finite() {
                    line += &format!(
                        " store/store-sql {:<18} store-sql/floor {:<18}",
                        x.vs_sql.show(),
                        x.sql_vs_floor.show()
                    );
                }
                line += &format!(" blocks {kept} (+{dropped} disturbed)");
                if r.runs.len() > 1 {
                    let each = |f: fn(&Ratios) -> Estimate| {
                        r.runs
                            .iter()
                            .map(|x| {
                                x.get(&(workers, op))
                                    .map_or("–".into(), |y| format!("{:.2}", f(y).point))
                            })
                            .collect::<Vec<String>>()
                            .join(" ")
                    };
                    line += &format!(
                        " runs: store/floor {} store/peer {}",
                        each(|x| x.vs_floor),
                        each(|x| x.vs_peer)
                    );
                }
                println!("{}", line.trim_end());
            }
        }
    }
    let (kept, dropped) = results
        .iter()
        .flat_map(|r| r.kept.values())
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    if dropped > kept / 2 {
        println!(
            "note: {dropped} of {} blocks had a disturbed cell (other load on the machine); \
             the intervals show what that cost",
            kept + dropped
        );
    }
    for r in results {
        let h = headline(r);
        println!(
            "{}: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}",
            r.backend.expect("backend").name(),
            h[0].0.point,
            h[1].0.point,
            h[2].0.point,
            h[3].0.point
        );
    }
}

/// The shape of the session whose free text is `note_len` bytes, with the
/// floor's blob as long as stored-session's envelope for it.
pub fn shape(note_len: usize, blob_len: usize) -> Shape {
    Shape { note_len, blob_len }
}
