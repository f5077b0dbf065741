//! ONNX Runtime inference: the person detector and the appearance embedder.
//!
//! Both own their input tensors and reuse them batch after batch (they grow
//! to the largest batch seen, then stay); the only per-frame allocations are
//! the outputs handed to the publisher. The detector runs several frames,
//! each letterboxed into its slice of one `[N, 3, H, W]` input, as one call
//! (the imported models have a symbolic batch dimension) and decodes each
//! batch item's heads separately; the embedder runs all crops of a batch
//! together.

use std::path::Path;

use ndarray::{Array4, Axis, Ix4};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use vision::bbox::BBox;
use vision::letterbox::{Letterbox, PAD_VALUE, Resampler, RgbFrame};
use vision::nms::nms;
use vision::yolo::{Candidate, DecodeParams, DetectorSpec, METADATA_KEY, decode_head};

/// A model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// ONNX Runtime reported an error.
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// The library could not be loaded.
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Library {
        /// Library path.
        path: String,
        /// Loader message.
        message: String,
    },
    /// The model is not usable by this agent.
    #[error("model {path}: {message}")]
    Model {
        /// Model path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn ort_err(e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Ort(e.to_string())
}

/// The process's ONNX Runtime environment: ONNX Runtime allows one per
/// process, so the first call loads `library` and later calls share it.
pub fn environment(library: &Path) -> Result<Environment, InferenceError> {
    static ENVIRONMENT: std::sync::Mutex<Option<Environment>> = std::sync::Mutex::new(None);
    let mut cached = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = cached.as_ref() {
        return Ok(env.clone());
    }
    let lib_err = |e: &dyn std::fmt::Display| InferenceError::Library {
        path: library.display().to_string(),
        message: e.to_string(),
    };
    let builder = ort::init_from(library).map_err(|e| lib_err(&e))?;
    let env = builder
        .with_name("argus-edge")
        .build()
        .map_err(|e| lib_err(&e))?;
    *cached = Some(env.clone());
    Ok(env)
}

fn session(env: &Environment, model: &Path, threads: usize) -> Result<Session, InferenceError> {
    let mut builder = Session::builder(env)
        .map_err(ort_err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(ort_err)?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads).map_err(ort_err)?;
    }
    // Idle ONNX Runtime threads sleep instead of spinning: spinning threads
    // take the cores from the camera decoders. On a 2-core box `edge-agent
    // bench` went from 30 to 52 fps end to end (yolov3-tiny, batch 1) with
    // bare inference unchanged.
    builder = builder.with_intra_op_spinning(false).map_err(ort_err)?;
    builder
        .commit_from_file(model)
        .map_err(|e| InferenceError::Model {
            path: model.display().to_string(),
            message: e.to_string(),
        })
}

/// Detection settings.
#[derive(Debug, Clone)]
pub struct DetectionParams {
    /// Minimum score.
    pub score_threshold: f32,
    /// NMS IoU threshold.
    pub nms_iou_threshold: f32,
    /// Classes kept.
    pub classes: Vec<u32>,
}

/// A detector batch letterboxed ahead of its model call, on any thread:
/// the `[N, 3, H, W]` input tensor (it grows to the largest batch seen,
/// then stays) and each item's letterbox and frame size. Made by
/// [`Detector::new_input`], filled by [`letterbox`](Self::letterbox), run by
/// [`Detector::detect_prepared`]; two of them let one batch be letterboxed
/// while the model runs on the other.
#[derive(Debug)]
pub struct DetectorInput {
    /// `[capacity, 3, H, W]`; a batch of N uses the first N items.
    tensor: Array4<f32>,
    /// Per item of the batch letterboxed last: its geometry and its frame's
    /// width and height.
    items: Vec<(Letterbox, f32, f32)>,
    /// Letterboxing's reusable rows.
    resampler: Resampler,
}

impl DetectorInput {
    /// Room for `frames` items of `height x width`, filled with grey.
    fn new(frames: usize, height: usize, width: usize) -> Self {
        DetectorInput {
            tensor: Array4::from_elem((frames, 3, height, width), PAD_VALUE),
            items: Vec::with_capacity(frames),
            resampler: Resampler::default(),
        }
    }

