//! Darknet's forward pass, driven by the cfg, as an independent reference
//! for the importer.
//!
//! It reads the cfg with [`parse_cfg`] (the text format only) and the
//! `.weights` floats itself, and follows pjreddie's darknet C code layer by
//! layer: one function per section kind, with darknet's option defaults and
//! the same loops (`im2col` + `gemm` for convolutions, batch norm applied
//! unfolded, maxpool windows at darknet's offset, `reorg_cpu`,
//! `upsample_cpu`, `shortcut_cpu`). None of the importer's network, weight or
//! graph code is used, so a misreading of darknet there shows up as a
//! difference here.
//!
//! Test code: a cfg it cannot run is a bug in the test, so it panics with
//! the layer and the reason.

use vision::darknet::{Section, parse_cfg};

/// One batch item's activations, `[c, h, w]` row-major (darknet's layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// `c·h·w` values.
    pub data: Vec<f32>,
}

impl Map {
    /// A map of zeros.
    fn zeros(c: usize, h: usize, w: usize) -> Map {
        Map {
            c,
            h,
            w,
            data: vec![0.0; c * h * w],
        }
    }

    /// Channel `k` as an `h·w` slice.
    fn channel(&self, k: usize) -> &[f32] {
        &self.data[k * self.h * self.w..(k + 1) * self.h * self.w]
    }
}

/// The output of one darknet layer.
#[derive(Debug, Clone)]
pub struct LayerOutput {
    /// Section name, e.g. `convolutional`.
    pub section: String,
    /// 1-based line of the section header.
    pub line: usize,
    /// What the layer produced. For `[yolo]` / `[region]` this is the head's
    /// input: the importer stops there, and so does the comparison.
    pub map: Map,
}

/// Runs `cfg_text` with the `.weights` file `weights` on `image` (whose size
/// must be the `[net]` section's); returns every layer's output in layer
/// order (index 0 is the first section after `[net]`).
pub fn forward(cfg_text: &str, weights: &[u8], image: &Map) -> Vec<LayerOutput> {
    let sections = parse_cfg(cfg_text).expect("the cfg parses");
    let (net, layers) = sections.split_first().expect("the cfg has sections");
    assert!(
        matches!(net.name.as_str(), "net" | "network"),
        "the cfg starts with [net]"
    );
    let expected = [
        int(net, "channels", None),
        int(net, "height", None),
        int(net, "width", None),
    ];
    assert_eq!(
        [image.c, image.h, image.w].map(|v| v as i64),
        expected,
        "the image matches [net]"
    );
    let mut file = WeightsFile::new(weights);
    let mut outputs: Vec<LayerOutput> = Vec::with_capacity(layers.len());
    for (index, section) in layers.iter().enumerate() {
        let input = outputs.last().map_or(image, |l| &l.map);
        let earlier: Vec<&Map> = outputs.iter().map(|l| &l.map).collect();
        let map = match section.name.as_str() {
            "convolutional" | "conv" => convolutional(section, input, &mut file),
            "maxpool" | "max" => maxpool(section, input),
            "route" => route(section, index, &earlier),
            "reorg" => reorg(section, input),
            "upsample" => upsample(section, input),
            "shortcut" => shortcut(section, index, input, &earlier),
            // The importer's outputs are the heads' inputs; darknet's head
            // activations and decoding are not part of the graph.
            "yolo" | "region" => input.clone(),
            other => panic!("layer {index}: [{other}] is not supported by the reference"),
        };
        outputs.push(LayerOutput {
            section: section.name.clone(),
            line: section.line,
            map,
        });
    }
    assert!(
        file.rest.is_empty(),
        "{} bytes of weights left after the last layer",
        file.rest.len()
    );
    outputs
}

/// darknet's `option_find_int`: the first `key`, else `default`; `None`
/// means the option is required.
fn int(section: &Section, key: &str, default: Option<i64>) -> i64 {
    match section.get(key) {
        Some(option) => option.value.parse().unwrap_or_else(|_| {
            panic!(
                "line {}: {key}={} is not an integer",
                option.line, option.value
            )
        }),
        None => default
            .unwrap_or_else(|| panic!("[{}] line {}: {key} missing", section.name, section.line)),
    }
}

/// A non-negative size option.
fn size(section: &Section, key: &str, default: i64) -> usize {
    let value = int(section, key, Some(default));
    usize::try_from(value).unwrap_or_else(|_| panic!("line {}: {key}={value}", section.line))
}

