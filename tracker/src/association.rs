//! Per-camera multi-object tracking by IoU and appearance (pure, no I/O).
//!
//! Each frame's detections are matched greedily to the camera's live tracks
//! by a combined similarity `iou_weight * IoU + (1 - iou_weight) * cosine`,
//! among pairs that pass a gate (enough overlap, or a very similar
//! appearance nearby). Tracks are tentative until `n_init` hits; a confirmed
//! track that has not been seen for `max_age_s` of stream time ends.
//! (Deep SORT's Kalman filter and matching cascade replace this in a later
//! version; the interface stays.)

use schemas::v1::Detection;

/// A box in frame pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    /// Left.
    pub x: f32,
    /// Top.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl Rect {
    /// Intersection over union; 0 for degenerate or non-finite boxes.
    pub fn iou(&self, o: &Rect) -> f32 {
        let valid =
            |r: &Rect| [r.x, r.y, r.w, r.h].iter().all(|v| v.is_finite()) && r.w > 0.0 && r.h > 0.0;
        if !valid(self) || !valid(o) {
            return 0.0;
        }
        let ix = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let iy = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if ix <= 0.0 || iy <= 0.0 {
            return 0.0;
        }
        let inter = ix * iy;
        inter / (self.w * self.h + o.w * o.h - inter)
    }

    fn center_distance(&self, o: &Rect) -> f32 {
        let dx = (self.x + self.w / 2.0) - (o.x + o.w / 2.0);
        let dy = (self.y + self.h / 2.0) - (o.y + o.h / 2.0);
        (dx * dx + dy * dy).sqrt()
    }
}

/// Tracking parameters (the `[tracking]` config section).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingParams {
    /// Hits before a track is confirmed.
    pub n_init: u32,
    /// Stream seconds without a match before a confirmed track ends.
    pub max_age_s: f64,
    /// Minimum IoU for a match on overlap.
    pub min_iou: f32,
    /// Minimum cosine similarity for a match on appearance alone.
    pub min_appearance: f32,
    /// Weight of IoU in the combined similarity.
    pub iou_weight: f32,
}

impl Default for TrackingParams {
    fn default() -> Self {
        TrackingParams {
            n_init: 3,
            max_age_s: 2.0,
            min_iou: 0.1,
            min_appearance: 0.85,
            iou_weight: 0.5,
        }
    }
}

/// One detection as the tracker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Box.
    pub rect: Rect,
    /// Detector score.
    pub score: f32,
    /// L2-normalised appearance (may be empty).
    pub embedding: Vec<f32>,
}

impl Observation {
    /// From a wire detection (dequantising the embedding).
    pub fn from_wire(d: &Detection) -> Self {
        Observation {
            rect: Rect {
                x: d.x,
                y: d.y,
                w: d.width,
                h: d.height,
            },
            score: d.score,
            embedding: d
                .embedding
                .as_ref()
                .map(schemas::embedding::dequantise)
                .unwrap_or_default(),
        }
    }
}

/// A track's life so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// Per-camera track id.
    pub id: u64,
    /// Last matched box.
    pub rect: Rect,
    /// Stream time of the first detection, µs.
    pub first_ts_us: i64,
    /// Stream time of the last detection, µs.
    pub last_ts_us: i64,
    /// Matched detections.
    pub hits: u32,
    /// Sum of detector scores.
    pub score_sum: f32,
    /// Running sum of embeddings (direction = mean appearance).
    appearance_sum: Vec<f32>,
    /// Confirmed after `n_init` hits.
    pub confirmed: bool,
    /// Global person id, assigned at confirmation.
    pub person_id: Option<u64>,
}

impl Track {
    /// Unit-length mean appearance (empty when no embeddings were seen).
    pub fn appearance(&self) -> Vec<f32> {
        normalised(&self.appearance_sum)
    }

    fn absorb(&mut self, obs: &Observation, ts_us: i64) {
        self.rect = obs.rect;
        self.last_ts_us = ts_us;
        self.hits += 1;
        self.score_sum += obs.score;
        if self.appearance_sum.is_empty() {
            self.appearance_sum = obs.embedding.clone();
        } else if self.appearance_sum.len() == obs.embedding.len() {
            self.appearance_sum
                .iter_mut()
                .zip(&obs.embedding)
                .for_each(|(s, v)| *s += v);
        }
    }
}

/// Unit-length copy; empty for an empty or all-zero vector.
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        Vec::new()
    }
}

/// Cosine similarity of two unit vectors; 0 when either is missing or lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.is_empty() || a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    if dot.is_finite() { dot } else { 0.0 }
}

/// What happened to tracks in an update.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    /// The track was just confirmed (assign it a person and emit ENTER).
    Confirmed(u64),
    /// A confirmed track ended (emit EXIT).
    Ended(Track),
}

/// The tracks of one camera.
#[derive(Debug, Default)]
pub struct CameraTracks {
    params: TrackingParams,
    tracks: Vec<Track>,
    next_id: u64,
    last_ts_us: i64,
}

impl CameraTracks {
    /// An empty tracker.
    pub fn new(params: TrackingParams) -> Self {
        CameraTracks {
            params,
            tracks: Vec::new(),
            next_id: 1,
            last_ts_us: i64::MIN,
        }
    }

    /// Live tracks.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Mutable access to a live track.
    pub fn track_mut(&mut self, id: u64) -> Option<&mut Track> {
        self.tracks.iter_mut().find(|t| t.id == id)
    }

    /// Stream time of the latest frame seen.
    pub fn last_ts_us(&self) -> i64 {
        self.last_ts_us
    }

