//! Cfg sections read into typed layers, with darknet's option defaults and
//! output-size rules (pjreddie's `parser.c` and `make_*_layer`).
//!
//! Every layer's output shape is inferred here, so the weight reader and the
//! graph builder work on sizes already known to fit together. Options that
//! would change inference in a way the importer cannot express are errors;
//! options that only matter for training are ignored, as darknet does.

use super::cfg::{Section, parse_cfg};
use super::{DarknetError, Location};
use crate::yolo::HeadKind;

/// Largest value accepted for a size-like option (width, filters, stride...),
/// so that shape arithmetic cannot overflow.
const MAX_OPTION: i64 = 1 << 24;
/// Largest tensor, in elements per batch item, a layer may produce.
const MAX_ELEMENTS: usize = 1 << 31;
/// Most weights a network may have: 2 GiB of float32 is the size limit of a
/// single-file ONNX model (protobuf messages stop at 2 GiB).
const MAX_WEIGHTS: usize = 1 << 29;

/// Channels, height and width of one batch item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

/// A layer's output non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Identity.
    Linear,
    /// `x > 0 ? x : 0.1·x`.
    Leaky,
    /// `1 / (1 + e^−x)`.
    Logistic,
    /// `max(x, 0)`.
    Relu,
}

/// A `[convolutional]` layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conv {
    /// Output channels.
    pub filters: usize,
    /// Square kernel size.
    pub size: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Channel groups.
    pub groups: usize,
    /// Whether batch-norm parameters precede the kernel in the weights file.
    pub batch_normalize: bool,
    /// Output non-linearity.
    pub activation: Activation,
    /// Kernel weights per filter: `in_c / groups · size · size`.
    pub weights_per_filter: usize,
    /// Floats the layer reads from the weights file.
    pub floats: usize,
}

/// A `[maxpool]` layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MaxPool {
    /// Square window size.
    pub size: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// ONNX pads `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

/// A `[yolo]` or `[region]` detection head.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Head {
    /// Decoding rule.
    pub kind: HeadKind,
    /// Anchors of this head: pixels for `[yolo]` (masked), grid cells for `[region]`.
    pub anchors: Vec<[f32; 2]>,
    /// Number of classes.
    pub classes: usize,
}

/// What a layer computes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LayerKind {
    /// Convolution, folded batch norm, activation.
    Conv(Conv),
    /// Max pooling.
    MaxPool(MaxPool),
    /// Channel concatenation of earlier layers' outputs.
    Route {
        /// Absolute layer indices.
        from: Vec<usize>,
    },
    /// Nearest-neighbour upsampling.
    Upsample {
        /// Integer scale factor.
        stride: usize,
    },
    /// Sum of the previous layer's and an earlier layer's output.
    Shortcut {
        /// Absolute index of the earlier layer.
        from: usize,
        /// Applied to the sum.
        activation: Activation,
    },
    /// Darknet's space-to-depth reorganisation.
    Reorg {
        /// Block size.
        stride: usize,
    },
    /// Detection head: its input becomes a graph output.
    Head(Head),
}

/// One layer with its inferred sizes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layer {
    /// Darknet layer index (0 for the first section after `[net]`).
    pub index: usize,
    /// Section and line, for errors.
    pub at: Location,
    /// What the layer computes.
    pub kind: LayerKind,
    /// Shape of the implicit input: the previous layer's output, or the image.
    pub input: Shape,
    /// Output shape.
    pub output: Shape,
}

/// A parsed darknet network.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Network {
    /// Input image shape from `[net]`.
    pub input: Shape,
    /// Layers in cfg order.
    pub layers: Vec<Layer>,
}

