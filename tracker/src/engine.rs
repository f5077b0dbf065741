//! The tracker's state machine over all cameras (pure, no I/O): frames in,
//! presence events, id merges and track summaries out.
//!
//! Each camera has its own [`DeepSort`]; one re-identification [`Gallery`]
//! spans all cameras. A track gets its global person id when Deep SORT
//! confirms it (ENTER, stamped with the track's first detection) and reports
//! EXIT plus a [`TrackSummary`] when Deep SORT deletes it, the camera's
//! stream ends, or the camera was silent for longer than `camera_gap_s`.
//!
//! Event ids are `<camera>:<epoch>:<track>:<kind>` where the epoch is fixed
//! when the camera's state is created and kept in checkpoints, so replaying
//! input after a restart from a checkpoint yields the same ids (consumers
//! deduplicate on them).

use std::collections::{BTreeMap, BTreeSet};

use mot::deep_sort::{DeepSort, DeepSortParams, DeepSortStats, Detection, Track, TrackEvent};
use mot::reid::{Gallery, GalleryState, IdSpaceExhausted, NewTrack, ReidParams, Sighting};
use schemas::v1::presence_event::Kind;
use schemas::v1::{FrameDetections, IdMerge, PresenceEvent, TrackSummary};
use serde::{Deserialize, Serialize};

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A person entered or left a camera.
    Presence(PresenceEvent),
    /// Two person ids turned out to be one person.
    Merge(IdMerge),
    /// A track ended; its path summary.
    Summary(TrackSummary),
}

/// What the engine keeps per track beyond Deep SORT's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TrackInfo {
    person_id: Option<u64>,
    first_ts_us: i64,
    last_ts_us: i64,
    detections: u32,
    score_sum: f64,
    first_centre: [f64; 2],
    last_centre: [f64; 2],
    path_px: f64,
    max_speed_px_s: f64,
    height_sum: f64,
    /// Latest matched box (top, left, width, height), for the alert rules;
    /// absent from checkpoints written before it existed.
    #[serde(default)]
    last_tlwh: [f64; 4],
}

fn centre(tlwh: [f64; 4]) -> [f64; 2] {
    [tlwh[0] + tlwh[2] / 2.0, tlwh[1] + tlwh[3] / 2.0]
}

impl TrackInfo {
    fn new(ts_us: i64, tlwh: [f64; 4], score: f64) -> Self {
        TrackInfo {
            person_id: None,
            first_ts_us: ts_us,
            last_ts_us: ts_us,
            detections: 1,
            score_sum: score,
            first_centre: centre(tlwh),
            last_centre: centre(tlwh),
            path_px: 0.0,
            max_speed_px_s: 0.0,
            height_sum: tlwh[3],
            last_tlwh: tlwh,
        }
    }

    fn matched(&mut self, ts_us: i64, tlwh: [f64; 4], score: f64) {
        let c = centre(tlwh);
        let step = (c[0] - self.last_centre[0]).hypot(c[1] - self.last_centre[1]);
        let dt_s = (ts_us - self.last_ts_us) as f64 / 1e6;
        if step.is_finite() {
            self.path_px += step;
            if dt_s > 0.0 {
                self.max_speed_px_s = self.max_speed_px_s.max(step / dt_s);
            }
        }
        self.last_centre = c;
        self.last_tlwh = tlwh;
        self.last_ts_us = ts_us.max(self.last_ts_us);
        self.detections = self.detections.saturating_add(1);
        self.score_sum += score;
        self.height_sum += tlwh[3];
    }
}

/// One camera's tracker and bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Camera {
    /// Distinguishes this state's track ids from earlier ones in event ids.
    epoch: String,
    tracker: DeepSort,
    tracks: BTreeMap<u64, TrackInfo>,
    last_ts_us: i64,
}

/// Counters for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Frames tracked.
    pub frames: u64,
    /// Frames older than the camera's latest one, ignored.
    pub stale_frames: u64,
    /// Times a camera's tracks were ended because it was silent too long.
    pub camera_gaps: u64,
    /// Deep SORT counters of cameras whose state has ended (so totals never shrink).
    #[serde(default)]
    pub retired: DeepSortStats,
}

