//! Plumbing shared by the Argus services, so that every service starts,
//! configures itself, talks to Kafka and stops the same way.
//!
//! # Layout
//! - [`shutdown`]: the one shutdown story: a signal future handed to each
//!   service's `run(config, shutdown)`, fanned out to its tasks.
//! - [`clock`]: the wall clock in the wire's Unix microseconds.
//! - [`config`]: loading a service's TOML file, with environment overrides,
//!   and every error reported at once.
//! - [`kafka`]: client settings, producer and consumer construction, and the
//!   drain-to-watermark used on shutdown.
//! - [`logging`]: `tracing` set-up for binaries.
//! - [`metrics`]: Prometheus registry and the `/metrics` + `/healthz` endpoint.

pub mod clock;
pub mod config;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod shutdown;
