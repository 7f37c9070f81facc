//! `cargo xtask bench throughput`: log throughput on two generated 1M-line FastAPI auth
//! logs: a busy site's (15% failures, 2% IPv6 clients, 300k clients coming back) and a
//! botnet's attack (a different IPv4 address on every line, 70% failures, the rest
//! `/items` and `/health`). Each file goes through:
//!
//! - the detection pipeline alone (read, match, count, decide), one thread, in a child
//!   process of its own so that its peak memory is its own;
//! - `ban-agent test-filter`, as an operator runs it; and on the site's log as Docker's
//!   json-file driver wraps it (the same messages), for the cost of unwrapping;
//! - the running daemon (root only: it loads the XDP maps): the file is renamed onto the
//!   log it follows, as a rotation does, and the time runs until the jail has counted
//!   every failure of it (the last failure is within the file's last few lines);
//! - fail2ban-regex with the equivalent filter, when xtask provides it
//!   (`BAN_AGENT_FAIL2BAN_REGEX`); the ratios are taken against it.
//!
//! Lines per second, CPU seconds and peak resident memory of each, median of `RUNS`
//! interleaved runs (peak: the highest). This process stays small: a child started with
//! vfork, as std starts them, inherits its parent's peak in wait4's figure. Every tool must find exactly the failures the
//! generator wrote, or the benchmark fails. Writes `docs/benchmarks/throughput.csv`,
//! `throughput.md` and a table.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{
    detect,
    sample::{SampleSpec, SampleSummary},
    tail::Start,
    tail::{DEFAULT_MAX_LINE, Follower},
    tracker::Rules,
};
use jiff::{Timestamp, tz::TimeZone};
// The privileged tests' helpers (the daemon as a process, a pin directory of its own) and
// the `Lines:` row reader the test-filter tests use.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::agent::{AGENT, OneJail};
use shared::Measured;

/// Set in the child processes: the log to run the pipeline over.
const CHILD_ENV: &str = "BAN_AGENT_DETECT_CHILD";
const RUNS: usize = 3;
/// Per run, the pairs of test-filter on the site's log, plain then wrapped.
const UNWRAP_PAIRS: usize = 5;
const PIPELINE: &str = "ban-agent pipeline (one thread)";
const TEST_FILTER: &str = "ban-agent test-filter";
const TEST_FILTER_DOCKER: &str = "ban-agent test-filter on a Docker json-file log";
/// `test-filter` with fail2ban's filter, the one fail2ban-regex runs: what a user who
/// keeps their `.conf` gets.
const TEST_FILTER_CONF: &str = "ban-agent test-filter with the fail2ban filter (.conf)";
const DAEMON: &str = "ban-agent daemon";
const FAIL2BAN: &str = "fail2ban-regex 1.0.2";
/// `cargo xtask bench` installs this version; the benchmark checks it.
const FAIL2BAN_RS: &str = "fail2ban-rs 1.5.4 dry-run";
/// The daemon gets this long to read the file.
const DAEMON_CAP: Duration = Duration::from_secs(60);

/// The fail2ban filter equivalent to the shipped one, as the example app ships it.
const FAIL2BAN_FILTER: &str =
    include_str!("../../examples/fastapi-auth/fail2ban/filter.d/fastapi-auth.conf");

/// The generator's description of a log ending at a time.
type Spec = fn(i64) -> SampleSpec;

/// The logs measured: a name, and the generator's description of it.
const LOGS: [(&str, Spec); 2] = [
    ("site: 300k clients", SampleSpec::benchmark),
    ("botnet: 1M addresses", SampleSpec::botnet),
];

