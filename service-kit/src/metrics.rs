//! Prometheus metrics: a small registry rendered in the text exposition
//! format, and the HTTP endpoint every service serves (`GET /metrics`,
//! `GET /healthz`).
//!
//! Names follow `argus_<service>_<name>_<unit>` (counters end in `_total`);
//! labels are low-cardinality (camera ids, never person or track ids).
//! Services update metrics once per handled message or batch, next to the
//! log line that reports the same thing. Totals a service already keeps in
//! atomics elsewhere are copied in by a [collector](Registry::add_collector)
//! when the endpoint is scraped. Distributions (latencies, batch sizes) are
//! [`Histogram`]s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label set (`{camera="a"}` or empty) → value.
    series: BTreeMap<String, f64>,
    /// Rendered label set → distribution (histogram families only).
    histograms: BTreeMap<String, Histogram>,
}

/// A distribution of observed values in cumulative buckets, as Prometheus
/// histograms are: `_bucket{le="…"}` counts the observations `<= le`, up to
/// `+Inf` (all of them), plus `_sum` and `_count`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Finite upper bounds, ascending; `+Inf` is implicit.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative); the last is `+Inf`'s own.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these upper bounds. Bounds that are not
    /// finite are ignored, the rest sorted and deduplicated.
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Histogram {
            counts: vec![0; bounds.len() + 1],
            bounds,
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value. NaN is counted in `+Inf` only and left out of the sum.
    pub fn observe(&mut self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        let bucket = if value.is_nan() {
            self.bounds.len()
        } else {
            bucket
        };
        self.counts[bucket] += 1;
        self.count += 1;
        if !value.is_nan() {
            self.sum += value;
        }
    }

    /// `(upper bound, observations <= bound)` per bucket, ending with
    /// `(+Inf, count)`.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(bound, n)| {
                total += n;
                (bound, total)
            })
            .collect()
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Copies values kept elsewhere into the registry; runs before every scrape.
type Collector = Arc<dyn Fn(&Registry) + Send + Sync>;

/// A set of metrics shared by a service's tasks; clones share the values.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
    healthy: Arc<AtomicBool>,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("families", &self.families)
            .field("healthy", &self.healthy)
            .finish_non_exhaustive()
    }
}

/// `{a="b"}` with `le="bound"` added (Prometheus's float format, `+Inf`).
fn with_le(labels: &str, bound: f64) -> String {
    let le = if bound == f64::INFINITY {
        "+Inf".to_string()
    } else {
        bound.to_string()
    };
    match labels.strip_suffix('}') {
        Some(open) => format!("{open},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    }
}

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let escaped = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{escaped}\"");
    }
    out.push('}');
    out
}

impl Registry {
    /// An empty registry that reports healthy.
    pub fn new() -> Self {
        let registry = Registry::default();
        registry.set_healthy(true);
        registry
    }

