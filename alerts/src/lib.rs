//! Declarative anomaly alerts over tracks and camera health, pure and
//! I/O-free: rules from a TOML file, observations and time in, alert events
//! out. The service around it (Kafka in, `schemas::Alert` out, a ticker)
//! lives elsewhere; this crate reads no clock and does no I/O.
//!
//! Six kinds of rule: `loitering` (too long in a zone), `restricted` (in a
//! zone at all, maybe only at certain hours), `occupancy` (too many people
//! on a camera), `running` (too fast), `impossible_path` (a camera the
//! topology says cannot be reached from the previous one in that time) and
//! `camera_down` (down, stalled or silent too long).
//!
//! # Layout
//! - [`config`]: the rules' configuration ([`RulesConfig`]) and its
//!   validation, every problem at once.
//! - [`zone`]: where and when a rule applies: [`Polygon`] zones and
//!   [`DailyWindow`]s.
//! - [`engine`]: the [`Engine`] state machine, its inputs ([`FrameObs`],
//!   [`HealthObs`], track ends, ticks) and its output ([`AlertEvent`]).
//!
//! # Alerts
//! An alert is raised once and closed once: each raise is followed by
//! exactly one close with the same `alert_id`, `"{rule}:{camera}:{subject}:{raise_ts_us}"`
//! (subject: the person id, or `camera`). One alert per rule, camera and
//! subject is open at a time, and after a close the rule's `cooldown_s`
//! must pass before the same subject raises it again on that camera.

#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod zone;

pub use config::{
    CameraDownRule, ConfigError, ImpossiblePathRule, LoiteringRule, OccupancyRule, RestrictedRule,
    Rule, RuleKind, RulesConfig, RunningRule, Severity,
};
pub use engine::{
    AlertEvent, Engine, EngineStats, Evidence, FrameObs, HealthObs, HealthState, MAX_TS_US,
    TrackObs,
};
pub use zone::{DailyWindow, Polygon};
