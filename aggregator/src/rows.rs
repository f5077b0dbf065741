//! Row buffers per table and their conversion to Arrow record batches.
//!
//! Rows are grouped by UTC date (the Hive partition `date=YYYY-MM-DD`) of
//! their main timestamp when they are turned into batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::error::ArrowError;
use schemas::tables::Table;
use schemas::v1::presence_event::Kind;
use schemas::v1::{
    Alert, AlertAction, CameraHealth, FrameDetections, IdMerge, PresenceEvent, TrackSummary,
};

/// `YYYY-MM-DD` (UTC) of a Unix-microsecond time (civil-from-days, Howard Hinnant).
pub fn utc_date(ts_us: i64) -> String {
    let days = ts_us.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[derive(Debug, Clone)]
struct Presence {
    person_id: u64,
    camera_id: String,
    enter: i64,
    exit: i64,
    track_id: u64,
    detections: u32,
    mean_score: f32,
    event_id: String,
}

#[derive(Debug, Clone)]
struct Person {
    id: u64,
    first_seen: i64,
    first_camera: String,
}

#[derive(Debug, Clone)]
struct FrameRow {
    camera_id: String,
    frame_seq: u64,
    ts: i64,
    persons: u32,
    frame_width: u32,
    frame_height: u32,
    model_id: String,
}

/// Buffered rows of every table, waiting for the next flush, and the
/// memory of recent event ids and person ids that drops re-delivered events.
///
/// That memory is bounded by time: [`Rows::prune`] forgets ids whose event
/// time is more than the dedup window older than the newest event seen.
#[derive(Debug, Default)]
pub struct Rows {
    presence: Vec<Presence>,
    people: Vec<Person>,
    frames: Vec<FrameRow>,
    health: Vec<CameraHealth>,
    alerts: Vec<Alert>,
    actions: Vec<AlertAction>,
    merges: Vec<IdMerge>,
    tracks: Vec<TrackSummary>,
    /// Person id → newest time it was seen.
    known_people: HashMap<u64, i64>,
    /// 128-bit digest of an event id → its event time (no allocation per
    /// event; a collision needs ~2^64 ids).
    seen_events: HashMap<u128, i64>,
    newest_ts: i64,
    window_us: i64,
}

/// What an event changed, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Added {
    /// Rows added.
    pub rows: usize,
    /// Duplicates ignored.
    pub duplicates: usize,
}

impl Rows {
    /// Rows waiting to be written.
    pub fn pending(&self) -> usize {
        self.presence.len()
            + self.people.len()
            + self.frames.len()
            + self.health.len()
            + self.alerts.len()
            + self.actions.len()
            + self.merges.len()
            + self.tracks.len()
    }

    /// Buffers that remember event ids for `window_s` seconds of event time.
    pub fn new(window_s: f64) -> Self {
        Rows {
            window_us: (window_s * 1e6).clamp(0.0, i64::MAX as f64) as i64,
            newest_ts: i64::MIN,
            ..Rows::default()
        }
    }

    /// Marks person ids already stored, with the time they were seen (read back at start-up).
    pub fn know_people(&mut self, ids: impl IntoIterator<Item = (u64, i64)>) {
        for (id, ts) in ids {
            self.see_person(id, ts);
        }
    }

    /// Marks event ids already stored, with their event times (read back at start-up).
    pub fn know_events(&mut self, ids: impl IntoIterator<Item = (String, i64)>) {
        for (id, ts) in ids {
            self.first_time(&id, ts);
        }
    }

    /// Event ids and person ids remembered.
    pub fn remembered(&self) -> (usize, usize) {
        (self.seen_events.len(), self.known_people.len())
    }

    /// Forgets ids older than the window before the newest event time (an
    /// event stamped more than an hour after `now_us`, a broken clock, does
    /// not count as the newest).
    pub fn prune(&mut self, now_us: i64) {
        let newest = self.newest_ts.min(now_us.saturating_add(3_600_000_000));
        let horizon = newest.saturating_sub(self.window_us);
        self.seen_events.retain(|_, ts| *ts >= horizon);
        self.known_people.retain(|_, ts| *ts >= horizon);
    }

    /// True if the person was not seen within the window; records the sighting.
    fn see_person(&mut self, id: u64, ts: i64) -> bool {
        self.newest_ts = self.newest_ts.max(ts);
        match self.known_people.insert(id, ts) {
            None => true,
            Some(previous) => {
                self.known_people.insert(id, previous.max(ts));
                false
            }
        }
    }

