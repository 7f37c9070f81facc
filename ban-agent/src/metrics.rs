//! Prometheus metrics: what the agent counts, and the `/metrics` endpoint that serves them.
//!
//! The agent updates the counters as it works and refreshes the gauges (kernel counters,
//! follower lag, map fill) once a second; the endpoint only encodes, so a scrape never
//! waits for the agent.

use std::{net::SocketAddr, sync::Arc, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tracing::{debug, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JailLabel {
    pub jail: String,
}

/// Why a ban decided from the log was not made.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Refusal {
    /// The jail's `max_bans_per_minute` was reached.
    RateCap,
    /// The ban map is full.
    MapFull,
}

impl Refusal {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Self::RateCap => "rate_cap",
            Self::MapFull => "map_full",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    pub jail: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    pub file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    pub map: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabel {
    pub interface: String,
    pub hook: String,
}

/// Every metric the agent exports.
#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    pub lines_read: Family<FileLabel, Counter>,
    pub failures: Family<JailLabel, Counter>,
    pub malformed_lines: Family<JailLabel, Counter>,
    pub bans: Family<JailLabel, Counter>,
    pub unbans: Family<JailLabel, Counter>,
    pub bans_refused: Family<RefusalLabel, Counter>,
    pub banned: Family<JailLabel, Gauge>,
    pub dropped_packets: Family<JailLabel, Counter>,
    pub dropped_bytes: Family<JailLabel, Counter>,
    pub lag_bytes: Family<FileLabel, Gauge>,
    pub map_fill: Family<MapLabel, Gauge<f64, AtomicU64>>,
    pub hook_failures: Counter,
    pub interface_hook: Family<HookLabel, Gauge>,
    pub fleet_connected: Gauge,
    pub fleet_outbox: Gauge,
    pub fleet_published: Counter,
    pub fleet_applied: Counter,
    pub fleet_refused: Family<ReasonLabel, Counter>,
    pub fleet_round_trip: Seconds,
    pub fleet_propagation: Seconds,
    pub crowdsec_connected: Gauge,
    pub crowdsec_pulls: Counter,
    pub crowdsec_pull_errors: Counter,
    pub crowdsec_pull: Seconds,
    pub crowdsec_applied: Counter,
    pub crowdsec_refused: Family<ReasonLabel, Counter>,
    pub state_bytes: Gauge,
    pub state_commit: Seconds,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// A histogram of durations in seconds, from 100 µs to about 3 s.
#[derive(Clone, Debug)]
pub struct Seconds(Histogram);

impl Default for Seconds {
    fn default() -> Self {
        Self(Histogram::new(exponential_buckets(0.000_1, 2.0, 16)))
    }
}

impl std::ops::Deref for Seconds {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        &self.0
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut m = Self::default();
        let mut registry = std::mem::take(&mut m.registry);
        let prefixed = registry.sub_registry_with_prefix("ban_agent");
        m.register_detection(prefixed);
        m.register_kernel(prefixed);
        m.register_fleet(prefixed);
        m.register_crowdsec(prefixed);
        m.register_state(prefixed);
        m.registry = registry;
        Arc::new(m)
    }

    /// Lines, failures and bans, per file or jail.
    fn register_detection(&self, prefixed: &mut Registry) {
        prefixed.register(
            "lines_read",
            "Log lines read, per file",
            self.lines_read.clone(),
        );
        prefixed.register(
            "failures",
            "Failures matched per jail (ignoreregex and ignoreip left out)",
            self.failures.clone(),
        );
        prefixed.register(
            "malformed_lines",
            "Lines a jail's JSON filter skipped because they are not JSON",
            self.malformed_lines.clone(),
        );
        prefixed.register("bans", "Bans made per jail", self.bans.clone());
        prefixed.register(
            "unbans",
            "Bans lifted per jail (expired, unban, jail removed)",
            self.unbans.clone(),
        );
        prefixed.register(
            "bans_refused",
            "Bans decided from the log and not made, per jail and reason (rate_cap: \
             max_bans_per_minute reached; map_full: the ban map is full)",
            self.bans_refused.clone(),
        );
        prefixed.register("banned", "Bans in force per jail", self.banned.clone());
    }

    /// What the kernel drops, and the maps and hooks it drops with.
    fn register_kernel(&self, prefixed: &mut Registry) {
        prefixed.register(
            "dropped_packets",
            "Packets dropped by XDP per jail",
            self.dropped_packets.clone(),
        );
        prefixed.register(
            "dropped_bytes",
            "Bytes of the packets dropped by XDP per jail",
            self.dropped_bytes.clone(),
        );
        prefixed.register(
            "follower_lag_bytes",
            "Bytes written to a log and not read yet",
            self.lag_bytes.clone(),
        );
        prefixed.register(
            "map_fill_ratio",
            "Entries in a ban map over its capacity",
            self.map_fill.clone(),
        );
        prefixed.register(
            "hook_failures",
            "Ban and unban hooks that failed or timed out",
            self.hook_failures.clone(),
        );
        prefixed.register(
            "interface_hook",
            "1 for the hook (xdp, tc, xdp-generic) the datapath runs in on each interface",
            self.interface_hook.clone(),
        );
    }

    fn register_fleet(&self, prefixed: &mut Registry) {
        prefixed.register(
            "fleet_connected",
            "1 while the fleet's engine is reachable",
            self.fleet_connected.clone(),
        );
        prefixed.register(
            "fleet_outbox",
            "Failures, bans and unbans waiting for the fleet's engine",
            self.fleet_outbox.clone(),
        );
        prefixed.register(
            "fleet_published",
            "Failures, bans and unbans the fleet's engine took from this host",
            self.fleet_published.clone(),
        );
        prefixed.register(
            "fleet_applied",
            "Bans and unbans from the fleet's stream applied here",
            self.fleet_applied.clone(),
        );
        prefixed.register(
            "fleet_refused",
            "Entries of the fleet's stream refused here, per reason (spared: loopback, \
             unspecified, this host's or ignoreip; signature: unsigned or wrongly signed; \
             rate_cap; unreadable; map_full)",
            self.fleet_refused.clone(),
        );
        prefixed.register(
            "fleet_round_trip_seconds",
            "Time of one batch's round trip to the fleet's engine",
            self.fleet_round_trip.0.clone(),
        );
        prefixed.register(
            "fleet_propagation_seconds",
            "From the decision on one host to the ban in this host's kernel maps (clocks of \
             both hosts)",
            self.fleet_propagation.0.clone(),
        );
    }

    fn register_crowdsec(&self, prefixed: &mut Registry) {
        prefixed.register(
            "crowdsec_connected",
            "1 while CrowdSec's Local API answers the decision stream",
            self.crowdsec_connected.clone(),
        );
        prefixed.register(
            "crowdsec_pulls",
            "Reads of CrowdSec's decision stream answered",
            self.crowdsec_pulls.clone(),
        );
        prefixed.register(
            "crowdsec_pull_errors",
            "Reads of CrowdSec's decision stream that failed (no answer, refused key, \
             unreadable answer)",
            self.crowdsec_pull_errors.clone(),
        );
        prefixed.register(
            "crowdsec_pull_seconds",
            "Time of one read of CrowdSec's decision stream",
            self.crowdsec_pull.0.clone(),
        );
        prefixed.register(
            "crowdsec_applied",
            "CrowdSec's decisions applied here (bans made or lengthened, bans lifted)",
            self.crowdsec_applied.clone(),
        );
        prefixed.register(
            "crowdsec_refused",
            "CrowdSec's decisions not applied, per reason (spared: loopback, unspecified, \
             this host's or ignoreip; rate_cap; map_full; type: not a ban; scope; \
             unreadable)",
            self.crowdsec_refused.clone(),
        );
    }

    fn register_state(&self, prefixed: &mut Registry) {
        prefixed.register(
            "state_bytes",
            "Bytes the state database takes on disk (with its write-ahead log)",
            self.state_bytes.clone(),
        );
        prefixed.register(
            "state_commit_seconds",
            "Time of one commit of what changed to the state database",
            self.state_commit.0.clone(),
        );
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _infallible = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn jail(jail: &str) -> JailLabel {
        JailLabel {
            jail: jail.to_owned(),
        }
    }

    pub fn refusal(jail: &str, reason: Refusal) -> RefusalLabel {
        RefusalLabel {
            jail: jail.to_owned(),
            reason: reason.label().to_owned(),
        }
    }

    pub fn file(path: &std::path::Path) -> FileLabel {
        FileLabel {
            file: path.display().to_string(),
        }
    }
}

/// Adds to `counter` what a kernel counter gained since `last` (a counter that went back,
/// because the maps were recreated, counts from zero).
pub fn follow_counter(counter: &Counter, last: &mut u64, now: u64) {
    let gained = if now >= *last { now - *last } else { now };
    counter.inc_by(gained);
    *last = now;
}

/// Binds the metrics address; an error names it.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for metrics on {address}: {e}; change `metrics` in the \
             configuration or free the port"
        )
    })
}

