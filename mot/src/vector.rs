//! Small vector helpers shared by tracking, re-identification and the
//! synthetic data: L2 normalisation and dot products that never panic and
//! never return non-finite values.

/// Unit-length copy; empty when `v` is empty, zero or not finite.
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| (f64::from(*x) / norm) as f32).collect()
    } else {
        Vec::new()
    }
}

/// Unit-length `v` in place; a zero or non-finite vector becomes the first
/// axis (for generated data, which must always have a direction).
pub fn unit_or_first_axis(mut v: Vec<f64>) -> Vec<f64> {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v.iter_mut()
            .enumerate()
            .for_each(|(i, x)| *x = if i == 0 { 1.0 } else { 0.0 });
    }
    v
}

/// Dot product with eight independent accumulators (vectorises well).
/// Lengths must match; extra elements of the longer slice are ignored.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_and_dot_products() {
        let u = normalised(&[3.0, 4.0]);
        assert_eq!(u, vec![0.6, 0.8]);
        assert!(normalised(&[0.0, 0.0]).is_empty());
        assert!(normalised(&[f32::NAN, 1.0]).is_empty());
        assert!(normalised(&[]).is_empty());
        assert_eq!(unit_or_first_axis(vec![0.0, 0.0, 0.0]), vec![1.0, 0.0, 0.0]);
        assert_eq!(unit_or_first_axis(vec![0.0, 2.0]), vec![0.0, 1.0]);
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let want: f32 = a.iter().map(|x| x * x).sum();
        assert_eq!(dot(&a, &a), want);
    }
}
