//! The darknet importer end to end: real and generated weights imported,
//! run in ONNX Runtime, and compared with a plain Rust re-implementation of
//! darknet's forward pass.
//!
//! Needs the assets of `scripts/setup.sh`: the darknet cfgs and
//! `yolov3-tiny.weights` under `$ARGUS_ASSETS` (default
//! `~/.cache/argus/assets`) and the ONNX Runtime library at
//! `$ORT_DYLIB_PATH` (default `$ARGUS_ASSETS/libonnxruntime.so.1.31.1`).
//! A missing asset fails the test; nothing is skipped.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use ndarray::Axis;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;
use vision::darknet::{ImportedModel, generate_weights, import};
use vision::yolo::{DecodeParams, DetectorSpec, HeadKind, METADATA_KEY, decode_head};

const SETUP_HINT: &str =
    "run scripts/setup.sh to install the test assets (then `source ~/.cache/argus/env.sh`)";

fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARGUS_ASSETS") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .unwrap_or_else(|| panic!("neither ARGUS_ASSETS nor HOME is set: {SETUP_HINT}"));
    PathBuf::from(home).join(".cache/argus/assets")
}

fn asset(relative: &str) -> PathBuf {
    let path = assets_dir().join(relative);
    assert!(
        path.is_file(),
        "missing test asset {}: {SETUP_HINT}",
        path.display()
    );
    path
}

fn cfg(name: &str) -> String {
    let path = asset(&format!("darknet/cfg/{name}"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The process-wide ONNX Runtime environment (one per process).
fn environment() -> &'static Environment {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    let env = ENV.get_or_init(|| {
        let lib = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| assets_dir().join("libonnxruntime.so.1.31.1"));
        if !lib.is_file() {
            return Err(format!(
                "ONNX Runtime library {} not found (ORT_DYLIB_PATH): {SETUP_HINT}",
                lib.display()
            ));
        }
        let builder = ort::init_from(&lib)
            .map_err(|e| format!("loading {}: {e}: {SETUP_HINT}", lib.display()))?;
        builder
            .with_name("darknet-import-tests")
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))
    });
    env.as_ref().unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `model` on one `[n, c, h, w]` input; returns each head's output
/// (shape, values) in spec order.
fn run(model: &ImportedModel, shape: [usize; 4], input: Vec<f32>) -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut session = Session::builder(environment())
        .and_then(|mut b| b.commit_from_memory(&model.onnx))
        .unwrap_or_else(|e| panic!("ONNX Runtime rejected the imported model: {e}"));
    let tensor = Tensor::from_array((shape, input)).unwrap();
    let outputs = session.run(ort::inputs!["images" => tensor]).unwrap();
    model
        .spec
        .heads
        .iter()
        .map(|head| {
            let array = outputs[head.output.as_str()]
                .try_extract_array::<f32>()
                .unwrap();
            (array.shape().to_vec(), array.iter().copied().collect())
        })
        .collect()
}

fn grey(side_w: usize, side_h: usize) -> Vec<f32> {
    vec![0.5; 3 * side_w * side_h]
}

#[test]
fn yolov3_tiny_with_real_weights_runs_in_onnx_runtime() {
    let text = cfg("yolov3-tiny.cfg");
    let weights_path = asset("yolov3-tiny.weights");
    let weights = std::fs::read(&weights_path).unwrap();
    assert_eq!(
        (weights.len() - 20) / 4,
        8_858_734,
        "yolov3-tiny has 8,858,734 floats after a 20-byte header"
    );
    assert_eq!(
        generate_weights(&text, 7).unwrap().len(),
        weights.len(),
        "generator and real file agree on the count"
    );

    let started = Instant::now();
    let model = import(&text, &weights).unwrap();
    eprintln!(
        "yolov3-tiny import: {:?}, {} ONNX bytes",
        started.elapsed(),
        model.onnx.len()
    );

    let spec = &model.spec;
    assert_eq!((spec.input_width, spec.input_height), (416, 416));
    assert_eq!(spec.heads.len(), 2);
    assert!(
        spec.heads
            .iter()
            .all(|h| h.kind == HeadKind::Yolo && h.num_classes == 80)
    );
    assert_eq!(
        spec.heads[0].anchors,
        [[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]]
    );
    assert_eq!(
        spec.heads[1].anchors,
        [[10.0, 14.0], [23.0, 27.0], [37.0, 58.0]]
    );

    let session = Session::builder(environment())
        .and_then(|mut b| b.commit_from_memory(&model.onnx))
        .unwrap();
    let stored = session
        .metadata()
        .unwrap()
        .custom(METADATA_KEY)
        .expect("detector spec in the metadata");
    assert_eq!(stored.parse::<DetectorSpec>().unwrap(), *spec);
    drop(session);

    let outputs = run(&model, [1, 3, 416, 416], grey(416, 416));
    assert_eq!(outputs[0].0, [1, 255, 13, 13]);
    assert_eq!(outputs[1].0, [1, 255, 26, 26]);
    for ((shape, values), head) in outputs.iter().zip(&spec.heads) {
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{}: non-finite output",
            head.output
        );
        let array =
            ndarray::ArrayView4::from_shape((shape[0], shape[1], shape[2], shape[3]), values)
                .unwrap();
        let params = DecodeParams {
            score_threshold: 0.5,
            classes: None,
        };
        decode_head(
            spec,
            head,
            array.index_axis(Axis(0), 0),
            params,
            &mut Vec::new(),
        )
        .unwrap();
    }
}

