//! Prometheus metrics: a small registry rendered in the text exposition
//! format, and the HTTP endpoint every service serves (`GET /metrics`,
//! `GET /healthz`).
//!
//! Names follow `argus_<service>_<name>_<unit>` (counters end in `_total`);
//! labels are low-cardinality (camera ids, never person or track ids).
//! Services update metrics once per handled message or batch, next to the
//! log line that reports the same thing.

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
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label set (`{camera="a"}` or empty) → value.
    series: BTreeMap<String, f64>,
}

/// A set of metrics shared by a service's tasks; clones share the values.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
    healthy: Arc<AtomicBool>,
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

    /// The current value of a series (tests and logs).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        families.get(name)?.series.get(&label_set(labels)).copied()
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
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.series {
                let _ = writeln!(out, "{name}{labels} {value}");
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
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", "/healthz") if registry.healthy.load(Ordering::Relaxed) => {
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
        assert!(get(address, "/nope").await.starts_with("HTTP/1.1 404"));
        trigger.fire();
    }
}