    fn with(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        f: impl FnOnce(&mut f64),
    ) {
        // A panic while holding the lock cannot leave a value half-written
        // (plain f64 stores), so a poisoned lock is still usable.
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
            histograms: BTreeMap::new(),
        });
        f(family.series.entry(label_set(labels)).or_insert(0.0));
    }

    /// Adds `by` to a counter.
    pub fn count(&self, name: &'static str, help: &'static str, labels: &[(&str, &str)], by: u64) {
        self.with(name, help, Kind::Counter, labels, |v| *v += by as f64);
    }

    /// Sets a counter to a running total kept elsewhere (it must only grow).
    pub fn count_total(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        total: u64,
    ) {
        self.with(name, help, Kind::Counter, labels, |v| *v = total as f64);
    }

    /// Sets a gauge.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: f64,
    ) {
        self.with(name, help, Kind::Gauge, labels, |v| *v = value);
    }

    /// Records `values` in a histogram; the series is created with `bounds`
    /// (upper bounds of its buckets) the first time.
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        bounds: &[f64],
        labels: &[(&str, &str)],
        values: &[f64],
    ) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind: Kind::Histogram,
            series: BTreeMap::new(),
            histograms: BTreeMap::new(),
        });
        let histogram = family
            .histograms
            .entry(label_set(labels))
            .or_insert_with(|| Histogram::new(bounds));
        for &value in values {
            histogram.observe(value);
        }
    }

    /// The current value of a series (tests and logs).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families.get(name)?.series.get(&label_set(labels)).copied()
    }

    /// A copy of a histogram series (tests and logs).
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families
            .get(name)?
            .histograms
            .get(&label_set(labels))
            .cloned()
    }

    /// Adds a collector: it runs before every scrape of `/metrics` and
    /// `/healthz` (and [`collect`](Self::collect)), to copy totals kept
    /// elsewhere (atomics shared with other threads) into the registry and
    /// to decide [health](Self::set_healthy). It must not block.
    pub fn add_collector(&self, collector: impl Fn(&Registry) + Send + Sync + 'static) {
        self.collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(collector));
    }

    /// Runs the collectors.
    pub fn collect(&self) {
        // Cloned out so that a collector can update the registry.
        let collectors = self
            .collectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for collector in collectors {
            collector(self);
        }
    }

    /// Whether `/healthz` answers 200.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// What `/healthz` answers: 200 when healthy, 503 otherwise.
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.series {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
            for (labels, histogram) in &family.histograms {
                for (bound, count) in histogram.cumulative() {
                    let _ = writeln!(out, "{name}_bucket{} {count}", with_le(labels, bound));
                }
                let _ = writeln!(out, "{name}_sum{labels} {}", histogram.sum());
                let _ = writeln!(out, "{name}_count{labels} {}", histogram.count());
            }
        }
        out
    }
}

/// The metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {address}: {source}")]
pub struct ServeError {
    /// The configured address.
    pub address: String,
    /// Why binding failed.
    pub source: std::io::Error,
}

