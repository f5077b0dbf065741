//! Camera ingest against real GStreamer sources: the camera simulator's RTSP
//! server on loopback (killed and restarted), an HTTP camera with Basic
//! authentication served from the test, live test patterns, looping files.
//! Needs vtest.avi from `scripts/setup.sh`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camera_sim::{CameraSimulator, CameraSpec, Crop, SimConfig};
use edge_agent::config::CameraConfig;
use edge_agent::queue::{FrameQueue, Next};
use edge_agent::source::{self, CameraStats};
use gstreamer as gst;
use gstreamer::prelude::*;
use schemas::v1::camera_health::State;

#[allow(dead_code)] // each test crate uses part of it
mod common;

fn vtest() -> PathBuf {
    common::asset("vtest.avi")
}

/// Writes a `frames`-frame MJPEG AVI clip of a moving ball at `fps`.
fn make_clip(path: &Path, frames: u32, fps: u32) {
    gst::init().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={frames} pattern=ball ! \
         video/x-raw,width=160,height=120,framerate={fps}/1 ! jpegenc ! avimux ! \
         filesink location=\"{}\"",
        path.display()
    ))
    .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the clip is written within 30 s");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{message:?}"
    );
}

/// What the inference side of a test saw of one camera.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Sequence numbers and capture times of the frames taken from the queue.
    frames: Vec<(u64, i64)>,
    /// Whether the camera's stream ended.
    ended: bool,
    /// The first frame taken: width, height and its RGB rows (no padding).
    first: Option<(usize, usize, Vec<u8>)>,
}

/// The health reports of each camera: its state and detail at each change.
type HealthLog = Arc<Mutex<Vec<Vec<(State, String)>>>>;

/// Cameras running on their source threads, and a consumer draining the
/// queue as inference would (instantly).
struct Harness {
    queue: Arc<FrameQueue>,
    stats: Vec<Arc<CameraStats>>,
    health: HealthLog,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    sources: Vec<JoinHandle<()>>,
    consumer: Option<JoinHandle<()>>,
}

impl Harness {
    fn start(cameras: Vec<CameraConfig>) -> Self {
        let n = cameras.len();
        let queue = Arc::new(FrameQueue::new(n));
        let stats: Vec<Arc<CameraStats>> = (0..n).map(|_| Arc::default()).collect();
        let health: HealthLog = Arc::new(Mutex::new(vec![Vec::new(); n]));
        let seen = Arc::new(Mutex::new(vec![Seen::default(); n]));
        let stop = Arc::new(AtomicBool::new(false));
        let sources = cameras
            .into_iter()
            .enumerate()
            .map(|(index, camera)| {
                let (queue, stats, stop, health) = (
                    Arc::clone(&queue),
                    Arc::clone(&stats[index]),
                    Arc::clone(&stop),
                    Arc::clone(&health),
                );
                std::thread::spawn(move || {
                    let report = |i: usize| {
                        let (state, _, detail) = stats.state();
                        health.lock().unwrap()[i].push((state, detail));
                    };
                    source::run_camera(index, &camera, &queue, &stats, &stop, &report);
                })
            })
            .collect();
        let consumer = {
            let (queue, seen) = (Arc::clone(&queue), Arc::clone(&seen));
            std::thread::spawn(move || {
                loop {
                    match queue.next() {
                        Next::Frame(frame) => {
                            let seen = &mut seen.lock().unwrap()[frame.camera];
                            seen.frames.push((frame.seq, frame.capture_ts_us));
                            if seen.first.is_none() {
                                let row = frame.width * 3;
                                let rgb = (0..frame.height)
                                    .flat_map(|y| &frame.data[y * frame.stride..][..row])
                                    .copied()
                                    .collect();
                                seen.first = Some((frame.width, frame.height, rgb));
                            }
                        }
                        Next::Ended(camera) => seen.lock().unwrap()[camera].ended = true,
                        Next::Closed => return,
                    }
                }
            })
        };
        Harness {
            queue,
            stats,
            health,
            seen,
            stop,
            sources,
            consumer: Some(consumer),
        }
    }

    fn frames_in(&self, camera: usize) -> u64 {
        self.stats[camera].frames_in.load(Ordering::Relaxed)
    }

