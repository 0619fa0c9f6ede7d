//! The full run's report: `BENCHMARKS.md` at the repository root, plus CSV
//! files and (with python3 and matplotlib) a PNG of the growth curves.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::contender::Op;
use crate::growth::{self, Curves};
use crate::instructions::{self, Table};
use crate::listing::ListingPoint;
use crate::setup::Backend;
use crate::stats::{self, Estimate};
use crate::{headline, throughput, BackendResult, Options, Ratios, HEADLINE, WORKERS};

const CONTENDERS: [&str; 4] = ["stored-session", "store-sql", "floor", "tower-sqlx"];
/// Issue 16's targets over the floor: (load, update) per backend.
fn floor_targets(backend: Backend) -> (f64, f64) {
    match backend {
        Backend::Sqlite => (1.25, 1.15),
        _ => (1.10, 1.10),
    }
}

/// Issue 16's targets over the peer: load and update.
const PEER_TARGETS: (f64, f64) = (0.5, 1.0);

/// Versions of the crates compared, from this crate's lock file.
fn crate_version(name: &str) -> String {
    let lock = include_str!("../Cargo.lock");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = ")) {
                return v.trim_matches('"').to_owned();
            }
        }
    }
    "?".into()
}

fn first_line_of(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        l.starts_with(key)
            .then(|| l.split_once(':').map(|(_, v)| v.trim().to_owned()))
            .flatten()
    })
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

