//! Typed darknet layers and their weights to an ONNX `ModelProto`.
//!
//! Tensor names say which darknet layer made them: `l{index}_{kind}`
//! (`l4_maxpool`, `l0_conv_leaky`, ...); initializers are
//! `l{index}_conv.weight` / `.bias`. Each head's input is copied by an
//! `Identity` node to a graph output named `l{index}_yolo` or
//! `l{index}_region`, shape `[batch, A·(5+C), gh, gw]`. With
//! [`ImportOptions::layer_outputs`], one more `Identity` per layer copies its
//! output to a graph output named [`layer_output_name`] (`l{index}_output`).

use super::network::{Activation, Conv, Layer, LayerKind, Network, Shape};
use super::weights::{WeightReader, first_non_finite_filter};
use super::{DarknetError, ImportOptions, layer_output_name};
use crate::onnx::attribute_proto::AttributeType;
use crate::onnx::tensor_proto::DataType;
use crate::onnx::tensor_shape_proto::{Dimension, dimension};
use crate::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};
use crate::yolo::{DetectorSpec, HeadKind, HeadSpec, METADATA_KEY};

/// ONNX operator set the graph uses.
pub(crate) const OPSET_VERSION: i64 = 17;
/// ONNX IR version of the model (IR 8 goes with opsets up to 17).
pub(crate) const IR_VERSION: i64 = 8;
/// Name of the graph input, `[batch, channels, height, width]` float32.
pub(crate) const INPUT_NAME: &str = "images";
/// Symbolic name of the batch dimension.
pub(crate) const BATCH_DIM: &str = "batch";
/// `producer_name` of imported models.
pub(crate) const PRODUCER_NAME: &str = "argus-darknet-import";
/// Darknet's leaky ReLU slope.
const LEAKY_SLOPE: f32 = 0.1;

/// Builds the model; reads each convolution's weights from `reader` in
/// layer order (the caller checks that nothing is left over).
pub(crate) fn build(
    net: &Network,
    reader: &mut WeightReader<'_>,
    options: &ImportOptions,
) -> Result<(ModelProto, DetectorSpec), DarknetError> {
    if !net.has_heads() {
        return Err(DarknetError::NoHeads);
    }
    let mut g = Graph::default();
    // Output tensor of each layer so far; `names[i]` is layer i's.
    let mut names: Vec<String> = Vec::with_capacity(net.layers.len());
    let mut outputs = Vec::new();
    let mut heads = Vec::new();
    for layer in &net.layers {
        let i = layer.index;
        let input = names.last().map_or(INPUT_NAME, String::as_str).to_string();
        // `Network` checked that every `from` index names an earlier layer,
        // so indexing `names` (one entry per earlier layer) cannot fail.
        let name = match &layer.kind {
            LayerKind::Conv(conv) => convolution(&mut g, reader, layer, conv, &input)?,
            LayerKind::MaxPool(pool) => g.node(
                "MaxPool",
                [input.as_str()],
                format!("l{i}_maxpool"),
                vec![
                    ints("kernel_shape", &[pool.size, pool.size]),
                    ints("strides", &[pool.stride, pool.stride]),
                    ints("pads", &pool.pads),
                ],
            ),
            LayerKind::Route { from } if from.len() == 1 => names[from[0]].clone(),
            LayerKind::Route { from } => {
                let inputs: Vec<&str> = from.iter().map(|&f| names[f].as_str()).collect();
                g.node(
                    "Concat",
                    inputs,
                    format!("l{i}_route"),
                    vec![int("axis", 1)],
                )
            }
            LayerKind::Upsample { stride } => {
                let s = *stride as f32;
                let scales = g.floats(format!("l{i}_upsample.scales"), &[4], &[1.0, 1.0, s, s]);
                // Asymmetric coordinates with floor: out[y, x] = in[y / s, x / s], as darknet's upsample_cpu.
                g.node(
                    "Resize",
                    [input.as_str(), "", scales.as_str()],
                    format!("l{i}_upsample"),
                    vec![
                        string("mode", "nearest"),
                        string("coordinate_transformation_mode", "asymmetric"),
                        string("nearest_mode", "floor"),
                    ],
                )
            }
            LayerKind::Shortcut { from, activation } => {
                let sum = g.node(
                    "Add",
                    [input.as_str(), names[*from].as_str()],
                    format!("l{i}_shortcut"),
                    vec![],
                );
                activate(&mut g, sum, *activation)
            }
            LayerKind::Reorg { stride } => reorg(&mut g, &input, layer.input, *stride, i),
            LayerKind::Head(head) => {
                let kind = match head.kind {
                    HeadKind::Yolo => "yolo",
                    HeadKind::Region => "region",
                };
                let name = g.node("Identity", [input.as_str()], format!("l{i}_{kind}"), vec![]);
                outputs.push(value_info(&name, layer.output));
                heads.push(HeadSpec {
                    kind: head.kind,
                    anchors: head.anchors.clone(),
                    num_classes: head.classes,
                    output: name.clone(),
                });
                name
            }
        };
        names.push(name);
    }
    let mut doc = String::from(
        "Imported from a darknet cfg and weights; outputs are the raw inputs of the detection heads",
    );
    if options.layer_outputs {
        // After the heads, so that positional consumers still find them first.
        for (layer, tensor) in net.layers.iter().zip(&names) {
            let name = g.node(
                "Identity",
                [tensor.as_str()],
                layer_output_name(layer.index),
                vec![],
            );
            outputs.push(value_info(&name, layer.output));
        }
        doc.push_str(", then every layer's output (l{index}_output)");
    }
    doc.push('.');
    let spec = DetectorSpec {
        input_width: u32::try_from(net.input.w).unwrap_or(u32::MAX),
        input_height: u32::try_from(net.input.h).unwrap_or(u32::MAX),
        heads,
    };
    let graph = GraphProto {
        node: g.nodes,
        name: Some("darknet".into()),
        initializer: g.initializers,
        input: vec![value_info(INPUT_NAME, net.input)],
        output: outputs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET_VERSION),
        }],
        producer_name: Some(PRODUCER_NAME.into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(doc),
        graph: Some(graph),
        metadata_props: vec![StringStringEntryProto {
            key: Some(METADATA_KEY.into()),
            value: Some(spec.to_string()),
        }],
        ..Default::default()
    };
    Ok((model, spec))
}