impl Network {
    /// Parses and checks a cfg.
    pub(crate) fn from_cfg(text: &str) -> Result<Self, DarknetError> {
        let sections = parse_cfg(text)?;
        let Some((net, rest)) = sections.split_first() else {
            return Err(DarknetError::MissingNet {
                found: "an empty cfg".into(),
            });
        };
        if !matches!(net.name.as_str(), "net" | "network") {
            return Err(DarknetError::MissingNet {
                found: format!("[{}] at line {}", net.name, net.line),
            });
        }
        let at = Location {
            layer: None,
            section: net.name.clone(),
            line: net.line,
        };
        let opts = Options {
            section: net,
            at: &at,
        };
        let input = checked_shape(
            &at,
            opts.size("channels", None, 1)?,
            opts.size("height", None, 1)?,
            opts.size("width", None, 1)?,
        )?;
        let mut layers: Vec<Layer> = Vec::with_capacity(rest.len());
        let mut total_weights = 0usize;
        for (index, section) in rest.iter().enumerate() {
            let at = Location {
                layer: Some(index),
                section: section.name.clone(),
                line: section.line,
            };
            let layer = read_layer(index, section, at, input, &layers)?;
            if let LayerKind::Conv(conv) = &layer.kind {
                total_weights = total_weights.saturating_add(conv.floats);
                if total_weights > MAX_WEIGHTS {
                    return Err(DarknetError::Shape {
                        at: layer.at,
                        message: format!(
                            "the network needs more than {MAX_WEIGHTS} weights (2 GiB), beyond the size of a single-file ONNX model"
                        ),
                    });
                }
            }
            layers.push(layer);
        }
        Ok(Network { input, layers })
    }

    /// Whether any layer is a detection head.
    pub(crate) fn has_heads(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l.kind, LayerKind::Head(_)))
    }
}

/// Reads one layer section; `earlier` holds the layers before it.
fn read_layer(
    index: usize,
    section: &Section,
    at: Location,
    image: Shape,
    earlier: &[Layer],
) -> Result<Layer, DarknetError> {
    let opts = Options { section, at: &at };
    // Every layer but [route] reads the previous layer's output (the image for layer 0).
    let previous = || earlier.last().map_or(Ok(image), |p| usable(p, &at));
    let (kind, input, output) = match section.name.as_str() {
        "convolutional" | "conv" => {
            let input = previous()?;
            let (conv, output) = read_conv(&opts, input)?;
            (LayerKind::Conv(conv), input, output)
        }
        "maxpool" | "max" => {
            let input = previous()?;
            let (pool, output) = read_maxpool(&opts, input)?;
            (LayerKind::MaxPool(pool), input, output)
        }
        "route" => {
            let values = opts.ints("layers")?.ok_or(DarknetError::MissingOption {
                at: at.clone(),
                key: "layers",
            })?;
            let mut from = Vec::with_capacity(values.len());
            let mut shapes = Vec::with_capacity(values.len());
            for value in values {
                let (target, shape) = reference(&at, index, value, earlier)?;
                from.push(target);
                shapes.push(shape);
            }
            let Some(&first) = shapes.first() else {
                return Err(opts.bad("layers", "a comma-separated list of layer indices"));
            };
            if let Some(odd) = shapes.iter().find(|s| (s.h, s.w) != (first.h, first.w)) {
                return Err(DarknetError::Shape {
                    at: at.clone(),
                    message: format!(
                        "routed layers differ in size ({}x{} and {}x{}); they must share height and width",
                        first.w, first.h, odd.w, odd.h
                    ),
                });
            }
            let channels = shapes.iter().map(|s| s.c).sum();
            (
                LayerKind::Route { from },
                first,
                checked_shape(&at, channels, first.h, first.w)?,
            )
        }
        "upsample" => {
            let input = previous()?;
            opts.neutral("scale", Some(1.0))?;
            let stride = opts.int("stride", Some(2))?;
            if stride < 0 {
                return Err(DarknetError::Unsupported {
                    at: at.clone(),
                    what: format!("downsampling (stride={stride})"),
                });
            }
            let stride = opts.size("stride", Some(2), 1)?;
            let (h, w) = (input.h.checked_mul(stride), input.w.checked_mul(stride));
            let output = match (h, w) {
                (Some(h), Some(w)) => checked_shape(&at, input.c, h, w)?,
                _ => return Err(too_large(&at)),
            };
            (LayerKind::Upsample { stride }, input, output)
        }
        "shortcut" => {
            let input = previous()?;
            opts.neutral("alpha", Some(1.0))?;
            opts.neutral("beta", Some(1.0))?;
            let value = opts.int("from", None)?;
            let (from, other) = reference(&at, index, value, earlier)?;
            if other != input {
                return Err(DarknetError::Unsupported {
                    at: at.clone(),
                    what: format!(
                        "a shortcut between different shapes ({}x{}x{} from layer {from}, {}x{}x{} from the previous layer)",
                        other.w, other.h, other.c, input.w, input.h, input.c
                    ),
                });
            }
            let activation = opts.activation("linear")?;
            (LayerKind::Shortcut { from, activation }, input, input)
        }
        "reorg" => {
            let input = previous()?;
            for key in ["reverse", "flatten", "extra"] {
                opts.neutral(key, Some(0.0))?;
            }
            let stride = opts.size("stride", Some(1), 1)?;
            let block = stride.saturating_mul(stride);
            if !input.c.is_multiple_of(block)
                || !input.h.is_multiple_of(stride)
                || !input.w.is_multiple_of(stride)
            {
                return Err(DarknetError::Shape {
                    at: at.clone(),
                    message: format!(
                        "reorg stride {stride} needs channels divisible by {block} and height and width divisible by {stride}, \
                         the input is {}x{}x{}",
                        input.w, input.h, input.c
                    ),
                });
            }
            let channels = input.c.checked_mul(block).ok_or_else(|| too_large(&at))?;
            let output = checked_shape(&at, channels, input.h / stride, input.w / stride)?;
            (LayerKind::Reorg { stride }, input, output)
        }
        "yolo" | "region" => {
            let input = previous()?;
            let head = if section.name == "yolo" {
                read_yolo(&opts)?
            } else {
                read_region(&opts)?
            };
            let expected = head
                .anchors
                .len()
                .saturating_mul(head.classes.saturating_add(5));
            if input.c != expected {
                return Err(DarknetError::Shape {
                    at: at.clone(),
                    message: format!(
                        "the input has {} channels, the head needs {} anchors x (5 + {} classes) = {expected}",
                        input.c,
                        head.anchors.len(),
                        head.classes
                    ),
                });
            }
            (LayerKind::Head(head), input, input)
        }
        _ => return Err(DarknetError::UnknownSection { at }),
    };
    Ok(Layer {
        index,
        at,
        kind,
        input,
        output,
    })
}