    /// Makes room for batches of `frames` frames now rather than at the
    /// first such batch.
    pub fn reserve(&mut self, frames: usize) {
        if self.tensor.len_of(Axis(0)) < frames {
            let (_, c, h, w) = self.tensor.dim();
            self.tensor = Array4::from_elem((frames, c, h, w), PAD_VALUE);
        }
        self.items.reserve(frames.saturating_sub(self.items.len()));
    }

    /// Letterboxes `frames` into the first `frames.len()` items, replacing
    /// the batch letterboxed before.
    pub fn letterbox(&mut self, frames: &[RgbFrame<'_>]) {
        self.reserve(frames.len());
        self.items.clear();
        for (i, frame) in frames.iter().enumerate() {
            let geometry = self
                .resampler
                .letterbox(frame, self.tensor.index_axis_mut(Axis(0), i));
            self.items
                .push((geometry, frame.width as f32, frame.height as f32));
        }
    }

    /// Frames in the batch letterboxed last.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch letterboxed last had no frame.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// A YOLO detector imported by `edge-agent model import-darknet`.
pub struct Detector {
    session: Session,
    spec: DetectorSpec,
    params: DetectionParams,
    /// The input of [`detect`](Self::detect), [`detect_batch`](Self::detect_batch)
    /// and [`forward`](Self::forward).
    input: DetectorInput,
    model_id: String,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("model_id", &self.model_id)
            .field("spec", &self.spec)
            .finish()
    }
}

impl Detector {
    /// Loads the model and reads its [`DetectorSpec`] from the ONNX metadata.
    pub fn load(
        env: &Environment,
        model: &Path,
        params: DetectionParams,
        threads: usize,
    ) -> Result<Self, InferenceError> {
        let session = session(env, model, threads)?;
        let bad = |message: String| InferenceError::Model {
            path: model.display().to_string(),
            message,
        };
        let text = session
            .metadata()
            .map_err(ort_err)?
            .custom(METADATA_KEY)
            .ok_or_else(|| {
                bad(format!(
                    "no `{METADATA_KEY}` metadata; import it with `edge-agent model import-darknet`"
                ))
            })?;
        let spec: DetectorSpec = text
            .parse()
            .map_err(|e: vision::yolo::SpecError| bad(e.to_string()))?;
        for head in &spec.heads {
            if !session.outputs().iter().any(|o| o.name() == head.output) {
                return Err(bad(format!(
                    "metadata names output {:?} that the graph lacks",
                    head.output
                )));
            }
        }
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let model_id = format!("{stem}@{}x{}", spec.input_width, spec.input_height);
        let input = DetectorInput::new(1, spec.input_height as usize, spec.input_width as usize);
        Ok(Detector {
            session,
            spec,
            params,
            input,
            model_id,
        })
    }

    /// Makes room for batches of `frames` frames now rather than at the
    /// first such batch.
    pub fn reserve(&mut self, frames: usize) {
        self.input.reserve(frames);
    }

    /// A new input for [`detect_prepared`](Self::detect_prepared), with room
    /// for batches of `frames` frames.
    pub fn new_input(&self, frames: usize) -> DetectorInput {
        let (width, height) = self.input_size();
        DetectorInput::new(frames, height, width)
    }

    /// The network's input size, `(width, height)`.
    pub fn input_size(&self) -> (usize, usize) {
        (
            self.spec.input_width as usize,
            self.spec.input_height as usize,
        )
    }