/// The engine's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineParams {
    /// Deep SORT per camera.
    pub tracking: DeepSortParams,
    /// Cross-camera re-identification.
    pub reid: ReidParams,
    /// Stream seconds without frames after which a camera's tracks end.
    pub camera_gap_s: f64,
}

/// The engine failed in a way that cannot be worked around.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No more person ids can be minted.
    #[error(transparent)]
    IdSpace(#[from] IdSpaceExhausted),
}

/// Adds Deep SORT counters.
fn add(total: &mut DeepSortStats, s: DeepSortStats) {
    total.rejected_detections += s.rejected_detections;
    total.numeric_failures += s.numeric_failures;
    total.matches += s.matches;
    total.tracks_started += s.tracks_started;
}

/// Per-camera trackers plus the shared re-identification gallery.
#[derive(Debug)]
pub struct Engine {
    params: EngineParams,
    gallery: Gallery,
    cameras: BTreeMap<String, Camera>,
    stats: EngineStats,
}

/// The engine's state as written into a checkpoint.
#[derive(Debug, Serialize)]
pub struct Snapshot<'a> {
    cameras: &'a BTreeMap<String, Camera>,
    gallery: &'a GalleryState,
    stats: EngineStats,
}

/// The engine's state as read back from a checkpoint.
#[derive(Debug, Deserialize)]
pub struct Restored {
    cameras: BTreeMap<String, Camera>,
    gallery: GalleryState,
    stats: EngineStats,
}

impl Engine {
    /// A fresh engine.
    pub fn new(params: EngineParams) -> Self {
        Engine {
            gallery: Gallery::new(params.reid.clone()),
            params,
            cameras: BTreeMap::new(),
            stats: EngineStats::default(),
        }
    }

    /// An engine continuing from a checkpoint (the current parameters apply).
    pub fn restore(params: EngineParams, state: Restored) -> Self {
        let mut cameras = state.cameras;
        for camera in cameras.values_mut() {
            camera.tracker.set_params(params.tracking.clone());
        }
        Engine {
            gallery: Gallery::restore(params.reid.clone(), state.gallery),
            params,
            cameras,
            stats: state.stats,
        }
    }

