//! The full run's report: `BENCHMARKS.md` at the repository root, plus CSV
//! files and (with python3 and matplotlib) a PNG of the growth curves.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::contender::Op;
use crate::growth::{self, Curves};
use crate::{headline, BackendResult, Options, WORKERS};

const CONTENDERS: [&str; 4] = ["stored-session", "store-sql", "floor", "tower-sqlx"];
const FLOOR_TARGET: f64 = 1.15;

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

fn mode(workers: usize) -> &'static str {
    if workers == 1 {
        "sequential"
    } else {
        "8 workers"
    }
}

pub fn write(
    path: &Path,
    o: &Options,
    results: &[BackendResult],
    curves: &Curves,
    worst: [f64; 4],
    elapsed: Duration,
) {
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
         8 concurrent workers (the `--quick` mode prints the same line):\n"
    );
    let _ = writeln!(
        w,
        "```text\nratios: load/floor={:.2} update/floor={:.2} load/peer={:.2} update/peer={:.2}\n```\n",
        worst[0], worst[1], worst[2], worst[3]
    );
    let _ = writeln!(
        w,
        "| backend | load / floor | update / floor | load / peer | update / peer | \
         within {FLOOR_TARGET}x of the floor | at least as fast as the peer |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---|---|");
    for r in results {
        let h = headline(r);
        let yes = |ok: bool| if ok { "yes" } else { "**no**" };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.backend.expect("backend").name(),
            ratio(h[0]),
            ratio(h[1]),
            ratio(h[2]),
            ratio(h[3]),
            yes(h[0] <= FLOOR_TARGET && h[1] <= FLOOR_TARGET),
            yes(h[2] <= 1.0 && h[3] <= 1.0),
        );
    }
    let _ = writeln!(
        w,
        "\nWhere the gap to the floor comes from: `store-sql` runs stored-session's own load and \
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
            let t = |op, c: &str| {
                r.cells
                    .get(&(workers, op, c))
                    .map_or(f64::NAN, |s| s.iqm_us)
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} |",
                r.backend.expect("backend").name(),
                mode(workers),
                ratio(r.ratios[&(workers, Op::Load)].vs_sql),
                ratio(t(Op::Load, "store-sql") / t(Op::Load, "floor")),
                ratio(r.ratios[&(workers, Op::Update)].vs_sql),
                ratio(t(Op::Update, "store-sql") / t(Op::Update, "floor")),
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
    let _ = writeln!(
        w,
        "Each of {} rounds runs load, update, create and delete, sequentially and with 8 \
         concurrent workers (each on its own share of {} prepared sessions), in cells of {} ms \
         (loads) and {} ms (writes, which wait on the disk's flush on PostgreSQL and MariaDB); \
         the contenders alternate cell by cell in an order that rotates each round, so that the \
         noise of this shared machine falls on all of them alike, and a first round is \
         discarded as warm-up. Each contender's latencies are pooled over the rounds. \
         **Typical** is the interquartile mean (the mean of the middle half of the latencies): \
         unlike the mean it ignores the rare multi-millisecond stalls of a shared machine, and \
         unlike the median it follows a two-humped distribution such as commits that wait for \
         one or two disk flushes. All ratios are ratios of typical times (lower is better).\n",
        o.rounds,
        o.prepared,
        o.budget.as_millis(),
        o.write_budget.as_millis(),
    );

    let _ = writeln!(w, "## Machine and versions\n");
    let _ = writeln!(w, "| | |\n|---|---|");
    for (k, v) in machine() {
        let _ = writeln!(w, "| {k} | {v} |");
    }
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

    for r in results {
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
                        let x = r.ratios[&(workers, op)];
                        (
                            format!("**{c}**"),
                            ratio(x.vs_floor),
                            ratio(x.vs_sql),
                            ratio(x.vs_peer),
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
            "Sequential load and update, typical µs per operation, the contenders alternating as \
             above ({} rounds); the floor moves a blob as long as stored-session's envelope.\n",
            o.rounds.clamp(1, 10)
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
                ratio(p.vs_floor),
                ratio(p.vs_sql),
                p.vs_peer.map_or("n/a".into(), ratio),
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
         `BENCH_POSTGRES_URL`, `BENCH_MYSQL_URL`); the harness drops and recreates the database \
         `{}` on each.\n",
        o.database
    );
    let _ = writeln!(
        w,
        "```sh\ncd benches/peers\ncargo run --release            # this report ({:.0} min here)\n\
         cargo run --release -- --quick # regression check, < 60 s; last line = worst ratios\n\
         python3 plot.py                # the growth PNG from results/growth.csv\n\
         cd ../.. && cargo bench        # criterion micro-benchmarks (ns/op)\n```",
        elapsed.as_secs_f64() / 60.0
    );
    std::fs::write(path, md).expect("write the report");
}