/// Answers `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let metrics = Arc::clone(&metrics);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &metrics).await {
                        debug!(%peer, "metrics request: {e}");
                    }
                });
            }
            Err(e) => {
                warn!("metrics endpoint: cannot accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTP/1.x exchange. Written by hand rather than with hyper: one read-only endpoint,
/// one request per connection, and the agent needs no other HTTP server.
async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    const MAX_HEAD: usize = 8192;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut words = request_line.split(|&b| b == b' ');
    let (method, path) = (words.next(), words.next());
    let (status, content_type, body) = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        (Some(b"GET"), _) => (
            "404 Not Found",
            "text/plain",
            "ban-agent serves /metrics only\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "use GET /metrics\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_and_state_metrics_have_the_names_the_documents_give() {
        let m = Metrics::new();
        m.fleet_published.inc();
        m.fleet_applied.inc();
        m.fleet_refused
            .get_or_create(&ReasonLabel {
                reason: "signature".to_owned(),
            })
            .inc();
        m.fleet_round_trip.observe(0.001);
        m.fleet_propagation.observe(0.002);
        m.fleet_connected.set(1);
        let text = m.encode();
        for name in [
            "ban_agent_fleet_connected 1",
            "ban_agent_fleet_outbox 0",
            "ban_agent_fleet_published_total 1",
            "ban_agent_fleet_applied_total 1",
            "ban_agent_fleet_refused_total{reason=\"signature\"} 1",
            "ban_agent_fleet_round_trip_seconds_count 1",
            "ban_agent_fleet_propagation_seconds_count 1",
            "ban_agent_state_bytes 0",
            "ban_agent_state_commit_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} in:\n{text}");
        }
    }

    /// Every metric the shipped Grafana dashboard and Prometheus rules (and the rules'
    /// tests) name is one the agent exports, under that name.
    #[test]
    fn the_dashboard_and_the_alerts_name_only_metrics_the_agent_exports() {
        // A family is exported once it has a member: one each.
        let m = Metrics::new();
        let jail = Metrics::jail("auth");
        let file = FileLabel {
            file: "auth.log".into(),
        };
        m.lines_read.get_or_create(&file).inc();
        m.lag_bytes.get_or_create(&file).set(0);
        for family in [&m.failures, &m.malformed_lines, &m.bans, &m.unbans] {
            family.get_or_create(&jail).inc();
        }
        for family in [&m.dropped_packets, &m.dropped_bytes] {
            family.get_or_create(&jail).inc();
        }
        m.banned.get_or_create(&jail).set(1);
        m.bans_refused
            .get_or_create(&RefusalLabel {
                jail: "auth".into(),
                reason: "rate_cap".into(),
            })
            .inc();
        m.map_fill
            .get_or_create(&MapLabel {
                map: "ban_v4".into(),
            })
            .set(0.5);
        m.interface_hook
            .get_or_create(&HookLabel {
                interface: "eth0".into(),
                hook: "tc".into(),
            })
            .set(1);
        for family in [&m.fleet_refused, &m.crowdsec_refused] {
            family
                .get_or_create(&ReasonLabel {
                    reason: "spared".into(),
                })
                .inc();
        }
        let mut exported = std::collections::BTreeSet::new();
        for line in m.encode().lines() {
            let mut words = line.split(' ').skip(2);
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            if !line.starts_with("# TYPE ") {
                continue;
            }
            let samples: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            for suffix in samples {
                exported.insert(format!("{name}{suffix}"));
            }
        }
        let files = [
            (
                "deploy/grafana/ban-agent.json",
                include_str!("../../deploy/grafana/ban-agent.json"),
            ),
            (
                "deploy/prometheus/ban-agent-rules.yml",
                include_str!("../../deploy/prometheus/ban-agent-rules.yml"),
            ),
            (
                "deploy/prometheus/ban-agent-rules.test.yml",
                include_str!("../../deploy/prometheus/ban-agent-rules.test.yml"),
            ),
        ];
        let mut named = 0;
        for (file, text) in files {
            let mut rest = text;
            while let Some(at) = rest.find("ban_agent_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                assert!(
                    exported.contains(&name),
                    "{file} names {name}, which the agent does not export; it exports {exported:?}"
                );
                named += 1;
                rest = &rest[at + name.len()..];
            }
        }
        assert!(named > 30, "{named} names found");
        let dashboard: serde_json::Value = serde_json::from_str(files[0].1).expect("JSON");
        let panels = dashboard["panels"].as_array().expect("panels");
        for panel in panels {
            let targets = panel["targets"].as_array().expect("targets");
            assert!(
                !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
                "{panel}"
            );
        }
    }

    #[test]
    fn counters_and_gauges_are_encoded_with_their_labels() {
        let m = Metrics::new();
        m.bans.get_or_create(&Metrics::jail("auth")).inc();
        m.banned.get_or_create(&Metrics::jail("auth")).set(3);
        let mut last = 0;
        follow_counter(
            &m.dropped_packets.get_or_create(&Metrics::jail("auth")),
            &mut last,
            10,
        );
        follow_counter(
            &m.dropped_packets.get_or_create(&Metrics::jail("auth")),
            &mut last,
            4,
        );
        let text = m.encode();
        assert!(
            text.contains("ban_agent_bans_total{jail=\"auth\"} 1"),
            "{text}"
        );
        assert!(text.contains("ban_agent_banned{jail=\"auth\"} 3"), "{text}");
        assert!(
            text.contains("ban_agent_dropped_packets_total{jail=\"auth\"} 14"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
