//! `cargo xtask bench crowdsec` (root): from a CrowdSec decision to its enforcement in the
//! kernel, for ban-agent's bouncer mode and Debian's `crowdsec-firewall-bouncer` (0.0.25,
//! nftables), reading the same Local API (Debian's CrowdSec 1.4.6, started here in a
//! namespace of the benchmark's own, on loopback) in the same run.
//!
//! - ban-agent, `interval = "1s"` (its default): the clock stops when the address is in
//!   its kernel ban map (the pinned map, read every loop);
//! - the firewall bouncer with `update_frequency: 10s` (Debian's default), and with
//!   `update_frequency: 1s` (ban-agent's interval): the clock stops when the address is
//!   in its nftables set (`nft -j list set`, one read per bouncer per loop: a loop takes
//!   about 10 ms, the resolution of its figures).
//!
//! Decisions are posted to the API as a watcher posts them (`POST /v1/alerts`, what
//! `cscli decisions add` does), one address each, at random moments 100 to 500 ms apart
//! (so each lands at a random point of every reader's poll), and the clock starts when the
//! API has answered (the decision is in its database). Also checked once: whether a range
//! decision (198.51.100.0/24) is enforced for an address inside it.
//!
//! Writes `docs/benchmarks/crowdsec.csv` (every decision, every reader) and the table
//! `crowdsec.md`: p50, p99 and max per reader, beside its interval.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::datapath::Maps;
use ipnet::IpNet;

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::{
    Netns, Pins,
    agent::{Daemon, cli},
    crowdsec::{LISTEN, Lapi},
};

const DECISIONS: usize = 150;
/// Between two decisions, at random in this range (ms).
const GAP_MS: (u64, u64) = (100, 500);
/// A decision not enforced by then counts as missed.
const GIVE_UP: Duration = Duration::from_secs(15);
const RANGE: &str = "198.51.100.0/24";
const IN_RANGE: &str = "198.51.100.77";

/// One reader of the stream.
struct Reader {
    name: String,
    interval: Duration,
    /// ban-agent's pinned maps, or the bouncer's nftables table and set.
    kind: Kind,
}

enum Kind {
    Agent(Box<Maps>),
    Bouncer { table: String, set: String },
}

fn main() -> anyhow::Result<()> {
    shared::require_root("crowdsec", "starts CrowdSec and nftables in a namespace")?;
    let root = common::crowdsec::root().map_err(anyhow::Error::msg)?;
    let ns = Netns::new("csbench");
    let lapi = Lapi::start(root.clone(), &ns);
    let dir = tempfile::tempdir()?;

    // ban-agent, in the API's namespace.
    let key = dir.path().join("crowdsec.key");
    lapi.bouncer_key("ban-agent", &key);
    let pins = Pins::new("csbench");
    let config = dir.path().join("ban-agent.toml");
    std::fs::write(
        &config,
        format!(
            "socket = \"{}\"\nstate_dir = \"{}\"\npin_dir = \"{}\"\n\
             [crowdsec]\nurl = \"{}\"\napi_key_file = \"{}\"\n",
            dir.path().join("ctl.sock").display(),
            dir.path().join("state").display(),
            pins.dir.display(),
            lapi.url(),
            key.display()
        ),
    )?;
    let socket = dir.path().join("ctl.sock");
    let daemon = Daemon::start(
        &ns,
        &[],
        &config,
        &[],
        &socket,
        &dir.path().join("agent.log"),
    );
    let mut readers = vec![Reader {
        name: "ban-agent (bouncer mode)".to_owned(),
        interval: Duration::from_secs(1),
        kind: Kind::Agent(Box::new(Maps::open_pinned(&pins.dir)?)),
    }];

    // The firewall bouncers, each with tables of its own.
    let mut bouncers: Vec<Child> = Vec::new();
    for (tag, seconds) in [("ten", 10), ("one", 1)] {
        let (table, set) = (format!("crowdsec_{tag}"), format!("blacklist_{tag}"));
        bouncers.push(start_bouncer(
            &lapi,
            &ns,
            dir.path(),
            tag,
            seconds,
            &table,
            &set,
        )?);
        readers.push(Reader {
            name: format!("crowdsec-firewall-bouncer (update_frequency {seconds}s)"),
            interval: Duration::from_secs(seconds),
            kind: Kind::Bouncer { table, set },
        });
    }
    // Every reader has read the (empty) stream once.
    std::thread::sleep(Duration::from_secs(11));
    let out = cli(&socket, &["status"]);
    if !out.contains("answering") {
        bail!(
            "ban-agent does not read the stream:\n{out}\n{}",
            daemon.log()
        );
    }

    let (latencies, resolution) = post_and_watch(&lapi, &ns, &readers)?;

    // The range decision, once every reader has read it.
    std::thread::sleep(Duration::from_secs(11));
    let mut ranges = Vec::new();
    for reader in &readers {
        ranges.push(range_enforced(reader, &ns)?);
    }
    for mut bouncer in bouncers {
        let _killed = bouncer.kill();
        let _reaped = bouncer.wait();
    }
    drop(daemon);

    let csv = csv(&readers, &latencies);
    let table = table(&readers, &latencies, &ranges, resolution);
    shared::publish("crowdsec", &csv, &table)
}