/// A float option (`option_find_float_quiet`).
fn float(section: &Section, key: &str, default: f32) -> f32 {
    section.get(key).map_or(default, |o| {
        o.value
            .parse()
            .unwrap_or_else(|_| panic!("line {}: {key}={}", o.line, o.value))
    })
}

/// A `[route]` / `[shortcut]` layer reference: negative values are relative
/// to `index` (`params.index + value`), others absolute.
fn referenced<'m>(index: usize, value: i64, earlier: &[&'m Map]) -> &'m Map {
    let target = if value < 0 {
        index as i64 + value
    } else {
        value
    };
    usize::try_from(target)
        .ok()
        .and_then(|t| earlier.get(t).copied())
        .unwrap_or_else(|| panic!("layer {index}: reference {value} to a later layer"))
}

/// darknet's activations (`activations.h`), computed as written there: the
/// leaky slope and logistic in double, then stored as float.
#[derive(Debug, Clone, Copy)]
enum Activation {
    Linear,
    Leaky,
    Logistic,
    Relu,
}

impl Activation {
    /// `activation=` of `section`, with darknet's per-layer default.
    fn of(section: &Section, default: &str) -> Activation {
        let name = section.get("activation").map_or(default, |o| &o.value);
        match name {
            "linear" => Activation::Linear,
            "leaky" => Activation::Leaky,
            "logistic" => Activation::Logistic,
            "relu" => Activation::Relu,
            other => panic!("line {}: activation {other}", section.line),
        }
    }

    fn apply(self, values: &mut [f32]) {
        for v in values {
            *v = match self {
                Activation::Linear => *v,
                Activation::Leaky if *v > 0.0 => *v,
                Activation::Leaky => (0.1 * f64::from(*v)) as f32,
                Activation::Logistic => (1.0 / (1.0 + (-f64::from(*v)).exp())) as f32,
                Activation::Relu => v.max(0.0),
            }
        }
    }
}

/// Reads a `.weights` file front to back as darknet's `load_weights` does.
struct WeightsFile<'a> {
    rest: &'a [u8],
}

