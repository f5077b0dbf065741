//! Multi-object tracking, pure and I/O-free: everything here is plain
//! functions and state machines over slices, tested and benchmarked alone.
//!
//! # Layout
//! - [`assignment`]: optimal (minimum-cost) assignment of rows to columns.
//! - [`deep_sort`]: Deep SORT per camera: matching cascade, gating, IoU stage, track life.
//! - [`eval`]: CLEAR-MOT and IDF1 evaluation with py-motmetrics' semantics.
//! - [`kalman`]: Deep SORT's constant-velocity Kalman filter, state held outside.
//! - [`motchallenge`]: MOTChallenge CSV rows (ground truth, detections, tracks).
//! - [`reid`]: cross-camera re-identification: global person ids, gallery, id merges.
//! - [`rng`]: a small seeded generator (splitmix64) for synthetic data, tests, benchmarks.
//! - [`synth`]: seeded degradation of ground truth into detections with embeddings.
//! - [`topology`]: camera adjacency and transit-time gates for re-identification.
//! - [`vector`]: normalisation and dot products for embeddings.

pub mod assignment;
pub mod deep_sort;
pub mod eval;
pub mod kalman;
pub mod motchallenge;
pub mod reid;
pub mod rng;
pub mod synth;
pub mod topology;
pub mod vector;
