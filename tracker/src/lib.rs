//! The Argus tracker: detections in, presence intervals of global people out.
//!
//! # Layout
//! - [`association`]: per-camera tracking by IoU and appearance (pure).
//! - [`reid`]: the cross-camera gallery and global person ids (pure).
//! - [`engine`]: all cameras together: frames in, presence events out (pure).
//! - [`config`]: the typed TOML configuration.
//! - [`service`]: the Kafka consumer/producer loop with drain on shutdown.

pub mod association;
pub mod config;
pub mod engine;
pub mod reid;
pub mod service;

pub use service::{TrackerError, TrackerStats, run};