fn read_conv(opts: &Options<'_>, input: Shape) -> Result<(Conv, Shape), DarknetError> {
    let at = opts.at;
    opts.neutral("binary", Some(0.0))?;
    opts.neutral("xnor", Some(0.0))?;
    opts.neutral("dilation", Some(1.0))?;
    let filters = opts.size("filters", Some(1), 1)?;
    let size = opts.size("size", Some(1), 1)?;
    let stride = opts.size("stride", Some(1), 1)?;
    let padding = if opts.int("pad", Some(0))? != 0 {
        size / 2
    } else {
        opts.size("padding", Some(0), 0)?
    };
    let groups = opts.size("groups", Some(1), 1)?;
    let batch_normalize = opts.int("batch_normalize", Some(0))? != 0;
    let activation = opts.activation("logistic")?;
    if !input.c.is_multiple_of(groups) || !filters.is_multiple_of(groups) {
        return Err(DarknetError::Shape {
            at: at.clone(),
            message: format!(
                "groups={groups} must divide both the {} input channels and the {filters} filters",
                input.c
            ),
        });
    }
    let out = |len: usize| {
        (len + 2 * padding)
            .checked_sub(size)
            .map(|v| v / stride + 1)
    };
    let (Some(h), Some(w)) = (out(input.h), out(input.w)) else {
        return Err(DarknetError::Shape {
            at: at.clone(),
            message: format!(
                "a {size}x{size} kernel does not fit the {}x{} input with padding {padding}",
                input.w, input.h
            ),
        });
    };
    let output = checked_shape(at, filters, h, w)?;
    let weights_per_filter = size
        .checked_mul(size)
        .and_then(|k| (input.c / groups).checked_mul(k))
        .ok_or_else(|| too_large(at))?;
    let per_filter_floats = weights_per_filter.checked_add(if batch_normalize { 4 } else { 1 });
    let floats = per_filter_floats
        .and_then(|f| f.checked_mul(filters))
        .filter(|&f| f <= MAX_WEIGHTS)
        .ok_or_else(|| DarknetError::Shape {
            at: at.clone(),
            message: format!("the layer has more than {MAX_WEIGHTS} weights"),
        })?;
    let conv = Conv {
        filters,
        size,
        stride,
        padding,
        groups,
        batch_normalize,
        activation,
        weights_per_filter,
        floats,
    };
    Ok((conv, output))
}

