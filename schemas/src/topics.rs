//! Kafka topic names and keys.
//!
//! Every message is keyed by its camera id, so all messages of one camera land
//! in one partition (ordered) and tracker instances can scale out by partition.

/// Per-frame detections from the edge agents ([`crate::v1::FrameDetections`]).
pub const DETECTIONS: &str = "argus.detections.v1";
/// Presence intervals from the tracker ([`crate::v1::PresenceEvent`]).
pub const PRESENCE: &str = "argus.presence.v1";
/// Global person id merges from the tracker ([`crate::v1::IdMerge`]).
pub const IDENTITY: &str = "argus.identity.v1";
/// Per-camera track summaries from the tracker ([`crate::v1::TrackSummary`]).
pub const TRACKS: &str = "argus.tracks.v1";
/// Anomaly alerts ([`crate::v1::Alert`]).
pub const ALERTS: &str = "argus.alerts.v1";
/// What security staff did about alerts ([`crate::v1::AlertAction`]), keyed by alert id.
pub const ALERT_ACTIONS: &str = "argus.alert-actions.v1";
/// Camera health reports from the edge agents ([`crate::v1::CameraHealth`]).
pub const CAMERA_HEALTH: &str = "argus.camera-health.v1";

/// Every topic with its default partition count, for brokers that do not
/// create topics on demand.
pub const ALL: [(&str, i32); 7] = [
    (DETECTIONS, 4),
    (PRESENCE, 4),
    (IDENTITY, 1),
    (TRACKS, 4),
    (ALERTS, 1),
    (ALERT_ACTIONS, 1),
    (CAMERA_HEALTH, 1),
];

/// The message key of everything a camera produces.
pub fn key(camera_id: &str) -> &[u8] {
    camera_id.as_bytes()
}