#[test]
fn yolov2_family_imports_with_generated_weights() {
    let cases = [
        ("yolov2-tiny-voc.cfg", [1, 125, 13, 13], 416),
        ("yolov2-tiny.cfg", [1, 425, 13, 13], 416),
        ("yolov2-voc.cfg", [1, 125, 13, 13], 416),
        // yolov2.cfg (COCO, with [reorg]) ships with a 608x608 input.
        ("yolov2.cfg", [1, 425, 19, 19], 608),
    ];
    for (name, expected, side) in cases {
        let text = cfg(name);
        let model = import(&text, &generate_weights(&text, 11).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.spec.heads.len(), 1);
        assert_eq!(model.spec.heads[0].kind, HeadKind::Region);
        assert_eq!(
            (model.spec.input_width, model.spec.input_height),
            (side as u32, side as u32)
        );
        let outputs = run(&model, [1, 3, side, side], grey(side, side));
        assert_eq!(outputs[0].0, expected, "{name}");
        assert!(
            outputs[0].1.iter().all(|v| v.is_finite()),
            "{name}: non-finite output"
        );
    }
    // The same yolov2 at 416x416 gives the 13x13 grid.
    let text = cfg("yolov2.cfg")
        .replace("width=608", "width=416")
        .replace("height=608", "height=416");
    let model = import(&text, &generate_weights(&text, 11).unwrap()).unwrap();
    assert_eq!(model.spec.heads[0].anchors[0], [0.57273, 0.677385]);
    let outputs = run(&model, [1, 3, 416, 416], grey(416, 416));
    assert_eq!(outputs[0].0, [1, 425, 13, 13]);
    assert!(outputs[0].1.iter().all(|v| v.is_finite()));
}