/// Conv with batch norm folded in, then the activation.
fn convolution(
    g: &mut Graph,
    reader: &mut WeightReader<'_>,
    layer: &Layer,
    conv: &Conv,
    input: &str,
) -> Result<String, DarknetError> {
    let i = layer.index;
    let (weights, biases) = reader.conv(conv, &layer.at)?.fold();
    if let Some(filter) = first_non_finite_filter(&weights, &biases) {
        return Err(DarknetError::NonFinite {
            at: layer.at.clone(),
            filter,
        });
    }
    let kernel = [
        conv.filters,
        layer.input.c / conv.groups,
        conv.size,
        conv.size,
    ];
    let w = g.floats(format!("l{i}_conv.weight"), &kernel, &weights);
    let b = g.floats(format!("l{i}_conv.bias"), &[conv.filters], &biases);
    let p = conv.padding;
    let out = g.node(
        "Conv",
        [input, w.as_str(), b.as_str()],
        format!("l{i}_conv"),
        vec![
            ints("kernel_shape", &[conv.size, conv.size]),
            ints("strides", &[conv.stride, conv.stride]),
            ints("pads", &[p, p, p, p]),
            ints("dilations", &[1, 1]),
            int("group", conv.groups),
        ],
    );
    Ok(activate(g, out, conv.activation))
}

/// Applies `activation` to `input`, naming the result `{input}_{activation}`.
fn activate(g: &mut Graph, input: String, activation: Activation) -> String {
    match activation {
        Activation::Linear => input,
        Activation::Leaky => {
            let name = format!("{input}_leaky");
            g.node(
                "LeakyRelu",
                [input.as_str()],
                name,
                vec![float("alpha", LEAKY_SLOPE)],
            )
        }
        Activation::Logistic => {
            let name = format!("{input}_logistic");
            g.node("Sigmoid", [input.as_str()], name, vec![])
        }
        Activation::Relu => {
            let name = format!("{input}_relu");
            g.node("Relu", [input.as_str()], name, vec![])
        }
    }
}

