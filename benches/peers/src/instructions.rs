//! Instructions per operation, counted by callgrind: a measure of the
//! CPU-bound part that does not depend on machine noise (SQLite only, where
//! a load or an update is all in-process work).
//!
//! The harness starts itself under `valgrind --tool=callgrind` once per
//! contender and operation (`--instructions-child`). The child opens a
//! fresh SQLite database without the peer, prepares the sessions, runs each
//! of them once uncounted (statement caches, key cache), then runs the
//! counted operations in [`counted_ops`], the only function callgrind
//! collects in (`--collect-atstart=no --toggle-collect`). Counted: user-space
//! instructions of the calling thread, SQLite's included; not the kernel's.
//! Callgrind emulates the CPU, so the count is of the code paths chosen on
//! the emulated CPU's features (AES-NI, CLMUL, AVX2, no AVX-512 or VAES);
//! it repeats to within a fraction of a percent from run to run.

use std::path::PathBuf;
use std::process::Command;

use crate::contender::{Contender, Op};
use crate::drive::{Cell, Stop};
use crate::setup::{Backend, Bench};
use crate::{fail, shape, Options, NAMES};

/// The contenders counted (the peer runs on a tokio runtime and a worker
/// thread per SQLite connection: not comparable instruction for instruction).
pub const COUNTED: [&str; 3] = ["stored-session", "store-sql", "floor"];
const OPS: [Op; 2] = [Op::Load, Op::Update];

/// Sessions prepared in the child (each counted operation takes the next).
const PREPARED: usize = 1000;