    /// Letterboxes `frames` into the first `frames.len()` items of the
    /// detector's own input tensor (for [`forward`](Self::forward)).
    pub fn letterbox(&mut self, frames: &[RgbFrame<'_>]) {
        self.input.letterbox(frames);
    }

    /// Runs the model alone on the first `batch` letterboxed items, as
    /// [`letterbox`](Self::letterbox) left them, and discards the outputs:
    /// the bare inference cost, for benchmarks.
    pub fn forward(&mut self, batch: usize) -> Result<(), InferenceError> {
        self.reserve(batch);
        let input = self.input.tensor.slice(ndarray::s![..batch, .., .., ..]);
        let tensor = TensorRef::from_array_view(input).map_err(ort_err)?;
        self.session
            .run(ort::inputs!["images" => tensor])
            .map_err(ort_err)?;
        Ok(())
    }

    /// `<file stem>@<W>x<H>`, written into every message.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Detects objects of the configured classes; boxes in frame pixels,
    /// clipped to the frame, best first.
    pub fn detect(&mut self, frame: &RgbFrame<'_>) -> Result<Vec<Candidate>, InferenceError> {
        Ok(self
            .detect_batch(std::slice::from_ref(frame))?
            .pop()
            .unwrap_or_default())
    }

    /// [`detect`](Self::detect) for several frames (of any sizes) with one
    /// model call: one list of candidates per frame, in order.
    pub fn detect_batch(
        &mut self,
        frames: &[RgbFrame<'_>],
    ) -> Result<Vec<Vec<Candidate>>, InferenceError> {
        self.input.letterbox(frames);
        self.detect_letterboxed()
    }

    /// [`detect_batch`](Self::detect_batch) on the frames
    /// [`letterbox`](Self::letterbox) was given last.
    pub fn detect_letterboxed(&mut self) -> Result<Vec<Vec<Candidate>>, InferenceError> {
        detect(&mut self.session, &self.spec, &self.params, &self.input)
    }

    /// [`detect_batch`](Self::detect_batch) on a batch letterboxed
    /// beforehand into `input` (by [`DetectorInput::letterbox`], on any
    /// thread): one list of candidates per frame it holds, in order.
    pub fn detect_prepared(
        &mut self,
        input: &DetectorInput,
    ) -> Result<Vec<Vec<Candidate>>, InferenceError> {
        let (width, height) = self.input_size();
        let (_, _, h, w) = input.tensor.dim();
        if (w, h) != (width, height) {
            return Err(InferenceError::Ort(format!(
                "input of {w}x{h} for a {width}x{height} detector"
            )));
        }
        detect(&mut self.session, &self.spec, &self.params, input)
    }
}

/// One model call on the batch in `input`, decoded, NMS'd and mapped back
/// to frame pixels.
fn detect(
    session: &mut Session,
    spec: &DetectorSpec,
    params: &DetectionParams,
    input: &DetectorInput,
) -> Result<Vec<Vec<Candidate>>, InferenceError> {
    let n = input.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let batch = input.tensor.slice(ndarray::s![..n, .., .., ..]);
    let tensor = TensorRef::from_array_view(batch).map_err(ort_err)?;
    let outputs = session
        .run(ort::inputs!["images" => tensor])
        .map_err(ort_err)?;
    let decode = DecodeParams {
        score_threshold: params.score_threshold,
        classes: Some(&params.classes),
    };
    let mut candidates = vec![Vec::new(); n];
    for head in &spec.heads {
        let Some(value) = outputs.get(&head.output) else {
            return Err(InferenceError::Ort(format!(
                "output {} missing",
                head.output
            )));
        };
        let array = value.try_extract_array::<f32>().map_err(ort_err)?;
        let array = array.into_dimensionality::<Ix4>().map_err(ort_err)?;
        if array.len_of(Axis(0)) != n {
            return Err(InferenceError::Ort(format!(
                "output {} has {} batch items for {n} frames: the model does not take batches",
                head.output,
                array.len_of(Axis(0))
            )));
        }
        for (item, out) in array.outer_iter().zip(candidates.iter_mut()) {
            decode_head(spec, head, item, decode, out).map_err(ort_err)?;
        }
    }
    Ok(candidates
        .into_iter()
        .zip(&input.items)
        .map(|(found, &(geometry, w, h))| {
            nms(found, params.nms_iou_threshold)
                .into_iter()
                .filter_map(|c| {
                    Some(Candidate {
                        bbox: geometry.to_source(c.bbox).clip(w, h)?,
                        ..c
                    })
                })
                .collect()
        })
        .collect())
}

/// ImageNet normalisation the embedder was trained with.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Most crops per embedder call: a crowded batch of frames is embedded in
/// several calls, which bounds the input tensor at 64 x 3 x 128 x 64 floats
/// (6 MiB) for the default crop size.
pub const MAX_EMBED_BATCH: usize = 64;

/// The appearance embedder: one batched call for all crops of a batch of
/// frames (up to [`MAX_EMBED_BATCH`] per call).
pub struct Embedder {
    session: Session,
    input: Array4<f32>,
    /// Crops in `input` for the next [`Embedder::forward`].
    prepared: usize,
    /// Crop resizing's reusable rows.
    resampler: Resampler,
    height: usize,
    width: usize,
    embedder_id: String,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("embedder_id", &self.embedder_id)
            .finish()
    }
}

impl Embedder {
    /// Loads the model for `height x width` crops.
    pub fn load(
        env: &Environment,
        model: &Path,
        height: usize,
        width: usize,
        threads: usize,
    ) -> Result<Self, InferenceError> {
        let session = session(env, model, threads)?;
        let stem = model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Embedder {
            session,
            input: Array4::zeros((0, 3, height, width)),
            prepared: 0,
            resampler: Resampler::default(),
            height,
            width,
            embedder_id: format!("{stem}@{height}x{width}"),
        })
    }

