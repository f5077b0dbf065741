//! The Argus tracker: detections in; presence intervals of global people,
//! id merges and track summaries out.
//!
//! The algorithms live in the pure `mot` crate (Deep SORT, re-identification,
//! evaluation); this crate runs them as a service.
//!
//! # Layout
//! - [`engine`]: all cameras together: frames in, events out (pure).
//! - [`config`]: the typed TOML configuration.
//! - [`service`]: the Kafka loop: checkpoints, offsets, drain on shutdown, metrics.
//! - [`alerting`]: the alert rules (the `alerts` crate) fed from tracked
//!   frames and camera health, out as `Alert` messages.
//! - [`eval`]: the `tracker eval` commands: synthetic detections, tracking
//!   MOTChallenge files, scoring.

pub mod alerting;
pub mod config;
pub mod engine;
pub mod eval;
pub mod service;

pub use service::{TrackerError, TrackerStats, run};