/// Posts the decisions (one thread, in the API's namespace) and watches every reader
/// until each has them all, or gives up: the latencies, `[reader][decision]`, and how
/// often the readers were looked at.
#[allow(clippy::type_complexity, reason = "one table of the benchmark")]
fn post_and_watch(
    lapi: &Lapi,
    ns: &Netns,
    readers: &[Reader],
) -> anyhow::Result<(Vec<Vec<Option<Duration>>>, Duration)> {
    let password = lapi.machine_password();
    let targets: Vec<String> = (0..DECISIONS)
        .map(|i| format!("192.0.2.{}", 10 + i))
        .collect();
    let mut rng = shared::Rng(0x5eed_c0ff_ee11);
    let gaps: Vec<Duration> = (0..DECISIONS)
        .map(|_| rng.millis(GAP_MS.0, GAP_MS.1))
        .collect();
    // The poster runs in the API's namespace; it sends when each decision was committed.
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<(usize, Instant)>();
    let poster = {
        let targets = targets.clone();
        let path = ns.path();
        std::thread::spawn(move || -> anyhow::Result<()> {
            enter(&path)?;
            let mut api = Api::login(&password)?;
            for (i, (target, gap)) in targets.iter().zip(&gaps).enumerate() {
                std::thread::sleep(*gap);
                api.decide("Ip", target)?;
                if sent_tx.send((i, Instant::now())).is_err() {
                    break;
                }
            }
            api.decide("Range", RANGE)?;
            Ok(())
        })
    };

    // latencies[reader][decision]
    let mut latencies: Vec<Vec<Option<Duration>>> = vec![vec![None; DECISIONS]; readers.len()];
    let mut committed: Vec<Option<Instant>> = vec![None; DECISIONS];
    let mut loops = 0u64;
    let started = Instant::now();
    loop {
        while let Ok((i, at)) = sent_rx.try_recv() {
            committed[i] = Some(at);
        }
        let all_sent = committed.iter().all(Option::is_some);
        let last = committed.iter().flatten().max().copied();
        for (r, reader) in readers.iter().enumerate() {
            let held = holdings(reader, ns)?;
            let now = Instant::now();
            for (i, target) in targets.iter().enumerate() {
                if let (Some(at), None) = (committed[i], latencies[r][i])
                    && held.iter().any(|h| h == target)
                {
                    latencies[r][i] = Some(now - at);
                }
            }
        }
        loops += 1;
        let done = latencies.iter().all(|l| l.iter().all(Option::is_some));
        if all_sent && (done || last.is_some_and(|at| at.elapsed() > GIVE_UP)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let resolution = started.elapsed() / u32::try_from(loops.max(1)).unwrap_or(u32::MAX);
    poster
        .join()
        .map_err(|_| anyhow::anyhow!("the poster panicked"))??;

    Ok((latencies, resolution))
}

/// Every decision's latency per reader (`missed` when it was never enforced).
fn csv(readers: &[Reader], latencies: &[Vec<Option<Duration>>]) -> String {
    let mut csv = String::from("reader,interval_ms,decision,latency_ms\n");
    for (reader, lat) in readers.iter().zip(latencies) {
        for (i, latency) in lat.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{},{},{i},{}",
                reader.name,
                reader.interval.as_millis(),
                latency.map_or_else(|| "missed".to_owned(), |l| format!("{:.1}", ms(l)))
            );
        }
    }
    csv
}

