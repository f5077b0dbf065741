//! The tracker's state machine over all cameras (pure, no I/O): frames in,
//! presence events out.

use std::collections::HashMap;

use schemas::v1::presence_event::Kind;
use schemas::v1::{FrameDetections, PresenceEvent};

use crate::association::{CameraTracks, Observation, Track, TrackEvent, TrackingParams};
use crate::reid::{Gallery, ReidParams, Sighting};

/// Per-camera trackers plus the shared re-identification gallery.
#[derive(Debug)]
pub struct Engine {
    tracking: TrackingParams,
    gallery: Gallery,
    cameras: HashMap<String, CameraTracks>,
    run_id: String,
}

impl Engine {
    /// A fresh engine; `run_id` makes event ids unique across restarts.
    pub fn new(tracking: TrackingParams, reid: ReidParams, run_id: impl Into<String>) -> Self {
        Engine {
            tracking,
            gallery: Gallery::new(reid),
            cameras: HashMap::new(),
            run_id: run_id.into(),
        }
    }

    /// Live tracks over all cameras.
    pub fn live_tracks(&self) -> usize {
        self.cameras.values().map(|c| c.tracks().len()).sum()
    }

    /// Handles one frame (or end-of-stream marker) of one camera.
    pub fn on_frame(&mut self, frame: &FrameDetections) -> Vec<PresenceEvent> {
        if frame.end_of_stream {
            return self.close_camera(&frame.camera_id);
        }
        let observations: Vec<Observation> = frame
            .detections
            .iter()
            .map(Observation::from_wire)
            .collect();
        let tracks = self
            .cameras
            .entry(frame.camera_id.clone())
            .or_insert_with(|| CameraTracks::new(self.tracking.clone()));
        let events = tracks.update(frame.capture_ts_us, &observations);
        let mut out = Vec::new();
        for event in events {
            match event {
                TrackEvent::Confirmed(track_id) => {
                    let active = self.active_sightings();
                    let Some(tracks) = self.cameras.get_mut(&frame.camera_id) else {
                        continue;
                    };
                    let Some(track) = tracks.track_mut(track_id) else {
                        continue;
                    };
                    let person = self.gallery.assign(
                        &frame.camera_id,
                        &track.appearance(),
                        frame.capture_ts_us,
                        &active,
                    );
                    track.person_id = Some(person);
                    out.push(presence_event(
                        &self.run_id,
                        Kind::Enter,
                        &frame.camera_id,
                        track,
                    ));
                }
                TrackEvent::Ended(track) => out.push(self.end_track(&frame.camera_id, &track)),
            }
        }
        out
    }

    /// Ends every track of a camera (its stream ended).
    pub fn close_camera(&mut self, camera_id: &str) -> Vec<PresenceEvent> {
        let ended = self
            .cameras
            .get_mut(camera_id)
            .map(CameraTracks::close_all)
            .unwrap_or_default();
        ended
            .iter()
            .map(|track| self.end_track(camera_id, track))
            .collect()
    }

    /// Ends every track of every camera (shutdown).
    pub fn close_all(&mut self) -> Vec<PresenceEvent> {
        let mut ids: Vec<String> = self.cameras.keys().cloned().collect();
        ids.sort();
        ids.iter().flat_map(|id| self.close_camera(id)).collect()
    }

    fn active_sightings(&self) -> Vec<Sighting> {
        self.cameras
            .iter()
            .flat_map(|(camera, tracks)| {
                tracks.tracks().iter().filter_map(move |t| {
                    Some(Sighting {
                        person_id: t.person_id?,
                        camera_id: camera.clone(),
                        appearance: t.appearance(),
                        ts_us: t.last_ts_us,
                    })
                })
            })
            .collect()
    }

    fn end_track(&mut self, camera_id: &str, track: &Track) -> PresenceEvent {
        if let Some(person_id) = track.person_id {
            self.gallery.remember(Sighting {
                person_id,
                camera_id: camera_id.into(),
                appearance: track.appearance(),
                ts_us: track.last_ts_us,
            });
        }
        presence_event(&self.run_id, Kind::Exit, camera_id, track)
    }
}