/// darknet's `reorg_cpu` (blas.c), verbatim, arguments included.
#[allow(clippy::too_many_arguments)]
fn reorg_cpu(
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

/// darknet's `forward_reorg_layer` for a non-reverse `[reorg]`: `reorg_cpu`
/// with the layer's input sizes and `forward = 0`.
fn darknet_reorg(x: &[f32], batch: usize, c: usize, h: usize, w: usize, stride: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    reorg_cpu(x, w, h, c, batch, stride, false, &mut out);
    out
}

#[test]
fn reorg_matches_darknet_reorg_cpu() {
    // 8 channels x 4 rows x 6 columns, stride 2 -> 32 x 2 x 3, batch of 2.
    let text = "[net]\nwidth=6\nheight=4\nchannels=8\n\
        [reorg]\nstride=2\n\
        [region]\nanchors=1,1,2,2,3,3,4,4\nnum=4\nclasses=3\ncoords=4\nsoftmax=1\n";
    let weights = generate_weights(text, 0).unwrap();
    assert_eq!(weights.len(), 20, "no parameters, header only");
    let model = import(text, &weights).unwrap();
    let input: Vec<f32> = (0..2 * 8 * 4 * 6).map(|v| v as f32).collect();
    let outputs = run(&model, [2, 8, 4, 6], input.clone());
    assert_eq!(outputs[0].0, [2, 32, 2, 3]);
    let expected = darknet_reorg(&input, 2, 8, 4, 6, 2);
    assert_eq!(outputs[0].1, expected);
    // Spot check: darknet reads the flat input as [c/s², h·s, w·s] = [2, 8, 12], so output
    // channel 1 of item 0 holds every other value of that view's row 2 (flat 24..36).
    assert_eq!(expected[6..12], [24.0, 26.0, 28.0, 30.0, 32.0, 34.0]);

    // Not ONNX SpaceToDepth (DCR): out[(oy·s + ox)·c + ch, y, x] = in[ch, y·s + oy, x·s + ox].
    let mut space_to_depth = vec![0.0; input.len()];
    for b in 0..2 {
        for ch in 0..8 {
            for y in 0..2 {
                for x in 0..3 {
                    for oy in 0..2 {
                        for ox in 0..2 {
                            let out_c = (oy * 2 + ox) * 8 + ch;
                            space_to_depth[((b * 32 + out_c) * 2 + y) * 3 + x] =
                                input[((b * 8 + ch) * 4 + y * 2 + oy) * 6 + x * 2 + ox];
                        }
                    }
                }
            }
        }
    }
    assert_ne!(
        outputs[0].1, space_to_depth,
        "darknet's reorg is not SpaceToDepth"
    );
}

/// A small network touching every supported layer kind, run by ONNX Runtime
/// and by [`reference`], a direct re-implementation of darknet's forward pass
/// (batch norm applied unfolded, maxpool with darknet's window offsets).
const MIXED_CFG: &str = "[net]\nwidth=16\nheight=16\nchannels=3\n\
    [convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
    [maxpool]\nsize=2\nstride=2\n\
    [convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=leaky\n\
    [maxpool]\nsize=2\nstride=1\n\
    [convolutional]\nfilters=16\nsize=1\ngroups=2\nactivation=linear\n\
    [shortcut]\nfrom=-2\nactivation=leaky\n\
    [convolutional]\nfilters=14\nsize=1\nactivation=linear\n\
    [yolo]\nmask=0,1\nanchors=10,14,23,27,37,58\nnum=3\nclasses=2\n\
    [route]\nlayers=0\n\
    [reorg]\nstride=2\n\
    [route]\nlayers=5\n\
    [upsample]\nstride=2\n\
    [route]\nlayers=-1,0\n\
    [convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npad=1\nactivation=logistic\n\
    [route]\nlayers=-1,9\n\
    [convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=1\npad=1\nactivation=relu\n\
    [convolutional]\nfilters=16\nsize=1\nactivation=linear\n\
    [region]\nanchors=1,1,2,2\nnum=2\nclasses=3\ncoords=4\nsoftmax=1\n";

/// One batch item, `[c, h, w]` row-major.
#[derive(Clone)]
struct Map {
    c: usize,
    h: usize,
    w: usize,
    data: Vec<f32>,
}

impl Map {
    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.h + y) * self.w + x]
    }
}

#[derive(Clone, Copy)]
enum Act {
    Linear,
    Leaky,
    Logistic,
    Relu,
}

fn activate(v: f32, act: Act) -> f32 {
    match act {
        Act::Linear => v,
        Act::Leaky => {
            if v > 0.0 {
                v
            } else {
                0.1 * v
            }
        }
        Act::Logistic => 1.0 / (1.0 + (-v).exp()),
        Act::Relu => v.max(0.0),
    }
}

/// Reads float32 values from a weights file after its 20-byte header.
struct Floats<'a>(&'a [u8]);