/// The table: per reader, its interval, p50, p99 and max, and the range check.
fn table(
    readers: &[Reader],
    latencies: &[Vec<Option<Duration>>],
    ranges: &[bool],
    resolution: Duration,
) -> String {
    let mut out = String::from(
        "| reader | interval | decisions enforced | p50 ms | p99 ms | max ms | p99 − interval ms | range decision enforced inside the range |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for ((reader, lat), range) in readers.iter().zip(latencies).zip(ranges) {
        let mut seen: Vec<f64> = lat.iter().flatten().map(|l| ms(*l)).collect();
        seen.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            let at = ((seen.len() as f64 * q).ceil() as usize).saturating_sub(1);
            seen.get(at).copied().unwrap_or(f64::NAN)
        };
        let p99 = pick(0.99);
        let _ = writeln!(
            out,
            "| {} | {} s | {}/{} | {:.0} | {:.0} | {:.0} | {:+.0} | {} |",
            reader.name,
            reader.interval.as_secs(),
            seen.len(),
            lat.len(),
            pick(0.5),
            p99,
            seen.last().copied().unwrap_or(f64::NAN),
            p99 - ms(reader.interval),
            if *range {
                format!("yes ({IN_RANGE} of {RANGE})")
            } else {
                format!("no: {IN_RANGE} of {RANGE} passes")
            }
        );
    }
    let _ = write!(
        out,
        "\nFrom the Local API's answer to the decision's POST to the address in the reader's \
         kernel map or nftables set; {DECISIONS} decisions at random moments {}–{} ms apart, \
         every reader on the same API in the same run; read every {:.0} ms.\n",
        GAP_MS.0,
        GAP_MS.1,
        ms(resolution)
    );
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The addresses a reader enforces now (host addresses, as text).
fn holdings(reader: &Reader, ns: &Netns) -> anyhow::Result<Vec<String>> {
    match &reader.kind {
        Kind::Agent(maps) => Ok(maps
            .list()?
            .into_iter()
            .filter(|record| record.target.prefix_len() == record.target.max_prefix_len())
            .map(|record| record.target.addr().to_string())
            .collect()),
        Kind::Bouncer { table, set } => {
            let out = ns
                .command("nft")
                .args(["-j", "list", "set", "ip", table, set])
                .output()
                .context("nft list set")?;
            let json: serde_json::Value = serde_json::from_slice(&out.stdout)
                .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
            let mut held = Vec::new();
            for item in json["nftables"].as_array().into_iter().flatten() {
                for elem in item["set"]["elem"].as_array().into_iter().flatten() {
                    let value = elem["elem"]["val"].as_str().or_else(|| elem.as_str());
                    held.extend(value.map(str::to_owned));
                }
            }
            Ok(held)
        }
    }
}