    fn state(&self, camera: usize) -> State {
        self.stats[camera].state().0
    }

    fn health(&self, camera: usize) -> Vec<(State, String)> {
        self.health.lock().unwrap()[camera].clone()
    }

    fn seen(&self, camera: usize) -> Seen {
        self.seen.lock().unwrap()[camera].clone()
    }

    /// Stops the sources, lets the consumer drain the queue and returns
    /// what it saw.
    fn stop(mut self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for source in self.sources.drain(..) {
            source.join().unwrap();
        }
        self.queue.stop();
        if let Some(consumer) = self.consumer.take() {
            consumer.join().unwrap();
        }
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed assertion must not leave camera threads running.
        self.stop.store(true, Ordering::Relaxed);
        self.queue.stop();
    }
}

/// Polls `condition` every 20 ms for up to `limit`.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

fn counter(stats: &CameraStats) -> (u64, u64, u64, u64) {
    (
        stats.frames_in.load(Ordering::Relaxed),
        stats.frames_skipped.load(Ordering::Relaxed),
        stats.frames_dropped.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed),
    )
}

/// The issue's "done when": an RTSP camera whose server is killed is
/// reported down and reconnected with back-off; when a server is back on
/// the same port, frames flow again and the camera is UP, without
/// restarting the agent.
#[test]
fn an_rtsp_camera_killed_and_restarted_on_its_port_comes_back_up() {
    let sim_config = SimConfig {
        cameras: vec![CameraSpec {
            name: "door".into(),
            // A 320x240 corner of vtest.avi keeps the encoder cheap.
            crop: Crop {
                left: 0,
                right: 448,
                top: 0,
                bottom: 336,
            },
        }],
        loop_clip: true,
        ..SimConfig::halves(vtest(), 768)
    };
    let sim = CameraSimulator::start(&sim_config).unwrap();
    let port = sim.port();
    let url = sim.urls()[0].1.clone();
    let camera = CameraConfig {
        stall_timeout_s: 2.0,
        reconnect_max_s: 1.0,
        ..CameraConfig::new("door", url)
    };
    let harness = Harness::start(vec![camera]);
    assert!(
        wait_until(Duration::from_secs(15), || harness.frames_in(0) >= 10),
        "frames flow: {:?}",
        harness.health(0)
    );
    assert_eq!(harness.state(0), State::Up);

    drop(sim);
    assert!(
        wait_until(Duration::from_secs(10), || source::is_outage(
            harness.state(0)
        )),
        "the camera is reported down: {:?}",
        harness.health(0)
    );
    let (_, since, detail) = harness.stats[0].state();
    // Refused connections while the server is away, with back-off.
    std::thread::sleep(Duration::from_secs(2));
    let (in_down, _, _, reconnects_down) = counter(&harness.stats[0]);
    assert!(reconnects_down >= 1, "{detail}");
    assert!(source::is_outage(harness.state(0)));
    assert_eq!(
        harness.stats[0].state().1,
        since,
        "one outage, whatever its states"
    );

    let sim = CameraSimulator::start(&SimConfig { port, ..sim_config }).unwrap();
    assert_eq!(sim.port(), port);
    assert!(
        wait_until(Duration::from_secs(15), || harness.state(0) == State::Up
            && harness.frames_in(0) >= in_down + 10),
        "frames resume: {:?}",
        harness.health(0)
    );
    let health = harness.health(0);
    let seen = harness.stop();
    drop(sim);

    let states: Vec<State> = health.iter().map(|(state, _)| *state).collect();
    let first_up = states.iter().position(|s| *s == State::Up).unwrap();
    let down = states[first_up..]
        .iter()
        .position(|s| source::is_outage(*s))
        .expect("an outage after the first UP")
        + first_up;
    assert!(
        states[down..].contains(&State::Up),
        "UP again after the outage: {health:?}"
    );
    assert!(
        health.iter().all(|(_, detail)| !detail.is_empty()),
        "{health:?}"
    );
    let frames = &seen[0].frames;
    assert!(
        frames.windows(2).all(|w| w[0].0 < w[1].0),
        "sequence numbers keep rising across reconnects"
    );
}