/// Darknet: `out = (in + padding − size)/stride + 1`, windows starting at
/// `−padding/2`; cells outside the input never win the max.
fn read_maxpool(opts: &Options<'_>, input: Shape) -> Result<(MaxPool, Shape), DarknetError> {
    let at = opts.at;
    opts.neutral("stride_x", None)?;
    opts.neutral("stride_y", None)?;
    opts.neutral("maxpool_depth", Some(0.0))?;
    opts.neutral("antialiasing", Some(0.0))?;
    let stride = opts.size("stride", Some(1), 1)?;
    let size = opts.size("size", Some(stride as i64), 1)?;
    let padding = opts.size("padding", Some(size as i64 - 1), 0)?;
    let out = |len: usize| (len + padding).checked_sub(size).map(|v| v / stride + 1);
    let (Some(h), Some(w)) = (out(input.h), out(input.w)) else {
        return Err(DarknetError::Shape {
            at: at.clone(),
            message: format!(
                "a {size}x{size} window does not fit the {}x{} input with padding {padding}",
                input.w, input.h
            ),
        });
    };
    let begin = padding / 2;
    // Padding the last window needs past the end of the input (0 when it fits).
    let end = |len: usize, out: usize| ((out - 1) * stride + size).saturating_sub(begin + len);
    let pads = [begin, begin, end(input.h, h), end(input.w, w)];
    if pads.iter().any(|&p| p >= size) {
        return Err(DarknetError::Unsupported {
            at: at.clone(),
            what: format!(
                "padding {padding} for a size-{size} window (ONNX MaxPool needs each pad smaller than the window)"
            ),
        });
    }
    Ok((
        MaxPool { size, stride, pads },
        checked_shape(at, input.c, h, w)?,
    ))
}

fn read_yolo(opts: &Options<'_>) -> Result<Head, DarknetError> {
    opts.neutral("scale_x_y", Some(1.0))?;
    opts.neutral("new_coords", Some(0.0))?;
    let classes = opts.size("classes", Some(20), 1)?;
    let num = opts.size("num", Some(1), 1)?;
    let all = opts.anchors(num)?;
    let mask = match opts.ints("mask")? {
        None => (0..num).collect(),
        Some(values) => values
            .into_iter()
            .map(|m| usize::try_from(m).ok().filter(|&m| m < num))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| opts.bad("mask", "anchor indices below num"))?,
    };
    if mask.is_empty() {
        return Err(opts.bad("mask", "at least one anchor index"));
    }
    let anchors = mask.iter().filter_map(|&m| all.get(m).copied()).collect();
    Ok(Head {
        kind: HeadKind::Yolo,
        anchors,
        classes,
    })
}

fn read_region(opts: &Options<'_>) -> Result<Head, DarknetError> {
    for key in ["tree", "map", "softmax_tree"] {
        opts.neutral(key, None)?;
    }
    let classes = opts.size("classes", Some(20), 1)?;
    if opts.int("coords", Some(4))? != 4 {
        return Err(DarknetError::Unsupported {
            at: opts.at.clone(),
            what: "a region layer with coords other than 4".into(),
        });
    }
    if opts.int("softmax", Some(0))? != 1 {
        return Err(DarknetError::Unsupported {
            at: opts.at.clone(),
            what: "a region layer without softmax=1 (the decoder applies a softmax over classes)"
                .into(),
        });
    }
    let num = opts.size("num", Some(1), 1)?;
    Ok(Head {
        kind: HeadKind::Region,
        anchors: opts.anchors(num)?,
        classes,
    })
}