/// Darknet's `[reorg]` as Reshape → Transpose → Reshape.
///
/// pjreddie's `forward_reorg_layer` calls
/// `reorg_cpu(input, l.w, l.h, l.c, batch, s, forward = 0, output)` with the
/// layer's *input* sizes `w, h, c`. With `forward = 0` that loop computes, per
/// batch item, for `k < c, j < h, i < w`:
///
/// ```text
/// out[(k·h + j)·w + i] = in[(c2·h·s + j·s + oy)·w·s + i·s + ox]
///     where c2 = k mod (c/s²), oy·s + ox = k div (c/s²)
/// ```
///
/// i.e. it reads the flat input as if it were `[c/s², h·s, w·s]` (not its real
/// `[c, h, w]` shape), gathers each `s×s` block into channels, and darknet
/// then treats the flat result as the `[c·s², h/s, w/s]` output. So:
///
/// 1. Reshape `[N, c, h, w]` → `[N, c/s², h, s, w, s]` (axes `c2, j, oy, i, ox`);
/// 2. Transpose with perm `[0, 3, 5, 1, 2, 4]` → `[N, s, s, c/s², h, w]`
///    (axes `oy, ox, c2, j, i`, flat index `(k·h + j)·w + i` as above);
/// 3. Reshape → `[N, c·s², h/s, w/s]`.
///
/// ONNX `SpaceToDepth` would instead read the input in its true shape; the
/// two differ in which values land in which channel and cell, and only this
/// one matches the trained YOLOv2 weights. (AlexeyAB's fork passes the
/// *output* sizes to `reorg_cpu`, which does equal `SpaceToDepth`.)
fn reorg(g: &mut Graph, input: &str, shape: Shape, s: usize, i: usize) -> String {
    let Shape { c, h, w } = shape;
    let split = g.int64s(
        format!("l{i}_reorg.split_shape"),
        &[0, dim(c / (s * s)), dim(h), dim(s), dim(w), dim(s)],
    );
    let joined = g.int64s(
        format!("l{i}_reorg.out_shape"),
        &[0, dim(c * s * s), dim(h / s), dim(w / s)],
    );
    let blocks = g.node(
        "Reshape",
        [input, split.as_str()],
        format!("l{i}_reorg_blocks"),
        vec![],
    );
    let moved = g.node(
        "Transpose",
        [blocks.as_str()],
        format!("l{i}_reorg_transposed"),
        vec![ints("perm", &[0, 3, 5, 1, 2, 4])],
    );
    g.node(
        "Reshape",
        [moved.as_str(), joined.as_str()],
        format!("l{i}_reorg"),
        vec![],
    )
}

/// Nodes and initializers under construction.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl Graph {
    /// Adds a node with one output, named like its output; returns the output name.
    fn node<'s>(
        &mut self,
        op_type: &str,
        inputs: impl IntoIterator<Item = &'s str>,
        output: String,
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.into_iter().map(str::to_string).collect(),
            output: vec![output.clone()],
            name: Some(output.clone()),
            op_type: Some(op_type.into()),
            attribute,
            ..Default::default()
        });
        output
    }

    /// Adds a float32 initializer; returns its name.
    fn floats(&mut self, name: String, dims: &[usize], values: &[f32]) -> String {
        let mut raw = Vec::with_capacity(values.len() * 4);
        values
            .iter()
            .for_each(|v| raw.extend_from_slice(&v.to_le_bytes()));
        self.tensor(
            name,
            dims.iter().map(|&d| dim(d)).collect(),
            DataType::Float,
            raw,
        )
    }

    /// Adds a 1-D int64 initializer; returns its name.
    fn int64s(&mut self, name: String, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, vec![dim(values.len())], DataType::Int64, raw)
    }

    fn tensor(
        &mut self,
        name: String,
        dims: Vec<i64>,
        data_type: DataType,
        raw: Vec<u8>,
    ) -> String {
        self.initializers.push(TensorProto {
            dims,
            data_type: Some(data_type as i32),
            name: Some(name.clone()),
            raw_data: Some(raw),
            ..Default::default()
        });
        name
    }
}