/// Credentials in a camera URL never reach a log line, an error or a
/// health detail: here, a camera whose server refuses connections.
#[test]
fn a_refused_camera_is_down_and_its_password_appears_nowhere() {
    // A port that was free a moment ago: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let camera = CameraConfig {
        reconnect_max_s: 0.5,
        ..CameraConfig::new(
            "locked",
            format!("rtsp://admin:hunter2@127.0.0.1:{port}/live"),
        )
    };
    let harness = Harness::start(vec![camera]);
    assert!(wait_until(Duration::from_secs(10), || {
        harness.stats[0].reconnects.load(Ordering::Relaxed) >= 2
    }));
    let (state, _, detail) = harness.stats[0].state();
    let health = harness.health(0);
    harness.stop();
    assert_eq!(state, State::Down, "{detail}");
    assert!(detail.contains("reconnecting in"), "{detail}");
    assert!(
        !detail.contains("hunter2") && !detail.contains("admin"),
        "{detail}"
    );
    assert!(
        health.is_empty(),
        "DOWN from the start, no state change: {health:?}"
    );
}

/// A live test pattern delivers its frame rate, and the analysis rate picks
/// frames evenly, fractions included; each decoded frame is analysed,
/// skipped or shed, nothing is lost.
#[test]
fn test_patterns_deliver_their_rate_and_max_fps_picks_evenly_fractions_included() {
    let pattern = |id: &str, max_fps: f64| CameraConfig {
        max_fps,
        ..CameraConfig::new(id, "testsrc://?pattern=smpte&width=160&height=120&fps=10")
    };
    let cameras = vec![
        pattern("every", 0.0),
        pattern("two", 2.0),
        pattern("half", 0.5),
    ];
    let harness = Harness::start(cameras);
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || harness.frames_in(0) >= 1));
    std::thread::sleep(Duration::from_millis(4200));
    let elapsed = started.elapsed().as_secs_f64();
    let states: Vec<State> = (0..3).map(|i| harness.state(i)).collect();
    let stats = harness.stats.clone();
    let seen = harness.stop();
    assert_eq!(states, [State::Up; 3]);

    for (index, (seen, stats)) in seen.iter().zip(&stats).enumerate() {
        let (decoded, skipped, dropped, reconnects) = counter(stats);
        let analysed = seen.frames.len() as u64;
        assert_eq!(
            analysed + skipped + dropped,
            decoded,
            "camera {index}: every decoded frame is analysed, skipped or shed"
        );
        assert_eq!(reconnects, 0);
        // 10 fps for about `elapsed` seconds (less the start-up).
        assert!(
            decoded >= 30 && (decoded as f64) <= 10.0 * elapsed + 2.0,
            "camera {index}: {decoded} frames in {elapsed:.1} s at 10 fps"
        );
        let gaps: Vec<u64> = seen.frames.windows(2).map(|w| w[1].0 - w[0].0).collect();
        match index {
            0 => {
                assert_eq!(skipped, 0);
                assert!(gaps.iter().all(|g| *g == 1) || dropped > 0, "{gaps:?}");
            }
            1 => {
                // Every 5th frame: 0, 5, 10, ...
                let expected = decoded.div_ceil(5);
                assert!(analysed.abs_diff(expected) <= 1, "{analysed} of {decoded}");
                assert!(gaps.iter().all(|g| *g == 5), "{gaps:?}");
                assert!(skipped >= 4 * analysed - 4, "{skipped} skipped");
            }
            _ => {
                // Every 20th frame: one per 2 s of video.
                let expected = decoded.div_ceil(20);
                assert!(analysed.abs_diff(expected) <= 1, "{analysed} of {decoded}");
                assert!(gaps.iter().all(|g| *g == 20), "{gaps:?}");
                let spacing: Vec<i64> = seen.frames.windows(2).map(|w| w[1].1 - w[0].1).collect();
                assert!(
                    spacing.iter().all(|s| (1_990_000..=2_010_000).contains(s)),
                    "capture times 2 s apart: {spacing:?}"
                );
            }
        }
    }
}

