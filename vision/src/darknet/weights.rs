//! The darknet `.weights` file, batch-norm folding, and a deterministic
//! generator of valid files.
//!
//! Layout (little-endian): `int32 major, minor, revision`; `seen`, an int64
//! when `major·10 + minor >= 2` (and both below 1000, as darknet checks),
//! else an int32; then float32 values layer by layer. Only
//! `[convolutional]` layers have parameters among the supported layers:
//! `biases[filters]`, then with `batch_normalize=1` `scales[filters]`,
//! `rolling_mean[filters]`, `rolling_variance[filters]`, then
//! `weights[filters · in_c/groups · size · size]`.

use super::network::{Conv, LayerKind, Network};
use super::{DarknetError, Location};

/// Darknet's batch-norm epsilon (`.00001f`, as in its GPU inference path).
pub(crate) const BATCH_NORM_EPSILON: f64 = 0.00001;

/// Bytes of the header the generator writes (three int32 and an int64 `seen`).
const GENERATED_HEADER_LEN: usize = 20;

/// A batch-norm layer's per-filter parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchNorm {
    /// γ.
    pub scales: Vec<f32>,
    /// μ.
    pub rolling_mean: Vec<f32>,
    /// σ².
    pub rolling_variance: Vec<f32>,
}

/// One convolution's parameters as stored in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConvWeights {
    /// Biases, or β with batch norm.
    pub biases: Vec<f32>,
    /// Batch-norm parameters when `batch_normalize=1`.
    pub batch_norm: Option<BatchNorm>,
    /// Kernel `[filters, in_c/groups, size, size]`, row-major.
    pub weights: Vec<f32>,
}

impl ConvWeights {
    /// Kernel and bias of the equivalent plain convolution (batch norm folded).
    pub(crate) fn fold(self) -> (Vec<f32>, Vec<f32>) {
        let ConvWeights {
            mut biases,
            batch_norm,
            mut weights,
        } = self;
        if let Some(bn) = &batch_norm {
            fold_batch_norm(&mut weights, &mut biases, bn);
        }
        (weights, biases)
    }
}

/// Folds inference batch norm `γ·(x − μ)/√(σ² + ε) + β` into the preceding
/// convolution: per filter `f`, `w' = w·γ/√(σ²+ε)` and `b' = β − μ·γ/√(σ²+ε)`.
/// `biases` holds β on entry. Computed in f64, stored as f32.
pub(crate) fn fold_batch_norm(weights: &mut [f32], biases: &mut [f32], bn: &BatchNorm) {
    let filters = biases.len();
    if filters == 0 {
        return;
    }
    let per_filter = weights.len() / filters;
    let params = bn
        .scales
        .iter()
        .zip(&bn.rolling_mean)
        .zip(&bn.rolling_variance);
    for ((kernel, bias), ((&gamma, &mean), &variance)) in weights
        .chunks_mut(per_filter.max(1))
        .zip(biases.iter_mut())
        .zip(params)
    {
        let scale = f64::from(gamma) / (f64::from(variance) + BATCH_NORM_EPSILON).sqrt();
        kernel
            .iter_mut()
            .for_each(|w| *w = (f64::from(*w) * scale) as f32);
        *bias = (f64::from(*bias) - f64::from(mean) * scale) as f32;
    }
}

/// The first filter whose kernel or bias holds a NaN or infinity.
pub(crate) fn first_non_finite_filter(weights: &[f32], biases: &[f32]) -> Option<usize> {
    let per_filter = weights.len() / biases.len().max(1);
    let bad_kernel = |f: usize| {
        weights
            .get(f * per_filter..(f + 1) * per_filter)
            .is_some_and(|k| k.iter().any(|w| !w.is_finite()))
    };
    (0..biases.len()).find(|&f| !biases[f].is_finite() || bad_kernel(f))
}

/// Reads layer parameters from a weights file, front to back.
#[derive(Debug)]
pub(crate) struct WeightReader<'a> {
    rest: &'a [u8],
}

