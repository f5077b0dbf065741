//! int8 quantisation of L2-normalised appearance vectors for the wire.
//!
//! A 1280-d float vector is 5 KiB; quantised it is 1.25 KiB plus a scale, with a
//! cosine error far below what separates identities.

use crate::v1::Embedding;

/// Quantises `values` symmetrically: `q = round(v / scale)`, `scale = max|v| / 127`.
/// Non-finite inputs are written as 0 so a bad vector never poisons a track.
pub fn quantise(values: &[f32]) -> Embedding {
    let max = values
        .iter()
        .filter(|v| v.is_finite())
        .fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let quantised = values
        .iter()
        .map(|v| {
            if v.is_finite() {
                (v / scale).round().clamp(-127.0, 127.0) as i8 as u8
            } else {
                0
            }
        })
        .collect();
    Embedding {
        scale,
        values: quantised,
    }
}

/// Restores floats from a quantised embedding.
pub fn dequantise(embedding: &Embedding) -> Vec<f32> {
    embedding
        .values
        .iter()
        .map(|&q| f32::from(q as i8) * embedding.scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let v: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() / 8.0).collect();
        let e = quantise(&v);
        assert_eq!(e.values.len(), 64);
        let back = dequantise(&e);
        for (a, b) in v.iter().zip(&back) {
            assert!((a - b).abs() <= e.scale / 2.0 + 1e-7, "{a} vs {b}");
        }
    }

    #[test]
    fn zero_and_non_finite_vectors_do_not_produce_nan() {
        let e = quantise(&[0.0, f32::NAN, f32::INFINITY]);
        assert_eq!(dequantise(&e), vec![0.0, 0.0, 0.0]);
    }
}
