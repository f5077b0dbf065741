//! The darknet importer end to end: real and generated weights imported,
//! run in ONNX Runtime, and compared layer by layer with `darknet_reference`,
//! a cfg-driven Rust re-implementation of darknet's forward pass that shares
//! no code with the importer beyond the cfg text parser.
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
use prost::Message;
use vision::darknet::{
    ImportOptions, ImportedModel, generate_weights, import, import_with, layer_output_name,
};
use vision::yolo::{DecodeParams, DetectorSpec, HeadKind, METADATA_KEY, decode_head};

mod darknet_reference;

use darknet_reference::{LayerOutput, Map, reorg_cpu};

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
    let heads: Vec<&str> = model.spec.heads.iter().map(|h| h.output.as_str()).collect();
    run_outputs(&model.onnx, shape, input, &heads)
}

/// Runs the ONNX model `onnx` on one `[n, c, h, w]` input; returns the
/// outputs named `names` (shape, values) in that order.
fn run_outputs(
    onnx: &[u8],
    shape: [usize; 4],
    input: Vec<f32>,
    names: &[&str],
) -> Vec<(Vec<usize>, Vec<f32>)> {
    let mut session = Session::builder(environment())
        .and_then(|mut b| b.commit_from_memory(onnx))
        .unwrap_or_else(|e| panic!("ONNX Runtime rejected the imported model: {e}"));
    let tensor = Tensor::from_array((shape, input)).unwrap();
    let outputs = session.run(ort::inputs!["images" => tensor]).unwrap();
    names
        .iter()
        .map(|&name| {
            let array = outputs[name].try_extract_array::<f32>().unwrap();
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

/// A small network touching every supported layer kind (grouped and strided
/// convolutions, all four activations, stride-2 and size-2 stride-1
/// maxpools, shortcut, reorg, upsample, routes of one and two layers, both
/// head kinds).
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

/// Largest accepted `max|onnx − darknet| / (1 + max|darknet|)` for a layer.
///
/// Both sides compute in float32 but in different orders (ONNX Runtime's
/// blocked, FMA convolutions on batch norm folded in double; darknet's
/// `im2col` + `gemm` with batch norm applied after), so each layer carries
/// rounding of a few 1e-6 of its magnitude (below 4e-6 on every shipped
/// cfg), though the comparison runs the whole chain rather than feeding ONNX
/// Runtime's values back in. Dividing by the
/// layer's largest magnitude (plus one, for layers of values below one)
/// makes one bound fit every layer; an actual misreading of darknet moves
/// values by a sizeable part of that magnitude.
const LAYER_TOLERANCE: f32 = 1e-4;

/// Smallest spread (`max − min`) and largest magnitude a reference layer
/// must reach, so that a comparison within [`LAYER_TOLERANCE`] means something.
const LAYER_MIN_SPREAD: f32 = 0.05;

/// `text` with the `[net]` section's `width` and `height` set.
fn with_input_size(text: &str, width: usize, height: usize) -> String {
    let mut replaced = [0, 0];
    let lines: Vec<String> = text
        .lines()
        .map(|line| match line.split_once('=').map(|(k, _)| k.trim()) {
            Some("width") => {
                replaced[0] += 1;
                format!("width={width}")
            }
            Some("height") => {
                replaced[1] += 1;
                format!("height={height}")
            }
            _ => line.to_string(),
        })
        .collect();
    assert_eq!(replaced, [1, 1], "one width= and one height= in the cfg");
    lines.join("\n") + "\n"
}

/// `c·h·w` deterministic pseudo-random pixels in [0, 1) (xorshift64).
fn random_image(c: usize, h: usize, w: usize, seed: u64) -> Map {
    let mut state = seed | 1;
    let data = (0..c * h * w)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Map { c, h, w, data }
}

/// How one layer of ONNX Runtime's output compares with the reference.
#[derive(Debug)]
struct LayerDiff {
    /// `max|onnx − darknet|`.
    abs: f32,
    /// `(c, y, x)` where it occurs.
    at: (usize, usize, usize),
    /// `abs / (1 + max|darknet|)`.
    rel: f32,
}

fn layer_diff(got: &[f32], want: &Map) -> LayerDiff {
    let (mut abs, mut worst) = (0.0f32, 0);
    for (i, (a, b)) in got.iter().zip(&want.data).enumerate() {
        let d = (a - b).abs();
        // A NaN difference is kept (and fails the tolerance check).
        if d > abs || (d.is_nan() && !abs.is_nan()) {
            (abs, worst) = (d, i);
        }
    }
    let magnitude = want.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let plane = want.h * want.w;
    LayerDiff {
        abs,
        at: (worst / plane, worst % plane / want.w, worst % want.w),
        rel: abs / (1.0 + magnitude),
    }
}

/// Imports `cfg_text` (its `[net]` size is the input size) with weights
/// generated from `seed` and every layer's output exposed, runs it in ONNX
/// Runtime on random pixels, and checks each darknet layer's output against
/// [`darknet_reference::forward`], in layer order; then checks the heads of
/// the plain [`import`] model too. Panics naming the first layer that
/// differs; prints the worst relative error.
fn assert_every_layer_matches(label: &str, cfg_text: &str, seed: u64) {
    let weights = generate_weights(cfg_text, seed).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_layers_match_with(label, cfg_text, &weights, seed);
}

/// [`assert_every_layer_matches`] with the given `.weights` bytes (`seed`
/// picks the input pixels).
fn assert_layers_match_with(label: &str, cfg_text: &str, weights: &[u8], seed: u64) {
    let options = ImportOptions {
        layer_outputs: true,
    };
    let model = import_with(cfg_text, weights, &options).unwrap_or_else(|e| panic!("{label}: {e}"));
    let (w, h) = (
        model.spec.input_width as usize,
        model.spec.input_height as usize,
    );
    let image = random_image(3, h, w, seed);
    let reference: Vec<LayerOutput> = darknet_reference::forward(cfg_text, weights, &image);
    // The importer exposes exactly the heads and one output per layer the
    // reference ran: a layer it skipped or added would show here.
    let graph = vision::onnx::ModelProto::decode(model.onnx.as_slice())
        .unwrap()
        .graph
        .unwrap();
    assert_eq!(
        graph.output.len(),
        model.spec.heads.len() + reference.len(),
        "{label}: heads plus one output per darknet layer"
    );
    let names: Vec<String> = (0..reference.len()).map(layer_output_name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let image_data = image.data.clone();
    let outputs = run_outputs(&model.onnx, [1, 3, h, w], image.data, &names);

    let mut worst = (0.0f32, 0);
    for (index, ((shape, got), want)) in outputs.iter().zip(&reference).enumerate() {
        let layer = format!(
            "{label}: layer {index} [{}] (line {})",
            want.section, want.line
        );
        let map = &want.map;
        assert_eq!(shape, &[1, map.c, map.h, map.w], "{layer}: shape");
        let (min, max) = map
            .data
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(
            max - min >= LAYER_MIN_SPREAD && min.abs().max(max.abs()) >= LAYER_MIN_SPREAD,
            "{layer}: the reference output spans only [{min}, {max}], too little to compare"
        );
        let diff = layer_diff(got, map);
        assert!(
            diff.rel < LAYER_TOLERANCE,
            "{layer} is the first layer where ONNX Runtime and darknet differ: \
             max |onnx - darknet| = {} at (c, y, x) = {:?}, {} relative to the layer's magnitude \
             (tolerance {LAYER_TOLERANCE}); the reference spans [{min}, {max}]",
            diff.abs,
            diff.at,
            diff.rel,
        );
        if diff.rel >= worst.0 {
            worst = (diff.rel, index);
        }
    }
    // The model `import` makes (heads only, so ONNX Runtime may fuse more)
    // computes the same heads: the [yolo] / [region] layers, in order.
    let plain = import(cfg_text, weights).unwrap();
    let heads: Vec<&str> = plain.spec.heads.iter().map(|h| h.output.as_str()).collect();
    let plain_outputs = run_outputs(&plain.onnx, [1, 3, h, w], image_data, &heads);
    let head_layers = reference
        .iter()
        .filter(|l| matches!(l.section.as_str(), "yolo" | "region"));
    assert_eq!(head_layers.clone().count(), heads.len(), "{label}: heads");
    for (((_, got), want), name) in plain_outputs.iter().zip(head_layers).zip(heads) {
        let diff = layer_diff(got, &want.map);
        assert!(
            diff.rel < LAYER_TOLERANCE,
            "{label}: head {name} of the plain model differs from darknet: {diff:?}"
        );
    }
    eprintln!(
        "{label}: {} layers match, worst relative error {:.2e} at layer {} [{}]",
        reference.len(),
        worst.0,
        worst.1,
        reference[worst.1].section
    );
}

#[test]
fn every_layer_kind_matches_darknet_layer_by_layer() {
    assert_every_layer_matches("MIXED_CFG 16x16", MIXED_CFG, 5);
}

/// Options the shipped cfgs do not use, on sizes that do not divide evenly:
/// explicit conv `padding` without `pad`, a size-2 kernel with `pad=1`
/// (output one wider), size-5 and stride-3 kernels, a depthwise convolution,
/// size-3 maxpools (stride 2 starting one cell before the image, stride 1
/// padded all round), a maxpool with `padding=0` that drops the last
/// column, upsample by 3, a route of three layers naming one twice, and a
/// shortcut from three layers back.
const UNUSUAL_CFG: &str = "[net]\nwidth=30\nheight=22\nchannels=3\n\
    [convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=2\npadding=2\nactivation=relu\n\
    [maxpool]\nsize=3\nstride=2\n\
    [maxpool]\nsize=3\nstride=1\n\
    [convolutional]\nbatch_normalize=1\nfilters=8\ngroups=8\nsize=3\npad=1\nactivation=linear\n\
    [shortcut]\nfrom=-3\nactivation=leaky\n\
    [convolutional]\nfilters=16\nsize=2\npad=1\nactivation=leaky\n\
    [maxpool]\nsize=2\nstride=2\npadding=0\n\
    [upsample]\nstride=3\n\
    [convolutional]\nfilters=16\nsize=1\nstride=3\nactivation=logistic\n\
    [route]\nlayers=-1,6,-1\n\
    [convolutional]\nfilters=21\nsize=1\nactivation=linear\n\
    [yolo]\nmask=0,1,2\nanchors=10,14,23,27,37,58\nnum=3\nclasses=2\n\
    [route]\nlayers=4\n\
    [reorg]\nstride=2\n\
    [route]\nlayers=-1,9\n\
    [convolutional]\nbatch_normalize=1\nfilters=16\nsize=5\npad=1\nactivation=relu\n\
    [convolutional]\nfilters=16\nsize=1\nactivation=linear\n\
    [region]\nanchors=1,1,2,2\nnum=2\nclasses=3\ncoords=4\nsoftmax=1\n";

#[test]
fn batch_norm_epsilon_is_pinned_by_tiny_variances() {
    // Generated variances lie in [0.5, 1.5], where the epsilon (1e-5) is
    // invisible. Layer 0 of MIXED_CFG (batch norm, 8 filters) gets variances
    // of 1e-5 instead: sqrt(var + eps) is then sqrt(2e-5), against sqrt(1e-5)
    // without epsilon or 1.1e-4 under a wrong epsilon of 1e-4, differences of
    // 30 % and more that the layer comparison cannot miss.
    let mut weights = generate_weights(MIXED_CFG, 5).unwrap();
    // 20-byte header, then biases, scales, rolling means, rolling variances.
    let variances = 20 + 4 * 3 * 8..20 + 4 * 4 * 8;
    for value in weights[variances].chunks_exact_mut(4) {
        value.copy_from_slice(&1e-5f32.to_le_bytes());
    }
    assert_layers_match_with("MIXED_CFG, tiny variances", MIXED_CFG, &weights, 5);
}

#[test]
fn unusual_options_match_darknet_layer_by_layer() {
    assert_every_layer_matches("UNUSUAL_CFG 30x22", UNUSUAL_CFG, 7);
}

/// Checks shipped cfg `name` at `width`×`height`.
fn shipped_cfg_matches(name: &str, width: usize, height: usize) {
    let text = with_input_size(&cfg(name), width, height);
    assert_every_layer_matches(&format!("{name} {width}x{height}"), &text, 11);
}

#[test]
fn yolov2_matches_darknet_layer_by_layer() {
    // A multiple of 32 keeps the [reorg] input even (6x4 here) and the
    // route's sizes equal; 96x64 ends at a non-square, odd 3x2 grid.
    shipped_cfg_matches("yolov2.cfg", 96, 64);
}

#[test]
fn yolov2_voc_matches_darknet_layer_by_layer() {
    shipped_cfg_matches("yolov2-voc.cfg", 64, 96);
}

#[test]
fn yolov2_tiny_matches_darknet_layer_by_layer() {
    // Not a multiple of 32: the stride-2 maxpools see odd sizes (5 wide, 3
    // high) and pad after, as darknet's (in + 1 − 2)/2 + 1 sizes need.
    shipped_cfg_matches("yolov2-tiny.cfg", 80, 48);
}

#[test]
fn yolov2_tiny_voc_matches_darknet_layer_by_layer() {
    // 104x72: 13 → 7 and 9 → 5 → 3 through padded stride-2 maxpools.
    shipped_cfg_matches("yolov2-tiny-voc.cfg", 104, 72);
}

#[test]
fn yolov3_tiny_matches_darknet_layer_by_layer() {
    // 96x96 ends at an odd 3x3 grid, where the size-2 stride-1 maxpool pads
    // after only; 160x96 gives non-square 5x3 and 10x6 grids.
    shipped_cfg_matches("yolov3-tiny.cfg", 96, 96);
    shipped_cfg_matches("yolov3-tiny.cfg", 160, 96);
}