/// Whether an address inside [`RANGE`] is banned by the reader.
fn range_enforced(reader: &Reader, ns: &Netns) -> anyhow::Result<bool> {
    match &reader.kind {
        Kind::Agent(maps) => {
            let range: IpNet = RANGE.parse()?;
            Ok(maps.list()?.iter().any(|record| {
                record
                    .target
                    .contains(&IN_RANGE.parse::<std::net::IpAddr>().expect("address"))
                    && record.target == range
            }))
        }
        Kind::Bouncer { table, set } => Ok(ns
            .command("nft")
            .args([
                "get",
                "element",
                "ip",
                table,
                set,
                &format!("{{ {IN_RANGE} }}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?
            .success()),
    }
}

/// Starts `crowdsec-firewall-bouncer` in `ns` on the API, with its own key, tables and
/// pid folder, reading every `seconds`.
fn start_bouncer(
    lapi: &Lapi,
    ns: &Netns,
    dir: &Path,
    tag: &str,
    seconds: u64,
    table: &str,
    set: &str,
) -> anyhow::Result<Child> {
    let key = dir.join(format!("bouncer-{tag}.key"));
    let key = lapi.bouncer_key(&format!("firewall-{tag}"), &key);
    let config = dir.join(format!("bouncer-{tag}.yaml"));
    std::fs::write(
        &config,
        format!(
            "mode: nftables\nupdate_frequency: {seconds}s\ndaemonize: false\n\
             log_mode: stdout\nlog_level: info\npid_dir: {dir}\n\
             api_url: http://{LISTEN}/\napi_key: {key}\ndisable_ipv6: false\n\
             deny_action: DROP\ndeny_log: false\nsupported_decisions_types:\n  - ban\n\
             blacklists_ipv4: {set}\nblacklists_ipv6: {set}6\n\
             nftables:\n  ipv4:\n    enabled: true\n    set-only: false\n    \
             table: {table}\n    chain: {table}-chain\n  ipv6:\n    enabled: true\n    \
             set-only: false\n    table: {table}6\n    chain: {table}6-chain\n\
             prometheus:\n  enabled: false\n",
            dir = dir.display()
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("bouncer-{tag}.log")))?;
    let child = ns
        .command(lapi.root.join("usr/bin/crowdsec-firewall-bouncer"))
        .arg("-c")
        .arg(&config)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start crowdsec-firewall-bouncer")?;
    Ok(child)
}

/// Moves this thread into the namespace at `path`.
fn enter(path: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path)?;
    // SAFETY: a valid namespace fd; setns changes only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!(
            "setns {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// The Local API as a watcher (the machine `cscli` uses) posts decisions to it.
struct Api {
    http: ureq::Agent,
    token: String,
}

impl Api {
    fn login(password: &str) -> anyhow::Result<Self> {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let body = serde_json::json!({ "machine_id": "test", "password": password });
        let reply: serde_json::Value = http
            .post(format!("http://{LISTEN}/v1/watchers/login"))
            .send_json(&body)?
            .body_mut()
            .read_json()?;
        let token = reply["token"]
            .as_str()
            .context("no token in the login's answer")?
            .to_owned();
        Ok(Self { http, token })
    }

    /// Posts an alert with one ban decision of `scope` (`Ip`, `Range`) on `value`, as
    /// `cscli decisions add` does; returns once the API has answered.
    fn decide(&mut self, scope: &str, value: &str) -> anyhow::Result<()> {
        let now = jiff::Timestamp::now().to_string();
        let alert = serde_json::json!([{
            "scenario": "bench", "scenario_hash": "", "scenario_version": "",
            "message": "bench", "events_count": 1, "start_at": now, "stop_at": now,
            "capacity": 0, "leakspeed": "0", "simulated": false, "events": [],
            "source": { "scope": scope, "value": value },
            "decisions": [{ "duration": "1h", "origin": "cscli", "scenario": "bench",
                            "scope": scope, "type": "ban", "value": value }]
        }]);
        self.http
            .post(format!("http://{LISTEN}/v1/alerts"))
            .header("Authorization", &format!("Bearer {}", self.token))
            .send_json(&alert)
            .with_context(|| format!("POST /v1/alerts for {value}"))?;
        Ok(())
    }
}