impl<'a> WeightReader<'a> {
    /// Checks and skips the header.
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, DarknetError> {
        let int = |at: usize| match bytes.get(at..at + 4) {
            Some(&[a, b, c, d]) => Some(i32::from_le_bytes([a, b, c, d])),
            _ => None,
        };
        let (Some(major), Some(minor)) = (int(0), int(4)) else {
            return Err(DarknetError::WeightsHeader {
                len: bytes.len(),
                needed: 16,
            });
        };
        let (major, minor) = (i64::from(major), i64::from(minor));
        let seen_len = if major * 10 + minor >= 2 && major < 1000 && minor < 1000 {
            8
        } else {
            4
        };
        let header = 12 + seen_len;
        match bytes.get(header..) {
            Some(rest) => Ok(WeightReader { rest }),
            None => Err(DarknetError::WeightsHeader {
                len: bytes.len(),
                needed: header,
            }),
        }
    }

    /// Reads the parameters of the convolution at `at`.
    pub(crate) fn conv(&mut self, conv: &Conv, at: &Location) -> Result<ConvWeights, DarknetError> {
        let available = self.rest.len() / 4;
        if conv.floats > available {
            return Err(DarknetError::WeightsTruncated {
                at: at.clone(),
                needed: conv.floats,
                available,
            });
        }
        let (mine, rest) = self.rest.split_at(conv.floats * 4);
        self.rest = rest;
        let mut values = floats(mine);
        let n = conv.filters;
        let weights = values.split_off(values.len() - n * conv.weights_per_filter);
        let batch_norm = conv.batch_normalize.then(|| {
            let rolling_variance = values.split_off(3 * n);
            let rolling_mean = values.split_off(2 * n);
            let scales = values.split_off(n);
            BatchNorm {
                scales,
                rolling_mean,
                rolling_variance,
            }
        });
        Ok(ConvWeights {
            biases: values,
            batch_norm,
            weights,
        })
    }

    /// Checks that every byte was used.
    pub(crate) fn finish(self) -> Result<(), DarknetError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DarknetError::WeightsTrailing {
                bytes: self.rest.len(),
            })
        }
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / 4);
    for chunk in bytes.chunks_exact(4) {
        if let &[a, b, c, d] = chunk {
            out.push(f32::from_le_bytes([a, b, c, d]));
        }
    }
    out
}

