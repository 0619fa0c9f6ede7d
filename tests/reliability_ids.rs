//! Session ids: 1,000,000 generated ids, no duplicate, all of the fixed
//! length and alphabet, and their bits balanced.
//!
//! The balance checks are hypothesis tests with rigorous bounds (no fitted
//! constants), each with a false-alarm probability of at most 1e-6 for a
//! perfect random source:
//!
//! * each of the 256 bit positions: Hoeffding's inequality with a union
//!   bound over the positions, |ones − N/2| ≤ sqrt(N · ln(2 · 256 / α) / 2);
//! * all positions together, the sum of squared z-scores (χ² with 256
//!   degrees of freedom), the bytes' values (χ², 255 d.f.) and the
//!   characters' values (χ², 63 d.f.): inside the Laurent–Massart bounds
//!   k − 2√(kx) ≤ χ² ≤ k + 2√(kx) + 2x with x = ln(1/α), so a source that
//!   is biased *or* suspiciously regular fails.

use std::collections::HashSet;

use base64::Engine as _;
use stored_session::{SessionId, SESSION_ID_LEN};

const ALPHA: f64 = 1e-6;

fn url_safe_value(c: u8) -> usize {
    match c {
        b'A'..=b'Z' => (c - b'A') as usize,
        b'a'..=b'z' => (c - b'a') as usize + 26,
        b'0'..=b'9' => (c - b'0') as usize + 52,
        b'-' => 62,
        b'_' => 63,
        _ => panic!("byte {c:#x} is outside the URL-safe alphabet"),
    }
}

/// Laurent–Massart two-sided bounds for a χ² with `k` degrees of freedom.
fn chi2_bounds(k: f64) -> (f64, f64) {
    let x = (1.0 / ALPHA).ln();
    (k - 2.0 * (k * x).sqrt(), k + 2.0 * (k * x).sqrt() + 2.0 * x)
}

fn chi2(counts: &[u64], expected: f64) -> f64 {
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

fn check_ids(n: usize) {
    let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(n);
    let mut ones = [0u64; 256];
    let mut byte_values = [0u64; 256];
    let mut chars = [0u64; 64];
    let mut last_chars = [0u64; 64];
    for _ in 0..n {
        let id = SessionId::generate();
        let text = id.as_cookie_value();
        assert_eq!(text.len(), SESSION_ID_LEN);
        let raw = text.as_bytes();
        for &c in &raw[..SESSION_ID_LEN - 1] {
            chars[url_safe_value(c)] += 1;
        }
        last_chars[url_safe_value(raw[SESSION_ID_LEN - 1])] += 1;
        assert!(SessionId::parse(text).is_some());
        let bytes: [u8; 32] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .expect("canonical unpadded URL-safe base64")
            .try_into()
            .expect("256 bits");
        for (i, b) in bytes.iter().enumerate() {
            byte_values[*b as usize] += 1;
            for bit in 0..8 {
                ones[i * 8 + bit] += u64::from((b >> bit) & 1);
            }
        }
        assert!(seen.insert(bytes), "duplicate id after {} ids", seen.len());
    }
    let nf = n as f64;

    // Per bit position: Hoeffding + union bound.
    let bound = (nf * (2.0 * 256.0 / ALPHA).ln() / 2.0).sqrt();
    let worst = ones
        .iter()
        .map(|&c| (c as f64 - nf / 2.0).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= bound,
        "a bit position is off balance by {worst} (bound {bound:.0})"
    );

    // All positions together.
    let sd = nf.sqrt() / 2.0;
    let z2: f64 = ones
        .iter()
        .map(|&c| ((c as f64 - nf / 2.0) / sd).powi(2))
        .sum();
    let (lo, hi) = chi2_bounds(256.0);
    assert!(
        (lo..=hi).contains(&z2),
        "bit positions: χ² = {z2:.1} outside [{lo:.1}, {hi:.1}]"
    );

    // Byte values.
    let bytes_chi2 = chi2(&byte_values, nf * 32.0 / 256.0);
    let (lo, hi) = chi2_bounds(255.0);
    assert!(
        (lo..=hi).contains(&bytes_chi2),
        "byte values: χ² = {bytes_chi2:.1} outside [{lo:.1}, {hi:.1}]"
    );

    // Characters 1..=42: six random bits each, uniform over 64 values.
    let chars_chi2 = chi2(&chars, nf * 42.0 / 64.0);
    let (lo, hi) = chi2_bounds(63.0);
    assert!(
        (lo..=hi).contains(&chars_chi2),
        "characters: χ² = {chars_chi2:.1} outside [{lo:.1}, {hi:.1}]"
    );

    // Character 43 carries the last 4 bits (canonical encoding: its two low
    // bits are zero), uniform over those 16 values.
    let used: Vec<u64> = (0..64).step_by(4).map(|v| last_chars[v]).collect();
    let unused: u64 = (0..64).filter(|v| v % 4 != 0).map(|v| last_chars[v]).sum();
    assert_eq!(unused, 0, "non-canonical last characters");
    let last_chi2 = chi2(&used, nf / 16.0);
    let (lo, hi) = chi2_bounds(15.0);
    assert!(
        (lo.max(0.0)..=hi).contains(&last_chi2),
        "last character: χ² = {last_chi2:.1} outside [{lo:.1}, {hi:.1}]"
    );
    eprintln!(
        "{n} ids: 0 duplicates, all {SESSION_ID_LEN} chars; worst bit deviation {worst:.0} \
         (bound {bound:.0}); χ² bits {z2:.1}/256, bytes {bytes_chi2:.1}/255, \
         chars {chars_chi2:.1}/63, last char {last_chi2:.1}/15"
    );
}

/// The CI core: the same checks on 100,000 ids.
#[test]
fn ids_unique_fixed_length_balanced() {
    check_ids(100_000);
}

#[test]
#[ignore = "long run: 1,000,000 ids (about a minute in a debug build)"]
fn one_million_ids_unique_fixed_length_balanced() {
    check_ids(1_000_000);
}

/// The per-position bound has the power to see a small bias at 1,000,000
/// ids: a bit set with probability 0.51 instead of 0.5 drifts by 0.01 · N,
/// far past the bound.
#[test]
fn the_balance_bound_catches_a_small_bias() {
    let n = 1_000_000f64;
    let bound = (n * (2.0 * 256.0 / ALPHA).ln() / 2.0).sqrt();
    assert!(0.01 * n > bound, "bound {bound} too loose to see a 1% bias");
    let (lo, hi) = chi2_bounds(256.0);
    assert!(lo > 100.0 && hi < 420.0, "χ² bounds [{lo}, {hi}]");
}