    /// Feeds one frame. Frames older than the latest one are ignored (they
    /// would rewind time); invalid boxes are skipped.
    pub fn update(&mut self, ts_us: i64, observations: &[Observation]) -> Vec<TrackEvent> {
        if ts_us < self.last_ts_us {
            return Vec::new();
        }
        self.last_ts_us = ts_us;
        let observations: Vec<&Observation> = observations
            .iter()
            .filter(|o| o.rect.iou(&o.rect) > 0.0)
            .collect();
        let mut pairs = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            let appearance = track.appearance();
            for (oi, obs) in observations.iter().enumerate() {
                let iou = track.rect.iou(&obs.rect);
                let cos = cosine(&appearance, &obs.embedding);
                let near =
                    track.rect.center_distance(&obs.rect) < 1.5 * track.rect.h.max(obs.rect.h);
                if iou >= self.params.min_iou || (cos >= self.params.min_appearance && near) {
                    let w = self.params.iou_weight;
                    pairs.push((w * iou + (1.0 - w) * cos, ti, oi));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_used = vec![false; self.tracks.len()];
        let mut obs_used = vec![false; observations.len()];
        let mut events = Vec::new();
        for (_, ti, oi) in pairs {
            if track_used[ti] || obs_used[oi] {
                continue;
            }
            track_used[ti] = true;
            obs_used[oi] = true;
            let track = &mut self.tracks[ti];
            track.absorb(observations[oi], ts_us);
            if !track.confirmed && track.hits >= self.params.n_init {
                track.confirmed = true;
                events.push(TrackEvent::Confirmed(track.id));
            }
        }
        // Tentative tracks die on their first miss; confirmed ones after max_age.
        let max_age_us = (self.params.max_age_s * 1e6) as i64;
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (track, used) in std::mem::take(&mut self.tracks).into_iter().zip(track_used) {
            let alive = used || (track.confirmed && ts_us - track.last_ts_us <= max_age_us);
            if alive {
                kept.push(track);
            } else if track.confirmed {
                events.push(TrackEvent::Ended(track));
            }
        }
        self.tracks = kept;
        for (oi, obs) in observations.iter().enumerate() {
            if obs_used[oi] {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let mut track = Track {
                id,
                rect: obs.rect,
                first_ts_us: ts_us,
                last_ts_us: ts_us,
                hits: 0,
                score_sum: 0.0,
                appearance_sum: Vec::new(),
                confirmed: false,
                person_id: None,
            };
            track.absorb(obs, ts_us);
            if self.params.n_init <= 1 {
                track.confirmed = true;
                events.push(TrackEvent::Confirmed(id));
            }
            self.tracks.push(track);
        }
        events
    }

    /// Ends every track (stream ended or shutdown); confirmed ones are returned.
    pub fn close_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(|t| t.confirmed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(x: f32, emb: &[f32]) -> Observation {
        Observation {
            rect: Rect {
                x,
                y: 10.0,
                w: 40.0,
                h: 100.0,
            },
            score: 0.8,
            embedding: normalised(emb),
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn a_walking_person_is_one_track_confirmed_after_n_init_and_ended_after_max_age() {
        let mut t = CameraTracks::new(TrackingParams::default());
        let mut events = Vec::new();
        for i in 0..10 {
            events.extend(t.update(i * S / 5, &[obs(100.0 + 5.0 * i as f32, &[1.0, 0.0])]));
        }
        assert_eq!(events, vec![TrackEvent::Confirmed(1)]);
        assert_eq!(t.tracks().len(), 1);
        assert_eq!(t.tracks()[0].hits, 10);
        // 1.8 s later: still alive; 2.2 s later: ended.
        assert!(t.update(9 * S / 5 + 18 * S / 10, &[]).is_empty());
        let ended = t.update(9 * S / 5 + 22 * S / 10, &[]);
        match &ended[..] {
            [TrackEvent::Ended(track)] => {
                assert_eq!((track.first_ts_us, track.last_ts_us), (0, 9 * S / 5));
            }
            other => panic!("expected one end, got {other:?}"),
        }
    }

    #[test]
    fn two_crossing_people_keep_their_ids_by_appearance() {
        let mut t = CameraTracks::new(TrackingParams::default());
        // A walks right, B walks left; they overlap around frame 5.
        for i in 0..11 {
            let a = obs(100.0 + 10.0 * i as f32, &[1.0, 0.1]);
            let b = obs(200.0 - 10.0 * i as f32, &[0.1, 1.0]);
            t.update(i * S / 5, &[b, a]);
        }
        let by_x: Vec<(u64, f32)> = t.tracks().iter().map(|tr| (tr.id, tr.rect.x)).collect();
        assert_eq!(by_x.len(), 2);
        let a = by_x.iter().find(|(id, _)| *id == 2).unwrap();
        assert_eq!(
            a.1, 200.0,
            "track 2 (A, listed second in frame 0) ended where A ended"
        );
    }

    #[test]
    fn flicker_does_not_confirm_and_bad_boxes_are_ignored() {
        let mut t = CameraTracks::new(TrackingParams::default());
        assert!(t.update(0, &[obs(10.0, &[1.0])]).is_empty());
        assert!(t.update(S / 5, &[]).is_empty());
        assert!(t.tracks().is_empty(), "tentative track dies on first miss");
        let nan = Observation {
            rect: Rect {
                x: f32::NAN,
                y: 0.0,
                w: 1.0,
                h: 1.0,
            },
            score: 1.0,
            embedding: vec![],
        };
        let zero = Observation {
            rect: Rect {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 10.0,
            },
            score: 1.0,
            embedding: vec![],
        };
        t.update(2 * S / 5, &[nan, zero]);
        assert!(t.tracks().is_empty());
        assert!(
            t.update(0, &[obs(10.0, &[1.0])]).is_empty(),
            "old frames are ignored"
        );
        assert!(t.tracks().is_empty());
    }
}
