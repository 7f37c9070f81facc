//! `cargo xtask bench detect`: lines per second and peak memory of the whole detection
//! pipeline (read the file, match, count, decide), single thread, on a generated 1M-line
//! FastAPI auth log (15% failures, 2% IPv6 clients, 300k clients). Each measurement runs
//! in a fresh process so that its peak memory is its own. fail2ban-regex, when xtask
//! provides it (`BAN_AGENT_FAIL2BAN_REGEX`), runs on the same file in the same run and the
//! ratios are taken against it. Also checks that `ban-agent test-filter` reports exactly
//! the failures the generator wrote. Writes `docs/benchmarks/detect.csv` and a table.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use ban_agent::{
    config::Start,
    detect,
    sample::{SampleSpec, write_log},
    tail::{DEFAULT_MAX_LINE, Follower},
    tracker::Rules,
};
use jiff::{Timestamp, tz::TimeZone};
// The `Lines:` row reader the test-filter tests use.
#[path = "../tests/common/report.rs"]
mod report;

/// Set in the child processes: the log to run the pipeline over.
const CHILD_ENV: &str = "BAN_AGENT_DETECT_CHILD";
const RUNS: usize = 5;

/// The fail2ban filter equivalent to the shipped one, as the example app ships it.
const FAIL2BAN_FILTER: &str =
    include_str!("../../examples/fastapi-auth/fail2ban/filter.d/fastapi-auth.conf");

struct Measured {
    tool: String,
    lines: u64,
    failures: u64,
    seconds: f64,
    peak_kib: u64,
}