/// The presence event of a track; `run_id` keeps event ids unique across restarts.
fn presence_event(run_id: &str, kind: Kind, camera_id: &str, track: &Track) -> PresenceEvent {
    let exit = kind == Kind::Exit;
    let label = if exit { "exit" } else { "enter" };
    PresenceEvent {
        schema_version: schemas::SCHEMA_VERSION,
        event_id: format!("{camera_id}:{run_id}:{}:{label}", track.id),
        kind: kind as i32,
        person_id: track.person_id.unwrap_or(0),
        camera_id: camera_id.into(),
        track_id: track.id,
        enter_ts_us: track.first_ts_us,
        exit_ts_us: if exit { track.last_ts_us } else { 0 },
        detections: if exit { track.hits } else { 0 },
        mean_score: if exit && track.hits > 0 {
            track.score_sum / track.hits as f32
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use schemas::v1::Detection;

    use super::*;

    fn det(x: f32, appearance: [f32; 2]) -> Detection {
        Detection {
            x,
            y: 50.0,
            width: 40.0,
            height: 100.0,
            score: 0.9,
            class_id: 0,
            embedding: Some(schemas::embedding::quantise(
                &crate::association::normalised(&appearance),
            )),
        }
    }

    fn frame(camera: &str, ts_us: i64, detections: Vec<Detection>) -> FrameDetections {
        FrameDetections {
            camera_id: camera.into(),
            capture_ts_us: ts_us,
            detections,
            ..Default::default()
        }
    }

    #[test]
    fn a_person_walking_from_west_to_east_keeps_one_global_id() {
        let mut engine = Engine::new(TrackingParams::default(), ReidParams::default(), "r1");
        let mut events = Vec::new();
        let red = [1.0, 0.05];
        let blue = [0.05, 1.0];
        // Red walks through west for 2 s while blue stands in east; then red appears in east.
        for i in 0..10i64 {
            events.extend(engine.on_frame(&frame(
                "west",
                i * 200_000,
                vec![det(100.0 + 10.0 * i as f32, red)],
            )));
            events.extend(engine.on_frame(&frame("east", i * 200_000, vec![det(300.0, blue)])));
        }
        for i in 10..25i64 {
            events.extend(engine.on_frame(&frame("west", i * 200_000, vec![])));
            events.extend(engine.on_frame(&frame(
                "east",
                i * 200_000,
                vec![det(300.0, blue), det(10.0 * (i - 10) as f32, red)],
            )));
        }
        let mut eos = FrameDetections {
            camera_id: "east".into(),
            end_of_stream: true,
            ..Default::default()
        };
        events.extend(engine.on_frame(&eos));
        eos.camera_id = "west".into();
        events.extend(engine.on_frame(&eos));

        let summary: Vec<(i32, String, u64)> = events
            .iter()
            .map(|e| (e.kind, e.camera_id.clone(), e.person_id))
            .collect();
        let (enter, exit) = (Kind::Enter as i32, Kind::Exit as i32);
        assert_eq!(
            summary,
            vec![
                (enter, "west".into(), 1),
                (enter, "east".into(), 2),
                // Confirmed in east while still tracked in west: same person.
                (enter, "east".into(), 1),
                // West has not seen red for more than max_age (2 s).
                (exit, "west".into(), 1),
                (exit, "east".into(), 2),
                (exit, "east".into(), 1),
            ]
        );
        for e in events.iter().filter(|e| e.kind == exit) {
            assert!(e.exit_ts_us >= e.enter_ts_us);
        }
        let west_exit = events
            .iter()
            .find(|e| e.kind == exit && e.camera_id == "west")
            .unwrap();
        assert_eq!(
            (
                west_exit.enter_ts_us,
                west_exit.exit_ts_us,
                west_exit.detections
            ),
            (0, 1_800_000, 10)
        );
        assert_eq!(engine.live_tracks(), 0);
    }
}