    /// True the first time an event id is seen within the window.
    fn first_time(&mut self, event_id: &str, ts: i64) -> bool {
        self.newest_ts = self.newest_ts.max(ts);
        match self.seen_events.entry(digest(event_id)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(ts);
                true
            }
        }
    }

    /// An ENTER adds the person to `unique_people` if new; an EXIT adds the
    /// closed interval to `people_present`. Re-delivered events (same id) are ignored.
    pub fn add_presence(&mut self, e: &PresenceEvent) -> Added {
        let ts = if e.kind == Kind::Exit as i32 {
            e.exit_ts_us
        } else {
            e.enter_ts_us
        };
        if !self.first_time(&e.event_id, ts) {
            return Added {
                rows: 0,
                duplicates: 1,
            };
        }
        let mut rows = 0;
        if self.see_person(e.person_id, ts) {
            self.people.push(Person {
                id: e.person_id,
                first_seen: e.enter_ts_us,
                first_camera: e.camera_id.clone(),
            });
            rows += 1;
        }
        if e.kind == Kind::Exit as i32 {
            self.presence.push(Presence {
                person_id: e.person_id,
                camera_id: e.camera_id.clone(),
                enter: e.enter_ts_us,
                exit: e.exit_ts_us.max(e.enter_ts_us),
                track_id: e.track_id,
                detections: e.detections,
                mean_score: e.mean_score,
                event_id: e.event_id.clone(),
            });
            rows += 1;
        }
        Added {
            rows,
            duplicates: 0,
        }
    }

    /// One `frames` row per analysed frame (end-of-stream markers are not frames).
    pub fn add_frame(&mut self, f: &FrameDetections) -> Added {
        if f.end_of_stream {
            return Added::default();
        }
        self.frames.push(FrameRow {
            camera_id: f.camera_id.clone(),
            frame_seq: f.frame_seq,
            ts: f.capture_ts_us,
            persons: u32::try_from(f.detections.len()).unwrap_or(u32::MAX),
            frame_width: f.frame_width,
            frame_height: f.frame_height,
            model_id: f.model_id.clone(),
        });
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// One `camera_health` row per report.
    pub fn add_health(&mut self, h: &CameraHealth) -> Added {
        self.health.push(h.clone());
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// One `id_merges` row per merge; re-delivered merges (same id) are ignored.
    pub fn add_merge(&mut self, m: &IdMerge) -> Added {
        if !self.first_time(&m.event_id, m.ts_us) {
            return Added {
                rows: 0,
                duplicates: 1,
            };
        }
        self.merges.push(m.clone());
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// One `tracks` row per track summary; re-delivered ones are ignored.
    pub fn add_track(&mut self, t: &TrackSummary) -> Added {
        if !self.first_time(&t.event_id, t.last_ts_us) {
            return Added {
                rows: 0,
                duplicates: 1,
            };
        }
        self.tracks.push(t.clone());
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// One `alerts` row per alert event (raised, then closed); re-delivered ones are ignored.
    pub fn add_alert(&mut self, a: &Alert) -> Added {
        if !self.first_time(&alert_key(&a.alert_id, a.closed), a.ts_us) {
            return Added {
                rows: 0,
                duplicates: 1,
            };
        }
        self.alerts.push(a.clone());
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// One `alert_actions` row per console action; re-delivered ones (same
    /// `action_id`) are ignored.
    pub fn add_action(&mut self, a: &AlertAction) -> Added {
        if !self.first_time(&a.action_id, a.ts_us) {
            return Added {
                rows: 0,
                duplicates: 1,
            };
        }
        self.actions.push(a.clone());
        Added {
            rows: 1,
            duplicates: 0,
        }
    }

    /// Drains the buffers into `(table, date, batch)` groups.
    pub fn take_batches(&mut self) -> Result<Vec<(Table, String, RecordBatch)>, ArrowError> {
        let mut out = Vec::new();
        for (date, rows) in by_date(std::mem::take(&mut self.presence), |r| r.enter) {
            out.push((Table::PeoplePresent, date, presence_batch(&rows)?));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.people), |r| r.first_seen) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.id))),
                ts_array(rows.iter().map(|r| r.first_seen)),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.first_camera),
                )),
            ];
            out.push((
                Table::UniquePeople,
                date,
                RecordBatch::try_new(Table::UniquePeople.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.frames), |r| r.ts) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.camera_id),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.frame_seq),
                )),
                ts_array(rows.iter().map(|r| r.ts)),
                Arc::new(UInt32Array::from_iter_values(
                    rows.iter().map(|r| r.persons),
                )),
                Arc::new(UInt32Array::from_iter_values(
                    rows.iter().map(|r| r.frame_width),
                )),
                Arc::new(UInt32Array::from_iter_values(
                    rows.iter().map(|r| r.frame_height),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.model_id),
                )),
            ];
            out.push((
                Table::Frames,
                date,
                RecordBatch::try_new(Table::Frames.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.health), |r| r.ts_us) {
            let state = |r: &CameraHealth| r.state().as_str_name().to_string();
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.camera_id),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(state))),
                ts_array(rows.iter().map(|r| r.since_ts_us)),
                ts_array(rows.iter().map(|r| r.ts_us)),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.frames_in),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.frames_analysed),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.frames_dropped),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.detail),
                )),
            ];
            out.push((
                Table::CameraHealth,
                date,
                RecordBatch::try_new(Table::CameraHealth.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.alerts), |r| r.ts_us) {
            let ids = |r: &Alert| {
                r.person_ids
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.alert_id),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.rule))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.severity().as_str_name().to_string()),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.camera_id),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(ids))),
                ts_array(rows.iter().map(|r| r.ts_us)),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.message),
                )),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|r| r.closed).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        rows.iter()
                            .map(|r| (r.trigger_ts_us != 0).then_some(r.trigger_ts_us))
                            .collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| r.evidence.as_ref().map(|e| evidence_json(e).to_string()))
                        .collect::<Vec<_>>(),
                )),
            ];
            out.push((
                Table::Alerts,
                date,
                RecordBatch::try_new(Table::Alerts.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.actions), |r| r.ts_us) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.alert_id),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| action_name(r.action())),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.actor))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.note))),
                ts_array(rows.iter().map(|r| r.ts_us)),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.action_id),
                )),
            ];
            out.push((
                Table::AlertActions,
                date,
                RecordBatch::try_new(Table::AlertActions.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.merges), |r| r.ts_us) {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.from_person_id),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.into_person_id),
                )),
                ts_array(rows.iter().map(|r| r.ts_us)),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.camera_id),
                )),
                Arc::new(Float32Array::from_iter_values(
                    rows.iter().map(|r| r.similarity),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.event_id),
                )),
            ];
            out.push((
                Table::IdMerges,
                date,
                RecordBatch::try_new(Table::IdMerges.schema(), columns)?,
            ));
        }
        for (date, rows) in by_date(std::mem::take(&mut self.tracks), |r| r.first_ts_us) {
            let f32s = |f: fn(&TrackSummary) -> f32| -> ArrayRef {
                Arc::new(Float32Array::from_iter_values(rows.iter().map(f)))
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.camera_id),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.track_id),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.person_id),
                )),
                ts_array(rows.iter().map(|r| r.first_ts_us)),
                ts_array(rows.iter().map(|r| r.last_ts_us.max(r.first_ts_us))),
                Arc::new(UInt32Array::from_iter_values(
                    rows.iter().map(|r| r.detections),
                )),
                f32s(|r| r.mean_score),
                f32s(|r| r.first_x),
                f32s(|r| r.first_y),
                f32s(|r| r.last_x),
                f32s(|r| r.last_y),
                f32s(|r| r.path_px),
                f32s(|r| r.max_speed_px_s),
                f32s(|r| r.mean_height_px),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.event_id),
                )),
            ];
            out.push((
                Table::Tracks,
                date,
                RecordBatch::try_new(Table::Tracks.schema(), columns)?,
            ));
        }
        Ok(out)
    }
}