/// A file with `loop = true` seeks back to its start at its end and plays
/// on, without reconnecting: more frames than it has, sequence numbers and
/// capture times rising throughout, each loop counted.
#[test]
fn a_looping_file_plays_more_frames_than_it_has_and_counts_its_loops() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("ball.avi");
    make_clip(&clip, 15, 15);
    let camera = CameraConfig {
        loop_file: true,
        ..CameraConfig::new("loop", format!("file://{}", clip.display()))
    };
    let harness = Harness::start(vec![camera]);
    assert!(
        wait_until(Duration::from_secs(15), || harness.seen(0).frames.len()
            >= 50),
        "{:?}",
        harness.health(0)
    );
    let state = harness.state(0);
    let stats = Arc::clone(&harness.stats[0]);
    let seen = harness.stop();
    assert_eq!(state, State::Up);
    let loops = stats.loops.load(Ordering::Relaxed);
    let (decoded, skipped, dropped, reconnects) = counter(&stats);
    assert!(
        loops >= 3,
        "{loops} loops of 15 frames for {decoded} frames"
    );
    // The stop can land after a loop's last frame was decoded but before
    // its end of stream was handled: one loop may be one short.
    assert!(
        loops == decoded / 15 || loops + 1 == decoded / 15,
        "one loop per 15 frames: {loops} loops, {decoded} frames"
    );
    assert_eq!((skipped, dropped, reconnects), (0, 0, 0));
    assert!(!seen[0].ended);
    let frames = &seen[0].frames;
    for (i, w) in frames.windows(2).enumerate() {
        assert_eq!(w[1].0, w[0].0 + 1, "frame {i}: a file has no gaps");
        assert!(
            w[1].1 > w[0].1,
            "frame {i}: capture times rise across loops"
        );
    }
    // 15 fps: frame n is n/15 s after the first, across loops.
    let last = frames.last().unwrap();
    let expected_us = last.0 as i64 * 1_000_000 / 15;
    assert!(
        (last.1 - frames[0].1 - expected_us).abs() <= 1_000,
        "{} vs {expected_us}",
        last.1 - frames[0].1
    );
}

/// The simulator with `loop_clip` plays its clip over and over on one
/// connection, as a live camera would.
#[test]
fn a_looping_simulator_streams_past_the_end_of_its_clip_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("short.avi");
    make_clip(&clip, 20, 20);
    let sim = CameraSimulator::start(&SimConfig {
        cameras: vec![CameraSpec {
            name: "short".into(),
            crop: Crop::default(),
        }],
        loop_clip: true,
        ..SimConfig::halves(clip, 160)
    })
    .unwrap();
    let camera = CameraConfig {
        stall_timeout_s: 2.0,
        ..CameraConfig::new("short", sim.urls()[0].1.clone())
    };
    let harness = Harness::start(vec![camera]);
    // 60 frames are three passes of the one-second clip.
    let passed = wait_until(Duration::from_secs(15), || harness.frames_in(0) >= 60);
    let health = harness.health(0);
    let stats = Arc::clone(&harness.stats[0]);
    harness.stop();
    drop(sim);
    assert!(passed, "{:?} {health:?}", counter(&stats));
    assert_eq!(
        stats.reconnects.load(Ordering::Relaxed),
        0,
        "one connection: {health:?}"
    );
}

/// What the HTTP camera server of a test saw: per request, whether it
/// carried the expected credentials.
type Requests = Arc<Mutex<Vec<bool>>>;

/// Serves `clip` at any path on 127.0.0.1 over plain HTTP/1.1 to clients
/// whose Basic credentials encode to `token` (base64 of `user:password`);
/// others get a 401 challenge. Returns the port and the log of requests.
fn serve_http_camera(clip: &Path, token: &'static str) -> (u16, Requests) {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    let body = std::fs::read(clip).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expected = format!("basic {token}");
    let requests: Requests = Arc::default();
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorised = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("authorization")
                {
                    authorised = value.trim().eq_ignore_ascii_case(&expected);
                }
            }
            log.lock().unwrap().push(authorised);
            // A client gone mid-transfer (the test stopping) is not an error here.
            let _ = if authorised {
                stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: video/x-msvideo\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body))
            } else {
                stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"camera\"\r\n\
                      Content-Length: 0\r\nConnection: close\r\n\r\n",
                )
            };
        }
    });
    (port, requests)
}

