//! Cost growth: load and update at 100 B, 1 KiB, 16 KiB and 256 KiB sessions
//! (sequential, the contenders alternating as in the main matrix), and
//! trimming 10k, 100k and 1M expired rows.

use std::io::Write as _;
use std::time::Instant;

use crate::contender::{Contender, Op, Shape};
use crate::drive::{Cell, Stop, Summary};
use crate::setup::{Backend, Bench};
use crate::stats::{paired, Estimate};
use crate::Options;

/// Session sizes: label, target plaintext bytes, length of the free-text value.
/// The 1 KiB point is the main matrix's session (a 900-byte string).
pub const SIZES: [(&str, usize); 4] = [
    ("100 B", 4),
    ("1 KiB", 900),
    ("16 KiB", 16 * 1024 - 96),
    ("256 KiB", 256 * 1024 - 96),
];

/// The peer's MySQL table stores `data` in a BLOB (at most 65,535 bytes).
const MYSQL_BLOB_MAX: usize = 65_535;

#[derive(Debug, Clone)]
pub struct SizePoint {
    pub backend: Backend,
    pub label: &'static str,
    pub envelope_len: usize,
    pub op: Op,
    pub ss: Summary,
    pub peer: Option<Summary>,
    pub floor: Summary,
    pub sql: Summary,
    /// Paired per-round ratios of typical times (see `stats::paired`).
    pub vs_floor: Estimate,
    pub vs_peer: Option<Estimate>,
    pub vs_sql: Estimate,
}

#[derive(Debug, Clone)]
pub struct TrimPoint {
    pub backend: Backend,
    pub rows: usize,
    /// `trim_inactive`: seconds, rows deleted, batches.
    pub ss_secs: f64,
    pub ss_deleted: u64,
    pub ss_batches: u64,
    /// One `DELETE … WHERE updated_at <= cutoff` statement.
    pub floor_secs: f64,
}

#[derive(Debug, Default)]
pub struct Curves {
    pub sizes: Vec<SizePoint>,
    pub trims: Vec<TrimPoint>,
    pub notes: Vec<String>,
}

/// Load and update at each session size on one backend.
pub fn sizes(bench: &mut Bench, o: &Options, curves: &mut Curves) {
    let rounds = o.growth_rounds;
    for (label, note_len) in SIZES {
        let n = if note_len > 100_000 { 50 } else { 200 };
        let mut shape = Shape {
            note_len,
            blob_len: 0,
        };
        bench.ss.prepare(n, shape);
        shape.blob_len = bench.floor.pool.data_of(&bench.ss.stored_id(0)).len();
        bench.floor.prepare(n, shape);
        bench.sql.prepare(n, shape);
        let with_peer = !(bench.backend == Backend::Mysql && note_len > MYSQL_BLOB_MAX);
        let who: &[usize] = if with_peer {
            bench.contender(1).prepare(n, shape);
            &[0, 1, 2, 3]
        } else {
            let note = format!(
                "tower-sessions-sqlx-store cannot store the {label} session on MySQL/MariaDB: \
                 its table keeps `data` in a BLOB (at most 64 KiB)."
            );
            if !curves.notes.contains(&note) {
                curves.notes.push(note);
            }
            &[0, 2, 3]
        };
        eprintln!(
            "  {} {label}: envelope {} B",
            bench.backend.name(),
            shape.blob_len
        );
        for op in [Op::Load, Op::Update] {
            let budget = match op {
                Op::Load => o.growth_cell,
                _ => o.growth_cell * 8 / 3,
            };
            let mut pooled: [Cell; 4] = Default::default();
            // Per round, each contender's typical time (for paired ratios).
            let mut typical: Vec<[f64; 4]> = Vec::new();
            for round in 0..=rounds {
                let mut t = [f64::NAN; 4];
                for k in 0..who.len() {
                    let idx = who[(k + round) % who.len()];
                    let cell = bench.contender(idx).run(op, 1, Stop::After(budget));
                    if round > 0 {
                        pooled[idx].absorb(&cell);
                        t[idx] = cell.summary().iqm_us;
                    }
                }
                if round > 0 {
                    typical.push(t);
                }
            }
            let vs = |other: usize| {
                paired(
                    &typical
                        .iter()
                        .map(|t| (0, t[0] / t[other]))
                        .collect::<Vec<_>>(),
                )
            };
            let [ss, peer, floor, sql] = pooled.map(Cell::summary);
            curves.sizes.push(SizePoint {
                backend: bench.backend,
                label,
                envelope_len: shape.blob_len,
                op,
                ss,
                peer: with_peer.then_some(peer),
                floor,
                sql,
                vs_floor: vs(2),
                vs_peer: with_peer.then(|| vs(1)),
                vs_sql: vs(3),
            });
        }
    }
}