#[derive(Debug, Clone)]
pub struct Table {
    /// Instructions per operation by (contender, op); NaN where it failed.
    pub per_op: Vec<(&'static str, Op, f64)>,
    pub ops: usize,
    /// The command behind each count (with CONTENDER:OP in place).
    pub command: String,
    /// Why the table is empty or partial.
    pub notes: Vec<String>,
}

impl Table {
    pub fn get(&self, contender: &str, op: Op) -> f64 {
        self.per_op
            .iter()
            .find(|(c, o, _)| *c == contender && *o == op)
            .map_or(f64::NAN, |x| x.2)
    }
}

/// The counted operations. Callgrind collects only while this function is
/// on the stack (`--toggle-collect=*counted_ops*`); nothing inside it may
/// match that pattern, so it has no closures.
#[inline(never)]
pub fn counted_ops(contender: &mut dyn Contender, op: Op, n: usize) -> Cell {
    contender.run(op, 1, Stop::Ops(n))
}

/// The child: `CONTENDER:OP`, under callgrind.
pub fn child(spec: &str, o: &Options) {
    let (c, op) = spec
        .split_once(':')
        .unwrap_or_else(|| fail("--instructions-child takes CONTENDER:OP"));
    let idx = (0..4)
        .find(|i| NAMES[*i] == c && *i != 1)
        .unwrap_or_else(|| fail("unknown contender"));
    let op = OPS
        .into_iter()
        .find(|x| x.name() == op)
        .unwrap_or_else(|| fail("unknown op"));
    let mut bench = Bench::open_with(Backend::Sqlite, o, None);
    bench
        .ss
        .prepare(if idx == 0 { PREPARED } else { 1 }, shape(900, 0));
    let blob_len = bench.floor.pool.data_of(&bench.ss.stored_id(0)).len();
    if idx != 0 {
        bench.contender(idx).prepare(PREPARED, shape(900, blob_len));
    }
    let warm = bench.contender(idx).run(op, 1, Stop::Ops(PREPARED));
    assert_eq!(warm.ops, PREPARED);
    let cell = counted_ops(bench.contender(idx), op, o.instr_ops);
    println!("ops {}", cell.ops);
}

/// The total of callgrind's first event (instructions) in its output file.
fn total_instructions(path: &std::path::Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix("totals:")
            .or_else(|| l.strip_prefix("summary:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    })
}

/// Counts every contender's load and update under callgrind.
pub fn run(o: &Options) -> Table {
    let mut table = Table {
        per_op: Vec::new(),
        ops: o.instr_ops,
        command: String::new(),
        notes: Vec::new(),
    };
    let valgrind = std::env::var("VALGRIND").unwrap_or_else(|_| "valgrind".into());
    if Command::new(&valgrind).arg("--version").output().is_err() {
        table.notes.push(format!(
            "No instruction counts: `{valgrind}` not found (Debian: `apt-get install valgrind`)."
        ));
        return table;
    }
    let exe = std::env::current_exe().expect("own executable");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    let _ = std::fs::create_dir_all(&dir);
    let database = format!("{}_instr", o.database);
    table.command = format!(
        "{valgrind} --tool=callgrind --collect-atstart=no '--toggle-collect=*counted_ops*' \
         {} --instructions-child CONTENDER:OP --instr-ops {} --database {database}",
        exe.display(),
        o.instr_ops
    );
    for op in OPS {
        for c in COUNTED {
            eprintln!("  instructions: {c} {} under callgrind", op.name());
            let out = dir.join(format!("callgrind.{c}.{}.out", op.name()));
            let _ = std::fs::remove_file(&out);
            let run = Command::new(&valgrind)
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg("--collect-atstart=no")
                .arg("--toggle-collect=*counted_ops*")
                .arg(&exe)
                .args(["--instructions-child", &format!("{c}:{}", op.name())])
                .args(["--instr-ops", &o.instr_ops.to_string()])
                .args(["--database", &database])
                .output();
            let per_op = match run {
                Ok(r) if r.status.success() => {
                    let stdout = String::from_utf8_lossy(&r.stdout);
                    let ops = stdout
                        .lines()
                        .find_map(|l| l.strip_prefix("ops ")?.trim().parse::<usize>().ok());
                    match (ops, total_instructions(&out)) {
                        (Some(n), Some(total)) if n == o.instr_ops && total > 0.0 => {
                            total / n as f64
                        }
                        (ops, total) => {
                            table.notes.push(format!(
                                "{c} {}: no count (ops {ops:?}, instructions {total:?})",
                                op.name()
                            ));
                            f64::NAN
                        }
                    }
                }
                Ok(r) => {
                    let err = String::from_utf8_lossy(&r.stderr);
                    let tail: Vec<&str> = err.lines().rev().take(5).collect();
                    table.notes.push(format!(
                        "{c} {}: the counted run failed ({}): {}",
                        op.name(),
                        r.status,
                        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                    ));
                    f64::NAN
                }
                Err(e) => {
                    table.notes.push(format!(
                        "{c} {}: could not start {valgrind}: {e}",
                        op.name()
                    ));
                    f64::NAN
                }
            };
            table.per_op.push((c, op, per_op));
        }
    }
    table
}

fn count(x: f64) -> String {
    if x.is_finite() {
        format!("{:.0}", x)
    } else {
        "–".into()
    }
}

fn ratio(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "–".into()
    }
}

/// The table as the terminal shows it.
pub fn text(t: &Table) -> String {
    let mut s = format!(
        "instructions per operation (callgrind, SQLite, {} counted ops each):\n",
        t.ops
    );
    s += &format!(
        "  {:<7} {:>15} {:>10} {:>10} {:>14} {:>17} {:>15}\n",
        "op",
        "stored-session",
        "store-sql",
        "floor",
        "store/floor",
        "store/store-sql",
        "store-sql/floor"
    );
    for op in OPS {
        let (ss, sql, floor) = (
            t.get("stored-session", op),
            t.get("store-sql", op),
            t.get("floor", op),
        );
        s += &format!(
            "  {:<7} {:>15} {:>10} {:>10} {:>14} {:>17} {:>15}\n",
            op.name(),
            count(ss),
            count(sql),
            count(floor),
            ratio(ss / floor),
            ratio(ss / sql),
            ratio(sql / floor)
        );
    }
    for n in &t.notes {
        s += &format!("  note: {n}\n");
    }
    s
}

/// One line for a gate: the instruction ratios and stored-session's counts.
pub fn last_line(t: &Table) -> String {
    let (l, u) = (Op::Load, Op::Update);
    format!(
        "instructions: load/floor={} update/floor={} load/store-sql={} update/store-sql={} load={} update={}",
        ratio(t.get("stored-session", l) / t.get("floor", l)),
        ratio(t.get("stored-session", u) / t.get("floor", u)),
        ratio(t.get("stored-session", l) / t.get("store-sql", l)),
        ratio(t.get("stored-session", u) / t.get("store-sql", u)),
        count(t.get("stored-session", l)),
        count(t.get("stored-session", u)),
    )
}