/// An HTTP camera (souphttpsrc through uridecodebin) that asks for Basic
/// credentials: with `username` and `password` configured, the whole clip
/// is decoded, each frame analysed in order or shed by the live queue, and
/// the camera is never down; the server saw the credentials. Without them
/// the camera is DOWN.
#[test]
fn an_http_camera_with_basic_auth_delivers_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("ball.avi");
    make_clip(&clip, 30, 15);
    // base64("viewer:s3cret")
    let (port, requests) = serve_http_camera(&clip, "dmlld2VyOnMzY3JldA==");
    let url = format!("http://127.0.0.1:{port}/live.avi");
    let camera = CameraConfig {
        username: Some("viewer".into()),
        password: Some(edge_agent::config::Secret("s3cret".into())),
        ..CameraConfig::new("http", url.clone())
    };
    let harness = Harness::start(vec![camera]);
    assert!(
        wait_until(Duration::from_secs(20), || harness.frames_in(0) >= 30),
        "{:?}",
        harness.health(0)
    );
    let health = harness.health(0);
    let stats = Arc::clone(&harness.stats[0]);
    let seen = harness.stop();
    // Never down; the clip is finite, so after its end the live camera
    // reconnects (and plays it again).
    assert!(
        health
            .iter()
            .all(|(state, detail)| *state == State::Up || detail.starts_with("end of stream")),
        "{health:?}"
    );
    // The server sends faster than real time, so the live queue sheds
    // frames (keeping the newest); every decoded frame is analysed or shed.
    let (decoded, skipped, dropped, _) = counter(&stats);
    let frames = &seen[0].frames;
    assert!(
        decoded >= 30 && skipped == 0,
        "{decoded} decoded, {skipped} skipped"
    );
    // A frame decoded as the test stops may not reach the queue: one short.
    let accounted = frames.len() as u64 + dropped;
    assert!(
        accounted == decoded || accounted + 1 == decoded,
        "{accounted} analysed or shed of {decoded} decoded"
    );
    assert!(frames.windows(2).all(|w| w[1].0 > w[0].0), "in order");
    assert!(
        requests
            .lock()
            .unwrap()
            .iter()
            .any(|&authorised| authorised),
        "the server saw the credentials: {:?}",
        requests.lock().unwrap()
    );

    let anonymous = CameraConfig {
        reconnect_max_s: 0.5,
        ..CameraConfig::new("anonymous", url)
    };
    let harness = Harness::start(vec![anonymous]);
    assert!(wait_until(Duration::from_secs(10), || {
        harness.stats[0].reconnects.load(Ordering::Relaxed) >= 1
    }));
    let (state, _, detail) = harness.stats[0].state();
    let seen = harness.stop();
    assert_eq!(state, State::Down, "{detail}");
    assert!(seen[0].frames.is_empty());
}

/// Set in the V4L2 test VM: there, the test below runs its device checks
/// instead of booting another VM.
const V4L2_GUEST: &str = "ARGUS_V4L2_GUEST";

/// A V4L2 camera against a real V4L2 device: vivid, the Linux kernel's
/// virtual video test driver, in a VM, since this machine has no video
/// device. On the host, this test boots the VM that `scripts/setup.sh` built
/// (`scripts/v4l2-vm`: Debian's kernel under qemu, emulated, no KVM needed,
/// no network), whose root file system is the host's own over 9p, and runs
/// this same test binary there, filtered to this test; it passes when that
/// run passed. In the VM, two cameras stream vivid's colour bars, at its
/// default size and at the size and rate their URL sets, and a third, whose
/// URL asks for a size vivid lacks, is DOWN with a hint. Then the first
/// device is unplugged (vivid's `disconnect` control, which acts as a USB
/// camera pulled out: every call on the device fails until its last user
/// closes it) and the camera must be reported down, reopen the device with
/// back-off and stream again, without restarting anything, while the second
/// streams on. The VM's two emulated processors share the host's cores with
/// the other tests of this file: its waits allow a minute.
#[test]
fn a_v4l2_camera_streams_from_a_device_and_comes_back_after_it_is_unplugged() {
    if std::env::var_os(V4L2_GUEST).is_some() {
        v4l2_device_checks();
    } else {
        run_in_v4l2_vm("a_v4l2_camera_streams_from_a_device_and_comes_back_after_it_is_unplugged");
    }
}