impl Floats<'_> {
    fn take(&mut self, n: usize) -> Vec<f32> {
        let (head, rest) = self.0.split_at(n * 4);
        self.0 = rest;
        head.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

/// darknet's convolutional layer: im2col/gemm, then batch norm or bias, then activation.
#[allow(clippy::too_many_arguments)]
fn conv(
    x: &Map,
    f: &mut Floats<'_>,
    filters: usize,
    size: usize,
    stride: usize,
    pad: usize,
    groups: usize,
    bn: bool,
    act: Act,
) -> Map {
    let biases = f.take(filters);
    let norm = bn.then(|| (f.take(filters), f.take(filters), f.take(filters)));
    let per_group = x.c / groups;
    let weights = f.take(filters * per_group * size * size);
    let (h, w) = (
        (x.h + 2 * pad - size) / stride + 1,
        (x.w + 2 * pad - size) / stride + 1,
    );
    let mut data = Vec::with_capacity(filters * h * w);
    for k in 0..filters {
        let group = k / (filters / groups);
        for oy in 0..h {
            for ox in 0..w {
                let mut sum = 0.0f32;
                for ci in 0..per_group {
                    for ky in 0..size {
                        for kx in 0..size {
                            let (iy, ix) = (
                                (oy * stride + ky) as isize - pad as isize,
                                (ox * stride + kx) as isize - pad as isize,
                            );
                            if iy >= 0 && ix >= 0 && (iy as usize) < x.h && (ix as usize) < x.w {
                                let wv = weights[((k * per_group + ci) * size + ky) * size + kx];
                                sum += wv * x.at(group * per_group + ci, iy as usize, ix as usize);
                            }
                        }
                    }
                }
                let v = match &norm {
                    Some((scales, mean, var)) => {
                        (sum - mean[k]) / (var[k] + 0.00001).sqrt() * scales[k] + biases[k]
                    }
                    None => sum + biases[k],
                };
                data.push(activate(v, act));
            }
        }
    }
    Map {
        c: filters,
        h,
        w,
        data,
    }
}

/// darknet's forward_maxpool_layer with the default padding `size - 1`.
fn maxpool(x: &Map, size: usize, stride: usize) -> Map {
    let pad = size - 1;
    let offset = -((pad / 2) as isize);
    let (h, w) = (
        (x.h + pad - size) / stride + 1,
        (x.w + pad - size) / stride + 1,
    );
    let mut data = Vec::with_capacity(x.c * h * w);
    for k in 0..x.c {
        for i in 0..h {
            for j in 0..w {
                let mut max = -f32::MAX;
                for n in 0..size {
                    for m in 0..size {
                        let cur_h = offset + (i * stride + n) as isize;
                        let cur_w = offset + (j * stride + m) as isize;
                        if cur_h >= 0
                            && cur_w >= 0
                            && (cur_h as usize) < x.h
                            && (cur_w as usize) < x.w
                        {
                            max = max.max(x.at(k, cur_h as usize, cur_w as usize));
                        }
                    }
                }
                data.push(max);
            }
        }
    }
    Map { c: x.c, h, w, data }
}

fn upsample(x: &Map, s: usize) -> Map {
    let (h, w) = (x.h * s, x.w * s);
    let mut data = Vec::with_capacity(x.c * h * w);
    for k in 0..x.c {
        for j in 0..h {
            for i in 0..w {
                data.push(x.at(k, j / s, i / s));
            }
        }
    }
    Map { c: x.c, h, w, data }
}

fn route(maps: &[&Map]) -> Map {
    let data = maps.iter().flat_map(|m| m.data.iter().copied()).collect();
    Map {
        c: maps.iter().map(|m| m.c).sum(),
        h: maps[0].h,
        w: maps[0].w,
        data,
    }
}

fn reorg(x: &Map, s: usize) -> Map {
    Map {
        c: x.c * s * s,
        h: x.h / s,
        w: x.w / s,
        data: darknet_reorg(&x.data, 1, x.c, x.h, x.w, s),
    }
}

/// [`MIXED_CFG`] by hand; returns the inputs of the two heads.
fn reference(image: &Map, weights: &[u8]) -> (Map, Map) {
    let mut f = Floats(&weights[20..]);
    let l0 = conv(image, &mut f, 8, 3, 1, 1, 1, true, Act::Leaky);
    let l1 = maxpool(&l0, 2, 2);
    let l2 = conv(&l1, &mut f, 16, 3, 1, 1, 1, true, Act::Leaky);
    let l3 = maxpool(&l2, 2, 1);
    let l4 = conv(&l3, &mut f, 16, 1, 1, 0, 2, false, Act::Linear);
    let l5 = Map {
        data: l4
            .data
            .iter()
            .zip(&l3.data)
            .map(|(a, b)| activate(a + b, Act::Leaky))
            .collect(),
        ..l4.clone()
    };
    let l6 = conv(&l5, &mut f, 14, 1, 1, 0, 1, false, Act::Linear);
    let l9 = reorg(&l0, 2);
    let l11 = upsample(&l5, 2);
    let l12 = route(&[&l11, &l0]);
    let l13 = conv(&l12, &mut f, 8, 3, 2, 1, 1, true, Act::Logistic);
    let l14 = route(&[&l13, &l9]);
    let l15 = conv(&l14, &mut f, 16, 3, 1, 1, 1, true, Act::Relu);
    let l16 = conv(&l15, &mut f, 16, 1, 1, 0, 1, false, Act::Linear);
    assert!(f.0.is_empty(), "the reference read every weight");
    (l6, l16)
}

#[test]
fn every_layer_kind_matches_a_darknet_reference_forward() {
    let weights = generate_weights(MIXED_CFG, 5).unwrap();
    let model = import(MIXED_CFG, &weights).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let pixels: Vec<f32> = (0..3 * 16 * 16)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let image = Map {
        c: 3,
        h: 16,
        w: 16,
        data: pixels.clone(),
    };
    let (yolo_in, region_in) = reference(&image, &weights);
    let outputs = run(&model, [1, 3, 16, 16], pixels);
    assert_eq!(outputs[0].0, [1, 14, 8, 8]);
    assert_eq!(outputs[1].0, [1, 16, 8, 8]);
    for ((_, got), want) in outputs.iter().zip([yolo_in, region_in]) {
        assert_eq!(got.len(), want.data.len());
        let worst = got
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "ONNX Runtime and the darknet reference differ by {worst}"
        );
        assert!(
            want.data.iter().any(|v| v.abs() > 0.05),
            "outputs are not trivially small"
        );
    }
}