    /// `<file stem>@<H>x<W>`.
    pub fn embedder_id(&self) -> &str {
        &self.embedder_id
    }

    /// L2-normalised embeddings of the `boxes` crops of `frame`, in order.
    pub fn embed(
        &mut self,
        frame: &RgbFrame<'_>,
        boxes: &[BBox],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        let crops: Vec<(&RgbFrame<'_>, BBox)> = boxes.iter().map(|&b| (frame, b)).collect();
        self.embed_crops(&crops)
    }

    /// L2-normalised embeddings of crops of any frames, in order, with one
    /// model call (callers bound the batch: see [`MAX_EMBED_BATCH`]).
    pub fn embed_crops(
        &mut self,
        crops: &[(&RgbFrame<'_>, BBox)],
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        self.prepare(crops);
        self.forward()
    }

    /// The first half of [`embed_crops`](Self::embed_crops): cuts, resizes
    /// and normalises `crops` into the model's input, replacing what was
    /// prepared before.
    pub fn prepare(&mut self, crops: &[(&RgbFrame<'_>, BBox)]) {
        if self.input.len_of(Axis(0)) < crops.len() {
            // Grows to the busiest batch seen, then stays.
            self.input = Array4::zeros((crops.len(), 3, self.height, self.width));
        }
        for (i, (frame, bbox)) in crops.iter().enumerate() {
            self.resampler.crop_resize(
                frame,
                *bbox,
                self.input.index_axis_mut(Axis(0), i),
                MEAN,
                STD,
            );
        }
        self.prepared = crops.len();
    }

    /// The second half of [`embed_crops`](Self::embed_crops): one model call
    /// on the crops last [`prepare`](Self::prepare)d (none: no call), their
    /// L2-normalised embeddings in order.
    pub fn forward(&mut self) -> Result<Vec<Vec<f32>>, InferenceError> {
        if self.prepared == 0 {
            return Ok(Vec::new());
        }
        let batch = self.input.slice(ndarray::s![..self.prepared, .., .., ..]);
        let tensor = TensorRef::from_array_view(batch).map_err(ort_err)?;
        let outputs = self
            .session
            .run(ort::inputs!["images" => tensor])
            .map_err(ort_err)?;
        let array = outputs[0].try_extract_array::<f32>().map_err(ort_err)?;
        let rows = array
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(ort_err)?;
        Ok(rows
            .outer_iter()
            .map(|row| l2_normalise(row.iter().copied()))
            .collect())
    }
}

/// Unit-length copy; all zeros (not NaN) when the norm is zero or not finite.
fn l2_normalise(values: impl Iterator<Item = f32> + Clone) -> Vec<f32> {
    let norm = values.clone().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        values.map(|v| v / norm).collect()
    } else {
        values.map(|_| 0.0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::l2_normalise;

    #[test]
    fn normalisation_gives_unit_length_and_never_nan() {
        let v = l2_normalise([3.0f32, 4.0].into_iter());
        assert_eq!(v, vec![0.6, 0.8]);
        assert_eq!(l2_normalise([0.0f32, 0.0].into_iter()), vec![0.0, 0.0]);
        assert_eq!(l2_normalise([f32::NAN, 1.0].into_iter()), vec![0.0, 0.0]);
    }
}