/// Boots the V4L2 test VM to run test `name` of this binary in it, and
/// panics unless it ran and passed there.
fn run_in_v4l2_vm(name: &str) {
    use std::fmt::Write as _;
    use std::process::{Command, Stdio};

    let kernel = common::asset("v4l2-vm/vmlinuz");
    let initrd = common::asset("v4l2-vm/initrd.gz");
    // The guest reads the host's GStreamer registry (same home, same
    // plugins) rather than scanning every plugin again under emulation.
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let quote = |value: &str| format!("'{}'", value.replace('\'', r"'\''"));
    let mut script = String::from("# Run by scripts/v4l2-vm/init in the VM.\n");
    // The host's environment, but for what a shell cannot take.
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
            continue;
        };
        let shell_name = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if shell_name && !value.contains('\0') {
            writeln!(script, "export {key}={}", quote(value)).unwrap();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let cwd = std::env::current_dir().unwrap();
    let (log, rc) = (dir.path().join("guest.log"), dir.path().join("rc"));
    // What the edge-agent binary sets before it starts (GStreamer's V4L2
    // elements otherwise keep the device open after a stop).
    for (name, value) in source::PROCESS_ENVIRONMENT {
        writeln!(script, "export {name}={}", quote(value)).unwrap();
    }
    writeln!(
        script,
        "export {V4L2_GUEST}=1 GST_REGISTRY_UPDATE=no\ncd {}\n\
         {} {name} --exact --nocapture --test-threads=1 >{} 2>&1\necho $? >{}",
        quote(&cwd.to_string_lossy()),
        quote(&exe.to_string_lossy()),
        quote(&log.to_string_lossy()),
        quote(&rc.to_string_lossy()),
    )
    .unwrap();
    let script_path = dir.path().join("guest.sh");
    std::fs::write(&script_path, script).unwrap();
    // It goes on the kernel command line, which splits at blanks.
    assert!(
        !script_path.to_string_lossy().contains(char::is_whitespace),
        "the temporary directory {} has a blank in its path (TMPDIR)",
        dir.path().display()
    );

    let console_path = dir.path().join("console.log");
    let console = std::fs::File::create(&console_path).unwrap();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg,thread=multi",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "1536",
        ])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-kernel")
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet argus_script={}",
            script_path.display()
        ))
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap",
        ])
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start qemu-system-x86_64 ({e}): run `bash scripts/setup.sh` first")
        });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(360) {
            let _ = qemu.kill();
            let _ = qemu.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = std::fs::read_to_string(&console_path).unwrap_or_default();
    let guest = std::fs::read_to_string(&log).unwrap_or_default();
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    println!(
        "V4L2 VM: {:.1} s, qemu {status:?}\n{guest}",
        started.elapsed().as_secs_f64()
    );
    let rc = std::fs::read_to_string(&rc).unwrap_or_default();
    assert!(
        rc.trim() == "0" && guest.contains("test result: ok. 1 passed"),
        "the test failed in the VM (exit {rc:?}, qemu {status:?}).\n\
         --- guest ---\n{}\n--- console ---\n{}",
        tail(&guest),
        tail(&console)
    );
}