/// Trimming `rows` expired sessions, for each row count: first with
/// stored-session's `trim_inactive` (batches of 1,000 by primary key), then,
/// the same rows inserted again, with one raw `DELETE` statement. 1,000 live
/// sessions stay in the table throughout (and must survive).
pub fn trim(bench: &Bench, o: &Options, blob_len: usize, curves: &mut Curves) {
    let pool = &bench.floor.pool;
    let blob: Vec<u8> = (0..blob_len).map(|i| (i * 3 + 1) as u8).collect();
    let old = crate::floor::now() - 40 * 24 * 60 * 60;
    let mut counter = 0u64;
    let mut rows_of = |n: usize| -> Vec<([u8; 32], i64)> {
        (0..n)
            .map(|_| {
                counter += 1;
                let mut sid = [0xeeu8; 32];
                sid[24..].copy_from_slice(&counter.to_le_bytes());
                (sid, old)
            })
            .collect()
    };
    pool.delete_all();
    let now = crate::floor::now();
    let live: Vec<([u8; 32], i64)> = rows_of(1000).into_iter().map(|(s, _)| (s, now)).collect();
    pool.insert_many(&live, &blob);
    for &rows in &o.trim_rows {
        let started = Instant::now();
        pool.insert_many(&rows_of(rows), &blob);
        eprintln!(
            "  {} trim {rows}: inserted in {:.1} s",
            bench.backend.name(),
            started.elapsed().as_secs_f64()
        );
        let started = Instant::now();
        let report = stored_session::trim_inactive(&bench.ss.store).expect("trim_inactive");
        let ss_secs = started.elapsed().as_secs_f64();
        assert_eq!(
            report.deleted, rows as u64,
            "trim_inactive deletes exactly the expired rows"
        );

        pool.insert_many(&rows_of(rows), &blob);
        let started = Instant::now();
        let cutoff = crate::floor::now() - 30 * 24 * 60 * 60;
        let floor_deleted = pool.delete_idle(cutoff);
        let floor_secs = started.elapsed().as_secs_f64();
        assert_eq!(floor_deleted, rows);
        eprintln!(
            "  {} trim {rows}: trim_inactive {ss_secs:.2} s in {} batches, one DELETE {floor_secs:.2} s",
            bench.backend.name(),
            report.batches
        );
        curves.trims.push(TrimPoint {
            backend: bench.backend,
            rows,
            ss_secs,
            ss_deleted: report.deleted,
            ss_batches: report.batches,
            floor_secs,
        });
    }
    assert_eq!(
        pool.count(),
        1000 + bench.ss.cookies.len(),
        "live sessions survive"
    );
}

/// Writes the curves as CSV files (for `plot.py`) into `dir`.
pub fn write_csv(curves: &Curves, dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut f = std::fs::File::create(dir.join("growth.csv"))?;
    writeln!(
        f,
        "backend,size,envelope_bytes,op,stored_session_us,floor_us,store_sql_us,peer_us,vs_floor,vs_store_sql,vs_peer"
    )?;
    for p in &curves.sizes {
        writeln!(
            f,
            "{},{},{},{},{:.2},{:.2},{:.2},{},{:.3},{:.3},{}",
            p.backend.name(),
            p.label,
            p.envelope_len,
            p.op.name(),
            p.ss.iqm_us,
            p.floor.iqm_us,
            p.sql.iqm_us,
            p.peer.map_or(String::new(), |s| format!("{:.2}", s.iqm_us)),
            p.vs_floor.point,
            p.vs_sql.point,
            p.vs_peer
                .map_or(String::new(), |r| format!("{:.3}", r.point)),
        )?;
    }
    let mut f = std::fs::File::create(dir.join("trim.csv"))?;
    writeln!(
        f,
        "backend,rows,trim_inactive_s,batches,deleted,floor_delete_s"
    )?;
    for t in &curves.trims {
        writeln!(
            f,
            "{},{},{:.3},{},{},{:.3}",
            t.backend.name(),
            t.rows,
            t.ss_secs,
            t.ss_batches,
            t.ss_deleted,
            t.floor_secs
        )?;
    }
    Ok(())
}