    /// The state to checkpoint.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            cameras: &self.cameras,
            gallery: self.gallery.state(),
            stats: self.stats,
        }
    }

    /// Live tracks (tentative and confirmed) over all cameras.
    pub fn live_tracks(&self) -> usize {
        self.cameras
            .values()
            .map(|c| c.tracker.tracks().len())
            .sum()
    }

    /// Counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Re-identification counters.
    pub fn gallery_stats(&self) -> mot::reid::GalleryStats {
        self.gallery.stats()
    }

    /// Deep SORT counters since the engine started (or was first checkpointed).
    pub fn tracking_stats(&self) -> DeepSortStats {
        let mut total = self.stats.retired;
        for c in self.cameras.values() {
            add(&mut total, c.tracker.stats());
        }
        total
    }

    /// Handles one frame (or end-of-stream marker) of one camera.
    pub fn on_frame(&mut self, frame: &FrameDetections) -> Result<Vec<Output>, EngineError> {
        let mut out = Vec::new();
        if frame.end_of_stream {
            self.close_camera(&frame.camera_id, &mut out);
            return Ok(out);
        }
        let ts_us = frame.capture_ts_us;
        let gap_us = (self.params.camera_gap_s * 1e6) as i64;
        if let Some(camera) = self.cameras.get(&frame.camera_id) {
            if ts_us < camera.last_ts_us {
                self.stats.stale_frames += 1;
                return Ok(out);
            }
            if ts_us.saturating_sub(camera.last_ts_us) > gap_us {
                self.stats.camera_gaps += 1;
                self.close_camera(&frame.camera_id, &mut out);
            }
        }
        self.stats.frames += 1;
        let detections: Vec<Detection> = frame
            .detections
            .iter()
            .map(|d| Detection {
                tlwh: [d.x, d.y, d.width, d.height].map(f64::from),
                confidence: f64::from(d.score),
                feature: d
                    .embedding
                    .as_ref()
                    .map(schemas::embedding::dequantise)
                    .unwrap_or_default(),
            })
            .collect();
        let tracking = &self.params.tracking;
        let camera = self
            .cameras
            .entry(frame.camera_id.clone())
            .or_insert_with(|| Camera {
                epoch: format!("{ts_us:x}"),
                tracker: DeepSort::new(tracking.clone()),
                tracks: BTreeMap::new(),
                last_ts_us: ts_us,
            });
        camera.last_ts_us = ts_us;
        let events = camera.tracker.step(&detections);

        // Bookkeeping of every track matched (or started) in this frame.
        for track in camera.tracker.tracks() {
            let Some(i) = track.matched_detection else {
                continue;
            };
            let (tlwh, score) = (detections[i].tlwh, detections[i].confidence);
            camera
                .tracks
                .entry(track.id)
                .and_modify(|info| info.matched(ts_us, tlwh, score))
                .or_insert_with(|| TrackInfo::new(ts_us, tlwh, score));
        }
        // Deleted tracks (tentative ones die silently) leave the bookkeeping.
        let live: BTreeSet<u64> = camera.tracker.tracks().iter().map(|t| t.id).collect();
        let gone: Vec<u64> = camera
            .tracks
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        let mut gone_info: BTreeMap<u64, TrackInfo> = BTreeMap::new();
        for id in gone {
            if let Some(info) = camera.tracks.remove(&id) {
                gone_info.insert(id, info);
            }
        }
        let mut confirmed = Vec::new();
        for event in events {
            match event {
                TrackEvent::Confirmed(id) => confirmed.push(id),
                TrackEvent::Deleted(track) => {
                    if let Some(info) = gone_info.remove(&track.id) {
                        self.end_track(&frame.camera_id, &track, info, &mut out);
                    }
                }
            }
        }
        if !confirmed.is_empty() {
            self.confirm(&frame.camera_id, ts_us, &confirmed, &mut out)?;
        }
        Ok(out)
    }

    /// Gives person ids to the tracks confirmed in this frame; emits ENTERs.
    fn confirm(
        &mut self,
        camera_id: &str,
        now_us: i64,
        ids: &[u64],
        out: &mut Vec<Output>,
    ) -> Result<(), EngineError> {
        let active = self.active_sightings();
        let Some(camera) = self.cameras.get(camera_id) else {
            return Ok(());
        };
        let mut new = Vec::with_capacity(ids.len());
        let mut new_ids = Vec::with_capacity(ids.len());
        for id in ids {
            if let (Some(track), Some(info)) = (camera.tracker.track(*id), camera.tracks.get(id)) {
                new.push(NewTrack {
                    camera_id: camera_id.to_string(),
                    appearance: track.appearance(),
                    first_ts_us: info.first_ts_us,
                });
                new_ids.push(*id);
            }
        }
        let assigned = self.gallery.assign(now_us, &new, &active)?;
        let Some(camera) = self.cameras.get_mut(camera_id) else {
            return Ok(());
        };
        for (id, a) in new_ids.iter().zip(assigned) {
            let Some(info) = camera.tracks.get_mut(id) else {
                continue;
            };
            info.person_id = Some(a.person_id);
            out.push(Output::Presence(PresenceEvent {
                schema_version: schemas::SCHEMA_VERSION,
                event_id: format!("{camera_id}:{}:{id}:enter", camera.epoch),
                kind: Kind::Enter as i32,
                person_id: a.person_id,
                camera_id: camera_id.to_string(),
                track_id: *id,
                enter_ts_us: info.first_ts_us,
                exit_ts_us: 0,
                detections: 0,
                mean_score: 0.0,
            }));
        }
        Ok(())
    }

    /// Confirmed tracks with a person id, alive now on every camera.
    fn active_sightings(&self) -> Vec<Sighting> {
        let mut out = Vec::new();
        for (camera_id, camera) in &self.cameras {
            for track in camera.tracker.tracks() {
                let Some(info) = camera.tracks.get(&track.id) else {
                    continue;
                };
                let Some(person_id) = info.person_id else {
                    continue;
                };
                out.push(Sighting {
                    person_id,
                    camera_id: camera_id.clone(),
                    appearance: track.appearance(),
                    first_ts_us: info.first_ts_us,
                    last_ts_us: info.last_ts_us,
                });
            }
        }
        out
    }

    /// EXIT, summary and gallery update for a confirmed track that ended.
    fn end_track(
        &mut self,
        camera_id: &str,
        track: &Track,
        info: TrackInfo,
        out: &mut Vec<Output>,
    ) {
        let Some(person_id) = info.person_id else {
            return;
        };
        let epoch = self
            .cameras
            .get(camera_id)
            .map(|c| c.epoch.clone())
            .unwrap_or_default();
        let detections = info.detections.max(1);
        let mean_score = (info.score_sum / f64::from(detections)) as f32;
        out.push(Output::Presence(PresenceEvent {
            schema_version: schemas::SCHEMA_VERSION,
            event_id: format!("{camera_id}:{epoch}:{}:exit", track.id),
            kind: Kind::Exit as i32,
            person_id,
            camera_id: camera_id.to_string(),
            track_id: track.id,
            enter_ts_us: info.first_ts_us,
            exit_ts_us: info.last_ts_us,
            detections: info.detections,
            mean_score,
        }));
        out.push(Output::Summary(TrackSummary {
            schema_version: schemas::SCHEMA_VERSION,
            event_id: format!("{camera_id}:{epoch}:{}:summary", track.id),
            camera_id: camera_id.to_string(),
            track_id: track.id,
            person_id,
            first_ts_us: info.first_ts_us,
            last_ts_us: info.last_ts_us,
            detections: info.detections,
            mean_score,
            first_x: info.first_centre[0] as f32,
            first_y: info.first_centre[1] as f32,
            last_x: info.last_centre[0] as f32,
            last_y: info.last_centre[1] as f32,
            path_px: info.path_px as f32,
            max_speed_px_s: info.max_speed_px_s as f32,
            mean_height_px: (info.height_sum / f64::from(detections)) as f32,
        }));
        let active = self.active_sightings();
        let sighting = Sighting {
            person_id,
            camera_id: camera_id.to_string(),
            appearance: track.appearance(),
            first_ts_us: info.first_ts_us,
            last_ts_us: info.last_ts_us,
        };
        if let Some(merge) = self.gallery.track_ended(sighting, &active) {
            for camera in self.cameras.values_mut() {
                for info in camera.tracks.values_mut() {
                    if info.person_id == Some(merge.from) {
                        info.person_id = Some(merge.into);
                    }
                }
            }
            out.push(Output::Merge(IdMerge {
                schema_version: schemas::SCHEMA_VERSION,
                event_id: format!("merge:{}:{}", merge.from, merge.into),
                from_person_id: merge.from,
                into_person_id: merge.into,
                ts_us: merge.ts_us,
                camera_id: camera_id.to_string(),
                similarity: merge.similarity,
            }));
        }
    }

    /// Ends every track of a camera; its next frame starts a fresh state
    /// (with a fresh epoch).
    fn close_camera(&mut self, camera_id: &str, out: &mut Vec<Output>) {
        let Some(camera) = self.cameras.get_mut(camera_id) else {
            return;
        };
        add(&mut self.stats.retired, camera.tracker.stats());
        let ended = camera.tracker.close_all();
        let mut infos = std::mem::take(&mut camera.tracks);
        for track in ended {
            if let Some(info) = infos.remove(&track.id) {
                self.end_track(camera_id, &track, info, out);
            }
        }
        self.cameras.remove(camera_id);
    }

    /// Ends every track of one camera now (it stopped sending: gone without
    /// an end-of-stream marker, or its partition moved to another instance).
    pub fn end_camera(&mut self, camera_id: &str) -> Vec<Output> {
        let mut out = Vec::new();
        self.close_camera(camera_id, &mut out);
        out
    }

    /// The people a camera's frame at `ts_us` showed: its tracks matched in
    /// that frame that carry a person id, with their boxes (what the alert
    /// rules look at).
    pub fn persons_in_frame(&self, camera_id: &str, ts_us: i64) -> Vec<alerts::TrackObs> {
        let Some(camera) = self.cameras.get(camera_id) else {
            return Vec::new();
        };
        camera
            .tracks
            .iter()
            .filter(|(_, info)| info.last_ts_us == ts_us)
            .filter_map(|(track_id, info)| {
                let [x, y, width, height] = info.last_tlwh.map(|v| v as f32);
                Some(alerts::TrackObs {
                    person_id: info.person_id?,
                    track_id: *track_id,
                    x,
                    y,
                    width,
                    height,
                })
            })
            .collect()
    }

    /// Cameras with state now.
    pub fn cameras(&self) -> impl Iterator<Item = &str> {
        self.cameras.keys().map(String::as_str)
    }

    /// Ends every track of every camera.
    pub fn close_all(&mut self) -> Vec<Output> {
        let ids: Vec<String> = self.cameras.keys().cloned().collect();
        let mut out = Vec::new();
        for id in ids {
            self.close_camera(&id, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use schemas::v1::Detection as WireDetection;

    use super::*;

    fn params() -> EngineParams {
        EngineParams {
            tracking: DeepSortParams::default(),
            reid: ReidParams::default(),
            camera_gap_s: 10.0,
        }
    }

    fn det(x: f32, appearance: [f32; 2]) -> WireDetection {
        WireDetection {
            x,
            y: 50.0,
            width: 40.0,
            height: 100.0,
            score: 0.9,
            class_id: 0,
            embedding: Some(schemas::embedding::quantise(&mot::vector::normalised(
                &appearance,
            ))),
            crop_jpeg: Vec::new(),
        }
    }

    fn frame(camera: &str, ts_us: i64, detections: Vec<WireDetection>) -> FrameDetections {
        FrameDetections {
            camera_id: camera.into(),
            capture_ts_us: ts_us,
            detections,
            ..Default::default()
        }
    }

    fn eos(camera: &str) -> FrameDetections {
        FrameDetections {
            camera_id: camera.into(),
            end_of_stream: true,
            ..Default::default()
        }
    }

    fn presence(out: &[Output]) -> Vec<(i32, String, u64)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Presence(e) => Some((e.kind, e.camera_id.clone(), e.person_id)),
                _ => None,
            })
            .collect()
    }

    const ENTER: i32 = Kind::Enter as i32;
    const EXIT: i32 = Kind::Exit as i32;

    #[test]
    fn a_person_walking_from_west_to_east_keeps_one_global_id() {
        let mut engine = Engine::new(params());
        let mut out = Vec::new();
        let (red, blue) = ([1.0, 0.05], [0.05, 1.0]);
        // Red walks through west for 2 s while blue stands in east.
        for i in 0..10i64 {
            let x = 100.0 + 10.0 * i as f32;
            out.extend(
                engine
                    .on_frame(&frame("west", i * 200_000, vec![det(x, red)]))
                    .unwrap(),
            );
            out.extend(
                engine
                    .on_frame(&frame("east", i * 200_000, vec![det(300.0, blue)]))
                    .unwrap(),
            );
        }
        // Then red is in east; west sees nobody until Deep SORT deletes red (max_age 30).
        for i in 10..45i64 {
            let x = 10.0 + 2.0 * (i - 10) as f32;
            out.extend(
                engine
                    .on_frame(&frame("west", i * 200_000, vec![]))
                    .unwrap(),
            );
            let both = vec![det(300.0, blue), det(x, red)];
            out.extend(engine.on_frame(&frame("east", i * 200_000, both)).unwrap());
        }
        out.extend(engine.on_frame(&eos("east")).unwrap());
        out.extend(engine.on_frame(&eos("west")).unwrap());
        assert_eq!(
            presence(&out),
            vec![
                (ENTER, "west".into(), 1),
                (ENTER, "east".into(), 2),
                // Confirmed in east while coasting in west (no topology: views may overlap).
                (ENTER, "east".into(), 1),
                (EXIT, "west".into(), 1),
                (EXIT, "east".into(), 2),
                (EXIT, "east".into(), 1),
            ]
        );
        let west_exit = out
            .iter()
            .find_map(|o| match o {
                Output::Presence(e) if e.kind == EXIT && e.camera_id == "west" => Some(e),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (
                west_exit.enter_ts_us,
                west_exit.exit_ts_us,
                west_exit.detections
            ),
            (0, 1_800_000, 10)
        );
        let summaries: Vec<&TrackSummary> = out
            .iter()
            .filter_map(|o| match o {
                Output::Summary(s) => Some(s),
                _ => None,
            })
            .collect();
        assert_eq!(summaries.len(), 3);
        let west = summaries.iter().find(|s| s.camera_id == "west").unwrap();
        // 9 steps of 10 px, 0.2 s apart.
        assert!((west.path_px - 90.0).abs() < 1e-3, "{}", west.path_px);
        assert!(
            (west.max_speed_px_s - 50.0).abs() < 1e-3,
            "{}",
            west.max_speed_px_s
        );
        assert_eq!(engine.live_tracks(), 0);
    }

    #[test]
    fn people_walking_a_corridor_of_cameras_are_counted_once_with_their_true_transitions() {
        use mot::topology::Link;
        // Corridor A → B → C: 2–20 s between neighbours; A and C are not adjacent.
        let link = |from: &str, to: &str| Link {
            from: from.into(),
            to: to.into(),
            min_transit_s: 2.0,
            max_transit_s: Some(20.0),
            bidirectional: true,
        };
        let mut p = params();
        p.reid.links = vec![link("A", "B"), link("B", "C")];
        let mut engine = Engine::new(p);
        let mut rng = mot::rng::SplitMix64::new(42);
        const DIM: usize = 32;
        let prototypes: Vec<Vec<f32>> = (0..4)
            .map(|_| (0..DIM).map(|_| (rng.uniform() - 0.5) as f32).collect())
            .collect();
        // (person, cameras visited, start time s): each visit is a 3 s walk
        // across the view, then 4 s out of sight before the next camera.
        let plans: [(usize, &[&str], f64); 4] = [
            (0, &["A", "B", "C"], 0.0),
            (1, &["A", "B", "C"], 2.0),
            (2, &["A", "B"], 5.0),
            (3, &["C", "B", "A"], 1.0),
        ];
        let tick_us = 200_000i64; // 5 fps per camera
        let mut out = Vec::new();
        for tick in 0..200i64 {
            let t = tick as f64 * 0.2;
            for camera in ["A", "B", "C"] {
                let mut detections = Vec::new();
                for (person, route, start) in plans {
                    for (leg, cam) in route.iter().enumerate() {
                        let enter = start + leg as f64 * 7.0;
                        if *cam != camera || t < enter || t >= enter + 3.0 {
                            continue;
                        }
                        let x = 20.0 + 8.0 * ((t - enter) / 0.2) as f32;
                        let mut feature = prototypes[person].clone();
                        for v in feature.iter_mut() {
                            *v += (0.03 * (rng.uniform() - 0.5)) as f32;
                        }
                        detections.push(WireDetection {
                            x,
                            y: 40.0 + 120.0 * person as f32,
                            width: 40.0,
                            height: 100.0,
                            score: 0.9,
                            class_id: 0,
                            embedding: Some(schemas::embedding::quantise(
                                &mot::vector::normalised(&feature),
                            )),
                            crop_jpeg: Vec::new(),
                        });
                    }
                }
                out.extend(
                    engine
                        .on_frame(&frame(camera, tick * tick_us, detections))
                        .unwrap(),
                );
            }
        }
        for camera in ["A", "B", "C"] {
            out.extend(engine.on_frame(&eos(camera)).unwrap());
        }
        // Visits (person id, camera, enter) from the EXIT events.
        let mut visits: Vec<(u64, String, i64)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Presence(e) if e.kind == EXIT => {
                    Some((e.person_id, e.camera_id.clone(), e.enter_ts_us))
                }
                _ => None,
            })
            .collect();
        visits.sort_by_key(|v| (v.0, v.2));
        let ids: BTreeSet<u64> = visits.iter().map(|v| v.0).collect();
        assert_eq!(ids.len(), 4, "four people, four ids: {visits:?}");
        assert_eq!(visits.len(), 11, "one visit per camera walked: {visits:?}");
        // Each id's route, in time order, is exactly one person's true route.
        let mut routes: Vec<Vec<String>> = ids
            .iter()
            .map(|id| {
                visits
                    .iter()
                    .filter(|v| v.0 == *id)
                    .map(|v| v.1.clone())
                    .collect()
            })
            .collect();
        routes.sort();
        let mut truth: Vec<Vec<String>> = plans
            .iter()
            .map(|(_, route, _)| route.iter().map(|c| c.to_string()).collect())
            .collect();
        truth.sort();
        assert_eq!(routes, truth);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Merge(_))),
            "no merges needed"
        );
        assert_eq!(engine.gallery_stats().ids_minted, 4);
    }

    #[test]
    fn a_silent_camera_ends_its_tracks_and_stale_frames_are_ignored() {
        let mut engine = Engine::new(params());
        let mut out = Vec::new();
        for i in 0..5i64 {
            out.extend(
                engine
                    .on_frame(&frame("a", i * 100_000, vec![det(100.0, [1.0, 0.0])]))
                    .unwrap(),
            );
        }
        assert_eq!(presence(&out), vec![(ENTER, "a".into(), 1)]);
        assert!(engine.on_frame(&frame("a", 0, vec![])).unwrap().is_empty());
        assert_eq!(engine.stats().stale_frames, 1);
        // 20 s later (camera_gap_s = 10): the old track ends before the frame is tracked.
        let later = engine
            .on_frame(&frame("a", 20_400_000, vec![det(100.0, [1.0, 0.0])]))
            .unwrap();
        assert_eq!(presence(&later), vec![(EXIT, "a".into(), 1)]);
        assert_eq!(engine.stats().camera_gaps, 1);
    }

    #[test]
    fn ending_a_camera_that_stopped_sending_emits_its_exits_and_keeps_counters() {
        let mut engine = Engine::new(params());
        let mut out = Vec::new();
        for i in 0..5i64 {
            let f = frame("gone", i * 100_000, vec![det(100.0, [1.0, 0.0])]);
            out.extend(engine.on_frame(&f).unwrap());
        }
        assert_eq!(presence(&out), vec![(ENTER, "gone".into(), 1)]);
        assert_eq!(engine.cameras().collect::<Vec<_>>(), vec!["gone"]);
        let ended = engine.end_camera("gone");
        assert_eq!(presence(&ended), vec![(EXIT, "gone".into(), 1)]);
        assert_eq!(engine.live_tracks(), 0);
        assert_eq!(engine.cameras().count(), 0);
        assert_eq!(
            engine.tracking_stats().tracks_started,
            1,
            "counters survive the close"
        );
        assert!(engine.end_camera("never-seen").is_empty());
    }

    #[test]
    fn a_restored_engine_continues_with_the_same_ids_and_event_ids() {
        let mut engine = Engine::new(params());
        for i in 0..5i64 {
            let f = frame("a", i * 100_000, vec![det(100.0 + i as f32, [1.0, 0.0])]);
            engine.on_frame(&f).unwrap();
        }
        let json = serde_json::to_string(&engine.snapshot()).unwrap();
        let mut restored = Engine::restore(params(), serde_json::from_str(&json).unwrap());
        let a = engine.on_frame(&eos("a")).unwrap();
        let b = restored.on_frame(&eos("a")).unwrap();
        assert_eq!(a, b, "same events, same event ids");
        assert_eq!(presence(&b), vec![(EXIT, "a".into(), 1)]);
        // Someone new after the restore gets the next id, not 1 again.
        let mut entered = Vec::new();
        for i in 0..4i64 {
            let f = frame("b", 1_000_000 + i * 100_000, vec![det(300.0, [0.0, 1.0])]);
            entered.extend(presence(&restored.on_frame(&f).unwrap()));
        }
        assert_eq!(entered, vec![(ENTER, "b".into(), 2)]);
    }
}
