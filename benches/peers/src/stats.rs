//! The statistics behind the ratios: paired per-block ratios, their
//! interquartile mean on a log scale, and a bootstrap confidence interval.

/// A ratio estimated from paired blocks: the point estimate and its 95%
/// bootstrap interval.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub point: f64,
    pub lo: f64,
    pub hi: f64,
    /// Blocks the estimate rests on.
    pub n: usize,
}

impl Default for Estimate {
    fn default() -> Self {
        Estimate {
            point: f64::NAN,
            lo: f64::NAN,
            hi: f64::NAN,
            n: 0,
        }
    }
}

impl Estimate {
    /// `1.62 [1.58-1.66]`.
    pub fn show(&self) -> String {
        if self.point.is_finite() {
            format!("{:.2} [{:.2}-{:.2}]", self.point, self.lo, self.hi)
        } else {
            "–".into()
        }
    }
}

/// The interquartile mean: the mean of the middle half of `xs` (sorted in
/// place). Robust to the rare stall like a median, but uses half the sample
/// instead of one point.
pub fn iqm(xs: &mut [f64]) -> f64 {
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    xs.sort_unstable_by(f64::total_cmp);
    let middle = &xs[n / 4..(n - n / 4).max(n / 4 + 1)];
    middle.iter().sum::<f64>() / middle.len() as f64
}

/// The typical ratio over paired blocks: exp of the interquartile mean of
/// the log ratios (a ratio and its inverse get the same weight), with a
/// 95% percentile-bootstrap interval. The blocks are resampled within each
/// group (a group is one independent run), so that the interval stays
/// honest when runs differ.
pub fn paired(ratios: &[(usize, f64)]) -> Estimate {
    let logs: Vec<(usize, f64)> = ratios
        .iter()
        .filter(|(_, r)| r.is_finite() && *r > 0.0)
        .map(|(g, r)| (*g, r.ln()))
        .collect();
    let n = logs.len();
    if n == 0 {
        return Estimate::default();
    }
    let mut all: Vec<f64> = logs.iter().map(|x| x.1).collect();
    let point = iqm(&mut all).exp();
    let mut groups: Vec<Vec<f64>> = Vec::new();
    for (g, x) in &logs {
        if groups.len() <= *g {
            groups.resize(g + 1, Vec::new());
        }
        groups[*g].push(*x);
    }
    groups.retain(|g| !g.is_empty());
    const RESAMPLES: usize = 2000;
    let mut rng = Rng::new(0x5eed_u64 ^ n as u64);
    let mut sample = Vec::with_capacity(n);
    let mut stats = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        sample.clear();
        for g in &groups {
            for _ in 0..g.len() {
                sample.push(g[rng.below(g.len())]);
            }
        }
        stats.push(iqm(&mut sample));
    }
    stats.sort_unstable_by(f64::total_cmp);
    let at = |q: f64| stats[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)].exp();
    Estimate {
        point,
        lo: at(0.025),
        hi: at(0.975),
        n,
    }
}

/// Median of `xs` (sorted in place); NaN when empty.
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_unstable_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The spread of independent runs' estimates: (min, max, half the range
/// as a fraction of the median).
pub fn spread(xs: &[f64]) -> (f64, f64, f64) {
    let finite: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if finite.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = median(&mut finite.clone());
    (lo, hi, (hi - lo) / 2.0 / mid)
}

/// SplitMix64: a small deterministic generator for the bootstrap (the
/// interval must not change between two reports of the same data).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iqm_ignores_the_tails() {
        let mut xs = vec![1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 100.0];
        assert_eq!(iqm(&mut xs), 2.0);
    }

    #[test]
    fn paired_ratio_and_interval() {
        let ratios: Vec<(usize, f64)> = (0..100)
            .map(|i| (i % 3, 1.5 * (1.0 + 0.01 * ((i % 7) as f64 - 3.0))))
            .collect();
        let e = paired(&ratios);
        assert!((e.point - 1.5).abs() < 0.01, "{e:?}");
        assert!(e.lo <= e.point && e.point <= e.hi, "{e:?}");
        assert!(e.hi - e.lo < 0.05, "{e:?}");
        assert_eq!(e.n, 100);
    }

    #[test]
    fn spread_of_runs() {
        let (lo, hi, half) = spread(&[1.0, 1.1, 0.9]);
        assert_eq!((lo, hi), (0.9, 1.1));
        assert!((half - 0.1).abs() < 1e-9);
    }
}
