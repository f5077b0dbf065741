//! Arrow schemas of the Parquet tables written by the aggregator.
//!
//! These are the single source of truth: the aggregator builds its record
//! batches against them and registers its SQL tables with them, and analysts
//! read the same column names in `README.md`.
//!
//! The aggregator stores these tables as written; the names analysts query
//! (`people_present`, `unique_people`, `tracks` with id merges applied,
//! `camera_health` as state intervals, `transitions`) are views over them,
//! defined by the aggregator. [`Table::sql_name`] is the name under which a
//! stored table is registered.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Microsecond timestamps in UTC, the unit of every time on the wire.
fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A table the aggregator writes: its name (also its directory) and schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// `people_present(person_id, camera_id, enter, exit, ...)`: one row per
    /// closed presence interval of a global person at a camera.
    PeoplePresent,
    /// `unique_people(id, first_seen, first_camera)`: one row per global person.
    UniquePeople,
    /// `frames(camera_id, frame_seq, ts, persons, ...)`: one row per analysed frame.
    Frames,
    /// `camera_health_reports(camera_id, state, since, ts, ...)`: every
    /// health report as received (the `camera_health(camera_id, state, from,
    /// to)` view turns them into intervals).
    CameraHealth,
    /// `alerts(alert_id, rule, severity, camera_id, ...)`: every alert event.
    Alerts,
    /// `id_merges(from_person_id, into_person_id, ts, ...)`: the tracker found
    /// two person ids to be one person (rows are never rewritten; apply these).
    IdMerges,
    /// `alert_actions(alert_id, action, actor, note, ts)`: acknowledgements
    /// and resolutions made in the security console.
    AlertActions,
    /// `tracks(camera_id, track_id, person_id, first_seen, last_seen, ...)`:
    /// one summary per finished per-camera track (path length, top speed).
    Tracks,
}

impl Table {
    /// Every table, in a stable order.
    pub const ALL: [Table; 8] = [
        Table::PeoplePresent,
        Table::UniquePeople,
        Table::Frames,
        Table::CameraHealth,
        Table::Alerts,
        Table::AlertActions,
        Table::IdMerges,
        Table::Tracks,
    ];