fn main() -> anyhow::Result<()> {
    if let Some(log) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&log));
    }
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list`: nothing to list.
    }
    let dir = tempfile::tempdir().context("temp dir")?;
    let logs = generate(dir.path())?;
    // The site's log as a container's: the same messages in Docker's json-file wrapper.
    let docker = dir.path().join("auth-0-json.log");
    wrap_as_docker(&logs[0].1, logs[0].2.lines, &docker)?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("throughput: not root: the daemon (which loads BPF maps) is not measured");
    }
    let fail2ban = std::env::var_os("BAN_AGENT_FAIL2BAN_REGEX");
    if fail2ban.is_none() {
        eprintln!("throughput: BAN_AGENT_FAIL2BAN_REGEX unset: no fail2ban-regex comparison");
    }
    let fail2ban_rs = std::env::var_os("BAN_AGENT_FAIL2BAN_RS");
    match &fail2ban_rs {
        Some(binary) => check_fail2ban_rs(Path::new(binary))?,
        None => eprintln!("throughput: BAN_AGENT_FAIL2BAN_RS unset: no fail2ban-rs comparison"),
    }
    let mut runs = Vec::new();
    let mut splits = Vec::new();
    for run in 1..=RUNS {
        for (name, log, summary) in &logs {
            eprintln!("throughput: run {run}/{RUNS}: {name}");
            splits.push((*name, line_split_rate(log)?));
            let mut measured = vec![pipeline(log, run)?];
            if *name == LOGS[0].0 {
                // The cost of unwrapping is a difference of a few tenths of a second:
                // plain and wrapped, back to back, several times.
                for _ in 0..UNWRAP_PAIRS {
                    measured.push(test_filter(log, TEST_FILTER, run)?);
                    measured.push(test_filter(&docker, TEST_FILTER_DOCKER, run)?);
                }
            } else {
                measured.push(test_filter(log, TEST_FILTER, run)?);
            }
            measured.push(test_filter_conf(log, dir.path(), run)?);
            if root {
                measured.push(daemon(log, summary.lines, summary.failures, run)?);
            }
            if let Some(script) = &fail2ban {
                eprintln!("throughput: fail2ban-regex (about 15 s)");
                measured.push(fail2ban_regex(Path::new(script), log, dir.path(), run)?);
            }
            if let Some(binary) = &fail2ban_rs {
                measured.push(fail2ban_rs_dry_run(
                    Path::new(binary),
                    log,
                    dir.path(),
                    run,
                )?);
            }
            for mut m in measured {
                if m.failures != summary.failures {
                    bail!(
                        "{} found {} failures in the {name} log, the generator wrote {}",
                        m.tool,
                        m.failures,
                        summary.failures
                    );
                }
                m.group = name;
                runs.push(m);
            }
        }
    }
    report(&runs, &splits)
}

/// Lines per second of memchr splitting `log` into lines (read in 1 MiB blocks, its
/// newlines counted), in this process: the limit a line-by-line reader of the same file
/// is measured against.
fn line_split_rate(log: &Path) -> anyhow::Result<f64> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(log).context("open the log")?;
    let mut block = vec![0_u8; 1 << 20];
    let start = Instant::now();
    let mut lines = 0;
    loop {
        let read = file.read(&mut block).context("read the log")?;
        if read == 0 {
            break;
        }
        lines += memchr::memchr_iter(b'\n', &block[..read]).count();
    }
    Ok(lines as f64 / start.elapsed().as_secs_f64())
}

/// The logs of [`LOGS`], generated into `dir`: each one's name, path and summary.
fn generate(dir: &Path) -> anyhow::Result<Vec<(&'static str, PathBuf, SampleSummary)>> {
    let mut logs = Vec::new();
    for (index, (name, spec)) in LOGS.into_iter().enumerate() {
        let log = dir.join(format!("auth-{index}.log"));
        let spec = spec(Timestamp::now().as_millisecond());
        let summary = shared::write_sample(&spec, &log)?;
        eprintln!(
            "throughput: {name}: {} lines ({} MB), {} failures, {} IPv6 lines",
            summary.lines,
            summary.bytes / 1_000_000,
            summary.failures,
            summary.ipv6_lines
        );
        logs.push((name, log, summary));
    }
    Ok(logs)
}

/// The pipeline, in this (child) process; prints what it found and its own usage.
fn child(log: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut follower = Follower::new(log.to_owned(), Start::Head, DEFAULT_MAX_LINE, None);
    let mut detector = detect::fastapi(Rules::default(), TimeZone::system());
    let now = Timestamp::now().as_millisecond();
    // A poll reads at most its budget: poll on to the end, as the daemon does.
    loop {
        follower.poll(&mut |line| {
            detector.line(line, now);
        })?;
        if !follower.more() {
            break;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let stats = detector.stats();
    let (cpu, peak) = shared::self_usage();
    println!(
        "{} {} {seconds} {cpu} {peak}",
        stats.lines,
        stats.failures()
    );
    Ok(())
}

fn pipeline(log: &Path, run: usize) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("own path")?;
    let out = shared::measured(Command::new(exe).env(CHILD_ENV, log))?.stdout;
    let fields: Vec<f64> = out
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let [lines, failures, seconds, cpu_seconds, peak] = fields[..] else {
        bail!("unexpected child output {out:?}");
    };
    Ok(Measured {
        group: "",
        tool: PIPELINE,
        run,
        lines: lines as u64,
        failures: failures as u64,
        seconds,
        cpu_seconds,
        peak_kib: peak as u64,
    })
}

/// Writes each line of `plain` into `wrapped` as Docker's json-file driver writes a
/// container's output: each line with its own time in nanoseconds, 1 ms after the last
/// (the generator's spacing), ending now.
fn wrap_as_docker(plain: &Path, lines: u64, wrapped: &Path) -> anyhow::Result<()> {
    use std::io::{BufRead as _, Write as _};
    let input = std::io::BufReader::new(std::fs::File::open(plain).context("open the log")?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(wrapped).context("create")?);
    let start = Timestamp::now().as_nanosecond() - i128::from(lines) * 1_000_000;
    for (n, line) in input.lines().enumerate() {
        let line = line.context("read the log")?;
        // A few nanoseconds of jitter, as a real write has: no two times alike.
        let n = n as i128;
        let time = Timestamp::from_nanosecond(start + n * 1_000_000 + n * 7_919 % 1_000_000)
            .context("a time")?;
        let entry = serde_json::json!({"log": format!("{line}\n"), "stream": "stdout", "time": time.to_string()});
        writeln!(out, "{entry}").context("write the wrapped log")?;
    }
    out.flush().context("write the wrapped log")?;
    Ok(())
}

fn test_filter(log: &Path, tool: &'static str, run: usize) -> anyhow::Result<Measured> {
    let measured = shared::measured(
        Command::new(AGENT)
            .arg("test-filter")
            .arg(log)
            .args(["--filter", "fastapi-auth"]),
    )?;
    let (lines, matched) = common::report::read_and_matched("test-filter", &measured.stdout)?;
    Ok(Measured::of("", tool, run, (lines, matched), &measured))
}

fn test_filter_conf(log: &Path, dir: &Path, run: usize) -> anyhow::Result<Measured> {
    let filter = fail2ban_filter(dir)?;
    let measured = shared::measured(
        Command::new(AGENT)
            .arg("test-filter")
            .arg(log)
            .arg("--filter")
            .arg(&filter),
    )?;
    let found = common::report::read_and_matched("test-filter", &measured.stdout)?;
    Ok(Measured::of("", TEST_FILTER_CONF, run, found, &measured))
}

/// [`FAIL2BAN_FILTER`], written into `dir`.
fn fail2ban_filter(dir: &Path) -> anyhow::Result<PathBuf> {
    let filter = dir.join("fastapi-auth.conf");
    std::fs::write(&filter, FAIL2BAN_FILTER).context("write fail2ban filter")?;
    Ok(filter)
}

/// The release daemon follows an empty log; the generated file (`lines` long) is renamed
/// onto it, and the time runs until the jail has counted `failures`.
fn daemon(generated: &Path, lines: u64, failures: u64, run: usize) -> anyhow::Result<Measured> {
    let agent = OneJail::new("bench-throughput", 5);
    let daemon = agent.start();
    let (cpu_before, _, _) = shared::proc_usage(daemon.pid())?;
    // The daemon reads the file in place; the generated one is kept for the next tool
    // (both directories are temporary ones, on the same file system).
    let copy = agent.dir().join("next.log");
    std::fs::hard_link(generated, &copy)?;
    let started = Instant::now();
    std::fs::rename(&copy, &agent.log)?;
    let mut done = 0;
    while done < failures && started.elapsed() < DAEMON_CAP {
        std::thread::sleep(Duration::from_millis(2));
        done = agent.failures_counted();
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_after, _, peak_kib) = shared::proc_usage(daemon.pid())?;
    if done < failures {
        bail!(
            "the daemon counted {done} of {failures} failures in {DAEMON_CAP:?}:\n{}",
            daemon.log()
        );
    }
    common::agent::cli(&agent.socket, &["stop", "--detach"]);
    daemon.wait();
    Ok(Measured {
        group: "",
        tool: DAEMON,
        run,
        lines,
        failures: done,
        seconds,
        cpu_seconds: cpu_after - cpu_before,
        peak_kib,
    })
}

fn fail2ban_regex(script: &Path, log: &Path, dir: &Path, run: usize) -> anyhow::Result<Measured> {
    let filter = fail2ban_filter(dir)?;
    let measured = shared::measured(&mut common::report::fail2ban_regex(script, log, &filter))?;
    let found = common::report::read_and_matched("fail2ban-regex", &measured.stdout)?;
    Ok(Measured::of("", FAIL2BAN, run, found, &measured))
}

/// fail2ban-rs's jail equivalent to the shipped filter, in its configuration's terms: its
/// patterns are matched against the whole line (it does not cut the date off first, so
/// the pattern starts with the date's two words), and it reads the date with its
/// `iso8601` parser. The state and socket paths are the run's own; `dry-run` bans
/// nothing and opens neither.
const FAIL2BAN_RS_CONFIG: &str = r#"[global]
state_file = "DIR/fail2ban-rs.state"
socket_path = "DIR/fail2ban-rs.sock"

[jail.fastapi-auth]
enabled = true
log_path = "LOG"
date_format = "iso8601"
filter = ['^\S+ \S+ - fastapi-auth - [A-Z]+ - <HOST> - "[A-Z]+ (?:/login" 401|/register" 400) - \d+\.\d+s$']
port = ["8000"]
max_retry = 5
find_time = "10m"
ban_time = "1h"
"#;

/// The binary `cargo xtask bench` installed is the version this benchmark names.
fn check_fail2ban_rs(binary: &Path) -> anyhow::Result<()> {
    let out = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {} --version", binary.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    let expected = FAIL2BAN_RS.trim_end_matches(" dry-run");
    if version.trim() != expected {
        bail!(
            "{} --version says {:?}, the benchmark measures {expected}: change FAIL2BAN_RS_VERSION \
             in xtask/src/bench.rs and FAIL2BAN_RS here together",
            binary.display(),
            version.trim()
        );
    }
    Ok(())
}

/// `fail2ban-rs dry-run LOG`, as a user tries a jail on a log; its summary gives the
/// lines read and the failures matched.
fn fail2ban_rs_dry_run(
    binary: &Path,
    log: &Path,
    dir: &Path,
    run: usize,
) -> anyhow::Result<Measured> {
    let config = dir.join("fail2ban-rs.toml");
    let text = FAIL2BAN_RS_CONFIG
        .replace("DIR", &dir.to_string_lossy())
        .replace("LOG", &log.to_string_lossy());
    std::fs::write(&config, text).context("write fail2ban-rs's configuration")?;
    // It prints every address after its summary (700k on the botnet log): the summary is
    // in the first lines.
    let measured = shared::measured_keeping(
        Command::new(binary)
            .arg("--config")
            .arg(&config)
            .arg("dry-run")
            .arg(log)
            .args(["--jail", "fastapi-auth"]),
        30,
    )?;
    // "  Lines:    1000000" and, in the jail's summary, "  Matches:    150204".
    let field = |name: &str| {
        measured
            .stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(name)?.trim().parse::<u64>().ok())
            .with_context(|| {
                format!(
                    "no {name} line in fail2ban-rs's dry run:\n{}",
                    measured
                        .stdout
                        .lines()
                        .take(20)
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            })
    };
    let (lines, matches) = (field("Lines:")?, field("Matches:")?);
    Ok(Measured::of(
        "",
        FAIL2BAN_RS,
        run,
        (lines, matches),
        &measured,
    ))
}

/// `splits`: the memchr line split's lines per second, per log and run.
fn report(runs: &[Measured], splits: &[(&str, f64)]) -> anyhow::Result<()> {
    let csv = shared::runs_csv("log", runs);
    let mut table = shared::runs_table(
        "log",
        &LOGS.map(|(log, _)| log),
        &[
            PIPELINE,
            TEST_FILTER,
            TEST_FILTER_DOCKER,
            TEST_FILTER_CONF,
            DAEMON,
            FAIL2BAN_RS,
            FAIL2BAN,
        ],
        FAIL2BAN,
        runs,
    );
    notes(runs, splits, &mut table);
    shared::publish("throughput", &csv, &table)
}

/// The lines under the table: the cost of unwrapping, the ratios to fail2ban-rs, and the
/// pipeline against the memchr line split.
fn notes(runs: &[Measured], splits: &[(&str, f64)], table: &mut String) {
    let rate = |tool, log| shared::median_rate(runs, tool, log);
    let site = LOGS[0].0;
    let (plain, wrapped) = (rate(TEST_FILTER, site), rate(TEST_FILTER_DOCKER, site));
    // Each pair's cost (the two ran back to back, on the same machine's mood), then their
    // median.
    let seconds = |tool: &'static str| {
        runs.iter()
            .filter(move |m| m.tool == tool && m.group == site)
            .map(|m| m.seconds)
    };
    let costs: Vec<f64> = seconds(TEST_FILTER)
        .zip(seconds(TEST_FILTER_DOCKER))
        .map(|(plain, wrapped)| (1.0 - plain / wrapped) * 100.0)
        .collect();
    let (low, high) = costs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &c| {
            (low.min(c), high.max(c))
        });
    let pairs = costs.len();
    // The machine's noise only ever adds time: the fastest run of each is the other view.
    let fastest = |tool| seconds(tool).fold(f64::INFINITY, f64::min);
    let between_fastest = (1.0 - fastest(TEST_FILTER) / fastest(TEST_FILTER_DOCKER)) * 100.0;
    let _ = writeln!(
        table,
        "\nUnwrapping Docker's json-file wrapper costs {:.0}% of test-filter's lines per second \
         on the same messages: the median of {pairs} back-to-back pairs (from {low:.0}% to \
         {high:.0}%), {between_fastest:.0}% between the fastest run of each (medians {:.2}M/s \
         plain, {:.2}M/s wrapped; target: at most 15%).",
        shared::median(costs),
        plain / 1e6,
        wrapped / 1e6
    );
    if runs.iter().any(|m| m.tool == FAIL2BAN_RS) {
        for (log, _) in LOGS {
            let peer = rate(FAIL2BAN_RS, log);
            let daemon = rate(DAEMON, log);
            let daemon = if daemon.is_nan() {
                String::from("not measured (not root)")
            } else {
                format!("{:.2}", daemon / peer)
            };
            let _ = writeln!(
                table,
                "\nAgainst fail2ban-rs's dry run on the {log} log ({:.2}M lines/s): test-filter \
                 {:.2} times its lines per second, the daemon {daemon} (target, issue 31: at \
                 least 2).",
                peer / 1e6,
                rate(TEST_FILTER, log) / peer,
            );
        }
    }
    for (log, _) in LOGS {
        let split = shared::median(
            splits
                .iter()
                .filter(|(of, _)| *of == log)
                .map(|(_, rate)| *rate)
                .collect(),
        );
        let pipeline = rate(PIPELINE, log);
        let _ = writeln!(
            table,
            "\nThe one-thread pipeline on the {log} log: {:.2}M lines/s, {:.0}% of the rate at \
             which memchr splits the same file into lines here ({:.1}M lines/s, the limit; \
             target, issue 31: at least 5M lines/s on the site's log).",
            pipeline / 1e6,
            pipeline / split * 100.0,
            split / 1e6
        );
    }
}
