//! `cargo xtask bench memory` (root): the release daemon's resident memory idle, while it
//! tracks 100k and 1M failing addresses (one failure each, below maxretry), and while it
//! holds 1M bans (maxretry 1), with the kernel memory of its BPF maps beside it; then, with
//! those 1M bans, the size of the state database, the time a restart takes until the
//! daemon answers (and its memory after it), and the database's size once the bans are
//! lifted (`unban --all`) and their history pruned. The addresses are IPv6 from
//! 2001:db8::/32, written as FastAPI failure lines to the log the daemon follows; no packet
//! is sent. Last, the daemon's peak while a container's log (CRI) floods it with 1 GB of
//! partial lines that never end (the joined message is cut at its limit). Median of `RUNS` runs (each a fresh daemon). Writes
//! `docs/benchmarks/memory.csv`, `memory.md` and a table.

use std::{
    fmt::Write as _,
    fs::OpenOptions,
    io::Write as _,
    net::{IpAddr, Ipv6Addr},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{
    datapath::Maps,
    store::{Keep, Store},
};
use ipnet::IpNet;
// The privileged tests' helpers: the daemon as a process, a pin directory of its own.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::agent::{self, Daemon, OneJail};

const RUNS: usize = 3;
/// How long the daemon gets to take in each batch of lines.
const CAP: Duration = Duration::from_secs(120);

fn address(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xba, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// One state of the daemon and its memory then.
struct Row {
    state: &'static str,
    run: usize,
    rss_kib: u64,
    /// Memory of the BPF maps (kernel, not in the resident set).
    maps_kib: u64,
    /// The state database with its write-ahead log.
    state_kib: u64,
    /// How long the start took until the daemon answered, for a restart.
    start_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(());
    }
    shared::require_root("memory", "runs the daemon, which loads BPF maps")?;
    let mut rows = Vec::new();
    for run in 1..=RUNS {
        eprintln!("memory: run {run}/{RUNS}: idle, then 100k and 1M tracked addresses");
        tracked(run, &mut rows)?;
        eprintln!("memory: run {run}/{RUNS}: 1M bans");
        bans(run, &mut rows)?;
        eprintln!("memory: run {run}/{RUNS}: 1 GB of partial lines in a container's log");
        partials(run, &mut rows)?;
    }
    report(&rows)
}

/// A daemon on an empty log, with its surroundings.
struct Agent {
    jail: OneJail,
    daemon: Daemon,
}

impl Agent {
    fn start(maxretry: u32) -> Self {
        let jail = OneJail::new("bench-memory", maxretry);
        let daemon = jail.start();
        Self { jail, daemon }
    }

    /// Appends one failure line for each address of `range`.
    fn fail(&self, range: std::ops::Range<u32>) -> anyhow::Result<()> {
        let stamp = agent::now_stamp();
        let lines: String = range
            .map(|i| agent::login_line(&stamp, address(i), 401))
            .collect();
        OpenOptions::new()
            .append(true)
            .open(&self.jail.log)?
            .write_all(lines.as_bytes())
            .context("append to the log")
    }

    /// Waits until `done` holds, or fails after `CAP` with the daemon's log.
    fn until(
        &self,
        what: &str,
        mut done: impl FnMut() -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        while !done()? {
            if started.elapsed() > CAP {
                bail!(
                    "the daemon did not reach {what} in {CAP:?}:\n{}",
                    self.daemon.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn row(&self, state: &'static str, run: usize) -> anyhow::Result<Row> {
        let (_, rss_kib, _) = shared::proc_usage(self.daemon.pid())?;
        Ok(Row {
            state,
            run,
            rss_kib,
            maps_kib: maps_kib(&self.jail.pins.dir)?,
            state_kib: state_kib(&self.jail.dir().join("state")),
            start_ms: None,
        })
    }

    /// Stops the daemon as an upgrade does (bans stay in force) and starts it again;
    /// returns how long the start took until the daemon answered.
    fn restart(self) -> (Self, Duration) {
        agent::cli(&self.jail.socket, &["stop"]);
        self.daemon.wait();
        let started = Instant::now();
        let daemon = self.jail.start();
        let took = started.elapsed();
        (
            Self {
                jail: self.jail,
                daemon,
            },
            took,
        )
    }

    fn stop(self) {
        agent::cli(&self.jail.socket, &["stop", "--detach"]);
        self.daemon.wait();
    }
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Failure windows in the state database, read as `sqlite3` would, beside the daemon.
fn saved_failures(state: &Path) -> anyhow::Result<u64> {
    let db = rusqlite::Connection::open_with_flags(
        state.join("state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let rows: i64 = db.query_row("SELECT COUNT(*) FROM failures", [], |row| row.get(0))?;
    Ok(u64::try_from(rows).unwrap_or(0))
}

/// Bytes of the state database and its write-ahead log, in KiB.
fn state_kib(dir: &Path) -> u64 {
    ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(dir.join(name)).ok())
        .map(|meta| meta.len())
        .sum::<u64>()
        / 1024
}

fn tracked(run: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let agent = Agent::start(5);
    // Let start-up allocations settle.
    std::thread::sleep(Duration::from_secs(1));
    rows.push(agent.row("idle", run)?);
    for (state, from, to) in [
        ("100k tracked addresses", 0, 100_000),
        ("1M tracked addresses", 100_000, 1_000_000),
    ] {
        agent.fail(from..to)?;
        agent.until(state, || Ok(agent.jail.failures_counted() >= u64::from(to)))?;
        // Measured once their windows are in the state database and the next sweep has
        // handed the batches' memory back (a flood's peak on the way is higher).
        agent.until("their failures saved", || {
            Ok(saved_failures(&agent.jail.dir().join("state"))? >= u64::from(to))
        })?;
        std::thread::sleep(Duration::from_millis(2500));
        rows.push(agent.row(state, run)?);
    }
    agent.stop();
    Ok(())
}

/// The row of the partial lines' flood.
const PARTIALS: &str = "1 GB of partial lines in a container's log (peak)";

/// A container's CRI log gets 1 GB of `P` lines (parts of one message that never ends),
/// then a complete failure line; once the jail has counted that failure, the daemon has
/// read the whole flood, and its peak resident memory is the row.
fn partials(run: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const PART: usize = 1000;
    const TOTAL: usize = 1 << 30;
    let agent = Agent::start(5);
    let time = jiff::Timestamp::now().to_string();
    let part = format!("{time} stdout P {}\n", "p".repeat(PART));
    let chunk = part.repeat((64 << 20) / part.len());
    let mut log = OpenOptions::new().append(true).open(&agent.jail.log)?;
    let mut written = 0;
    while written < TOTAL {
        log.write_all(chunk.as_bytes())
            .context("append to the log")?;
        written += chunk.len();
    }
    let line = agent::login_line(&agent::now_stamp(), address(0), 401);
    write!(log, "{time} stdout F end\n{time} stdout F {line}").context("append")?;
    agent.until("the failure after the flood", || {
        Ok(agent.jail.failures_counted() >= 1)
    })?;
    let (_, _, peak_kib) = shared::proc_usage(agent.daemon.pid())?;
    let mut row = agent.row(PARTIALS, run)?;
    row.rss_kib = peak_kib;
    rows.push(row);
    agent.stop();
    Ok(())
}

fn bans(run: usize, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    const BANS: u32 = 1_000_000;
    let agent = Agent::start(1);
    let maps = Maps::open_pinned(&agent.jail.pins.dir)?;
    agent.fail(0..BANS)?;
    let last = IpNet::from(IpAddr::V6(address(BANS - 1)));
    agent.until("1M bans", || Ok(maps.expiry(0, last)?.is_some()))?;
    let count = maps.list()?.len();
    if count != BANS as usize {
        bail!("{count} bans in the map, expected {BANS}");
    }
    rows.push(agent.row("1M bans", run)?);
    drop(maps);
    let (agent, took) = agent.restart();
    let status = agent::cli_json(&agent.jail.socket, &["status", "--json"]);
    let banned = status["currently_banned"].as_u64().unwrap_or(0);
    if banned != u64::from(BANS) {
        bail!("{banned} bans after the restart, expected {BANS}");
    }
    rows.push(Row {
        start_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
        ..agent.row("1M bans after a restart", run)?
    });
    agent::cli(&agent.jail.socket, &["unban", "--all"]);
    let state = agent.jail.dir().join("state");
    agent.stop();
    // What the daemon's minute prune does once the history has aged out of
    // `history_max_age`, done at once.
    let now = wall_ms();
    let mut store = Store::open(&state, now)?;
    let keep = Keep {
        max_age: Duration::ZERO,
        max_entries: 0,
    };
    store.prune(keep, &std::collections::BTreeMap::new(), now)?;
    drop(store);
    rows.push(Row {
        state: "1M bans lifted and history pruned",
        run,
        rss_kib: 0,
        maps_kib: 0,
        state_kib: state_kib(&state),
        start_ms: None,
    });
    Ok(())
}

/// Kernel memory of the maps pinned under `pins` (`bpftool map show`'s memlock).
fn maps_kib(pins: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(pins).with_context(|| format!("read {}", pins.display()))? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let out = Command::new("bpftool")
            .args(["--json", "map", "show", "pinned"])
            .arg(&path)
            .output()
            .context("run bpftool")?;
        // Links are pinned beside the maps; bpftool refuses them.
        if !out.status.success() {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        total += json["bytes_memlock"].as_u64().unwrap_or(0);
    }
    Ok(total / 1024)
}

fn report(rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from("state,run,rss_mb,bpf_maps_mb,state_file_mb,start_ms\n");
    for r in rows {
        let _ = writeln!(
            csv,
            "{},{},{:.1},{:.1},{:.1},{}",
            r.state,
            r.run,
            r.rss_kib as f64 / 1024.0,
            r.maps_kib as f64 / 1024.0,
            r.state_kib as f64 / 1024.0,
            r.start_ms.map(|ms| ms.to_string()).unwrap_or_default()
        );
    }
    let mut table = String::from(
        "| daemon state | resident MB | bytes per address | BPF maps MB (kernel) | state file MB | start s |\n\
         |---|---:|---:|---:|---:|---:|\n",
    );
    let median = |state: &str, f: &dyn Fn(&Row) -> Option<u64>| {
        let values: Vec<f64> = rows
            .iter()
            .filter(|r| r.state == state)
            .filter_map(|r| f(r).map(|v| v as f64))
            .collect();
        (!values.is_empty()).then(|| shared::median(values))
    };
    let idle = median("idle", &|r| Some(r.rss_kib)).unwrap_or(0.0);
    let live = |r: &Row| (r.rss_kib > 0).then_some(r.rss_kib);
    for (state, addresses) in [
        ("idle", 0.0),
        ("100k tracked addresses", 1e5),
        ("1M tracked addresses", 1e6),
        ("1M bans", 1e6),
        ("1M bans after a restart", 1e6),
        ("1M bans lifted and history pruned", 0.0),
        (PARTIALS, 0.0),
    ] {
        let rss = median(state, &live);
        let per = match rss {
            Some(rss) if addresses > 0.0 => format!("{:.0}", (rss - idle) * 1024.0 / addresses),
            _ => String::from("—"),
        };
        let mb =
            |v: Option<f64>| v.map_or_else(|| String::from("—"), |v| format!("{:.0}", v / 1024.0));
        let state_mb = median(state, &|r| (r.state_kib > 0).then_some(r.state_kib));
        let start = median(state, &|r| r.start_ms)
            .map_or_else(|| String::from("—"), |ms| format!("{:.2}", ms / 1000.0));
        let _ = writeln!(
            table,
            "| {state} | {} | {per} | {} | {} | {start} |",
            mb(rss),
            mb(median(state, &|r| (r.rss_kib > 0).then_some(r.maps_kib))),
            mb(state_mb),
        );
    }
    shared::publish("memory", &csv, &table)
}