/// Binds `address` and serves `/metrics` and `/healthz` until `shutdown`.
/// Returns the bound address (useful with port 0) once listening.
pub async fn serve(
    address: &str,
    registry: Registry,
    mut shutdown: Shutdown,
) -> Result<SocketAddr, ServeError> {
    let error = |source| ServeError {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    tracing::info!(address = %bound, "Serving /metrics and /healthz");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let registry = registry.clone();
                        tokio::spawn(async move {
                            if let Err(error) = respond(stream, &registry).await {
                                tracing::debug!(%error, "Metrics request failed");
                            }
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Metrics listener failed to accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
    Ok(bound)
}

/// Answers one HTTP/1.x request and closes the connection.
async fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "request header timeout")
        })??;
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    if method == "GET" && (path == "/metrics" || path == "/healthz") {
        registry.collect();
    }
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", "/healthz") if registry.is_healthy() => {
            ("200 OK", "text/plain", "ok\n".to_string())
        }
        ("GET", "/healthz") => (
            "503 Service Unavailable",
            "text/plain",
            "unhealthy\n".to_string(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics or /healthz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges_with_escaped_labels() {
        let r = Registry::new();
        r.count("argus_x_frames_total", "Frames.", &[("camera", "a\"b")], 2);
        r.count("argus_x_frames_total", "Frames.", &[("camera", "a\"b")], 3);
        r.gauge("argus_x_tracks", "Tracks.", &[], 7.0);
        let text = r.render();
        assert!(
            text.contains("# TYPE argus_x_frames_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("argus_x_frames_total{camera=\"a\\\"b\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE argus_x_tracks gauge\nargus_x_tracks 7\n"),
            "{text}"
        );
        assert_eq!(r.value("argus_x_tracks", &[]), Some(7.0));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let mut h = Histogram::new(&[0.1, 0.01, f64::NAN, 1.0, 0.1]);
        for v in [0.005, 0.01, 0.05, 0.5, 7.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(
            h.cumulative(),
            vec![(0.01, 2), (0.1, 3), (1.0, 4), (f64::INFINITY, 6)],
            "a value equal to a bound falls in its bucket; NaN only in +Inf"
        );
        assert_eq!(h.count(), 6);
        assert!((h.sum() - 7.565).abs() < 1e-12, "{}", h.sum());
    }

    #[test]
    fn renders_histograms_with_le_labels_sum_and_count() {
        let r = Registry::new();
        let bounds = [0.5, 1.0];
        let help = "Latency.";
        r.observe(
            "argus_x_latency_seconds",
            help,
            &bounds,
            &[("camera", "a")],
            &[0.25, 0.75],
        );
        r.observe(
            "argus_x_latency_seconds",
            help,
            &bounds,
            &[("camera", "a")],
            &[3.0],
        );
        r.observe("argus_x_latency_seconds", help, &bounds, &[], &[1.0]);
        let text = r.render();
        let expected = "# HELP argus_x_latency_seconds Latency.\n\
            # TYPE argus_x_latency_seconds histogram\n\
            argus_x_latency_seconds_bucket{le=\"0.5\"} 0\n\
            argus_x_latency_seconds_bucket{le=\"1\"} 1\n\
            argus_x_latency_seconds_bucket{le=\"+Inf\"} 1\n\
            argus_x_latency_seconds_sum 1\n\
            argus_x_latency_seconds_count 1\n\
            argus_x_latency_seconds_bucket{camera=\"a\",le=\"0.5\"} 1\n\
            argus_x_latency_seconds_bucket{camera=\"a\",le=\"1\"} 2\n\
            argus_x_latency_seconds_bucket{camera=\"a\",le=\"+Inf\"} 3\n\
            argus_x_latency_seconds_sum{camera=\"a\"} 4\n\
            argus_x_latency_seconds_count{camera=\"a\"} 3\n";
        assert_eq!(text, expected);
        let h = r
            .histogram("argus_x_latency_seconds", &[("camera", "a")])
            .unwrap();
        assert_eq!(h.count(), 3);
    }

    #[test]
    fn collectors_run_before_each_scrape() {
        use std::sync::atomic::AtomicU64;
        let r = Registry::new();
        let frames = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&frames);
        r.add_collector(move |r| {
            let n = seen.load(Ordering::Relaxed);
            r.count_total("argus_x_frames_total", "Frames.", &[], n);
            r.set_healthy(n < 10);
        });
        frames.store(4, Ordering::Relaxed);
        r.collect();
        assert_eq!(r.value("argus_x_frames_total", &[]), Some(4.0));
        assert!(r.is_healthy());
        frames.store(12, Ordering::Relaxed);
        r.collect();
        assert_eq!(r.value("argus_x_frames_total", &[]), Some(12.0));
        assert!(!r.is_healthy());
    }

    async fn get(address: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(address).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        let r = Registry::new();
        r.count("argus_x_events_total", "Events.", &[], 1);
        let (trigger, shutdown) = crate::shutdown::channel();
        let address = serve("127.0.0.1:0", r.clone(), shutdown).await.unwrap();
        let metrics = get(address, "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
        assert!(metrics.ends_with("argus_x_events_total 1\n"), "{metrics}");
        assert!(get(address, "/healthz").await.ends_with("\r\n\r\nok\n"));
        r.set_healthy(false);
        assert!(get(address, "/healthz").await.starts_with("HTTP/1.1 503"));
        let flip = r.clone();
        r.add_collector(move |r| {
            r.gauge("argus_x_scraped", "Set at scrape time.", &[], 1.0);
            r.set_healthy(true);
        });
        assert!(get(address, "/healthz").await.ends_with("\r\n\r\nok\n"));
        assert!(
            get(address, "/metrics")
                .await
                .contains("\nargus_x_scraped 1\n")
        );
        assert!(flip.is_healthy());
        assert!(get(address, "/nope").await.starts_with("HTTP/1.1 404"));
        trigger.fire();
    }
}