/// The checks run in the VM against vivid's /dev/video0, 1 and 2.
fn v4l2_device_checks() {
    use std::process::Command;

    let cameras = vec![
        // No capture settings: the largest size up to 1280x720.
        CameraConfig {
            stall_timeout_s: 3.0,
            reconnect_max_s: 1.0,
            ..CameraConfig::new("unplugged", "v4l2:///dev/video0")
        },
        CameraConfig::new("steady", "/dev/video1?width=640&height=360&fps=15"),
        // vivid has no 1000x1000.
        CameraConfig {
            reconnect_max_s: 1.0,
            ..CameraConfig::new("square", "/dev/video2?width=1000&height=1000")
        },
    ];
    let harness = Harness::start(cameras);
    assert!(
        wait_until(Duration::from_secs(60), || harness.frames_in(0) >= 10
            && harness.frames_in(1) >= 10),
        "frames flow: {:?} {:?}",
        harness.health(0),
        harness.health(1)
    );
    assert_eq!((harness.state(0), harness.state(1)), (State::Up, State::Up));
    let (state, _, detail) = harness.stats[2].state();
    assert_eq!(state, State::Down, "{detail}");
    assert!(
        detail.contains(
            "/dev/video2 does not capture at the width, height or fps its url sets \
             (`v4l2-ctl -d /dev/video2 --list-formats-ext`"
        ),
        "{detail}"
    );
    println!("a size the device lacks: {detail}");

    // vivid's default picture: 75 % colour bars, eight across (white,
    // yellow, cyan, green, magenta, red, blue, black), the text of its
    // on-screen display in the top rows only.
    let expected: [[u8; 3]; 8] = [
        [191, 191, 191],
        [191, 191, 0],
        [0, 191, 191],
        [0, 191, 0],
        [191, 0, 191],
        [191, 0, 0],
        [0, 0, 191],
        [0, 0, 0],
    ];
    for (camera, size) in [(0, (1280, 720)), (1, (640, 360))] {
        let (width, height, rgb) = harness.seen(camera).first.expect("a frame was taken");
        assert_eq!((width, height), size, "camera {camera}");
        let bars: Vec<[u8; 3]> = (0..8)
            .map(|bar| {
                let at = (height / 2 * width + bar * width / 8 + width / 16) * 3;
                [rgb[at], rgb[at + 1], rgb[at + 2]]
            })
            .collect();
        println!("camera {camera}: {width}x{height}, bars at mid height {bars:?}");
        for (bar, (got, want)) in bars.iter().zip(&expected).enumerate() {
            assert!(
                got.iter().zip(want).all(|(g, w)| g.abs_diff(*w) <= 16),
                "camera {camera}, bar {bar}: {got:?}, expected about {want:?} (all: {bars:?})"
            );
        }
    }

    // Unplug the first camera.
    let steady_before = harness.frames_in(1);
    let unplug = Command::new("v4l2-ctl")
        .args(["-d", "/dev/video0", "-c", "disconnect=1"])
        .output()
        .expect("v4l2-ctl (Debian's v4l-utils) runs");
    assert!(unplug.status.success(), "{unplug:?}");
    assert!(
        wait_until(Duration::from_secs(30), || source::is_outage(
            harness.state(0)
        )),
        "the unplugged camera is reported down: {:?}",
        harness.health(0)
    );
    let in_down = harness.frames_in(0);
    let (_, _, outage) = harness.stats[0].state();
    println!("unplugged: {outage}");

    // vivid brings the device back once every handle on it is closed, so
    // the camera's own reconnect brings it back.
    assert!(
        wait_until(Duration::from_secs(60), || harness.state(0) == State::Up
            && harness.frames_in(0) >= in_down + 10),
        "frames resume: {:?}, now {:?}",
        harness.health(0),
        harness.stats[0].state()
    );
    let (health, steady_health) = (harness.health(0), harness.health(1));
    let stats = harness.stats.clone();
    let seen = harness.stop();
    println!("health of the unplugged camera: {health:?}");

    let states: Vec<State> = health.iter().map(|(state, _)| *state).collect();
    let down = states
        .iter()
        .position(|s| source::is_outage(*s))
        .expect("an outage");
    assert!(
        states[..down].contains(&State::Up) && states[down..].contains(&State::Up),
        "UP, an outage, UP again: {health:?}"
    );
    assert!(
        seen[2].frames.is_empty() && counter(&stats[2]).3 >= 1,
        "the camera with a size vivid lacks never streams and keeps retrying"
    );
    for (camera, (seen, stats)) in seen.iter().zip(&stats).enumerate().take(2) {
        let (decoded, skipped, dropped, reconnects) = counter(stats);
        let frames = &seen.frames;
        println!(
            "camera {camera}: {decoded} frames decoded, {} analysed, {dropped} shed, \
             {reconnects} reconnects",
            frames.len()
        );
        assert_eq!(skipped, 0);
        assert!(
            frames
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "camera {camera}: sequence numbers and capture times keep rising"
        );
        // A frame decoded as the test stops may not reach the queue.
        let accounted = frames.len() as u64 + dropped;
        assert!(
            accounted == decoded || accounted + 1 == decoded,
            "camera {camera}: {accounted} analysed or shed of {decoded} decoded"
        );
    }
    assert!(counter(&stats[0]).3 >= 1, "{health:?}");
    // The other camera streamed on, untouched.
    assert_eq!(counter(&stats[1]).3, 0, "{steady_health:?}");
    assert!(counter(&stats[1]).0 >= steady_before + 10);
    // At 15 fps, its frames are 1/15 s apart in capture time: the median
    // of successive decoded frames (the driver skips a frame whenever the
    // emulated machine falls behind, which widens a gap but not the median),
    // within 10 % (its neighbours among vivid's rates are 12.5 and 25 fps)
    // for an emulated machine on busy cores.
    let mut spacing: Vec<i64> = seen[1]
        .frames
        .windows(2)
        .filter(|w| w[1].0 == w[0].0 + 1)
        .map(|w| w[1].1 - w[0].1)
        .collect();
    spacing.sort_unstable();
    assert!(spacing.len() >= 5, "{spacing:?}");
    let median = spacing[spacing.len() / 2];
    println!("camera 1: median {median} us between frames");
    assert!(
        (median - 66_667).abs() < 6_667,
        "15 fps: {median} us between frames ({spacing:?})"
    );
}

