//! YOLO detector description and output decoding.
//!
//! The importer writes a [`DetectorSpec`] into the ONNX model's metadata under
//! [`METADATA_KEY`], so the edge agent knows how to decode any imported model.
//! Heads are left raw in the graph (no sigmoid or softmax); decoding applies
//! them here, only to cells that can pass the score threshold.

use std::fmt;

use ndarray::ArrayView3;

use crate::bbox::BBox;

/// ONNX metadata key under which the detector spec is stored.
pub const METADATA_KEY: &str = "argus.detector";

/// How a head's raw output is turned into boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadKind {
    /// YOLOv3 `[yolo]`: sigmoid objectness and per-class sigmoid, anchors in input pixels.
    Yolo,
    /// YOLOv2 `[region]`: sigmoid objectness, softmax over classes, anchors in grid cells.
    Region,
}

/// One detection head: an output tensor `[N, A*(5+C), H, W]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSpec {
    /// Decoding rule.
    pub kind: HeadKind,
    /// Anchor (width, height) pairs; the unit depends on [`HeadKind`].
    pub anchors: Vec<[f32; 2]>,
    /// Number of classes C.
    pub num_classes: usize,
    /// Name of the graph output holding this head.
    pub output: String,
}

/// Everything needed to run and decode a detector.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    /// Network input width in pixels.
    pub input_width: u32,
    /// Network input height in pixels.
    pub input_height: u32,
    /// Heads in graph output order.
    pub heads: Vec<HeadSpec>,
}

/// A detector spec or a head output that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    /// The metadata text is not a valid spec.
    #[error("invalid detector metadata: {0}")]
    Metadata(String),
    /// The output tensor does not have the shape the head describes.
    #[error(
        "head {output}: output has {channels} channels, expected {expected} ({anchors} anchors x (5 + {classes} classes))"
    )]
    Channels {
        /// Head output name.
        output: String,
        /// Channels found.
        channels: usize,
        /// Channels expected.
        expected: usize,
        /// Anchors in the head.
        anchors: usize,
        /// Classes in the head.
        classes: usize,
    },
}

impl HeadSpec {
    /// Channels the head's output must have.
    pub fn channels(&self) -> usize {
        self.anchors.len() * (5 + self.num_classes)
    }
}

impl fmt::Display for DetectorSpec {
    /// `input=416x416;head=yolo,out=NAME,classes=80,anchors=81 82 135 169`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "input={}x{}", self.input_width, self.input_height)?;
        for head in &self.heads {
            let kind = match head.kind {
                HeadKind::Yolo => "yolo",
                HeadKind::Region => "region",
            };
            let anchors: Vec<String> = head
                .anchors
                .iter()
                .flat_map(|a| a.iter().map(|v| v.to_string()))
                .collect();
            write!(
                f,
                ";head={kind},out={},classes={},anchors={}",
                head.output,
                head.num_classes,
                anchors.join(" ")
            )?;
        }
        Ok(())
    }
}

impl std::str::FromStr for DetectorSpec {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let bad = |what: &str| SpecError::Metadata(format!("{what} in {text:?}"));
        let mut parts = text.split(';');
        let input = parts
            .next()
            .and_then(|p| p.strip_prefix("input="))
            .ok_or_else(|| bad("missing input="))?;
        let (w, h) = input
            .split_once('x')
            .ok_or_else(|| bad("input is not WxH"))?;
        let input_width = w.parse().map_err(|_| bad("bad input width"))?;
        let input_height = h.parse().map_err(|_| bad("bad input height"))?;
        let mut heads = Vec::new();
        for part in parts {
            let body = part
                .strip_prefix("head=")
                .ok_or_else(|| bad("expected head="))?;
            let mut fields = body.split(',');
            let kind = match fields.next() {
                Some("yolo") => HeadKind::Yolo,
                Some("region") => HeadKind::Region,
                _ => return Err(bad("unknown head kind")),
            };
            let (mut output, mut num_classes, mut anchors) = (None, None, None);
            for field in fields {
                match field.split_once('=') {
                    Some(("out", v)) => output = Some(v.to_string()),
                    Some(("classes", v)) => {
                        num_classes = Some(v.parse().map_err(|_| bad("bad classes"))?)
                    }
                    Some(("anchors", v)) => {
                        let values: Vec<f32> = v
                            .split_whitespace()
                            .map(str::parse)
                            .collect::<Result<_, _>>()
                            .map_err(|_| bad("bad anchors"))?;
                        if values.is_empty() || !values.len().is_multiple_of(2) {
                            return Err(bad("anchors must be (w, h) pairs"));
                        }
                        anchors = Some(values.chunks_exact(2).map(|c| [c[0], c[1]]).collect());
                    }
                    _ => return Err(bad("unknown head field")),
                }
            }
            heads.push(HeadSpec {
                kind,
                output: output.ok_or_else(|| bad("head without out="))?,
                num_classes: num_classes.ok_or_else(|| bad("head without classes="))?,
                anchors: anchors.ok_or_else(|| bad("head without anchors="))?,
            });
        }
        if heads.is_empty() {
            return Err(bad("no heads"));
        }
        Ok(DetectorSpec {
            input_width,
            input_height,
            heads,
        })
    }
}

