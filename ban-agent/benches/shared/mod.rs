//! What every benchmark of this folder needs: medians, child processes measured for time,
//! CPU and peak memory, and publishing a result as raw CSV and a Markdown table under
//! `docs/benchmarks/`, which `cargo xtask bench` assembles into `docs/BENCHMARKS.md`.
#![allow(dead_code, reason = "each benchmark uses a part of the helpers")]

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use ban_agent::datapath::{Datapath, DatapathOptions, JailPorts, Protocol};

/// Fails with "the NAME benchmark WHY: run it as root" unless this process is root.
pub fn require_root(name: &str, why: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the {name} benchmark {why}: run it as root");
    }
    Ok(())
}

/// Loads the XDP program with its maps pinned in `pin_dir`, one jail (0) protecting TCP
/// `port`, attached nowhere yet.
pub fn one_jail_datapath(pin_dir: PathBuf, port: u16) -> anyhow::Result<Datapath> {
    let mut datapath = Datapath::open(DatapathOptions {
        pin_dir,
        ..DatapathOptions::default()
    })?;
    datapath.maps().set_jails(&[JailPorts {
        jail: 0,
        ports: Some(vec![port]),
        protocol: Protocol::Tcp,
    }])?;
    Ok(datapath)
}

/// The median of `values` (the upper one of an even count); NaN when empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Writes `docs/benchmarks/NAME.csv` (raw, every run) and `docs/benchmarks/NAME.md` (the
/// table the document shows), and prints the table.
pub fn publish(name: &str, csv: &str, table: &str) -> anyhow::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (ext, text) in [("csv", csv), ("md", table)] {
        let path = dir.join(format!("{name}.{ext}"));
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("{table}\nwrote docs/benchmarks/{name}.csv and {name}.md");
    Ok(())
}

/// How a child process ran to its end.
pub struct Run {
    pub stdout: String,
    /// Wall-clock seconds from spawn to exit.
    pub seconds: f64,
    /// User plus system CPU seconds of the child (and of its own children).
    pub cpu_seconds: f64,
    /// Peak resident memory, KiB.
    pub peak_kib: u64,
}

/// Runs `cmd` to its end, failing when it fails; its stdout, wall and CPU seconds and peak
/// resident memory, from wait4's rusage (which std's `Child` does not expose).
pub fn measured(cmd: &mut Command) -> anyhow::Result<Run> {
    measured_keeping(cmd, usize::MAX)
}

/// [`measured`], keeping only the first `lines` lines of stdout (the rest is read and
/// dropped): a peer that prints a line per address must not grow this process, whose
/// resident memory a child forked later would start with (Linux carries the peak over
/// `exec`).
pub fn measured_keeping(cmd: &mut Command, lines: usize) -> anyhow::Result<Run> {
    use std::io::BufRead as _;
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut stdout = String::new();
    if let Some(pipe) = child.stdout.take() {
        let mut pipe = std::io::BufReader::new(pipe);
        let mut line = String::new();
        let mut kept = 0;
        while pipe.read_line(&mut line).context("read child output")? > 0 {
            if kept < lines {
                stdout.push_str(&line);
                kept += 1;
            }
            line.clear();
        }
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = i32::try_from(child.id()).context("pid")?;
    // SAFETY: `pid` is our child, not yet waited for; the pointers are valid.
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4 {cmd:?}: {}", std::io::Error::last_os_error());
    }
    let seconds = start.elapsed().as_secs_f64();
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (status {status})");
    }
    Ok(Run {
        stdout,
        seconds,
        cpu_seconds: timeval_seconds(usage.ru_utime) + timeval_seconds(usage.ru_stime),
        peak_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
    })
}

/// This process's CPU seconds so far and its peak resident memory (KiB).
pub fn self_usage() -> (f64, u64) {
    // SAFETY: an all-zero rusage is valid and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (
        timeval_seconds(usage.ru_utime) + timeval_seconds(usage.ru_stime),
        u64::try_from(usage.ru_maxrss).unwrap_or(0),
    )
}

fn timeval_seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// A process's CPU seconds (user + system) and current and peak resident memory (KiB),
/// from `/proc/PID/stat` and `/proc/PID/status`.
pub fn proc_usage(pid: u32) -> anyhow::Result<(f64, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // Fields after the command (which may hold spaces) in parentheses; utime and stime
    // are the 14th and 15th fields of the line, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        bail!("unexpected /proc/{pid}/stat: {stat}");
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(((utime + stime) / hz, kib("VmRSS:"), kib("VmHWM:")))
}

