//! Encoding and decoding of wire messages with schema-version checks.

use prost::Message;

use crate::SCHEMA_VERSION;
use crate::v1::{
    Alert, AlertAction, CameraHealth, FrameDetections, IdMerge, PresenceEvent, TrackSummary,
};

/// Why a payload could not be turned into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf message of the expected type.
    #[error("malformed {message} payload: {source}")]
    Malformed {
        /// Message type that was expected.
        message: &'static str,
        /// What prost reported.
        source: prost::DecodeError,
    },
    /// The message was written by a newer producer than this consumer knows.
    #[error("{message} has schema version {found}, this build understands up to {SCHEMA_VERSION}")]
    UnsupportedVersion {
        /// Message type.
        message: &'static str,
        /// Version found in the payload.
        found: u32,
    },
}

/// A wire message: knows its name and where its schema version lives.
pub trait WireMessage: Message + Default + Sized {
    /// Message type name used in errors and metrics.
    const NAME: &'static str;
    /// The `schema_version` field.
    fn schema_version(&self) -> u32;
}

macro_rules! wire_message {
    ($ty:ty, $name:literal) => {
        impl WireMessage for $ty {
            const NAME: &'static str = $name;
            fn schema_version(&self) -> u32 {
                self.schema_version
            }
        }
    };
}

wire_message!(FrameDetections, "FrameDetections");
wire_message!(PresenceEvent, "PresenceEvent");
wire_message!(Alert, "Alert");
wire_message!(AlertAction, "AlertAction");
wire_message!(CameraHealth, "CameraHealth");
wire_message!(IdMerge, "IdMerge");
wire_message!(TrackSummary, "TrackSummary");

/// Decodes a payload and rejects versions newer than [`SCHEMA_VERSION`].
/// Version 0 (field absent) is accepted as the oldest version.
pub fn decode<M: WireMessage>(payload: &[u8]) -> Result<M, DecodeError> {
    let message = M::decode(payload).map_err(|source| DecodeError::Malformed {
        message: M::NAME,
        source,
    })?;
    let found = message.schema_version();
    if found > SCHEMA_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            message: M::NAME,
            found,
        });
    }
    Ok(message)
}

/// Encodes a message into a fresh buffer.
pub fn encode<M: WireMessage>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Detection, Embedding};

    #[test]
    fn detections_round_trip_keeps_every_field() {
        let frame = FrameDetections {
            schema_version: SCHEMA_VERSION,
            camera_id: "lobby".into(),
            frame_seq: 42,
            capture_ts_us: 1_700_000_000_123_456,
            frame_width: 768,
            frame_height: 576,
            model_id: "yolov3-tiny@416".into(),
            embedder_id: "mobilenetv2@128x64".into(),
            detections: vec![Detection {
                x: 1.5,
                y: 2.5,
                width: 30.0,
                height: 80.0,
                score: 0.9,
                class_id: 0,
                embedding: Some(Embedding {
                    scale: 0.01,
                    values: vec![1, 255, 127],
                }),
                crop_jpeg: vec![0xFF, 0xD8, 0xFF, 0xD9],
            }],
            end_of_stream: false,
        };
        let decoded: FrameDetections = decode(&encode(&frame)).unwrap();
        assert_eq!(decoded, frame);
    }

    #[test]
    fn newer_schema_version_is_rejected() {
        let event = PresenceEvent {
            schema_version: SCHEMA_VERSION + 1,
            ..Default::default()
        };
        let err = decode::<PresenceEvent>(&encode(&event)).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedVersion { found, .. } if found == SCHEMA_VERSION + 1)
        );
    }

    #[test]
    fn garbage_is_a_malformed_error() {
        let err = decode::<FrameDetections>(&[0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Malformed {
                message: "FrameDetections",
                ..
            }
        ));
    }
}