/// A box before non-maximum suppression, in network input pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Box in network input pixels.
    pub bbox: BBox,
    /// Objectness times class probability.
    pub score: f32,
    /// Class index.
    pub class_id: u32,
}

/// Which candidates decoding keeps.
#[derive(Debug, Clone, Copy)]
pub struct DecodeParams<'a> {
    /// Minimum objectness x class probability.
    pub score_threshold: f32,
    /// Classes to keep; `None` keeps all.
    pub classes: Option<&'a [u32]>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Decodes one batch item of one head, `output` shaped `[A*(5+C), H, W]`,
/// appending candidates to `out`. Non-finite values never produce a candidate.
pub fn decode_head(
    spec: &DetectorSpec,
    head: &HeadSpec,
    output: ArrayView3<'_, f32>,
    params: DecodeParams<'_>,
    out: &mut Vec<Candidate>,
) -> Result<(), SpecError> {
    let (channels, grid_h, grid_w) = output.dim();
    if channels != head.channels() {
        return Err(SpecError::Channels {
            output: head.output.clone(),
            channels,
            expected: head.channels(),
            anchors: head.anchors.len(),
            classes: head.num_classes,
        });
    }
    let (in_w, in_h) = (spec.input_width as f32, spec.input_height as f32);
    let stride = 5 + head.num_classes;
    let wanted = |class: usize| {
        params
            .classes
            .is_none_or(|keep| keep.contains(&(class as u32)))
    };
    let mut class_probs = vec![0.0f32; head.num_classes];
    for (a, anchor) in head.anchors.iter().enumerate() {
        let base = a * stride;
        for row in 0..grid_h {
            for col in 0..grid_w {
                let at = |k: usize| output[[base + k, row, col]];
                let objectness = sigmoid(at(4));
                if objectness.is_nan() || objectness < params.score_threshold {
                    continue;
                }
                let cx = (sigmoid(at(0)) + col as f32) / grid_w as f32 * in_w;
                let cy = (sigmoid(at(1)) + row as f32) / grid_h as f32 * in_h;
                let (w, h) = match head.kind {
                    HeadKind::Yolo => (at(2).exp() * anchor[0], at(3).exp() * anchor[1]),
                    HeadKind::Region => (
                        at(2).exp() * anchor[0] / grid_w as f32 * in_w,
                        at(3).exp() * anchor[1] / grid_h as f32 * in_h,
                    ),
                };
                let bbox = BBox::from_center(cx, cy, w, h);
                if !bbox.is_valid() {
                    continue;
                }
                match head.kind {
                    HeadKind::Yolo => {
                        for (c, p) in class_probs.iter_mut().enumerate() {
                            *p = sigmoid(at(5 + c));
                        }
                    }
                    HeadKind::Region => softmax_into(|c| at(5 + c), &mut class_probs),
                }
                for (class, p) in class_probs.iter().enumerate() {
                    let score = objectness * p;
                    if score >= params.score_threshold && wanted(class) {
                        out.push(Candidate {
                            bbox,
                            score,
                            class_id: class as u32,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Numerically stable softmax of `logit(0..out.len())` into `out`.
fn softmax_into(logit: impl Fn(usize) -> f32, out: &mut [f32]) {
    let max = (0..out.len()).map(&logit).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for (c, p) in out.iter_mut().enumerate() {
        *p = (logit(c) - max).exp();
        sum += *p;
    }
    if sum > 0.0 && sum.is_finite() {
        out.iter_mut().for_each(|p| *p /= sum);
    } else {
        out.iter_mut().for_each(|p| *p = 0.0);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array3;

    use super::*;

    fn logit(p: f32) -> f32 {
        (p / (1.0 - p)).ln()
    }

    fn spec(kind: HeadKind, anchors: Vec<[f32; 2]>, classes: usize) -> DetectorSpec {
        DetectorSpec {
            input_width: 416,
            input_height: 416,
            heads: vec![HeadSpec {
                kind,
                anchors,
                num_classes: classes,
                output: "out".into(),
            }],
        }
    }

    #[test]
    fn metadata_round_trips() {
        let s = spec(HeadKind::Yolo, vec![[81.0, 82.0], [135.0, 169.0]], 80);
        let text = s.to_string();
        assert_eq!(
            text,
            "input=416x416;head=yolo,out=out,classes=80,anchors=81 82 135 169"
        );
        assert_eq!(text.parse::<DetectorSpec>().unwrap(), s);
        assert!("input=416x416".parse::<DetectorSpec>().is_err());
        assert!(
            "input=416x416;head=yolo,out=o,classes=2,anchors=1"
                .parse::<DetectorSpec>()
                .is_err()
        );
    }

    #[test]
    fn yolo_v3_cell_decodes_to_the_expected_box() {
        // 2 anchors, 2 classes, 13x13 grid; one confident cell at row 3, col 5, anchor 1.
        let s = spec(HeadKind::Yolo, vec![[10.0, 14.0], [81.0, 82.0]], 2);
        let mut t = Array3::<f32>::from_elem((2 * 7, 13, 13), -20.0);
        let base = 7;
        t[[base, 3, 5]] = 0.0; // sigmoid = 0.5 -> centre of the cell
        t[[base + 1, 3, 5]] = 0.0;
        t[[base + 2, 3, 5]] = 0.0; // exp(0) * 81 px
        t[[base + 3, 3, 5]] = 2f32.ln(); // exp(ln 2) * 82 px
        t[[base + 4, 3, 5]] = logit(0.9);
        t[[base + 5, 3, 5]] = logit(0.8); // class 0
        t[[base + 6, 3, 5]] = logit(0.1); // class 1
        let mut out = Vec::new();
        let params = DecodeParams {
            score_threshold: 0.25,
            classes: None,
        };
        decode_head(&s, &s.heads[0], t.view(), params, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let c = out[0];
        assert_eq!(c.class_id, 0);
        assert!((c.score - 0.72).abs() < 1e-5);
        let cell = 416.0 / 13.0;
        assert!((c.bbox.x + c.bbox.w / 2.0 - 5.5 * cell).abs() < 1e-3);
        assert!((c.bbox.y + c.bbox.h / 2.0 - 3.5 * cell).abs() < 1e-3);
        assert!((c.bbox.w - 81.0).abs() < 1e-3 && (c.bbox.h - 164.0).abs() < 1e-3);
    }

    #[test]
    fn region_v2_uses_grid_anchors_and_softmax() {
        let s = spec(HeadKind::Region, vec![[1.0, 1.0], [2.0, 4.0]], 3);
        let mut t = Array3::<f32>::from_elem((2 * 8, 13, 13), -30.0);
        let base = 8;
        t[[base, 0, 12]] = 0.0; // centre of the cell
        t[[base + 1, 0, 12]] = 0.0;
        t[[base + 4, 0, 12]] = logit(0.5);
        t[[base + 5, 0, 12]] = 3f32.ln(); // softmax over (3, 1, 0+) -> class 0 gets 3/4 (class 2 at -30 ~ 0)
        t[[base + 6, 0, 12]] = 0.0;
        t[[base + 2, 0, 12]] = 0.0;
        t[[base + 3, 0, 12]] = 0.0;
        let mut out = Vec::new();
        let params = DecodeParams {
            score_threshold: 0.3,
            classes: Some(&[0]),
        };
        decode_head(&s, &s.heads[0], t.view(), params, &mut out).unwrap();
        assert_eq!(out.len(), 1, "only class 0 passes the filter");
        let c = out[0];
        assert!(
            (c.score - 0.375).abs() < 1e-4,
            "0.5 * 0.75, got {}",
            c.score
        );
        assert!((c.bbox.w - 2.0 * 32.0).abs() < 1e-3 && (c.bbox.h - 4.0 * 32.0).abs() < 1e-3);
        assert!((c.bbox.x + c.bbox.w / 2.0 - 12.5 * 32.0).abs() < 1e-3);
        assert!((c.bbox.y + c.bbox.h / 2.0 - 0.5 * 32.0).abs() < 1e-3);
    }

    #[test]
    fn wrong_channel_count_is_an_error_and_nan_is_skipped() {
        let s = spec(HeadKind::Yolo, vec![[10.0, 14.0]], 1);
        let t = Array3::<f32>::zeros((7, 2, 2));
        let params = DecodeParams {
            score_threshold: 0.1,
            classes: None,
        };
        assert!(matches!(
            decode_head(&s, &s.heads[0], t.view(), params, &mut Vec::new()),
            Err(SpecError::Channels { .. })
        ));
        let mut t = Array3::<f32>::from_elem((6, 2, 2), f32::NAN);
        t[[4, 1, 1]] = 10.0;
        t[[2, 1, 1]] = f32::INFINITY; // exp overflows: invalid box
        let mut out = Vec::new();
        decode_head(&s, &s.heads[0], t.view(), params, &mut out).unwrap();
        assert!(out.is_empty());
    }
}
