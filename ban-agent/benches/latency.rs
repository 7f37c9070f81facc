//! `cargo xtask bench latency` (root): detection latency, from the write of an address's
//! maxretry-th failure line to its ban being effective, for ban-agent (the address in
//! the kernel's ban map) and fail2ban (its server, pyinotify backend, an action that only
//! records the time), on the same lines written at the same steady rate, in the same run;
//! and ban-agent on the same lines in a container's log, as Docker's json-file driver
//! writes them.
//! fail2ban comes from xtask (`BAN_AGENT_FAIL2BAN_SERVER`, `BAN_AGENT_FAIL2BAN_PYTHONPATH`).
//! Writes `docs/benchmarks/latency.csv` (p50, p99, max per run), `latency_samples.csv`
//! (every sample) and a table.

use std::{
    collections::HashMap,
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::Write as _,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use ipnet::IpNet;
// The privileged tests' helpers: the daemon as a process, a pin directory of its own.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::agent::{self, OneJail};

const RUNS: usize = 3;
/// Addresses banned per run.
const ATTACKERS: u8 = 200;
const MAXRETRY: usize = 5;
/// One line every 2 ms (500 lines/s): each failure is followed by a successful login of
/// another client.
const SPACING: Duration = Duration::from_millis(2);
/// Attackers banned right after a reload, per run (each one reload).
const RELOADS: u8 = 30;
/// The row of bans made right after a reload.
const AFTER_RELOAD: &str = "ban-agent right after a reload";
/// The row of the same lines in a container's log (Docker's json-file driver).
const CONTAINER: &str = "ban-agent on a container's json-file log";
const FAIL2BAN_FILTER: &str =
    include_str!("../../examples/fastapi-auth/fail2ban/filter.d/fastapi-auth.conf");

fn main() -> anyhow::Result<()> {
    shared::require_root("latency", "writes bans into BPF maps")?;
    let peer = std::env::var_os("BAN_AGENT_FAIL2BAN_SERVER").map(PathBuf::from);
    let mut runs: Vec<(&str, usize, Vec<f64>)> = Vec::new();
    for run in 1..=RUNS {
        let dir = tempfile::tempdir()?;
        eprintln!("latency: run {run}/{RUNS}: ban-agent");
        runs.push(("ban-agent", run, ban_agent(Wrapper::Plain)?));
        eprintln!("latency: run {run}/{RUNS}: ban-agent on a container's log");
        runs.push((CONTAINER, run, ban_agent(Wrapper::Docker)?));
        eprintln!("latency: run {run}/{RUNS}: ban-agent right after a reload");
        runs.push((AFTER_RELOAD, run, ban_agent_after_reload()?));
        match &peer {
            Some(server) => {
                eprintln!("latency: run {run}/{RUNS}: fail2ban");
                runs.push(("fail2ban", run, fail2ban(server, dir.path())?));
            }
            None => eprintln!("latency: BAN_AGENT_FAIL2BAN_SERVER unset: no fail2ban comparison"),
        }
    }
    report(&runs)
}

fn attacker(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, i.saturating_add(1)))
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// How the app's lines reach the log.
#[derive(Clone, Copy)]
enum Wrapper {
    /// As the app writes them.
    Plain,
    /// As Docker's json-file driver writes a container's output.
    Docker,
}

impl Wrapper {
    fn wrap(self, line: String) -> String {
        match self {
            Self::Plain => line,
            Self::Docker => {
                let entry = serde_json::json!({
                    "log": line,
                    "stream": "stdout",
                    "time": jiff::Timestamp::now().to_string(),
                });
                format!("{entry}\n")
            }
        }
    }
}

/// Appends the failures (and as many successes of other clients) at the steady rate and
/// returns, per attacker, the wall time just after its maxretry-th failure was written.
fn write_attack(log: &Path, wrapper: Wrapper) -> anyhow::Result<HashMap<IpAddr, f64>> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let mut written = HashMap::new();
    let mut next = std::time::Instant::now();
    for i in 0..ATTACKERS {
        for failure in 1..=MAXRETRY {
            for (host, status) in [
                (attacker(i).to_string(), 401),
                (format!("192.0.2.{}", i % 250 + 1), 200),
            ] {
                std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
                next += SPACING;
                // One write per line, as Python's logging does.
                let line = agent::login_line(&agent::now_stamp(), &host, status);
                file.write_all(wrapper.wrap(line).as_bytes())?;
                if status == 401 && failure == MAXRETRY {
                    written.insert(attacker(i), now());
                }
            }
        }
    }
    Ok(written)
}