impl<'a> WeightsFile<'a> {
    /// Skips the header: `major, minor, revision` as int32, then `seen` as
    /// size_t (8 bytes) when `major·10 + minor >= 2`, else as int32.
    fn new(bytes: &'a [u8]) -> WeightsFile<'a> {
        let word = |at: usize| i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let (major, minor) = (word(0), word(4));
        let header = if major * 10 + minor >= 2 && major < 1000 && minor < 1000 {
            20
        } else {
            16
        };
        WeightsFile {
            rest: &bytes[header..],
        }
    }

    /// The next `n` float32 values.
    fn take(&mut self, n: usize) -> Vec<f32> {
        assert!(self.rest.len() >= 4 * n, "weights file too short");
        let (mine, rest) = self.rest.split_at(4 * n);
        self.rest = rest;
        mine.chunks_exact(4)
            // chunks_exact(4) yields 4-byte slices.
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

/// Darknet's batch-norm epsilon, inside the square root as in its
/// `normalize_gpu` kernel (`sqrtf(variance + .00001f)`), which the importer
/// folds. (Its `normalize_cpu` divides by `sqrt(variance) + .000001f`
/// instead: a relative difference below 1e-5 for variances near 1.)
const BATCH_NORM_EPSILON: f32 = 0.00001;

/// `[convolutional]`: `forward_convolutional_layer` — per group, `im2col`
/// then `gemm` into a zeroed output, then batch norm (`normalize`,
/// `scale_bias`, `add_bias`) or the bias alone, then the activation. Weights
/// are read in `load_convolutional_weights` order: biases, then with batch
/// norm scales, rolling mean and rolling variance, then the kernel.
fn convolutional(s: &Section, x: &Map, file: &mut WeightsFile<'_>) -> Map {
    let filters = size(s, "filters", 1);
    let ksize = size(s, "size", 1);
    let stride = size(s, "stride", 1);
    let padding = if int(s, "pad", Some(0)) != 0 {
        ksize / 2
    } else {
        size(s, "padding", 0)
    };
    let groups = size(s, "groups", 1);
    let batch_normalize = int(s, "batch_normalize", Some(0)) != 0;
    let activation = Activation::of(s, "logistic");

    let out_h = (x.h + 2 * padding - ksize) / stride + 1;
    let out_w = (x.w + 2 * padding - ksize) / stride + 1;
    let biases = file.take(filters);
    let norm =
        batch_normalize.then(|| (file.take(filters), file.take(filters), file.take(filters)));
    let group_c = x.c / groups;
    let k = group_c * ksize * ksize;
    let kernel = file.take(filters * k);

    let mut out = Map::zeros(filters, out_h, out_w);
    let n = out_h * out_w;
    let m = filters / groups;
    for g in 0..groups {
        let columns = im2col(x, g * group_c..(g + 1) * group_c, ksize, stride, padding);
        let a = &kernel[g * m * k..(g + 1) * m * k];
        let c = &mut out.data[g * m * n..(g + 1) * m * n];
        gemm_nn(m, n, k, a, &columns, c);
    }
    for (f, values) in out.data.chunks_mut(n).enumerate() {
        if let Some((scales, mean, variance)) = &norm {
            let std = (variance[f] + BATCH_NORM_EPSILON).sqrt();
            values
                .iter_mut()
                .for_each(|v| *v = (*v - mean[f]) / std * scales[f]);
        }
        values.iter_mut().for_each(|v| *v += biases[f]);
        activation.apply(values);
    }
    out
}

/// darknet's `im2col_cpu` for `channels` of `x`: a `[channels·size·size,
/// out_h·out_w]` matrix, zero outside the image.
fn im2col(
    x: &Map,
    channels: std::ops::Range<usize>,
    ksize: usize,
    stride: usize,
    pad: usize,
) -> Vec<f32> {
    let out_h = (x.h + 2 * pad - ksize) / stride + 1;
    let out_w = (x.w + 2 * pad - ksize) / stride + 1;
    let mut columns = Vec::with_capacity(channels.len() * ksize * ksize * out_h * out_w);
    for c_im in channels {
        let plane = x.channel(c_im);
        for h_offset in 0..ksize {
            for w_offset in 0..ksize {
                for h in 0..out_h {
                    let row = (h_offset + h * stride)
                        .checked_sub(pad)
                        .filter(|&r| r < x.h);
                    for w in 0..out_w {
                        let col = (w_offset + w * stride)
                            .checked_sub(pad)
                            .filter(|&c| c < x.w);
                        columns.push(match (row, col) {
                            (Some(r), Some(c)) => plane[r * x.w + c],
                            _ => 0.0,
                        });
                    }
                }
            }
        }
    }
    columns
}

/// darknet's `gemm_nn` with `ALPHA = 1`: `C[m×n] += A[m×k] · B[k×n]`,
/// summed in the same order (over `k` outermost per row).
fn gemm_nn(m: usize, n: usize, k: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    for i in 0..m {
        let c_row = &mut c[i * n..(i + 1) * n];
        for (kk, &a_part) in a[i * k..(i + 1) * k].iter().enumerate() {
            let b_row = &b[kk * n..(kk + 1) * n];
            c_row
                .iter_mut()
                .zip(b_row)
                .for_each(|(c, &b)| *c += a_part * b);
        }
    }
}

/// `[maxpool]`: `forward_maxpool_layer`. `padding` defaults to `size − 1`,
/// `out = (in + padding − size)/stride + 1`, windows start at
/// `−padding/2`; cells outside the input read as `−FLT_MAX`.
fn maxpool(s: &Section, x: &Map) -> Map {
    let stride = size(s, "stride", 1);
    let window = size(s, "size", stride as i64);
    let padding = size(s, "padding", window as i64 - 1);
    let out_h = (x.h + padding - window) / stride + 1;
    let out_w = (x.w + padding - window) / stride + 1;
    let offset = -((padding / 2) as isize);
    let inside = |at: isize, len: usize| usize::try_from(at).ok().filter(|&v| v < len);
    let mut out = Vec::with_capacity(x.c * out_h * out_w);
    for k in 0..x.c {
        let plane = x.channel(k);
        for i in 0..out_h {
            for j in 0..out_w {
                let mut max = -f32::MAX;
                for n in 0..window {
                    for m in 0..window {
                        let cur_h = inside(offset + (i * stride + n) as isize, x.h);
                        let cur_w = inside(offset + (j * stride + m) as isize, x.w);
                        let value = match (cur_h, cur_w) {
                            (Some(h), Some(w)) => plane[h * x.w + w],
                            _ => -f32::MAX,
                        };
                        max = if value > max { value } else { max };
                    }
                }
                out.push(max);
            }
        }
    }
    Map {
        c: x.c,
        h: out_h,
        w: out_w,
        data: out,
    }
}

/// `[route]`: the listed layers' outputs, one after the other along
/// channels (`forward_route_layer`); they must share height and width.
fn route(s: &Section, index: usize, earlier: &[&Map]) -> Map {
    let layers = &s.get("layers").expect("route has layers=").value;
    let maps: Vec<&Map> = layers
        .split(',')
        .map(|v| {
            let value = v
                .parse()
                .unwrap_or_else(|_| panic!("route layers={layers}"));
            referenced(index, value, earlier)
        })
        .collect();
    let (h, w) = (maps[0].h, maps[0].w);
    assert!(
        maps.iter().all(|m| (m.h, m.w) == (h, w)),
        "layer {index}: routed layers differ in size"
    );
    Map {
        c: maps.iter().map(|m| m.c).sum(),
        h,
        w,
        data: maps.iter().flat_map(|m| m.data.iter().copied()).collect(),
    }
}

/// `[reorg]`: `forward_reorg_layer` without `reverse`, `flatten` or
/// `extra`: [`reorg_cpu`] called with the layer's *input* sizes and
/// `forward = 0`; darknet then reads the result as `[c·s², h/s, w/s]`.
fn reorg(s: &Section, x: &Map) -> Map {
    for key in ["reverse", "flatten", "extra"] {
        assert_eq!(int(s, key, Some(0)), 0, "line {}: {key}", s.line);
    }
    let stride = size(s, "stride", 1);
    let mut out = vec![0.0; x.data.len()];
    reorg_cpu(&x.data, x.w, x.h, x.c, 1, stride, false, &mut out);
    Map {
        c: x.c * stride * stride,
        h: x.h / stride,
        w: x.w / stride,
        data: out,
    }
}

/// darknet's `reorg_cpu` (`blas.c`), loops and arguments as written there.
#[allow(clippy::too_many_arguments)]
pub fn reorg_cpu(
    x: &[f32],
    w: usize,
    h: usize,
    c: usize,
    batch: usize,
    stride: usize,
    forward: bool,
    out: &mut [f32],
) {
    let out_c = c / (stride * stride);
    for b in 0..batch {
        for k in 0..c {
            for j in 0..h {
                for i in 0..w {
                    let in_index = i + w * (j + h * (k + c * b));
                    let c2 = k % out_c;
                    let offset = k / out_c;
                    let w2 = i * stride + offset % stride;
                    let h2 = j * stride + offset / stride;
                    let out_index = w2 + w * stride * (h2 + h * stride * (c2 + out_c * b));
                    if forward {
                        out[out_index] = x[in_index];
                    } else {
                        out[in_index] = x[out_index];
                    }
                }
            }
        }
    }
}

/// `[upsample]`: `upsample_cpu` with `forward = 1`:
/// `out[k, j, i] = scale · in[k, j/stride, i/stride]`.
fn upsample(s: &Section, x: &Map) -> Map {
    let stride = size(s, "stride", 2);
    let scale = float(s, "scale", 1.0);
    let mut out = Map::zeros(x.c, x.h * stride, x.w * stride);
    for k in 0..x.c {
        let plane = x.channel(k);
        for j in 0..out.h {
            for i in 0..out.w {
                out.data[(k * out.h + j) * out.w + i] =
                    scale * plane[(j / stride) * x.w + i / stride];
            }
        }
    }
    out
}

/// `[shortcut]`: `forward_shortcut_layer` for equal shapes — the previous
/// layer's output times `alpha` plus layer `from`'s times `beta`
/// (`shortcut_cpu`), then the activation (default linear).
fn shortcut(s: &Section, index: usize, x: &Map, earlier: &[&Map]) -> Map {
    let from = referenced(index, int(s, "from", None), earlier);
    assert_eq!(
        (from.c, from.h, from.w),
        (x.c, x.h, x.w),
        "layer {index}: the reference handles equal-shape shortcuts only"
    );
    let alpha = float(s, "alpha", 1.0);
    let beta = float(s, "beta", 1.0);
    let mut out = x.clone();
    out.data
        .iter_mut()
        .zip(&from.data)
        .for_each(|(o, &a)| *o = alpha * *o + beta * a);
    Activation::of(s, "linear").apply(&mut out.data);
    out
}
