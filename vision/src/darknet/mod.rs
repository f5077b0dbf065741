//! The darknet `.cfg` + `.weights` to ONNX importer.
//!
//! [`import`] turns a darknet network description and its trained weights
//! into an ONNX model (opset 17, IR version 8) whose outputs are the raw
//! tensors feeding each `[yolo]` / `[region]` layer, plus a
//! [`DetectorSpec`] telling the edge agent how to
//! decode them, stored in the model's metadata under
//! [`METADATA_KEY`](crate::yolo::METADATA_KEY).
//! [`import_with`] can also expose every layer's output (see
//! [`ImportOptions`]), for checking the model layer by layer against darknet.
//!
//! # Layout
//! - [`cfg`](mod@cfg): the `.cfg` text format, sections of `key=value` options.
//! - `network`: sections read into typed layers with inferred shapes.
//! - `weights`: the `.weights` file (header, per-layer floats), batch-norm
//!   folding and the deterministic weight generator.
//! - `graph`: typed layers and weights to an ONNX `ModelProto`.
//!
//! # Semantics
//! The importer follows pjreddie's darknet (the 2018 code shipped by Debian,
//! which produced the official YOLOv2 / YOLOv3 weights):
//! - `[convolutional]`: `pad=1` means `size/2` padding, else `padding`;
//!   batch norm is folded into the convolution with `eps = 1e-5`
//!   (`w' = w·γ/√(σ²+ε)`, `b' = β − μ·γ/√(σ²+ε)`); activations `leaky` (0.1),
//!   `linear`, `logistic`, `relu`.
//! - `[maxpool]`: `out = (in + padding − size)/stride + 1` with `padding`
//!   defaulting to `size − 1`, `padding/2` before and whatever the last window
//!   needs after (so 416 → 208 for size 2 stride 2, 13 → 13 with pads
//!   `[0, 0, 1, 1]` for size 2 stride 1).
//! - `[reorg]`: darknet's `reorg_cpu(.., forward = 0)` called with the
//!   layer's *input* sizes, which is not ONNX `SpaceToDepth`; see
//!   `graph::reorg` for the Reshape/Transpose/Reshape that reproduces it.
//! - `[route]`, `[shortcut]`, `[upsample]`: Concat on channels, Add, nearest
//!   Resize.
//!
//! Everything is pure: text and bytes in, bytes out, no I/O or logging.

pub mod cfg;
mod graph;
mod network;
mod weights;

use std::fmt;

use crate::yolo::DetectorSpec;

pub use cfg::{CfgOption, Section, parse_cfg};

/// Where in the cfg something went wrong: a layer (darknet's 0-based layer
/// index, `[net]` not counted) or the `[net]` section, and its header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Darknet layer index; `None` for `[net]`.
    pub layer: Option<usize>,
    /// Section name without brackets, e.g. `convolutional`.
    pub section: String,
    /// 1-based line of the section header.
    pub line: usize,
}

impl fmt::Display for Location {
    /// `layer 3 [maxpool] (line 40)` or `[net] (line 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(layer) = self.layer {
            write!(f, "layer {layer} ")?;
        }
        write!(f, "[{}] (line {})", self.section, self.line)
    }
}