/// The output of `layer` as input of the layer at `at`; detection heads have none.
fn usable(layer: &Layer, at: &Location) -> Result<Shape, DarknetError> {
    match layer.kind {
        LayerKind::Head(_) => Err(DarknetError::Reference {
            at: at.clone(),
            message: format!(
                "uses the output of {}, a detection head whose activated output the importer does not produce",
                layer.at
            ),
        }),
        _ => Ok(layer.output),
    }
}

/// Resolves a `[route]` / `[shortcut]` layer reference: negative values are
/// relative to `index`, others absolute; it must name an earlier layer.
fn reference(
    at: &Location,
    index: usize,
    value: i64,
    earlier: &[Layer],
) -> Result<(usize, Shape), DarknetError> {
    let target = if value < 0 {
        (index as i64).checked_add(value)
    } else {
        Some(value)
    };
    let layer = target
        .and_then(|t| usize::try_from(t).ok())
        .and_then(|t| earlier.get(t))
        .filter(|l| l.index < index);
    match layer {
        Some(layer) => Ok((layer.index, usable(layer, at)?)),
        None => Err(DarknetError::Reference {
            at: at.clone(),
            message: if index == 0 {
                format!("refers to layer {value}, but no layer comes before it")
            } else {
                format!(
                    "refers to layer {value}, but only layers 0..={} come before it",
                    index - 1
                )
            },
        }),
    }
}

fn too_large(at: &Location) -> DarknetError {
    DarknetError::Shape {
        at: at.clone(),
        message: format!("the output would have more than {MAX_ELEMENTS} elements"),
    }
}

fn checked_shape(at: &Location, c: usize, h: usize, w: usize) -> Result<Shape, DarknetError> {
    match c.checked_mul(h).and_then(|ch| ch.checked_mul(w)) {
        Some(n) if n <= MAX_ELEMENTS => Ok(Shape { c, h, w }),
        _ => Err(too_large(at)),
    }
}

/// Typed access to one section's options, with errors naming the section.
struct Options<'a> {
    section: &'a Section,
    at: &'a Location,
}