fn machine() -> Vec<(String, String)> {
    let cpu = first_line_of("/proc/cpuinfo", "model name").unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = first_line_of("/proc/meminfo", "MemTotal")
        .and_then(|m| {
            m.split_whitespace()
                .next()
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or("?".into(), |kib| {
            format!("{:.0} GiB", kib / 1024.0 / 1024.0)
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("?".into(), |s| s.trim().to_owned());
    vec![
        ("CPU".into(), format!("{cpu} ({cores} cores)")),
        ("Memory".into(), mem),
        ("Kernel".into(), format!("Linux {kernel}")),
        ("Rust".into(), command_output("rustc", &["--version"])),
    ]
}

/// The benchmarks of `benches/micro.rs` and `benches/sqlite.rs`.
const CRITERION: [&str; 9] = [
    "id/parse_and_hash",
    "envelope/seal_1k",
    "envelope/seal_1k_new_salt",
    "envelope/open_1k",
    "msgpack/encode_1k",
    "msgpack/decode_1k",
    "sqlite/load_1k",
    "sqlite/commit_update_1k",
    "sqlite/commit_create_1k",
];

/// Criterion's point estimates (ns) found under `dir`: the slope where it
/// fitted one, else the mean.
fn criterion_estimates(dir: &Path) -> Vec<(&'static str, f64)> {
    CRITERION
        .iter()
        .filter_map(|name| {
            let text = std::fs::read_to_string(
                dir.join(name.replace('/', "_")).join("new/estimates.json"),
            )
            .ok()?;
            let json: serde_json::Value = serde_json::from_str(&text).ok()?;
            let point = |k: &str| json.get(k)?.get("point_estimate")?.as_f64();
            Some((*name, point("slope").or_else(|| point("mean"))?))
        })
        .collect()
}

fn us(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

/// `1.62 [1.58-1.66]`, or a dash.
fn est(e: Estimate) -> String {
    e.show()
}

fn mode(workers: usize) -> &'static str {
    if workers == 1 {
        "sequential"
    } else {
        "8 workers"
    }
}

/// Everything a full run measured.
pub struct Run<'a> {
    pub results: &'a [BackendResult],
    pub curves: &'a Curves,
    pub listings: &'a [ListingPoint],
    pub instructions: Option<&'a Table>,
    /// The worst headline ratios (pooled over the runs) and where they are.
    pub worst: [(Estimate, Option<Backend>, usize); 4],
    /// The worst headline of each run alone.
    pub runs: &'a [[f64; 4]],
    pub elapsed: Duration,
    /// Load averages before and after.
    pub load: (String, String),
}

/// `min-max (±x%)` of independent runs' values.
fn spread_of(xs: &[f64]) -> String {
    let (lo, hi, half) = stats::spread(xs);
    if lo.is_finite() {
        format!("{lo:.2}-{hi:.2} (±{:.1}%)", half * 100.0)
    } else {
        "–".into()
    }
}

/// Each run's point estimate of one ratio of one backend.
fn per_run(r: &BackendResult, workers: usize, op: Op, f: fn(&Ratios) -> Estimate) -> Vec<f64> {
    r.runs
        .iter()
        .filter_map(|x| x.get(&(workers, op)).map(|y| f(y).point))
        .collect()
}

pub fn write(path: &Path, o: &Options, run: &Run<'_>) {
    let results = run.results;
    let curves = run.curves;
    let worst = run.worst;
    let elapsed = run.elapsed;
    let results_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    if let Err(e) = growth::write_csv(curves, &results_dir) {
        eprintln!("could not write the CSV files: {e}");
    }
    let plotted = (!curves.sizes.is_empty()).then(|| {
        std::process::Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("plot.py"))
            .status()
            .is_ok_and(|s| s.success())
    }) == Some(true);
    if !plotted && !curves.sizes.is_empty() {
        eprintln!("no plot: `pip install matplotlib` and run `python3 benches/peers/plot.py`");
    }
    let main: Vec<&BackendResult> = results
        .iter()
        .filter(|r| r.backend != Some(Backend::Galera))
        .collect();

    let mut md = String::new();
    let w = &mut md;
    let today = time::OffsetDateTime::now_utc().date();
    let _ = writeln!(w, "# Benchmarks\n");
    let _ = writeln!(
        w,
        "Measured on {today} by the side-by-side harness in `benches/peers/` (issue 6); this \
         file is its output. Lower latency ratios are better; 1.00 means as fast as the \
         reference.\n"
    );
    let _ = writeln!(w, "## Headline\n");
    let _ = writeln!(
        w,
        "stored-session's typical time per operation divided by the floor's and by \
         tower-sessions-sqlx-store's, the worst over the three backends and over sequential / \
         8 concurrent workers (the `--quick` mode prints the same line), pooled over {} \
         independent runs:\n",
        o.repeat
    );
    let _ = writeln!(
        w,
        "```text\nratios: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}\n```\n",
        worst[0].0.point, worst[1].0.point, worst[2].0.point, worst[3].0.point
    );
    let _ = writeln!(
        w,
        "| ratio | value [95% interval] | where | each run | run-to-run spread |"
    );
    let _ = writeln!(w, "|---|---:|---|---|---|");
    for k in 0..4 {
        let xs: Vec<f64> = run.runs.iter().map(|r| r[k]).collect();
        let each: Vec<String> = xs.iter().map(|x| format!("{x:.2}")).collect();
        let (e, b, workers) = worst[k];
        let _ = writeln!(
            w,
            "| {} | {} | {} {} | {} | {} |",
            HEADLINE[k],
            est(e),
            b.map_or("?", Backend::name),
            mode(workers),
            each.join(", "),
            spread_of(&xs)
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| backend | load / floor | update / floor | load / peer | update / peer | \
         floor targets (load, update) | peer targets ({}, {}) |",
        PEER_TARGETS.0, PEER_TARGETS.1
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---|---|");
    for r in &main {
        let h = headline(r);
        let backend = r.backend.expect("backend");
        let (load_target, update_target) = floor_targets(backend);
        let met = |ok: bool| if ok { "met" } else { "**missed**" };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {load_target}, {update_target}: {}, {} | {}, {} |",
            backend.name(),
            est(h[0].0),
            est(h[1].0),
            est(h[2].0),
            est(h[3].0),
            met(h[0].0.point <= load_target),
            met(h[1].0.point <= update_target),
            met(h[2].0.point <= PEER_TARGETS.0),
            met(h[3].0.point <= PEER_TARGETS.1),
        );
    }
    let _ = writeln!(
        w,
        "\n**Throughput** with 8 workers, each loading one of its own sessions by id, \
         changing its CSRF token and writing it back (a request that writes), in \
         load-modify-save pairs per second (higher is better; target: at least the \
         peer's):\n"
    );
    let _ = writeln!(
        w,
        "| backend | stored-session | tower-sqlx | floor | store / peer | store / floor | target |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---|");
    for r in results {
        let Some(t) = throughput(r) else { continue };
        let _ = writeln!(
            w,
            "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            r.backend.expect("backend").name(),
            t.store,
            t.peer,
            t.floor,
            est(t.vs_peer),
            est(t.vs_floor),
            if t.vs_peer.point >= 1.0 {
                "met"
            } else {
                "**missed**"
            }
        );
    }
    let _ = writeln!(
        w,
        "\nEach figure is the typical ratio over the kept blocks of all runs with its 95% \
         bootstrap interval in brackets (see *How it is measured*).\n"
    );

    let _ = writeln!(w, "### Run-to-run spread\n");
    let _ = writeln!(
        w,
        "The same ratios measured in each of the {} runs alone (each on a freshly created \
         database, pools and sessions): lowest-highest, and half that range over the \
         median.\n",
        o.repeat
    );
    let _ = writeln!(
        w,
        "| backend | workers | load / floor | update / floor | load / peer | update / peer |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|");
    for r in &main {
        for workers in WORKERS {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                r.backend.expect("backend").name(),
                mode(workers),
                spread_of(&per_run(r, workers, Op::Load, |x| x.vs_floor)),
                spread_of(&per_run(r, workers, Op::Update, |x| x.vs_floor)),
                spread_of(&per_run(r, workers, Op::Load, |x| x.vs_peer)),
                spread_of(&per_run(r, workers, Op::Update, |x| x.vs_peer)),
            );
        }
    }
    let _ = writeln!(w);

    if let Some(t) = run.instructions {
        let _ = writeln!(w, "### Instructions per operation\n");
        let _ = writeln!(
            w,
            "The CPU-bound part without machine noise: user-space instructions per operation on \
             SQLite, counted by callgrind over {} sequential operations after one uncounted \
             pass over the 1,000 prepared sessions (SQLite's own work included, the kernel's \
             not). `cargo run --release -- --instructions` prints this table alone; it repeats \
             to within a fraction of a percent, so a change of a few percent is a real change.\n",
            t.ops
        );
        let _ = writeln!(
            w,
            "| op | stored-session | store-sql | floor | store / floor | store / store-sql | store-sql / floor |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|");
        for op in [Op::Load, Op::Update] {
            let (ss, sql, floor) = (
                t.get("stored-session", op),
                t.get("store-sql", op),
                t.get("floor", op),
            );
            let n = |x: f64| {
                if x.is_finite() {
                    format!("{x:.0}")
                } else {
                    "–".into()
                }
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} |",
                op.name(),
                n(ss),
                n(sql),
                n(floor),
                ratio(ss / floor),
                ratio(ss / sql),
                ratio(sql / floor)
            );
        }
        let _ = writeln!(w, "\n```text\n{}\n```\n", instructions::last_line(t));
        for note in &t.notes {
            let _ = writeln!(w, "* {note}");
        }
        if !t.notes.is_empty() {
            let _ = writeln!(w);
        }
    } else {
        let _ = writeln!(
            w,
            "(No instruction counts in this run: `--no-instructions`.)\n"
        );
    }

    let _ = writeln!(
        w,
        "Where the gap to the floor comes from: `store-sql` runs stored-session's own load and \
         update statements, raw, with no hashing, encryption or encoding. stored-session / \
         store-sql is what the store's security work costs; store-sql / floor is what its SQL \
         costs over the minimal statements (live-row filters, four columns read, the \
         compare-and-swap update that also checks and bumps `version`).\n"
    );
    let _ = writeln!(
        w,
        "| backend | workers | load: store / store-sql | load: store-sql / floor | update: store / store-sql | update: store-sql / floor |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|");
    for r in results {
        for workers in WORKERS {
            let x = |op| r.ratios.get(&(workers, op)).copied().unwrap_or_default();
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                r.backend.expect("backend").name(),
                mode(workers),
                est(x(Op::Load).vs_sql),
                est(x(Op::Load).sql_vs_floor),
                est(x(Op::Update).vs_sql),
                est(x(Op::Update).sql_vs_floor),
            );
        }
    }
    let _ = writeln!(w);
    let analysis = Path::new(env!("CARGO_MANIFEST_DIR")).join("ANALYSIS.md");
    if let Ok(text) = std::fs::read_to_string(&analysis) {
        let _ = writeln!(w, "{}\n", text.trim_end());
    }

    let _ = writeln!(w, "## What is compared\n");
    let _ = writeln!(
        w,
        "Each backend gets a freshly created database holding every contender's table. \
         The session is the same everywhere: a user id, a 43-character CSRF token and a \
         900-byte string (stored-session's envelope for it: {} bytes).\n",
        results.first().map_or(0, |r| r.envelope_len)
    );
    let _ = writeln!(
        w,
        "* **stored-session** (this crate, {}): `store.load(cookie)`; update = change the CSRF \
         token and `store.commit` (encode, AES-256-GCM seal, one compare-and-swap UPDATE); \
         create = `load(None)`, three inserts, `commit` (new id, HKDF, seal, INSERT); delete = \
         `destroy()` and `commit`. Blocking, one OS thread per worker, its own r2d2 pool.\n\
         * **tower-sqlx**: `tower-sessions-sqlx-store` {} (tower-sessions-core {}, sqlx {}) \
         through its `SessionStore` trait: `load`, `save` (its upsert) after changing the \
         token, `create`, `delete`; one tokio task per worker on the default multi-thread \
         runtime. Its pools get `test_before_acquire(false)` (sqlx's default check would add a \
         round trip per operation, as r2d2's `test_on_check_out` does and stored-session turns \
         off) and, on SQLite, WAL and `synchronous = NORMAL` like the store's.\n\
         * **floor**: raw Diesel {} on stored-session's table through an r2d2 pool configured \
         like the store's: `SELECT data … WHERE sid = ?`, `UPDATE … SET data = ? WHERE sid = \
         ?`, `INSERT`, `DELETE … WHERE sid = ?`, with a blob of the envelope's length, no \
         hashing, no encryption, no encoding; like the store's, every statement is prepared \
         once per connection.",
        crate_version("stored-session"),
        crate_version("tower-sessions-sqlx-store"),
        crate_version("tower-sessions-core"),
        crate_version("sqlx"),
        crate_version("diesel"),
    );
    let _ = writeln!(
        w,
        "* **store-sql** (load and update only): stored-session's own statements through the \
         same kind of pool, raw: the SELECT with its live-row filters and four columns, the \
         compare-and-swap UPDATE as an ordinary write runs it (the store's own statement \
         type, through `stored_session::__bench`).\n"
    );
    let _ = writeln!(w, "### How it is measured\n");
    let _ = writeln!(
        w,
        "{} independent runs, each on a freshly created database with {} prepared sessions. \
         In each run, each of {} rounds measures one **block** per operation (load, update, \
         create, delete), sequentially and with 8 concurrent workers (each on its own share of \
         the sessions for writes; loads walk all of them from different offsets): every \
         contender once, in cells of {} ms (loads) and {} ms (writes), back to back, in an \
         order that rotates each round, the process left to go quiet between cells (no thread \
         of the previous contender still running); a first round is discarded as warm-up. \
         Where the warm-up round shows a cell would hold fewer than 20 operations (a commit \
         that waits for the disk's flush takes milliseconds), that kind of cell gets longer, \
         up to 6 times the budget{}. **Typical** is the interquartile mean of a cell's \
         latencies (the mean of the middle half): unlike the mean it ignores the rare \
         multi-millisecond stalls of a shared machine, and unlike the median it follows a \
         two-humped distribution such as commits that wait for one or two disk flushes.\n",
        o.repeat,
        o.prepared,
        o.rounds,
        o.budget.as_millis(),
        o.write_budget.as_millis(),
        {
            let mut longer: Vec<String> = results
                .iter()
                .flat_map(|r| {
                    let mut v: Vec<_> = r.longer_cells.iter().collect();
                    v.sort_by_key(|((w, op), _)| (*w, op.name()));
                    v.into_iter().map(move |((workers, op), d)| {
                        format!(
                            "{} {} {}: {} ms",
                            r.backend.map_or("?", Backend::name),
                            op.name(),
                            mode(*workers),
                            d.as_millis()
                        )
                    })
                })
                .collect();
            longer.dedup();
            if longer.is_empty() {
                String::new()
            } else {
                format!(" (in this run: {})", longer.join(", "))
            }
        }
    );
    let _ = writeln!(
        w,
        "**Ratios are taken within each block** (stored-session's typical time over the other \
         contender's, measured a few milliseconds apart), so that whatever slows the machine \
         for a moment falls on both sides. **Disturbed cells are dropped** (and with them the \
         block's ratios that use them): around every cell the harness reads the run-queue \
         delay of its own threads (`/proc/thread-self/schedstat`: time runnable but waiting \
         for a CPU) and the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`). On SQLite, where \
         all the work is the process's own: with one thread per core or fewer, a cell is \
         disturbed when its threads waited for a CPU, per second of CPU they got, clearly longer \
         than the quietest quarter of cells of its kind (by more than 0.1 s and a quarter; this \
         ignores waiting on the disk); 8 CPU-bound workers on this 2-core machine wait for each \
         other anyway, so a cell of theirs is disturbed when it got less than 80% of the CPU \
         share of its kind's busiest tenth (another \
         process held a core). On a server the client's waits vary widely anyway (its wake-ups \
         compete with the server's threads) and load on the server is invisible from the \
         client, so only gross outliers are dropped (a wait above the median by 6 median \
         absolute deviations) and the pairing does the rest. Cells with fewer than 5 operations \
         (stalls) are dropped everywhere. Dropped cells are not replaced one for one: after the rounds, \
         load and update get more blocks where a headline ratio's interval is widest, until \
         each is within ±{:.1}% or {} s per backend and run are used. A ratio is then the \
         interquartile mean of the kept blocks' ratios on a log scale, and its **95% \
         interval** a percentile bootstrap (2,000 resamples of the blocks, within each run). \
         The **spread** is the range of the runs' own estimates: what a second run on another \
         day may show. The tables of latencies pool the kept cells of all runs.\n",
        o.target_ci * 100.0,
        o.extra.as_secs()
    );
    let _ = writeln!(
        w,
        "| backend | workers | op | blocks (store, floor and peer kept) | blocks with a disturbed cell among them |"
    );
    let _ = writeln!(w, "|---|---|---|---:|---:|");
    for r in results {
        for workers in WORKERS {
            for op in Op::ALL {
                if let Some((kept, dropped)) = r.kept.get(&(workers, op)) {
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {kept} | {dropped} |",
                        r.backend.expect("backend").name(),
                        mode(workers),
                        op.name()
                    );
                }
            }
        }
    }
    let _ = writeln!(w);

    let _ = writeln!(w, "## Machine and versions\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(w, "| {k} | {v} |");
    }
    let _ = writeln!(
        w,
        "| Load average (1, 5, 15 min) | {} before, {} after the run |",
        run.load.0, run.load.1
    );
    for r in results {
        let _ = writeln!(
            w,
            "| {} | {} |",
            r.backend.expect("backend").name(),
            r.server.lines().next().unwrap_or("?")
        );
    }
    for name in [
        "stored-session",
        "tower-sessions-sqlx-store",
        "sqlx",
        "diesel",
        "tokio",
        "libsqlite3-sys",
    ] {
        let _ = writeln!(w, "| {name} | {} |", crate_version(name));
    }
    let _ = writeln!(
        w,
        "\nThe machine is shared and noisy (2 cores, other builds running): absolute numbers \
         move between runs; the ratios, measured side by side, are what to compare.\n"
    );

    for r in &main {
        backend_table(w, r);
    }

    galera_section(w, o, results);

    let micro = criterion_estimates(&o.criterion);
    if !micro.is_empty() {
        let _ = writeln!(w, "## Criterion micro-benchmarks\n");
        let _ = writeln!(
            w,
            "`cargo bench` in the main crate (`benches/micro.rs`, `benches/sqlite.rs`), the ~1 KiB \
             session; criterion's estimate per operation from its last run on this machine.\n"
        );
        let _ = writeln!(w, "| benchmark | time per operation |\n|---|---:|");
        for (name, ns) in micro {
            let shown = if ns >= 1000.0 {
                format!("{:.2} µs", ns / 1000.0)
            } else {
                format!("{ns:.0} ns")
            };
            let _ = writeln!(w, "| `{name}` | {shown} |");
        }
        let _ = writeln!(w);
    }

    if !curves.sizes.is_empty() {
        let _ = writeln!(w, "## Cost growth with session size\n");
        let _ = writeln!(
            w,
            "Sequential load and update, typical µs per operation, the contenders alternating in \
             blocks as above ({} rounds, cells of {} ms for loads and {} ms for updates); the \
             ratios are paired per block, with their 95% interval; the floor moves a blob as \
             long as stored-session's envelope.\n",
            o.growth_rounds,
            o.growth_cell.as_millis(),
            (o.growth_cell * 8 / 3).as_millis()
        );
        if plotted || results_dir.join("growth.png").exists() {
            let _ = writeln!(w, "![growth](benches/peers/results/growth.png)\n");
        }
        let _ = writeln!(
            w,
            "| backend | session | envelope B | op | stored-session µs | store-sql µs | floor µs | tower-sqlx µs | vs floor | vs store-sql | vs peer |"
        );
        let _ = writeln!(w, "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for p in &curves.sizes {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.backend.name(),
                p.label,
                p.envelope_len,
                p.op.name(),
                us(p.ss.iqm_us),
                us(p.sql.iqm_us),
                us(p.floor.iqm_us),
                p.peer.map_or("n/a".into(), |s| us(s.iqm_us)),
                est(p.vs_floor),
                est(p.vs_sql),
                p.vs_peer.map_or("n/a".into(), est),
            );
        }
        let _ = writeln!(w);
    }
    if !curves.trims.is_empty() {
        let _ = writeln!(w, "## Trimming\n");
        let _ = writeln!(
            w,
            "All rows expired (1 KiB-envelope rows). `trim_inactive` deletes them in batches of \
             1,000 by primary key, one short transaction each; the floor is one `DELETE … WHERE \
             updated_at <= cutoff` statement (one long lock).\n"
        );
        let _ = writeln!(
            w,
            "| backend | rows | trim_inactive s | batches | rows/s | one DELETE s |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
        for t in &curves.trims {
            let _ = writeln!(
                w,
                "| {} | {} | {:.2} | {} | {:.0} | {:.2} |",
                t.backend.name(),
                t.rows,
                t.ss_secs,
                t.ss_batches,
                t.ss_deleted as f64 / t.ss_secs,
                t.floor_secs
            );
        }
        let _ = writeln!(w);
    }
    listing_section(w, o, run.listings);
    if !curves.notes.is_empty() {
        let _ = writeln!(w, "Notes:\n");
        for n in &curves.notes {
            let _ = writeln!(w, "* {n}");
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "## Reproduce\n");
    let _ = writeln!(
        w,
        "Needs the PostgreSQL and MySQL/MariaDB servers (URLs: `--postgres`, `--mysql` or \
         `BENCH_POSTGRES_URL`, `BENCH_MYSQL_URL`), for the Galera section a cluster node \
         (`--galera` or `BENCH_GALERA_URL`; `scripts/galera.sh up` starts one), and valgrind \
         for the instruction counts; the harness drops and recreates the database `{}` on \
         each.\n",
        o.database
    );
    let _ = writeln!(
        w,
        "```sh\ncd benches/peers\n\
         BENCH_GALERA_URL=mysql://root@127.0.0.1:4306/galtest \\\n  \
         cargo run --release            # this report ({:.0} min here)\n\
         cargo run --release -- --quick # regression check (two runs, about a minute); last line = worst ratios\n\
         cargo run --release -- --quick --repeat 3  # the same, with the run-to-run spread\n\
         cargo run --release -- --instructions      # instructions per operation (callgrind)\n\
         python3 plot.py                # the growth PNG from results/growth.csv\n\
         cd ../.. && cargo bench        # criterion micro-benchmarks (ns/op)\n```",
        elapsed.as_secs_f64() / 60.0
    );
    std::fs::write(path, md).expect("write the report");
}

/// One backend's detailed table: pooled latencies and the paired ratios.
fn backend_table(w: &mut String, r: &BackendResult) {
    let _ = writeln!(w, "## {}\n", r.server.lines().next().unwrap_or("?"));
    let _ = writeln!(
        w,
        "| op | workers | contender | ops/s | typical µs | p50 µs | p99 µs | mean µs | vs floor | vs store-sql | vs peer |"
    );
    let _ = writeln!(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for op in Op::ALL {
        for workers in WORKERS {
            for c in CONTENDERS {
                let Some(s) = r.cells.get(&(workers, op, c)) else {
                    continue;
                };
                let (name, vf, vs, vp) = if c == "stored-session" {
                    let x = r.ratios.get(&(workers, op)).copied().unwrap_or_default();
                    (
                        format!("**{c}**"),
                        est(x.vs_floor),
                        est(x.vs_sql),
                        est(x.vs_peer),
                    )
                } else {
                    (c.to_owned(), String::new(), String::new(), String::new())
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {name} | {:.0} | {} | {} | {} | {} | {vf} | {vs} | {vp} |",
                    op.name(),
                    mode(workers),
                    s.ops_per_s,
                    us(s.iqm_us),
                    us(s.p50_us),
                    us(s.p99_us),
                    us(s.mean_us),
                );
            }
        }
    }
    let _ = writeln!(w);
}

/// The Galera cluster next to the single MariaDB server.
fn galera_section(w: &mut String, o: &Options, results: &[BackendResult]) {
    let _ = writeln!(w, "## MariaDB Galera cluster next to the single server\n");
    let single = results.iter().find(|r| r.backend == Some(Backend::Mysql));
    let Some(galera) = results.iter().find(|r| r.backend == Some(Backend::Galera)) else {
        let why = if o.galera_admin.is_none() {
            "no cluster was given (`--galera URL` or `BENCH_GALERA_URL`; `scripts/galera.sh up` \
             starts a 3-node cluster on 127.0.0.1:4306-4308)"
        } else {
            "its measurement failed (see the notes)"
        };
        let _ = writeln!(w, "Not measured in this run: {why}.\n");
        return;
    };
    let _ = writeln!(
        w,
        "{}, measured like the single server (same blocks, same contenders; load and update \
         only; the store on a Galera node makes each load and commit a causal one, \
         `wsrep_sync_wait`). Every commit on the cluster is certified by all \
         nodes before it returns. Typical µs per operation; the ratios are paired per block \
         with their 95% interval.\n",
        galera.server
    );
    let _ = writeln!(
        w,
        "| op | workers | stored-session µs: server | cluster | cluster / server | floor µs: server | cluster | store / floor: server | cluster | store / peer: cluster |"
    );
    let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for op in [Op::Load, Op::Update] {
        for workers in WORKERS {
            let t = |r: Option<&BackendResult>, c: &str| {
                r.and_then(|r| r.cells.get(&(workers, op, c)))
                    .map_or(f64::NAN, |s| s.iqm_us)
            };
            let x = |r: Option<&BackendResult>| {
                r.and_then(|r| r.ratios.get(&(workers, op)))
                    .copied()
                    .unwrap_or_default()
            };
            let (ss1, ssg) = (
                t(single, "stored-session"),
                t(Some(galera), "stored-session"),
            );
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                op.name(),
                mode(workers),
                us(ss1),
                us(ssg),
                ratio(ssg / ss1),
                us(t(single, "floor")),
                us(t(Some(galera), "floor")),
                est(x(single).vs_floor),
                est(x(Some(galera)).vs_floor),
                est(x(Some(galera)).vs_peer),
            );
        }
    }
    let _ = writeln!(w);
    backend_table(w, galera);
}

/// The per-user listing costs.
fn listing_section(w: &mut String, o: &Options, points: &[ListingPoint]) {
    let _ = writeln!(w, "## Per-user listing\n");
    if points.is_empty() {
        let _ = writeln!(
            w,
            "Not measured in this run{}.\n",
            if o.listing {
                " (see the notes)"
            } else {
                ": `--no-listing`"
            }
        );
        return;
    }
    let _ = writeln!(
        w,
        "`SessionStore::sessions_of(user, None, Page::default())`: the first page (50 \
         sessions, newest first) of a user with 1, 100 and 10,000 live sessions in the \
         benchmark table, and walking all of them page by page with the cursor. The sessions \
         carry a device and a user-agent field, like a \"where you're signed in\" page shows; \
         the planner's statistics are refreshed after seeding (`ANALYZE`). First page: \
         typical and p99 over {} rounds of {} ms cells, the users alternating, and the first \
         page's typical time over that of the user with the fewest sessions that fill a page \
         (paired per round, 95% interval). A bounded listing keeps the first page flat from \
         100 to 10,000 sessions.\n",
        o.growth_rounds,
        o.growth_cell.as_millis()
    );
    let _ = writeln!(
        w,
        "| backend | user's sessions | on the first page | first page µs | p99 µs | µs per listed session | vs the first full page | all pages | all pages ms | µs per session | seeded in s |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in points {
        let walk_us = p.walk.as_secs_f64() * 1e6;
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {:.1} |",
            p.backend.name(),
            p.sessions,
            p.page_len,
            us(p.first_page.iqm_us),
            us(p.first_page.p99_us),
            us(p.first_page.iqm_us / p.page_len.max(1) as f64),
            est(p.vs_full),
            p.pages,
            walk_us / 1e3,
            us(walk_us / p.sessions.max(1) as f64),
            p.seed_secs,
        );
    }
    let _ = writeln!(w);
}