fn latencies(
    written: &HashMap<IpAddr, f64>,
    effective: &HashMap<IpAddr, f64>,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for (addr, at) in written {
        let banned = effective
            .get(addr)
            .with_context(|| format!("{addr} was never banned"))?;
        out.push((banned - at) * 1e3);
    }
    Ok(out)
}

/// fail2ban's server, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _killed = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn ban_agent(wrapper: Wrapper) -> anyhow::Result<Vec<f64>> {
    let agent = OneJail::new("bench-latency", MAXRETRY as u32);
    let _daemon = agent.start();
    let maps = ban_agent::datapath::Maps::open_pinned(&agent.pins.dir)?;
    // The poller notes when each address first shows in the map, every 100 µs, until
    // every attacker is there or it is told to give up.
    let give_up = Arc::new(AtomicBool::new(false));
    let poller = {
        let give_up = Arc::clone(&give_up);
        std::thread::spawn(move || -> anyhow::Result<HashMap<IpAddr, f64>> {
            let mut seen = HashMap::new();
            let mut pending: Vec<IpAddr> = (0..ATTACKERS).map(attacker).collect();
            while !pending.is_empty() && !give_up.load(Ordering::Relaxed) {
                // Bans come in the order the attackers were written: look up the next few
                // only, so that a poll stays a handful of lookups.
                let mut still = Vec::with_capacity(pending.len());
                for (rank, addr) in pending.into_iter().enumerate() {
                    if rank >= 8 {
                        still.push(addr);
                        continue;
                    }
                    // Jail 0: the configuration's only jail.
                    match maps.expiry(0, IpNet::from(addr))? {
                        Some(_) => {
                            seen.insert(addr, now());
                        }
                        None => still.push(addr),
                    }
                }
                pending = still;
                std::thread::sleep(Duration::from_micros(100));
            }
            Ok(seen)
        })
    };
    let written = write_attack(&agent.log, wrapper)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !poller.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    give_up.store(true, Ordering::Relaxed);
    let seen = poller
        .join()
        .map_err(|_| anyhow::anyhow!("the map poller panicked"))??;
    latencies(&written, &seen)
}

