//! The fuzz corpus as a regression test on the stable toolchain: every file
//! of `fuzz/seeds/<target>/` (the committed corpus: the hand-made seeds
//! written by `write_seeds`, plus the `cargo fuzz cmin`-minimized corpus of
//! the recorded fuzzing runs, files named by their SHA-1) and of
//! `fuzz/regressions/<target>/` (minimized reproducers of fixed crashes, if
//! any) goes through the same entry point as the libFuzzer target of that
//! name (`stored_session::__fuzz`, behind the internal `fuzzing` feature, so
//! it runs with `cargo test --all-features` or `--features fuzzing`).

use std::path::{Path, PathBuf};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 3] = [
    ("cookie", stored_session::__fuzz::cookie),
    ("envelope", stored_session::__fuzz::envelope),
    ("payload", stored_session::__fuzz::payload),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn seed_corpus_and_regressions_replay_cleanly() {
    for (target, run) in TARGETS {
        let seeds = files(&fuzz_dir().join("seeds").join(target));
        assert!(
            seeds.len() >= 5,
            "fuzz/seeds/{target} holds {} files; regenerate with \
             `cargo test --test fuzz_corpus -- --ignored write_seeds`",
            seeds.len()
        );
        let regressions = files(&fuzz_dir().join("regressions").join(target));
        for path in seeds.iter().chain(&regressions) {
            let data = std::fs::read(path).expect("readable corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        }
    }
}

/// The generated seeds still replay (they are what `write_seeds` writes).
#[test]
fn generated_seeds_replay_cleanly() {
    for (target, name, data) in stored_session::__fuzz::seeds() {
        let run = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .map(|(_, f)| *f)
            .expect("a known target");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}/{name} fails");
    }
}

/// Writes `fuzz/seeds/<target>/<name>` from `__fuzz::seeds()`.
#[test]
#[ignore = "writes the seed corpus into the source tree"]
fn write_seeds() {
    for (target, name, data) in stored_session::__fuzz::seeds() {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    }
}
