//! A small seeded random number generator for synthetic data, tests and
//! benchmarks: splitmix64 (Steele, Lea & Flood 2014). Tiny, seedable from any
//! `u64`, passes BigCrush; not for anything secret.

/// splitmix64 with the distributions the tracking code needs.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator; the same seed gives the same sequence.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform index below `n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        ((self.uniform() * n as f64) as usize).min(n.saturating_sub(1))
    }

    /// Standard normal (Box-Muller; `1 - u` keeps the log argument in (0, 1]).
    pub fn gaussian(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Poisson with mean `mean` (Knuth's product method up to 30, a rounded
    /// normal above); 0 for a non-positive or non-finite mean.
    pub fn poisson(&mut self, mean: f64) -> usize {
        if mean <= 0.0 || !mean.is_finite() {
            return 0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.gaussian()).round().max(0.0) as usize;
        }
        let limit = (-mean).exp();
        let mut k = 0;
        let mut p = self.uniform();
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    /// A uniformly random direction in `dim` dimensions, L2-normalised (the
    /// first axis in the vanishingly unlikely case of a zero draw).
    pub fn unit_vector(&mut self, dim: usize) -> Vec<f64> {
        crate::vector::unit_or_first_axis((0..dim).map(|_| self.gaussian()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_reproducible_and_distributions_plausible() {
        let (mut a, mut b) = (SplitMix64::new(5), SplitMix64::new(5));
        assert_eq!(a.next_u64(), b.next_u64());
        let mut r = SplitMix64::new(1);
        let n = 20_000;
        let mean = (0..n).map(|_| r.uniform()).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        let g: Vec<f64> = (0..n).map(|_| r.gaussian()).collect();
        let var = g.iter().map(|x| x * x).sum::<f64>() / n as f64;
        assert!((var - 1.0).abs() < 0.05, "{var}");
        let p = (0..n).map(|_| r.poisson(3.0)).sum::<usize>() as f64 / n as f64;
        assert!((p - 3.0).abs() < 0.1, "{p}");
        let u = r.unit_vector(16);
        assert!((u.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(r.index(0), 0);
        assert!((0..100).all(|_| r.index(3) < 3));
    }
}