/// An attacker's maxretry failures written the moment `reload` has answered, one attacker
/// per reload: from the last failure's write to the ban in the map. (The configuration
/// is unchanged: the reload keeps the programs, the links and the jail as they are.)
fn ban_agent_after_reload() -> anyhow::Result<Vec<f64>> {
    let agent = OneJail::new("bench-reload", MAXRETRY as u32);
    let _daemon = agent.start();
    let maps = ban_agent::datapath::Maps::open_pinned(&agent.pins.dir)?;
    let mut file = OpenOptions::new()
        .append(true)
        .open(&agent.log)
        .with_context(|| format!("cannot open {}", agent.log.display()))?;
    let mut out = Vec::new();
    for i in 0..RELOADS {
        agent::cli(&agent.socket, &["reload"]);
        let addr = attacker(i);
        for _ in 0..MAXRETRY {
            file.write_all(agent::login_line(&agent::now_stamp(), addr, 401).as_bytes())?;
        }
        let written = now();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while maps.expiry(0, IpNet::from(addr))?.is_none() {
            if std::time::Instant::now() > deadline {
                bail!("{addr} was not banned within 10 s of a reload");
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        out.push((now() - written) * 1e3);
    }
    Ok(out)
}

fn fail2ban(server: &Path, dir: &Path) -> anyhow::Result<Vec<f64>> {
    let conf = dir.join("fail2ban");
    for sub in ["filter.d", "action.d"] {
        std::fs::create_dir_all(conf.join(sub))?;
    }
    let log = dir.join("f2b-access.log");
    File::create(&log)?;
    let bans = dir.join("f2b-bans.txt");
    File::create(&bans)?;
    std::fs::write(conf.join("filter.d/fastapi-auth.conf"), FAIL2BAN_FILTER)?;
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = WARNING\nlogtarget = {0}/fail2ban.log\n\
             socket = {0}/fail2ban.sock\npidfile = {0}/fail2ban.pid\ndbfile = :memory:\n",
            dir.display()
        ),
    )?;
    // The action records the time it ran, nothing else: the ban is "effective" then.
    std::fs::write(
        conf.join("action.d/record.conf"),
        format!(
            "[Definition]\nactionban = printf '%%s <ip>\\n' \"$(date +%%s.%%N)\" >> {}\nactionunban =\n",
            bans.display()
        ),
    )?;
    std::fs::write(
        conf.join("jail.conf"),
        format!(
            "[fastapi-auth]\nenabled = true\nfilter = fastapi-auth\nlogpath = {}\n\
             backend = pyinotify\nmaxretry = {MAXRETRY}\nfindtime = 10m\nbantime = 1h\naction = record\n",
            log.display()
        ),
    )?;
    let mut command = Command::new("python3");
    command
        .arg(server)
        .args(["-xf", "-c"])
        .arg(&conf)
        .arg("start")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(path) = std::env::var_os("BAN_AGENT_FAIL2BAN_PYTHONPATH") {
        command.env("PYTHONPATH", path);
    }
    let _server = Process(command.spawn().context("start fail2ban-server")?);
    let socket = dir.join("fail2ban.sock");
    wait_until("fail2ban-server's socket", || socket.exists())?;
    // Its jail starts after the socket appears; give the watcher a moment.
    std::thread::sleep(Duration::from_secs(2));
    let written = write_attack(&log, Wrapper::Plain)?;
    let mut effective = HashMap::new();
    wait_until("fail2ban ran every ban action", || {
        effective = std::fs::read_to_string(&bans)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (at, addr) = line.split_once(' ')?;
                Some((addr.parse().ok()?, at.parse().ok()?))
            })
            .collect();
        effective.len() >= usize::from(ATTACKERS)
    })?;
    latencies(&written, &effective)
}

/// Waits up to 30 s.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        if std::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}

fn report(runs: &[(&str, usize, Vec<f64>)]) -> anyhow::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks");
    let mut per_run = String::from("tool,run,bans,p50_ms,p99_ms,max_ms\n");
    let mut samples = String::from("tool,run,latency_ms\n");
    let mut stats: HashMap<&str, Vec<[f64; 3]>> = HashMap::new();
    for (tool, run, values) in runs {
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let row = [
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            percentile(&sorted, 1.0),
        ];
        let _ = writeln!(
            per_run,
            "{tool},{run},{},{:.3},{:.3},{:.3}",
            sorted.len(),
            row[0],
            row[1],
            row[2]
        );
        for value in &sorted {
            let _ = writeln!(samples, "{tool},{run},{value:.3}");
        }
        stats.entry(tool).or_default().push(row);
    }
    let summary = |tool: &str| -> Option<[f64; 3]> {
        let rows = stats.get(tool)?;
        Some(std::array::from_fn(|i| {
            shared::median(rows.iter().map(|r| r[i]).collect())
        }))
    };
    let ours = summary("ban-agent").context("no ban-agent run")?;
    let mut table = String::from(
        "| tool | p50 ms | p99 ms | max ms | p99 vs. ban-agent |\n|---|---:|---:|---:|---:|\n",
    );
    for tool in ["ban-agent", CONTAINER, AFTER_RELOAD, "fail2ban"] {
        if let Some(row) = summary(tool) {
            let _ = writeln!(
                table,
                "| {tool} | {:.2} | {:.2} | {:.2} | {:.1} |",
                row[0],
                row[1],
                row[2],
                row[1] / ours[1]
            );
        }
    }
    let path = dir.join("latency_samples.csv");
    std::fs::write(&path, samples).with_context(|| format!("cannot write {}", path.display()))?;
    shared::publish("latency", &per_run, &table)
}