fn main() -> anyhow::Result<()> {
    if let Some(log) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&log));
    }
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list`: nothing to list.
    }
    let dir = tempfile::tempdir().context("temp dir")?;
    let log = dir.path().join("auth.log");
    let spec = SampleSpec::benchmark(Timestamp::now().as_millisecond());
    let file = std::fs::File::create(&log).context("create log")?;
    let summary = write_log(
        &spec,
        &TimeZone::system(),
        &mut std::io::BufWriter::new(file),
    )?;
    eprintln!(
        "detect: {} lines ({} MB), {} failures, {} IPv6 lines",
        summary.lines,
        summary.bytes / 1_000_000,
        summary.failures,
        summary.ipv6_lines
    );

    check_test_filter(&log, summary.failures)?;
    let mut ours = Vec::new();
    for _ in 0..RUNS {
        let run = ban_agent_run(&log)?;
        if run.failures != summary.failures {
            bail!(
                "the pipeline found {} failures, the generator wrote {}",
                run.failures,
                summary.failures
            );
        }
        ours.push(run);
    }
    ours.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let peak = ours.iter().map(|m| m.peak_kib).max().unwrap_or(0);
    let mut median = ours.swap_remove(RUNS / 2);
    median.peak_kib = peak;
    let peer = match std::env::var_os("BAN_AGENT_FAIL2BAN_REGEX") {
        Some(script) => Some(fail2ban_run(Path::new(&script), &log, dir.path())?),
        None => {
            eprintln!("detect: BAN_AGENT_FAIL2BAN_REGEX unset: no fail2ban-regex comparison");
            None
        }
    };
    write_report(&median, peer.as_ref())
}

/// The pipeline, in this (child) process; prints what it found and its own peak memory.
fn child(log: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut follower = Follower::new(log.to_owned(), Start::Head, DEFAULT_MAX_LINE, None);
    let mut detector = detect::fastapi(Rules::default(), TimeZone::system());
    let now = Timestamp::now().as_millisecond();
    follower.poll(&mut |line| {
        detector.line(line, now);
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let stats = detector.stats();
    println!(
        "{} {} {} {seconds} {}",
        stats.lines,
        stats.failures(),
        stats.bans,
        peak_kib_self()
    );
    Ok(())
}

fn ban_agent_run(log: &Path) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("own path")?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, log);
    let (stdout, _, _) = measured(&mut cmd)?;
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("child output {stdout:?}"))
    };
    Ok(Measured {
        tool: "ban-agent".to_owned(),
        lines: field(0)? as u64,
        failures: field(1)? as u64,
        seconds: field(3)?,
        peak_kib: field(4)? as u64,
    })
}

fn fail2ban_run(script: &Path, log: &Path, dir: &Path) -> anyhow::Result<Measured> {
    let filter = dir.join("fastapi-auth.conf");
    std::fs::write(&filter, FAIL2BAN_FILTER).context("write fail2ban filter")?;
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("--print-no-missed")
        .arg(log)
        .arg(&filter);
    if let Some(path) = std::env::var_os("BAN_AGENT_FAIL2BAN_PYTHONPATH") {
        cmd.env("PYTHONPATH", path);
    }
    eprintln!("detect: running fail2ban-regex (about 10 s)");
    let (stdout, seconds, peak_kib) = measured(&mut cmd)?;
    // "Lines: 1000000 lines, 0 ignored, 150000 matched, 850000 missed"
    let [lines, _ignored, matched, _missed] = report::lines_row(&stdout)
        .with_context(|| format!("no Lines row in fail2ban-regex output:\n{stdout}"))?;
    Ok(Measured {
        tool: "fail2ban-regex 1.0.2".to_owned(),
        lines,
        failures: matched,
        seconds,
        peak_kib,
    })
}

/// Runs a command to its end; its stdout, wall seconds and peak resident memory (KiB,
/// from wait4's rusage, which std's `Child` does not expose).
fn measured(cmd: &mut Command) -> anyhow::Result<(String, f64, u64)> {
    let start = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stdout).context("read child output")?;
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
    Ok((stdout, seconds, u64::try_from(usage.ru_maxrss).unwrap_or(0)))
}

fn peak_kib_self() -> u64 {
    // SAFETY: an all-zero rusage is valid and getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// `ban-agent test-filter` on the benchmark log must report every failure written.
fn check_test_filter(log: &Path, failures: u64) -> anyhow::Result<()> {
    let output = Command::new(env!("CARGO_BIN_EXE_ban-agent"))
        .arg("test-filter")
        .arg(log)
        .args(["--filter", "fastapi-auth"])
        .output()
        .context("run ban-agent test-filter")?;
    let report = String::from_utf8_lossy(&output.stdout);
    let matched = report::lines_row(&report).map(|[_read, matched, ..]| matched);
    if matched != Some(failures) {
        bail!("test-filter reported {matched:?} matched; the generator wrote {failures} failures");
    }
    eprintln!("detect: test-filter reports {failures} matched, as written");
    Ok(())
}

fn write_report(ours: &Measured, peer: Option<&Measured>) -> anyhow::Result<()> {
    let rate = |m: &Measured| m.lines as f64 / m.seconds;
    let mut csv = String::from(
        "tool,lines,failures_found,seconds,lines_per_second,peak_mb,speed_vs_fail2ban,memory_vs_fail2ban\n",
    );
    let mut table = String::from(
        "| tool | lines/s | peak MB | failures found | speed vs. fail2ban | memory vs. fail2ban |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for m in std::iter::once(ours).chain(peer) {
        let (speed, memory) = match peer {
            Some(p) => (
                format!("{:.1}", rate(m) / rate(p)),
                format!("{:.2}", m.peak_kib as f64 / p.peak_kib.max(1) as f64),
            ),
            None => (String::new(), String::new()),
        };
        let _ = writeln!(
            csv,
            "{},{},{},{:.3},{:.0},{:.1},{speed},{memory}",
            m.tool,
            m.lines,
            m.failures,
            m.seconds,
            rate(m),
            m.peak_kib as f64 / 1024.0
        );
        let _ = writeln!(
            table,
            "| {} | {:.2}M | {:.0} | {} | {speed} | {memory} |",
            m.tool,
            rate(m) / 1e6,
            m.peak_kib as f64 / 1024.0,
            m.failures
        );
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks");
    std::fs::create_dir_all(&dir).context("create docs/benchmarks")?;
    let path = dir.join("detect.csv");
    std::fs::write(&path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    println!("{table}");
    println!("wrote {}", path.display());
    Ok(())
}