/// A cfg or weights file the importer cannot turn into a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DarknetError {
    /// A cfg line that is neither a `[section]`, a comment nor `key=value`.
    #[error("cfg line {line}: {message}: {text:?}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: &'static str,
        /// The offending line.
        text: String,
    },
    /// The cfg does not start with `[net]`.
    #[error("the cfg must start with a [net] section, found {found}")]
    MissingNet {
        /// What was found instead.
        found: String,
    },
    /// A section type the importer does not know.
    #[error(
        "{at}: unsupported section type; the importer handles [net], [convolutional], [maxpool], [route], \
         [upsample], [shortcut], [reorg], [yolo] and [region]"
    )]
    UnknownSection {
        /// The section.
        at: Location,
    },
    /// A required option is absent.
    #[error("{at}: missing option `{key}`")]
    MissingOption {
        /// The section.
        at: Location,
        /// Option name.
        key: &'static str,
    },
    /// An option value that does not parse or is out of range.
    #[error("{at}: option `{key}={value}` is invalid, expected {expected}")]
    BadValue {
        /// The section.
        at: Location,
        /// Option name.
        key: String,
        /// Value as written.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A darknet feature the importer cannot express.
    #[error("{at}: {what} is not supported by the importer")]
    Unsupported {
        /// The section.
        at: Location,
        /// The feature.
        what: String,
    },
    /// Layer sizes that do not fit together.
    #[error("{at}: {message}")]
    Shape {
        /// The layer.
        at: Location,
        /// What does not fit.
        message: String,
    },
    /// A `[route]` / `[shortcut]` reference to a layer that cannot be used.
    #[error("{at}: {message}")]
    Reference {
        /// The referencing layer.
        at: Location,
        /// Why the reference is invalid.
        message: String,
    },
    /// The cfg has no detection head, so the model would have no output.
    #[error("the cfg has no [yolo] or [region] layer, so the model would have no outputs")]
    NoHeads,
    /// The weights file is shorter than its header.
    #[error("weights file is {len} bytes, shorter than its {needed}-byte header")]
    WeightsHeader {
        /// File length.
        len: usize,
        /// Header length.
        needed: usize,
    },
    /// The weights file ends before a layer's parameters.
    #[error(
        "weights file too short: {at} needs {needed} floats, only {available} left; the weights do not match the cfg"
    )]
    WeightsTruncated {
        /// The layer whose parameters are missing.
        at: Location,
        /// Floats the layer needs.
        needed: usize,
        /// Floats left in the file.
        available: usize,
    },
    /// Bytes remain after the last layer.
    #[error(
        "weights file has {bytes} bytes ({} floats) left over after the last layer; the weights do not match the cfg",
        bytes / 4
    )]
    WeightsTrailing {
        /// Bytes left over.
        bytes: usize,
    },
    /// A weight or bias that is NaN or infinite (after folding batch norm).
    #[error(
        "weights file: {at}: filter {filter} has a non-finite weight or bias after folding batch norm"
    )]
    NonFinite {
        /// The layer.
        at: Location,
        /// Output channel.
        filter: usize,
    },
}

/// An imported detector: the serialized ONNX model and how to decode it.
#[derive(Clone)]
pub struct ImportedModel {
    /// Serialized ONNX `ModelProto`.
    pub onnx: Vec<u8>,
    /// Input size and heads; also in the model metadata.
    pub spec: DetectorSpec,
}

impl fmt::Debug for ImportedModel {
    /// Shows the model size, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedModel")
            .field("onnx_bytes", &self.onnx.len())
            .field("spec", &self.spec)
            .finish()
    }
}

/// What [`import_with`] puts in the model besides the detection heads.
///
/// The default is the model [`import`] makes: the heads' inputs are its only
/// outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Also make the output of every darknet layer a graph output, named
    /// [`layer_output_name`]`(index)`, shape `[batch, c, h, w]`, after the
    /// heads' outputs and in layer order. A layer whose output is another
    /// layer's tensor (a `[route]` of one layer) still gets its own output, as
    /// does each `[yolo]` / `[region]`, whose output is its input (the
    /// importer does not apply the head's activations). For debugging and
    /// layer-by-layer tests: more outputs keep ONNX Runtime from reusing
    /// those buffers and from fusing across them.
    pub layer_outputs: bool,
}

/// Name of the graph output holding darknet layer `index`'s output in a
/// model imported with [`ImportOptions::layer_outputs`]: `l{index}_output`
/// (layer 0 is the first section after `[net]`).
pub fn layer_output_name(index: usize) -> String {
    format!("l{index}_output")
}

/// Imports a darknet detector: `cfg_text` is the `.cfg` file, `weights` the
/// `.weights` file bytes. The weights must match the cfg exactly (no missing
/// and no leftover floats). Same as [`import_with`] with the default options.
pub fn import(cfg_text: &str, weights: &[u8]) -> Result<ImportedModel, DarknetError> {
    import_with(cfg_text, weights, &ImportOptions::default())
}

/// [`import`] with [`ImportOptions`].
pub fn import_with(
    cfg_text: &str,
    weights: &[u8],
    options: &ImportOptions,
) -> Result<ImportedModel, DarknetError> {
    let net = network::Network::from_cfg(cfg_text)?;
    let mut reader = weights::WeightReader::new(weights)?;
    let (model, spec) = graph::build(&net, &mut reader, options)?;
    reader.finish()?;
    Ok(ImportedModel {
        onnx: prost::Message::encode_to_vec(&model),
        spec,
    })
}

/// A valid `.weights` file for `cfg_text` filled with deterministic
/// pseudo-random values (same `seed`, same bytes), for tests and benchmarks
/// of cfgs without published weights. Header: major 0, minor 2, revision 0,
/// `seen` as int64 0. Values are small (He-uniform convolution weights,
/// biases in ±0.1, batch-norm scales near 1 and variances in [0.5, 1.5]), so
/// activations stay finite and of order one through deep networks.
pub fn generate_weights(cfg_text: &str, seed: u64) -> Result<Vec<u8>, DarknetError> {
    let net = network::Network::from_cfg(cfg_text)?;
    weights::generate(&net, seed)
}