/// A size as an ONNX dimension; sizes are bounded far below `i64::MAX` by `Network`.
fn dim(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// `[batch, c, h, w]` float32 value info.
fn value_info(name: &str, shape: Shape) -> ValueInfoProto {
    let fixed = |size: usize| Dimension {
        value: Some(dimension::Value::DimValue(dim(size))),
        denotation: None,
    };
    let batch = Dimension {
        value: Some(dimension::Value::DimParam(BATCH_DIM.into())),
        denotation: None,
    };
    let tensor = type_proto::Tensor {
        elem_type: Some(DataType::Float as i32),
        shape: Some(TensorShapeProto {
            dim: vec![batch, fixed(shape.c), fixed(shape.h), fixed(shape.w)],
        }),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn attribute(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(kind as i32),
        ..Default::default()
    }
}

fn int(name: &str, value: usize) -> AttributeProto {
    AttributeProto {
        i: Some(dim(value)),
        ..attribute(name, AttributeType::Int)
    }
}

fn ints(name: &str, values: &[usize]) -> AttributeProto {
    AttributeProto {
        ints: values.iter().map(|&v| dim(v)).collect(),
        ..attribute(name, AttributeType::Ints)
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: Some(value),
        ..attribute(name, AttributeType::Float)
    }
}

fn string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        s: Some(value.as_bytes().to_vec()),
        ..attribute(name, AttributeType::String)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::darknet::{generate_weights, import, import_with};

    /// 26x26x8 input; maxpool 2/1 (asymmetric), conv, reorg, route, upsample, two heads.
    const CFG: &str = "[net]\nwidth=26\nheight=26\nchannels=8\n\
        [maxpool]\nsize=2\nstride=1\n\
        [convolutional]\nbatch_normalize=1\nfilters=16\nsize=3\nstride=2\npad=1\nactivation=leaky\n\
        [convolutional]\nfilters=21\nsize=1\nactivation=linear\n\
        [yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\nnum=3\nclasses=2\n\
        [route]\nlayers=0\n\
        [reorg]\nstride=2\n\
        [route]\nlayers=-1,1\n\
        [convolutional]\nfilters=14\nsize=1\nactivation=linear\n\
        [region]\nanchors=1,1,2,2\nnum=2\nclasses=2\ncoords=4\nsoftmax=1\n";

    fn model() -> (ModelProto, DetectorSpec) {
        let imported = import(CFG, &generate_weights(CFG, 1).unwrap()).unwrap();
        (
            ModelProto::decode(imported.onnx.as_slice()).unwrap(),
            imported.spec,
        )
    }

    fn dims(info: &ValueInfoProto) -> Vec<String> {
        let Some(TypeProto {
            value: Some(type_proto::Value::TensorType(t)),
            ..
        }) = &info.r#type
        else {
            panic!()
        };
        let shape = t.shape.as_ref().unwrap();
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) => v.to_string(),
                Some(dimension::Value::DimParam(p)) => p.clone(),
                None => "?".into(),
            })
            .collect()
    }

    fn attr<'m>(node: &'m NodeProto, name: &str) -> &'m AttributeProto {
        node.attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
            .unwrap()
    }

    #[test]
    fn model_header_metadata_and_io() {
        let (m, spec) = model();
        assert_eq!(m.ir_version, Some(8));
        assert_eq!(
            m.opset_import,
            [OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17)
            }]
        );
        assert_eq!(m.producer_name.as_deref(), Some("argus-darknet-import"));
        assert_eq!(m.metadata_props.len(), 1);
        assert_eq!(m.metadata_props[0].key.as_deref(), Some(METADATA_KEY));
        let text = m.metadata_props[0].value.clone().unwrap();
        assert_eq!(
            text,
            "input=26x26;head=yolo,out=l3_yolo,classes=2,anchors=1 2 3 4 5 6;head=region,out=l8_region,classes=2,anchors=1 1 2 2"
        );
        assert_eq!(text.parse::<DetectorSpec>().unwrap(), spec);
        let g = m.graph.unwrap();
        assert_eq!(g.input.len(), 1);
        assert_eq!(g.input[0].name.as_deref(), Some("images"));
        assert_eq!(dims(&g.input[0]), ["batch", "8", "26", "26"]);
        let outs: Vec<(Option<&str>, Vec<String>)> = g
            .output
            .iter()
            .map(|o| (o.name.as_deref(), dims(o)))
            .collect();
        assert_eq!(
            outs,
            [
                (
                    Some("l3_yolo"),
                    vec!["batch".into(), "21".into(), "13".into(), "13".into()]
                ),
                (
                    Some("l8_region"),
                    vec!["batch".into(), "14".into(), "13".into(), "13".into()]
                )
            ]
        );
    }

    #[test]
    fn nodes_carry_darknet_semantics() {
        let g = model().0.graph.unwrap();
        let ops: Vec<&str> = g
            .node
            .iter()
            .map(|n| n.op_type.as_deref().unwrap())
            .collect();
        assert_eq!(
            ops,
            [
                "MaxPool",
                "Conv",
                "LeakyRelu",
                "Conv",
                "Identity",
                "Reshape",
                "Transpose",
                "Reshape",
                "Concat",
                "Conv",
                "Identity"
            ]
        );
        let pool = &g.node[0];
        assert_eq!(attr(pool, "pads").ints, [0, 0, 1, 1]);
        assert_eq!(attr(pool, "kernel_shape").ints, [2, 2]);
        let conv = &g.node[1];
        assert_eq!(conv.input, ["l0_maxpool", "l1_conv.weight", "l1_conv.bias"]);
        assert_eq!(attr(conv, "pads").ints, [1, 1, 1, 1]);
        assert_eq!(attr(conv, "strides").ints, [2, 2]);
        assert_eq!(attr(&g.node[2], "alpha").f, Some(0.1));
        // Route of one layer is that layer's tensor: the reorg reads the maxpool output.
        assert_eq!(g.node[5].input[0], "l0_maxpool");
        assert_eq!(attr(&g.node[6], "perm").ints, [0, 3, 5, 1, 2, 4]);
        let shape = |name: &str| {
            let t = g
                .initializer
                .iter()
                .find(|t| t.name.as_deref() == Some(name))
                .unwrap();
            t.raw_data
                .as_ref()
                .unwrap()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<_>>()
        };
        assert_eq!(shape("l5_reorg.split_shape"), [0, 2, 26, 2, 26, 2]);
        assert_eq!(shape("l5_reorg.out_shape"), [0, 32, 13, 13]);
        assert_eq!(g.node[8].input, ["l5_reorg", "l1_conv_leaky"]);
        let weight = g
            .initializer
            .iter()
            .find(|t| t.name.as_deref() == Some("l1_conv.weight"))
            .unwrap();
        assert_eq!(weight.dims, [16, 8, 3, 3]);
        assert_eq!(weight.raw_data.as_ref().unwrap().len(), 16 * 8 * 9 * 4);
    }

    #[test]
    fn layer_outputs_expose_every_layer_after_the_heads() {
        let weights = generate_weights(CFG, 1).unwrap();
        let options = ImportOptions {
            layer_outputs: true,
        };
        let imported = import_with(CFG, &weights, &options).unwrap();
        assert_eq!(imported.spec, model().1, "same heads and spec");
        let g = ModelProto::decode(imported.onnx.as_slice())
            .unwrap()
            .graph
            .unwrap();
        let outs: Vec<(&str, Vec<String>)> = g
            .output
            .iter()
            .map(|o| (o.name.as_deref().unwrap(), dims(o)))
            .collect();
        let expected: [(&str, [&str; 4]); 11] = [
            ("l3_yolo", ["batch", "21", "13", "13"]),
            ("l8_region", ["batch", "14", "13", "13"]),
            ("l0_output", ["batch", "8", "26", "26"]),
            ("l1_output", ["batch", "16", "13", "13"]),
            ("l2_output", ["batch", "21", "13", "13"]),
            ("l3_output", ["batch", "21", "13", "13"]),
            ("l4_output", ["batch", "8", "26", "26"]),
            ("l5_output", ["batch", "32", "13", "13"]),
            ("l6_output", ["batch", "48", "13", "13"]),
            ("l7_output", ["batch", "14", "13", "13"]),
            ("l8_output", ["batch", "14", "13", "13"]),
        ];
        assert_eq!(outs.len(), expected.len());
        for ((name, dims), (want_name, want_dims)) in outs.iter().zip(expected) {
            assert_eq!(*name, want_name);
            assert_eq!(dims, &want_dims);
        }
        // One Identity per layer, reading the tensor that layer made; the
        // single-layer route (layer 4) reads layer 0's maxpool.
        let sources: Vec<(&str, &str)> = g
            .node
            .iter()
            .filter(|n| n.output[0].ends_with("_output"))
            .map(|n| (n.input[0].as_str(), n.op_type.as_deref().unwrap()))
            .collect();
        assert_eq!(
            sources,
            [
                ("l0_maxpool", "Identity"),
                ("l1_conv_leaky", "Identity"),
                ("l2_conv", "Identity"),
                ("l3_yolo", "Identity"),
                ("l0_maxpool", "Identity"),
                ("l5_reorg", "Identity"),
                ("l6_route", "Identity"),
                ("l7_conv", "Identity"),
                ("l8_region", "Identity"),
            ]
        );
        assert_eq!(layer_output_name(12), "l12_output");
    }

    #[test]
    fn default_options_make_the_plain_model() {
        let weights = generate_weights(CFG, 1).unwrap();
        let plain = import(CFG, &weights).unwrap();
        let model = ModelProto::decode(plain.onnx.as_slice()).unwrap();
        // The heads' inputs are the only outputs, and no layer copies exist.
        let graph = model.graph.as_ref().unwrap();
        let outputs: Vec<&str> = graph
            .output
            .iter()
            .map(|o| o.name.as_deref().unwrap())
            .collect();
        assert_eq!(outputs, ["l3_yolo", "l8_region"]);
        assert!(graph.node.iter().all(|n| !n.output[0].ends_with("_output")));
        let doc = model.doc_string.unwrap();
        assert!(!doc.contains("l{index}_output"), "{doc}");
    }

    #[test]
    fn a_cfg_without_heads_has_no_model() {
        let cfg = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=2\n";
        assert_eq!(
            import(cfg, &generate_weights(cfg, 0).unwrap()).unwrap_err(),
            DarknetError::NoHeads
        );
    }
}