impl<'a> Options<'a> {
    fn raw(&self, key: &str) -> Option<&'a str> {
        self.section.get(key).map(|o| o.value.as_str())
    }

    fn bad(&self, key: &str, expected: &'static str) -> DarknetError {
        DarknetError::BadValue {
            at: self.at.clone(),
            key: key.to_string(),
            value: self.raw(key).unwrap_or_default().to_string(),
            expected,
        }
    }

    fn int(&self, key: &'static str, default: Option<i64>) -> Result<i64, DarknetError> {
        match self.raw(key) {
            Some(value) => value.parse().map_err(|_| self.bad(key, "an integer")),
            None => default.ok_or_else(|| DarknetError::MissingOption {
                at: self.at.clone(),
                key,
            }),
        }
    }

    /// A size-like integer in `min..=2^24`.
    fn size(
        &self,
        key: &'static str,
        default: Option<i64>,
        min: i64,
    ) -> Result<usize, DarknetError> {
        let value = self.int(key, default)?;
        let expected = if min > 0 {
            "an integer from 1 to 16777216"
        } else {
            "an integer from 0 to 16777216"
        };
        if !(min..=MAX_OPTION).contains(&value) {
            return Err(DarknetError::BadValue {
                at: self.at.clone(),
                key: key.into(),
                value: value.to_string(),
                expected,
            });
        }
        usize::try_from(value).map_err(|_| self.bad(key, expected))
    }

    /// A comma-separated integer list; empty items are skipped.
    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>, DarknetError> {
        let Some(value) = self.raw(key) else {
            return Ok(None);
        };
        let items = value
            .split(',')
            .filter(|v| !v.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<i64>, _>>();
        items
            .map(Some)
            .map_err(|_| self.bad(key, "a comma-separated list of integers"))
    }

    /// `num` (width, height) anchor pairs, positive and finite.
    fn anchors(&self, num: usize) -> Result<Vec<[f32; 2]>, DarknetError> {
        let expected = "num positive (width, height) pairs, comma-separated";
        let value = self.raw("anchors").ok_or(DarknetError::MissingOption {
            at: self.at.clone(),
            key: "anchors",
        })?;
        let values = value
            .split(',')
            .filter(|v| !v.is_empty())
            .map(|v| v.parse::<f32>().ok().filter(|a| a.is_finite() && *a > 0.0))
            .collect::<Option<Vec<f32>>>()
            .ok_or_else(|| self.bad("anchors", expected))?;
        if values.len() != 2 * num {
            return Err(DarknetError::Shape {
                at: self.at.clone(),
                message: format!(
                    "anchors has {} values, num={num} needs {}",
                    values.len(),
                    2 * num
                ),
            });
        }
        Ok(values.chunks_exact(2).map(|p| [p[0], p[1]]).collect())
    }

    fn activation(&self, default: &str) -> Result<Activation, DarknetError> {
        match self.raw("activation").unwrap_or(default) {
            "linear" => Ok(Activation::Linear),
            "leaky" => Ok(Activation::Leaky),
            "logistic" => Ok(Activation::Logistic),
            "relu" => Ok(Activation::Relu),
            other => Err(DarknetError::Unsupported {
                at: self.at.clone(),
                what: format!("activation `{other}`"),
            }),
        }
    }

    /// Errors when `key` is present with a value other than `neutral`
    /// (`None`: any value), i.e. asks for a feature the importer lacks.
    fn neutral(&self, key: &str, neutral: Option<f64>) -> Result<(), DarknetError> {
        let Some(value) = self.raw(key) else {
            return Ok(());
        };
        if neutral.is_some_and(|n| value.parse::<f64>().is_ok_and(|v| v == n)) {
            return Ok(());
        }
        Err(DarknetError::Unsupported {
            at: self.at.clone(),
            what: format!("option `{key}={value}`"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(body: &str) -> Result<Network, DarknetError> {
        Network::from_cfg(&format!("[net]\nwidth=416\nheight=416\nchannels=3\n{body}"))
    }

    fn pool(size: usize, stride: usize, side: usize) -> (MaxPool, Shape) {
        let cfg = format!(
            "[net]\nwidth={side}\nheight={side}\nchannels=4\n[maxpool]\nsize={size}\nstride={stride}\n"
        );
        let n = Network::from_cfg(&cfg).unwrap();
        let LayerKind::MaxPool(p) = &n.layers[0].kind else {
            panic!("not a maxpool: {:?}", n.layers[0])
        };
        (p.clone(), n.layers[0].output)
    }

    #[test]
    fn maxpool_follows_darknet_output_sizes() {
        assert_eq!(
            pool(2, 2, 416),
            (
                MaxPool {
                    size: 2,
                    stride: 2,
                    pads: [0, 0, 0, 0]
                },
                Shape {
                    c: 4,
                    h: 208,
                    w: 208
                }
            )
        );
        // yolov3-tiny's 6th maxpool keeps 13x13 with one padding row/column at the end.
        assert_eq!(
            pool(2, 1, 13),
            (
                MaxPool {
                    size: 2,
                    stride: 1,
                    pads: [0, 0, 1, 1]
                },
                Shape { c: 4, h: 13, w: 13 }
            )
        );
        // Odd input, size 2 stride 2: darknet rounds up (13 -> 7) with an end pad.
        assert_eq!(
            pool(2, 2, 13),
            (
                MaxPool {
                    size: 2,
                    stride: 2,
                    pads: [0, 0, 1, 1]
                },
                Shape { c: 4, h: 7, w: 7 }
            )
        );
        // size 3 stride 2, padding 2: one before, one after.
        assert_eq!(
            pool(3, 2, 8),
            (
                MaxPool {
                    size: 3,
                    stride: 2,
                    pads: [1, 1, 0, 0]
                },
                Shape { c: 4, h: 4, w: 4 }
            )
        );
    }

    #[test]
    fn conv_route_reorg_and_heads_have_darknet_shapes() {
        let n = net("[convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=2\npad=1\nactivation=leaky\n\
             [route]\nlayers=-1,0\n\
             [reorg]\nstride=2\n\
             [convolutional]\nfilters=255\nsize=1\nactivation=linear\n\
             [yolo]\nmask=3,4,5\nanchors=10,14,23,27,37,58,81,82,135,169,344,319\nclasses=80\nnum=6\n")
        .unwrap();
        let shapes: Vec<Shape> = n.layers.iter().map(|l| l.output).collect();
        assert_eq!(
            shapes,
            [
                Shape {
                    c: 16,
                    h: 208,
                    w: 208
                },
                Shape {
                    c: 32,
                    h: 208,
                    w: 208
                },
                Shape {
                    c: 128,
                    h: 104,
                    w: 104
                },
                Shape {
                    c: 255,
                    h: 104,
                    w: 104
                },
                Shape {
                    c: 255,
                    h: 104,
                    w: 104
                },
            ]
        );
        let LayerKind::Conv(conv) = &n.layers[0].kind else {
            panic!()
        };
        assert_eq!(
            (conv.padding, conv.weights_per_filter, conv.floats),
            (1, 27, 16 * 4 + 16 * 27)
        );
        assert_eq!(n.layers[1].kind, LayerKind::Route { from: vec![0, 0] });
        let LayerKind::Head(head) = &n.layers[4].kind else {
            panic!()
        };
        assert_eq!(head.anchors, [[81.0, 82.0], [135.0, 169.0], [344.0, 319.0]]);
        assert!(n.has_heads());
    }

    #[test]
    fn errors_name_the_layer_and_line() {
        let err = net("[convolutional]\nfilters=8\n[dropout]\n").unwrap_err();
        assert_eq!(
            err,
            DarknetError::UnknownSection {
                at: Location {
                    layer: Some(1),
                    section: "dropout".into(),
                    line: 7
                }
            }
        );
        assert!(
            err.to_string()
                .starts_with("layer 1 [dropout] (line 7): unsupported section type"),
            "{err}"
        );

        let err = net("[convolutional]\nactivation=mish\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 0 [convolutional] (line 5): activation `mish` is not supported by the importer"
        );

        assert!(matches!(
            net("[route]\nlayers=-1\n"),
            Err(DarknetError::Reference { .. })
        ));
        assert!(matches!(
            net("[convolutional]\n[route]\nlayers=1\n"),
            Err(DarknetError::Reference { .. })
        ));
        assert!(matches!(
            net("[convolutional]\nfilters=x\n"),
            Err(DarknetError::BadValue { .. })
        ));
        assert!(matches!(
            net("[convolutional]\nsize=0\n"),
            Err(DarknetError::BadValue { .. })
        ));
        assert!(matches!(
            net("[shortcut]\n"),
            Err(DarknetError::MissingOption { key: "from", .. })
        ));
        assert!(matches!(
            net("[upsample]\nscale=2\n"),
            Err(DarknetError::Unsupported { .. })
        ));
        assert!(
            matches!(net("[reorg]\nstride=2\n"), Err(DarknetError::Shape { .. })),
            "3 channels do not split in 4"
        );
        // Head channel mismatch and a layer reading a head's output.
        let head = "[convolutional]\nfilters=18\n[yolo]\nmask=0\nanchors=1,2\nnum=1\nclasses=1\n";
        assert!(matches!(net(head), Err(DarknetError::Shape { .. })));
        let head = head.replace("filters=18", "filters=6");
        assert!(net(&head).is_ok());
        assert!(matches!(
            net(&format!("{head}[maxpool]\n")),
            Err(DarknetError::Reference { .. })
        ));
        assert!(matches!(
            net(&format!("{head}[route]\nlayers=-1\n")),
            Err(DarknetError::Reference { .. })
        ));
    }

    #[test]
    fn net_section_is_required() {
        assert!(matches!(
            Network::from_cfg(""),
            Err(DarknetError::MissingNet { .. })
        ));
        assert!(matches!(
            Network::from_cfg("[convolutional]\n"),
            Err(DarknetError::MissingNet { .. })
        ));
        let err = Network::from_cfg("[net]\nwidth=416\nchannels=3\n").unwrap_err();
        assert_eq!(err.to_string(), "[net] (line 1): missing option `height`");
    }
}