/// The `edge-agent` binary sets [`source::PROCESS_ENVIRONMENT`] for itself
/// before it starts (GStreamer's V4L2 elements would otherwise keep a
/// device open after each stop): run without those variables and with a
/// V4L2 camera, it does not warn that they are missing, and the camera,
/// whose device does not exist, is reported down by its source.
#[test]
fn the_agent_binary_sets_the_environment_its_v4l2_cameras_need() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: messages go to the spool.
    let kafka = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            onnxruntime_library = "{lib}"
            [kafka]
            bootstrap_servers = "{kafka}"
            [spool]
            dir = "{spool}"
            [egress]
            shutdown_timeout_s = 1
            [detector]
            model = "{detector}"
            [embedder]
            enabled = false
            model = "{embedder}"
            [[cameras]]
            id = "webcam"
            url = "/dev/video-argus-absent"
            reconnect_max_s = 0.5
            "#,
            lib = common::asset("libonnxruntime.so.1.31.1").display(),
            spool = dir.path().join("spool").display(),
            detector = common::asset("yolov3-tiny.onnx").display(),
            embedder = common::asset("mobilenetv2-embedder-128.onnx").display(),
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_edge-agent"));
    command
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    for (name, _) in source::PROCESS_ENVIRONMENT {
        command.env_remove(name);
    }
    let mut agent = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stderr = agent.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Two failed attempts: the source ran, with whatever environment the
    // process had by then.
    while log
        .iter()
        .filter(|l: &&String| l.contains("Camera lost"))
        .count()
        < 2
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok(line) => log.push(line),
            Err(_) => break,
        }
    }
    // SIGINT, as an operator's Ctrl-C; SIGKILL if it has not stopped
    // within 30 s, so a failure leaves no agent behind.
    // (The shell's own `kill`: procps may not be installed.)
    let interrupted = Command::new("sh")
        .args(["-c", &format!("kill -INT {}", agent.id())])
        .status();
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = agent.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > until {
            let _ = agent.kill();
            let _ = agent.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    log.extend(seen.try_iter());
    let log = log.join("\n");
    assert!(
        interrupted.as_ref().is_ok_and(|s| s.success()),
        "kill -INT: {interrupted:?}"
    );
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{log}");
    assert!(
        log.contains("Edge agent starting") && log.contains("Camera lost"),
        "{log}"
    );
    assert!(
        log.contains("Cannot identify device '/dev/video-argus-absent'"),
        "{log}"
    );
    assert!(!log.contains(source::MISSING_ENVIRONMENT), "{log}");
}