    /// SQL name and directory name.
    pub const fn name(self) -> &'static str {
        match self {
            Table::PeoplePresent => "people_present",
            Table::UniquePeople => "unique_people",
            Table::Frames => "frames",
            Table::CameraHealth => "camera_health_reports",
            Table::Alerts => "alerts",
            Table::AlertActions => "alert_actions",
            Table::IdMerges => "id_merges",
            Table::Tracks => "tracks",
        }
    }

    /// The table stored in the directory `name`, if any.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Name of the stored table in SQL: tables whose ids the tracker may
    /// merge later are stored as `<name>_raw` and read through a view named
    /// `<name>` that applies the merges.
    pub const fn sql_name(self) -> &'static str {
        match self {
            Table::PeoplePresent => "people_present_raw",
            Table::UniquePeople => "unique_people_raw",
            Table::Tracks => "tracks_raw",
            other => other.name(),
        }
    }

    /// The timestamp column rows are sorted by within a file, so time-window
    /// queries prune row groups by their statistics.
    pub const fn time_column(self) -> &'static str {
        match self {
            Table::PeoplePresent => "enter",
            Table::UniquePeople => "first_seen",
            Table::Tracks => "first_seen",
            Table::Frames
            | Table::CameraHealth
            | Table::Alerts
            | Table::AlertActions
            | Table::IdMerges => "ts",
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        let fields = match self {
            Table::PeoplePresent => vec![
                Field::new("person_id", DataType::UInt64, false),
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("enter", ts(), false),
                Field::new("exit", ts(), false),
                Field::new("track_id", DataType::UInt64, false),
                Field::new("detections", DataType::UInt32, false),
                Field::new("mean_score", DataType::Float32, false),
                Field::new("event_id", DataType::Utf8, false),
            ],
            Table::UniquePeople => vec![
                Field::new("id", DataType::UInt64, false),
                Field::new("first_seen", ts(), false),
                Field::new("first_camera", DataType::Utf8, false),
            ],
            Table::Frames => vec![
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("frame_seq", DataType::UInt64, false),
                Field::new("ts", ts(), false),
                Field::new("persons", DataType::UInt32, false),
                Field::new("frame_width", DataType::UInt32, false),
                Field::new("frame_height", DataType::UInt32, false),
                Field::new("model_id", DataType::Utf8, false),
            ],
            Table::CameraHealth => vec![
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("state", DataType::Utf8, false),
                Field::new("since", ts(), false),
                Field::new("ts", ts(), false),
                Field::new("frames_in", DataType::UInt64, false),
                Field::new("frames_analysed", DataType::UInt64, false),
                Field::new("frames_dropped", DataType::UInt64, false),
                Field::new("detail", DataType::Utf8, false),
            ],
            Table::Alerts => vec![
                Field::new("alert_id", DataType::Utf8, false),
                Field::new("rule", DataType::Utf8, false),
                Field::new("severity", DataType::Utf8, false),
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("person_ids", DataType::Utf8, false),
                Field::new("ts", ts(), false),
                Field::new("message", DataType::Utf8, false),
                Field::new("closed", DataType::Boolean, false),
                // Capture time of the frame that triggered it; null in
                // files written before the column existed.
                Field::new("trigger_ts", ts(), true),
                // The evidence as JSON (first/last seen, position, dwell...).
                Field::new("evidence", DataType::Utf8, true),
            ],
            Table::AlertActions => vec![
                Field::new("alert_id", DataType::Utf8, false),
                Field::new("action", DataType::Utf8, false),
                Field::new("actor", DataType::Utf8, false),
                Field::new("note", DataType::Utf8, false),
                Field::new("ts", ts(), false),
                Field::new("action_id", DataType::Utf8, false),
            ],
            Table::IdMerges => vec![
                Field::new("from_person_id", DataType::UInt64, false),
                Field::new("into_person_id", DataType::UInt64, false),
                Field::new("ts", ts(), false),
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("similarity", DataType::Float32, false),
                Field::new("event_id", DataType::Utf8, false),
            ],
            Table::Tracks => vec![
                Field::new("camera_id", DataType::Utf8, false),
                Field::new("track_id", DataType::UInt64, false),
                Field::new("person_id", DataType::UInt64, false),
                Field::new("first_seen", ts(), false),
                Field::new("last_seen", ts(), false),
                Field::new("detections", DataType::UInt32, false),
                Field::new("mean_score", DataType::Float32, false),
                Field::new("first_x", DataType::Float32, false),
                Field::new("first_y", DataType::Float32, false),
                Field::new("last_x", DataType::Float32, false),
                Field::new("last_y", DataType::Float32, false),
                Field::new("path_px", DataType::Float32, false),
                Field::new("max_speed_px_s", DataType::Float32, false),
                Field::new("mean_height_px", DataType::Float32, false),
                Field::new("event_id", DataType::Utf8, false),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_columns_lead_the_people_tables() {
        let names = |t: Table| {
            t.schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(Table::PeoplePresent)[..4],
            ["person_id", "camera_id", "enter", "exit"]
        );
        assert_eq!(names(Table::UniquePeople)[0], "id");
    }

    #[test]
    fn every_table_has_its_time_column() {
        for table in Table::ALL {
            let field = table.schema().field_with_name(table.time_column()).cloned();
            assert!(
                matches!(
                    field.map(|f| f.data_type().clone()),
                    Ok(DataType::Timestamp(..))
                ),
                "{}",
                table.name()
            );
        }
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<_> = Table::ALL.iter().map(|t| t.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Table::ALL.len());
        for table in Table::ALL {
            assert_eq!(Table::from_name(table.name()), Some(table));
        }
        assert_eq!(Table::from_name("transitions"), None);
    }
}