/// Two independent 64-bit SipHash digests of an id (fixed keys: stable
/// within a process, which is all the dedup memory needs).
fn digest(id: &str) -> u128 {
    use std::hash::{Hash, Hasher};
    let half = |salt: u8| {
        let mut hasher = std::hash::DefaultHasher::new();
        salt.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// Dedup key of an alert event: its id and whether it closes the alert.
pub fn alert_key(alert_id: &str, closed: bool) -> String {
    format!(
        "alert:{alert_id}:{}",
        if closed { "closed" } else { "open" }
    )
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` of a Unix-microsecond time (UTC).
pub fn rfc3339_utc(ts_us: i64) -> String {
    let of_day = ts_us.rem_euclid(86_400_000_000);
    let (seconds, micros) = (of_day / 1_000_000, of_day % 1_000_000);
    format!(
        "{}T{:02}:{:02}:{:02}.{micros:06}Z",
        utc_date(ts_us),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// An alert's evidence as JSON, the same in the `alerts` table, the
/// console and webhooks; times as RFC 3339, fields that do not apply
/// (zero on the wire) as null.
pub fn evidence_json(e: &schemas::v1::AlertEvidence) -> serde_json::Value {
    let time = |us: i64| (us != 0).then(|| rfc3339_utc(us));
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    serde_json::json!({
        "first_seen": time(e.first_seen_ts_us),
        "last_seen": time(e.last_seen_ts_us),
        "last_x": e.last_x,
        "last_y": e.last_y,
        "path_px": e.path_px,
        "max_speed": e.max_speed,
        "dwell_s": e.dwell_s,
        "previous_camera": text(&e.previous_camera_id),
        "previous_seen": time(e.previous_seen_ts_us),
        "count": (e.count != 0).then_some(e.count),
    })
}

/// The `alert_actions.action` value of an action.
pub fn action_name(action: schemas::v1::alert_action::Action) -> &'static str {
    use schemas::v1::alert_action::Action;
    match action {
        Action::Acknowledged => "acknowledged",
        Action::Resolved => "resolved",
        Action::Unspecified => "unspecified",
    }
}

fn presence_batch(rows: &[Presence]) -> Result<RecordBatch, ArrowError> {
    let mut rows = rows.to_vec();
    // Sorted within files so time-window queries read few pages.
    rows.sort_by(|a, b| {
        (a.enter, &a.camera_id, a.person_id).cmp(&(b.enter, &b.camera_id, b.person_id))
    });
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.person_id),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.camera_id),
        )),
        ts_array(rows.iter().map(|r| r.enter)),
        ts_array(rows.iter().map(|r| r.exit)),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.track_id),
        )),
        Arc::new(UInt32Array::from_iter_values(
            rows.iter().map(|r| r.detections),
        )),
        Arc::new(Float32Array::from_iter_values(
            rows.iter().map(|r| r.mean_score),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.event_id),
        )),
    ];
    RecordBatch::try_new(Table::PeoplePresent.schema(), columns)
}

fn ts_array(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(values).with_timezone("UTC"))
}

fn by_date<T>(rows: Vec<T>, ts: impl Fn(&T) -> i64) -> BTreeMap<String, Vec<T>> {
    let mut groups: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for row in rows {
        groups.entry(utc_date(ts(&row))).or_default().push(row);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_known_instants() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_700_000_000_000_000), "2023-11-14");
        assert_eq!(utc_date(951_782_400_000_000), "2000-02-29");
        assert_eq!(utc_date(-1), "1969-12-31");
    }

    fn event(kind: Kind, person: u64, camera: &str, track: u64) -> PresenceEvent {
        PresenceEvent {
            kind: kind as i32,
            person_id: person,
            camera_id: camera.into(),
            track_id: track,
            enter_ts_us: 1_700_000_000_000_000,
            exit_ts_us: 1_700_000_005_000_000,
            event_id: format!("{camera}:r:{track}:{}", kind.as_str_name()),
            ..Default::default()
        }
    }

    #[test]
    fn presence_events_fill_people_present_and_unique_people_once() {
        let mut rows = Rows::default();
        assert_eq!(rows.add_presence(&event(Kind::Enter, 7, "west", 1)).rows, 1);
        assert_eq!(rows.add_presence(&event(Kind::Exit, 7, "west", 1)).rows, 1);
        assert_eq!(
            rows.add_presence(&event(Kind::Exit, 7, "west", 1))
                .duplicates,
            1
        );
        assert_eq!(
            rows.add_presence(&event(Kind::Enter, 7, "east", 4)).rows,
            0,
            "known person, enter only"
        );
        let batches = rows.take_batches().unwrap();
        let sizes: Vec<(&str, &str, usize)> = batches
            .iter()
            .map(|(t, d, b)| (t.name(), d.as_str(), b.num_rows()))
            .collect();
        assert_eq!(
            sizes,
            vec![
                ("people_present", "2023-11-14", 1),
                ("unique_people", "2023-11-14", 1)
            ]
        );
        assert_eq!(rows.pending(), 0);
    }

    #[test]
    fn merges_and_track_summaries_fill_their_tables_once() {
        let mut rows = Rows::default();
        let merge = IdMerge {
            event_id: "merge:9:4".into(),
            from_person_id: 9,
            into_person_id: 4,
            ts_us: 1_700_000_000_000_000,
            camera_id: "east".into(),
            similarity: 0.93,
            ..Default::default()
        };
        let track = TrackSummary {
            event_id: "east:e:3:summary".into(),
            camera_id: "east".into(),
            track_id: 3,
            person_id: 4,
            first_ts_us: 1_700_000_000_000_000,
            // A last time before the first is clamped (exit never precedes enter).
            last_ts_us: 1_600_000_000_000_000,
            path_px: 120.5,
            ..Default::default()
        };
        assert_eq!(rows.add_merge(&merge).rows, 1);
        assert_eq!(rows.add_merge(&merge).duplicates, 1);
        assert_eq!(rows.add_track(&track).rows, 1);
        assert_eq!(rows.add_track(&track).duplicates, 1);
        assert_eq!(rows.pending(), 2);
        let batches = rows.take_batches().unwrap();
        let names: Vec<&str> = batches.iter().map(|(t, _, _)| t.name()).collect();
        assert_eq!(names, vec!["id_merges", "tracks"]);
        let tracks = &batches[1].2;
        let last = tracks
            .column(4)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(last.value(0), 1_700_000_000_000_000);
        let path = tracks
            .column(11)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        assert_eq!(path.value(0), 120.5);
    }
}