/// One run of one tool over one input (a log, a filter's log): what the throughput
/// benchmarks measure and tabulate.
pub struct Measured {
    /// The input: the table's first column.
    pub group: &'static str,
    pub tool: &'static str,
    pub run: usize,
    pub lines: u64,
    pub failures: u64,
    pub seconds: f64,
    pub cpu_seconds: f64,
    pub peak_kib: u64,
}

impl Measured {
    /// A tool's process, which found `failures` in `lines` of `group`, as it ran.
    pub fn of(
        group: &'static str,
        tool: &'static str,
        run: usize,
        (lines, failures): (u64, u64),
        process: &Run,
    ) -> Self {
        Self {
            group,
            tool,
            run,
            lines,
            failures,
            seconds: process.seconds,
            cpu_seconds: process.cpu_seconds,
            peak_kib: process.peak_kib,
        }
    }
}

/// Every run as CSV, its first column named `group_column`.
pub fn runs_csv(group_column: &str, runs: &[Measured]) -> String {
    use std::fmt::Write as _;
    let mut csv =
        format!("{group_column},tool,run,lines,failures_found,seconds,cpu_seconds,peak_mb\n");
    for m in runs {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{:.3},{:.3},{:.1}",
            m.group,
            m.tool,
            m.run,
            m.lines,
            m.failures,
            m.seconds,
            m.cpu_seconds,
            m.peak_kib as f64 / 1024.0
        );
    }
    csv
}

/// The median lines per second of `tool` on `group`.
pub fn median_rate(runs: &[Measured], tool: &str, group: &str) -> f64 {
    median(
        runs.iter()
            .filter(|m| m.tool == tool && m.group == group)
            .map(|m| m.lines as f64 / m.seconds)
            .collect(),
    )
}

/// Per group, a row for each of `tools` measured on it: median lines per second and CPU
/// seconds, highest peak memory, failures found, and each as a ratio to `peer`'s.
pub fn runs_table(
    group_column: &str,
    groups: &[&str],
    tools: &[&str],
    peer: &str,
    runs: &[Measured],
) -> String {
    use std::fmt::Write as _;
    let mut table = format!(
        "| {group_column} | tool | lines/s | CPU s | peak MB | failures found | speed vs. {peer} | CPU vs. {peer} | memory vs. {peer} |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        peer = peer.split(' ').next().unwrap_or(peer),
    );
    for &group in groups {
        // Per tool: median lines/s, median CPU seconds, highest peak MB, failures.
        let summary = |tool: &str| -> Option<(f64, f64, f64, u64)> {
            let of: Vec<&Measured> = runs
                .iter()
                .filter(|m| m.tool == tool && m.group == group)
                .collect();
            let first = of.first()?;
            Some((
                median_rate(runs, tool, group),
                median(of.iter().map(|m| m.cpu_seconds).collect()),
                of.iter().map(|m| m.peak_kib).max().unwrap_or(0) as f64 / 1024.0,
                first.failures,
            ))
        };
        let of_peer = summary(peer);
        for &tool in tools {
            let Some((rate, cpu, peak, failures)) = summary(tool) else {
                continue;
            };
            let ratios = of_peer.map_or_else(
                || String::from(" | | "),
                |(p_rate, p_cpu, p_peak, _)| {
                    format!(
                        "{:.1} | {:.3} | {:.2}",
                        rate / p_rate,
                        cpu / p_cpu,
                        peak / p_peak
                    )
                },
            );
            let _ = writeln!(
                table,
                "| {group} | {tool} | {:.2}M | {cpu:.2} | {peak:.0} | {failures} | {ratios} |",
                rate / 1e6
            );
        }
    }
    table
}

/// Writes the generated log `spec` describes to `path`, times in this machine's zone.
pub fn write_sample(
    spec: &ban_agent::sample::SampleSpec,
    path: &std::path::Path,
) -> anyhow::Result<ban_agent::sample::SampleSummary> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let summary = ban_agent::sample::write_log(
        spec,
        &jiff::tz::TimeZone::system(),
        &mut std::io::BufWriter::new(file),
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(summary)
}

/// A small deterministic generator: the same seed, the same run (a benchmark's moments, a
/// chaos run's load and schedule).
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> std::time::Duration {
        std::time::Duration::from_millis(from + self.below(to - from))
    }
}
