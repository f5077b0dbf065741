//! Pure, I/O-free vision algorithms used by the edge agent.
//!
//! # Layout
//! - [`bbox`]: axis-aligned boxes and intersection-over-union.
//! - [`letterbox`]: resizing a frame into the detector input with grey padding,
//!   and mapping boxes back to the frame.
//! - [`yolo`]: the detector description carried in the ONNX metadata and the
//!   decoders of YOLOv3 heads and the YOLOv2 region layer.
//! - [`nms`]: class-aware non-maximum suppression.
//! - [`roi`]: polygons in frame pixels: regions of interest and exclusion
//!   masks deciding which detections count.
//! - [`privacy`]: blurring the face region of a person crop.
//! - [`darknet`]: the darknet `.cfg` + `.weights` to ONNX importer.
//! - [`onnx`]: the subset of the ONNX protobuf the importer writes.
//!
//! Nothing here allocates per frame on the hot path beyond its outputs, logs or
//! panics on data: NaN and degenerate inputs are skipped.

pub mod bbox;
pub mod darknet;
pub mod letterbox;
pub mod nms;
pub mod privacy;
pub mod roi;
pub mod yolo;

/// Generated types of the ONNX protobuf subset in `proto/onnx.proto`.
#[allow(missing_docs, clippy::all)]
pub mod onnx {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