/// A valid weights file for `net` with pseudo-random values from `seed`:
/// biases, β and μ in ±0.1, γ in [0.8, 1.2], σ² in [0.5, 1.5], kernels
/// He-uniform (±√(6/fan_in)), which keeps activations of order one.
pub(crate) fn generate(net: &Network, seed: u64) -> Result<Vec<u8>, DarknetError> {
    let total: usize = net
        .layers
        .iter()
        .map(|l| {
            if let LayerKind::Conv(c) = &l.kind {
                c.floats
            } else {
                0
            }
        })
        .sum();
    let mut out = Vec::with_capacity(GENERATED_HEADER_LEN + 4 * total);
    for v in [0i32, 2, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&0i64.to_le_bytes());
    let mut rng = SplitMix64(seed);
    let mut push = |count: usize, low: f64, high: f64, out: &mut Vec<u8>| {
        for _ in 0..count {
            out.extend_from_slice(&((low + (high - low) * rng.unit()) as f32).to_le_bytes());
        }
    };
    for layer in &net.layers {
        let LayerKind::Conv(conv) = &layer.kind else {
            continue;
        };
        let n = conv.filters;
        push(n, -0.1, 0.1, &mut out);
        if conv.batch_normalize {
            push(n, 0.8, 1.2, &mut out);
            push(n, -0.1, 0.1, &mut out);
            push(n, 0.5, 1.5, &mut out);
        }
        let limit = (6.0 / conv.weights_per_filter as f64).sqrt();
        push(n * conv.weights_per_filter, -limit, limit, &mut out);
    }
    Ok(out)
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, well-distributed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::darknet::{generate_weights, import};

    /// 8x8x3 input; conv 3->4 (3x3, BN), conv 4->14 (1x1, no BN), yolo 2 anchors x (5 + 2 classes).
    const TINY: &str = "[net]\nwidth=8\nheight=8\nchannels=3\n\
        [convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n\
        [convolutional]\nfilters=14\nsize=1\nactivation=linear\n\
        [yolo]\nmask=0,1\nanchors=10,14,23,27,37,58\nnum=3\nclasses=2\n";
    /// 4*4 (bias + BN) + 4*3*3*3 (kernel) + 14 (bias) + 14*4 (kernel).
    const TINY_FLOATS: usize = 16 + 108 + 14 + 56;

    fn header(major: i32, minor: i32, seen_i64: bool) -> Vec<u8> {
        let mut h: Vec<u8> = [major, minor, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        if seen_i64 {
            h.extend_from_slice(&7i64.to_le_bytes())
        } else {
            h.extend_from_slice(&7i32.to_le_bytes())
        }
        h
    }

    fn with_floats(mut header: Vec<u8>, count: usize) -> Vec<u8> {
        (0..count).for_each(|i| header.extend_from_slice(&(i as f32 * 1e-3).to_le_bytes()));
        header
    }

    #[test]
    fn generated_file_has_the_cfg_weight_count_and_is_deterministic() {
        let bytes = generate_weights(TINY, 42).unwrap();
        assert_eq!(bytes.len(), 20 + 4 * TINY_FLOATS);
        let expected_header: Vec<u8> = [0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]
            .into_iter()
            .chain([0; 8])
            .collect();
        assert_eq!(
            bytes[..20],
            expected_header[..],
            "major 0, minor 2, revision 0, seen 0 as int64"
        );
        assert_eq!(bytes, generate_weights(TINY, 42).unwrap());
        assert_ne!(bytes, generate_weights(TINY, 43).unwrap());
        let values = floats(&bytes[20..]);
        assert!(values.iter().all(|v| v.is_finite() && v.abs() <= 1.5));
        // Rolling variances (floats 12..16) lie in [0.5, 1.5].
        assert!(
            values[12..16].iter().all(|v| (0.5..=1.5).contains(v)),
            "{:?}",
            &values[12..16]
        );
        assert!(import(TINY, &bytes).is_ok());
    }

    #[test]
    fn both_header_versions_are_read() {
        // major*10+minor >= 2: int64 seen; older files: int32 seen.
        assert!(import(TINY, &with_floats(header(0, 2, true), TINY_FLOATS)).is_ok());
        assert!(import(TINY, &with_floats(header(0, 1, false), TINY_FLOATS)).is_ok());
        assert!(import(TINY, &with_floats(header(1, 0, true), TINY_FLOATS)).is_ok());
        assert_eq!(
            import(TINY, &header(0, 2, true)[..6]).unwrap_err(),
            DarknetError::WeightsHeader { len: 6, needed: 16 }
        );
        assert_eq!(
            import(TINY, &header(0, 1, false)[..14]).unwrap_err(),
            DarknetError::WeightsHeader {
                len: 14,
                needed: 16
            }
        );
        assert_eq!(
            import(TINY, &header(0, 2, true)[..18]).unwrap_err(),
            DarknetError::WeightsHeader {
                len: 18,
                needed: 20
            }
        );
    }

    #[test]
    fn truncated_weights_name_the_layer() {
        // Enough for layer 0 (124 floats) but not layer 1 (70).
        let err = import(TINY, &with_floats(header(0, 2, true), 124 + 69)).unwrap_err();
        let at = Location {
            layer: Some(1),
            section: "convolutional".into(),
            line: 11,
        };
        assert_eq!(
            err,
            DarknetError::WeightsTruncated {
                at,
                needed: 70,
                available: 69
            }
        );
        assert_eq!(
            err.to_string(),
            "weights file too short: layer 1 [convolutional] (line 11) needs 70 floats, only 69 left; \
             the weights do not match the cfg"
        );
        let err = import(TINY, &with_floats(header(0, 2, true), 3)).unwrap_err();
        assert!(matches!(
            err,
            DarknetError::WeightsTruncated {
                at: Location { layer: Some(0), .. },
                needed: 124,
                available: 3
            }
        ));
    }

    #[test]
    fn leftover_weights_are_an_error() {
        let err = import(TINY, &with_floats(header(0, 2, true), TINY_FLOATS + 2)).unwrap_err();
        assert_eq!(err, DarknetError::WeightsTrailing { bytes: 8 });
        assert!(
            err.to_string().contains("8 bytes (2 floats) left over"),
            "{err}"
        );
        let mut odd = with_floats(header(0, 2, true), TINY_FLOATS);
        odd.push(0);
        assert_eq!(
            import(TINY, &odd).unwrap_err(),
            DarknetError::WeightsTrailing { bytes: 1 }
        );
    }

    #[test]
    fn conv_parameters_are_split_in_file_order() {
        let net = Network::from_cfg(TINY).unwrap();
        let LayerKind::Conv(conv) = &net.layers[0].kind else {
            panic!()
        };
        let bytes = with_floats(header(0, 2, true), TINY_FLOATS);
        let mut reader = WeightReader::new(&bytes).unwrap();
        let w = reader.conv(conv, &net.layers[0].at).unwrap();
        let v = |i: usize| i as f32 * 1e-3;
        assert_eq!(w.biases, [v(0), v(1), v(2), v(3)]);
        let bn = w.batch_norm.unwrap();
        assert_eq!(bn.scales, [v(4), v(5), v(6), v(7)]);
        assert_eq!(bn.rolling_mean, [v(8), v(9), v(10), v(11)]);
        assert_eq!(bn.rolling_variance, [v(12), v(13), v(14), v(15)]);
        assert_eq!(w.weights.len(), 108);
        assert_eq!((w.weights[0], w.weights[107]), (v(16), v(123)));
    }

    #[test]
    fn batch_norm_folds_into_kernel_and_bias() {
        // One filter, kernel [1, -2, 3]: γ = 2, β = 0.5, μ = 1, σ² = 0.25.
        // scale = 2/√(0.25 + 1e-5) = 3.99992; w' = w·scale; b' = 0.5 − 1·scale = −3.49992.
        let bn = BatchNorm {
            scales: vec![2.0],
            rolling_mean: vec![1.0],
            rolling_variance: vec![0.25],
        };
        let (weights, biases) = ConvWeights {
            biases: vec![0.5],
            batch_norm: Some(bn),
            weights: vec![1.0, -2.0, 3.0],
        }
        .fold();
        let close = |a: f32, b: f32| (a - b).abs() < 1e-5;
        assert!(
            close(weights[0], 3.99992)
                && close(weights[1], -7.99984)
                && close(weights[2], 11.99976),
            "{weights:?}"
        );
        assert!(close(biases[0], -3.49992), "{biases:?}");

        // γ = 3, β = −1, μ = 0.25, σ² = 0.09: scale = 3/√0.09001 = 9.999444.
        let bn = BatchNorm {
            scales: vec![3.0],
            rolling_mean: vec![0.25],
            rolling_variance: vec![0.09],
        };
        let (weights, biases) = ConvWeights {
            biases: vec![-1.0],
            batch_norm: Some(bn),
            weights: vec![0.1, 0.2],
        }
        .fold();
        assert!(
            close(weights[0], 0.999944) && close(weights[1], 1.999889),
            "{weights:?}"
        );
        assert!(close(biases[0], -3.499861), "{biases:?}");

        // Without batch norm nothing changes.
        let (weights, biases) = ConvWeights {
            biases: vec![0.5],
            batch_norm: None,
            weights: vec![1.5],
        }
        .fold();
        assert_eq!((weights, biases), (vec![1.5], vec![0.5]));
    }

    #[test]
    fn non_finite_parameters_are_found_per_filter() {
        assert_eq!(
            first_non_finite_filter(&[1.0, 2.0, 3.0, 4.0], &[0.0, 0.0]),
            None
        );
        assert_eq!(
            first_non_finite_filter(&[1.0, 2.0, f32::NAN, 4.0], &[0.0, 0.0]),
            Some(1)
        );
        assert_eq!(
            first_non_finite_filter(&[1.0, 2.0, 3.0, 4.0], &[f32::INFINITY, 0.0]),
            Some(0)
        );
        // A negative variance makes the folded kernel NaN: reported, not imported.
        let mut bytes = with_floats(header(0, 2, true), TINY_FLOATS);
        bytes[20 + 4 * 13..20 + 4 * 14].copy_from_slice(&(-1.0f32).to_le_bytes());
        let err = import(TINY, &bytes).unwrap_err();
        assert!(
            matches!(
                err,
                DarknetError::NonFinite {
                    filter: 1,
                    at: Location { layer: Some(0), .. }
                }
            ),
            "{err}"
        );
    }
}
