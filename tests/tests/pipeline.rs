//! End to end: RTSP camera simulator → edge agent → broker → tracker →
//! aggregator → Parquet → SQL, all real components on loopback, then
//! assertions on the SQL answers.

use std::time::Duration;

use aggregator::config::AggregatorConfig;
use broker::EmbeddedBroker;
use camera_sim::{CameraSimulator, SimConfig};
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
use edge_agent::config::{
    CameraConfig, DetectorConfig, EdgeConfig, EgressConfig, EmbedderConfig, OnEos, SpoolSettings,
};
use service_kit::kafka::KafkaSettings;
use tracker::config::TrackerConfig;

/// 15 s of vtest.avi per camera.
const CLIP_FRAMES: u32 = 150;

fn int_column(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(column);
            if let Some(a) = c.as_primitive_opt::<Int64Type>() {
                a.iter().map(|v| v.unwrap_or(-1)).collect::<Vec<_>>()
            } else {
                c.as_primitive::<UInt64Type>()
                    .iter()
                    .map(|v| v.map_or(-1, |v| v as i64))
                    .collect()
            }
        })
        .collect()
}

fn string_column(batches: &[RecordBatch], column: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn rtsp_cameras_to_sql_answers() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_test_writer()
        .try_init();
    let assets = e2e_tests::assets();
    let data = tempfile::tempdir().unwrap();
    let edge_spool = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // The broker stays on this thread (librdkafka's mock cluster is not Send).
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let mut sim_config = SimConfig::halves(assets.join("vtest.avi"), 768);
    sim_config.max_frames = Some(CLIP_FRAMES);
    let sim = CameraSimulator::start(&sim_config).unwrap();

    let (tracker_stop, tracker_signal) = tokio::sync::oneshot::channel::<()>();
    let (aggregator_stop, aggregator_signal) = tokio::sync::oneshot::channel::<()>();
    let tracker = runtime.spawn(tracker::run(TrackerConfig::new(kafka.clone()), async {
        let _ = tracker_signal.await;
    }));
    let mut aggregator_config = AggregatorConfig::new(kafka.clone(), data.path().to_path_buf());
    aggregator_config.flush_interval_s = 2.0;
    let aggregator = runtime.spawn(aggregator::run(aggregator_config, async {
        let _ = aggregator_signal.await;
    }));

    let edge_config = EdgeConfig {
        kafka: kafka.clone(),
        onnxruntime_library: Some(assets.join("libonnxruntime.so.1.31.1")),
        detector: DetectorConfig {
            model: assets.join("yolov3-tiny.onnx"),
            score_threshold: 0.3,
            nms_iou_threshold: 0.45,
            classes: vec![0],
            intra_threads: 0,
            max_batch: 4,
            batch_timeout_ms: 20,
        },
        embedder: EmbedderConfig {
            enabled: true,
            model: assets.join("mobilenetv2-embedder.onnx"),
            input_height: 128,
            input_width: 64,
            intra_threads: 0,
        },
        health_interval_s: 5.0,
        spool: SpoolSettings {
            dir: edge_spool.path().to_path_buf(),
            ..SpoolSettings::default()
        },
        egress: EgressConfig::default(),
        metrics: None,
        crops: Default::default(),
        cameras: sim
            .urls()
            .into_iter()
            .map(|(id, url)| CameraConfig {
                max_fps: 5.0,
                on_eos: Some(OnEos::Stop),
                ..CameraConfig::new(id, url)
            })
            .collect(),
    };
    edge_config.validate().unwrap();
    let summary = runtime
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(180),
                edge_agent::run(edge_config, std::future::pending()),
            )
            .await
        })
        .expect("the edge agent finishes when both clips end")
        .unwrap();
    assert_eq!(summary.cameras.len(), 2);
    assert_eq!(
        (
            summary.egress.pending_records,
            summary.egress.dropped_records
        ),
        (0, 0),
        "{:?}",
        summary.egress
    );
    for camera in &summary.cameras {
        assert!(
            camera.frames_analysed >= 20,
            "{camera:?}: at least 20 of ~75 frames (5 fps cap) analysed"
        );
        // Each connection plays the clip once; a stalled stream is connected
        // again (and starts over).
        assert!(
            camera.frames_in <= u64::from(CLIP_FRAMES) * (1 + camera.reconnects),
            "{camera:?}"
        );
        assert!(
            camera.persons > 0,
            "{camera:?}: vtest.avi has people on both halves"
        );
    }

    tracker_stop.send(()).unwrap();
    let tracker_stats = runtime.block_on(tracker).unwrap().unwrap();
    aggregator_stop.send(()).unwrap();
    let aggregator_stats = runtime.block_on(aggregator).unwrap().unwrap();
    drop(sim);
    assert_eq!(tracker_stats.malformed, 0);
    assert!(tracker_stats.events > 0);
    assert!(aggregator_stats.files > 0);

    let ctx = runtime
        .block_on(aggregator::query::context(data.path()))
        .unwrap();
    let q = |sql: &str| runtime.block_on(aggregator::query::sql(&ctx, sql)).unwrap();

    // Frames per camera in SQL equal what the agent says it analysed.
    let frames = q(
        "SELECT camera_id, COUNT(*), SUM(persons) FROM frames GROUP BY camera_id ORDER BY camera_id",
    );
    assert_eq!(string_column(&frames, 0), vec!["east", "west"]);
    let counts = int_column(&frames, 1);
    let persons = int_column(&frames, 2);
    for (i, id) in ["east", "west"].iter().enumerate() {
        let agent = summary.cameras.iter().find(|s| s.camera_id == *id).unwrap();
        assert_eq!(
            counts[i] as u64, agent.frames_analysed,
            "{id}: one frames row per analysed frame"
        );
        assert_eq!(
            persons[i] as u64, agent.persons,
            "{id}: persons in SQL = persons published"
        );
    }

    // Presence rows exist for both cameras; every exit is at or after its enter.
    let presence =
        q("SELECT camera_id, COUNT(*) FROM people_present GROUP BY camera_id ORDER BY camera_id");
    assert_eq!(string_column(&presence, 0), vec!["east", "west"]);
    let bad = q("SELECT COUNT(*) FROM people_present WHERE exit < enter");
    assert_eq!(int_column(&bad, 0), vec![0]);

    // Every presence interval has its track summary (the tracker emits both
    // when a track ends), with the same person, camera and times.
    let unmatched = q("SELECT COUNT(*) FROM people_present p LEFT JOIN tracks t \
         ON p.camera_id = t.camera_id AND p.track_id = t.track_id AND p.person_id = t.person_id \
            AND p.enter = t.first_seen AND p.exit = t.last_seen \
         WHERE t.track_id IS NULL");
    assert_eq!(int_column(&unmatched, 0), vec![0]);
    let counts =
        q("SELECT (SELECT COUNT(*) FROM tracks) AS t, (SELECT COUNT(*) FROM people_present) AS p");
    assert_eq!(int_column(&counts, 0), int_column(&counts, 1));
    let bad_tracks = q("SELECT COUNT(*) FROM tracks WHERE detections = 0 OR path_px < 0");
    assert_eq!(int_column(&bad_tracks, 0), vec![0]);
    // Merges always keep the older (smaller) id.
    let bad_merges = q("SELECT COUNT(*) FROM id_merges WHERE from_person_id <= into_person_id");
    assert_eq!(int_column(&bad_merges, 0), vec![0]);

    // Unique people: plausible for 15 s of a courtyard, and consistent tables.
    let unique = int_column(&q("SELECT COUNT(*) FROM unique_people"), 0)[0];
    assert!((2..=60).contains(&unique), "unique people {unique}");
    let distinct = int_column(
        &q("SELECT COUNT(DISTINCT person_id) FROM people_present"),
        0,
    )[0];
    assert!(
        distinct <= unique,
        "every person in people_present is in unique_people"
    );
    let orphans = q(
        "SELECT COUNT(*) FROM people_present p LEFT JOIN unique_people u ON p.person_id = u.id WHERE u.id IS NULL",
    );
    assert_eq!(int_column(&orphans, 0), vec![0]);

    // Transitions are between different cameras and go forward in time.
    let transitions =
        q("SELECT COUNT(*), COUNT(*) FILTER (WHERE from_camera = to_camera) FROM transitions");
    let t = int_column(&transitions, 0)[0];
    assert_eq!(int_column(&transitions, 1), vec![0]);
    assert!(t <= distinct * 4, "{t} transitions for {distinct} people");
    drop(broker);
}
