//! `cargo xtask bench filters`: every built-in filter on a generated 1M-line log of its
//! format (uvicorn, gunicorn, nginx, Caddy, Traefik; the seed's own FastAPI log is
//! `throughput`'s), through `ban-agent test-filter --filter NAME` as an operator tries it,
//! and through `fail2ban-regex` with the equivalent fail2ban filter (below), when xtask
//! provides it (`BAN_AGENT_FAIL2BAN_REGEX`).
//!
//! Each log is the site's mix of `throughput` (15% failures, 2% IPv6 clients, 300k
//! clients coming back) in the format's own lines. Lines per second, CPU seconds and peak
//! resident memory of each tool: test-filter's median of `RUNS` runs, fail2ban-regex's
//! one run in the first round (10 to 30 s a log, where test-filter takes under 1 s; its
//! runs vary by a few percent, far less than the ratio's margin).
//! Both must find exactly the failures the generator wrote, or the benchmark fails.
//! Writes `docs/benchmarks/filters.csv`, `filters.md` and a table.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context as _, bail};
use ban_agent::sample::{Format, SampleSpec, SampleSummary};
use jiff::Timestamp;
// The test-filter tests' `Lines:` row reader and the agent binary's path.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use shared::Measured;

const RUNS: usize = 3;
const TEST_FILTER: &str = "ban-agent test-filter";
const FAIL2BAN: &str = "fail2ban-regex 1.0.2";
/// Target (issue 31): each built-in filter at least this many times fail2ban-regex's
/// lines per second with its equivalent filter.
const TARGET: f64 = 50.0;

/// The formats measured, each with the fail2ban filter equivalent to the built-in one: the
/// same failures (a 401 on `/login`, a 400 on `/register`, a query string allowed), the
/// address where the built-in takes it. fail2ban cuts the date it found out of the line
/// before its failregex runs (hence `\[\]`), and finds none in uvicorn's lines (`{NONE}`:
/// a failure counts when it is read, as ours does). Where the date is in brackets after
/// the address, `datepattern` says so, as fail2ban's own access-log filters do: without
/// it, fail2ban's date detector comes to try every template on every line of such a log
/// (five to seven times slower here). Written for this benchmark, from each server's
/// documented format.
const FORMATS: [(Format, &str); 5] = [
    (
        Format::Uvicorn,
        r#"[Definition]
failregex = ^(?:[A-Z]+: +)?<HOST>:\d+ - "[A-Z]+ (?:/login(?:\?[^ "]*)? HTTP/[0-9.]+" 401|/register(?:\?[^ "]*)? HTTP/[0-9.]+" 400)(?: [A-Za-z][A-Za-z '-]*)?$
datepattern = {NONE}
"#,
    ),
    (
        Format::Gunicorn,
        r#"[Definition]
failregex = ^<HOST> \S+ .*? \[\] "[A-Z]+ (?:/login(?:\?[^ "]*)? HTTP/[0-9.]+" 401|/register(?:\?[^ "]*)? HTTP/[0-9.]+" 400) \S+(?: .*)?$
datepattern = ^[^\[]*\[({DATE})
"#,
    ),
    (
        Format::Nginx,
        r#"[Definition]
failregex = ^<HOST> - .*? \[\] "[A-Z]+ (?:/login(?:\?[^ "]*)? HTTP/[0-9.]+" 401|/register(?:\?[^ "]*)? HTTP/[0-9.]+" 400) \d+(?: .*)?$
datepattern = ^[^\[]*\[({DATE})
"#,
    ),
    (
        Format::Caddy,
        r#"[Definition]
failregex = ^\{.*"request":\{"remote_ip":"[^"]*","remote_port":"\d+","client_ip":"<HOST>",.*"uri":"/login(?:\?[^"]*)?",.*"status":401,
            ^\{.*"request":\{"remote_ip":"[^"]*","remote_port":"\d+","client_ip":"<HOST>",.*"uri":"/register(?:\?[^"]*)?",.*"status":400,
datepattern = "ts":{EPOCH}
"#,
    ),
    (
        Format::Traefik,
        r#"[Definition]
failregex = ^<HOST> - .*? \[\] "[A-Z]+ (?:/login(?:\?[^ "]*)? HTTP/[0-9.]+" 401|/register(?:\?[^ "]*)? HTTP/[0-9.]+" 400) \S+(?: .*)?$
datepattern = ^[^\[]*\[({DATE})
"#,
    ),
];

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        return Ok(()); // `cargo bench -- --list`: nothing to list.
    }
    let dir = tempfile::tempdir().context("temp dir")?;
    let fail2ban = std::env::var_os("BAN_AGENT_FAIL2BAN_REGEX");
    if fail2ban.is_none() {
        eprintln!("filters: BAN_AGENT_FAIL2BAN_REGEX unset: no fail2ban-regex comparison");
    }
    let now = Timestamp::now().as_millisecond();
    let mut logs = Vec::new();
    for (format, equivalent) in FORMATS {
        let name = format.builtin();
        let log = dir.path().join(format!("{name}.log"));
        let spec = SampleSpec {
            format,
            ..SampleSpec::benchmark(now)
        };
        let summary = shared::write_sample(&spec, &log)?;
        eprintln!(
            "filters: {name}: {} lines ({} MB), {} failures",
            summary.lines,
            summary.bytes / 1_000_000,
            summary.failures
        );
        let conf = dir.path().join(format!("{name}.conf"));
        std::fs::write(&conf, equivalent).context("write the fail2ban filter")?;
        logs.push((name, log, conf, summary));
    }
    let mut runs = Vec::new();
    for run in 1..=RUNS {
        for (name, log, conf, summary) in &logs {
            eprintln!("filters: run {run}/{RUNS}: {name}");
            let mut measured = vec![test_filter(name, log, run)?];
            if let Some(script) = fail2ban.as_ref().filter(|_| run == 1) {
                measured.push(fail2ban_regex(Path::new(script), name, log, conf, run)?);
            }
            for m in measured {
                check(&m, summary)?;
                runs.push(m);
            }
        }
    }
    report(&runs)
}

/// Each tool must find the lines and failures the generator wrote.
fn check(m: &Measured, summary: &SampleSummary) -> anyhow::Result<()> {
    if (m.lines, m.failures) != (summary.lines, summary.failures) {
        bail!(
            "{} read {} lines and found {} failures in the {} log; the generator wrote {} and {}",
            m.tool,
            m.lines,
            m.failures,
            m.group,
            summary.lines,
            summary.failures
        );
    }
    Ok(())
}

fn test_filter(name: &'static str, log: &Path, run: usize) -> anyhow::Result<Measured> {
    let process = shared::measured(
        Command::new(common::agent::AGENT)
            .arg("test-filter")
            .arg(log)
            .args(["--filter", name]),
    )?;
    let (lines, matched) = common::report::read_and_matched("test-filter", &process.stdout)?;
    Ok(Measured::of(
        name,
        TEST_FILTER,
        run,
        (lines, matched),
        &process,
    ))
}

fn fail2ban_regex(
    script: &Path,
    name: &'static str,
    log: &Path,
    conf: &Path,
    run: usize,
) -> anyhow::Result<Measured> {
    let process = shared::measured(&mut common::report::fail2ban_regex(script, log, conf))?;
    let found = common::report::read_and_matched("fail2ban-regex", &process.stdout)?;
    Ok(Measured::of(name, FAIL2BAN, run, found, &process))
}

fn report(runs: &[Measured]) -> anyhow::Result<()> {
    let csv = shared::runs_csv("filter", runs);
    let filters = FORMATS.map(|(format, _)| format.builtin());
    let mut table =
        shared::runs_table("filter", &filters, &[TEST_FILTER, FAIL2BAN], FAIL2BAN, runs);
    let verdicts: Vec<String> = filters
        .iter()
        .filter(|filter| {
            runs.iter()
                .any(|m| m.tool == FAIL2BAN && m.group == **filter)
        })
        .map(|filter| {
            let ratio = shared::median_rate(runs, TEST_FILTER, filter)
                / shared::median_rate(runs, FAIL2BAN, filter);
            let verdict = if ratio >= TARGET { "met" } else { "not met" };
            format!("{filter} {ratio:.0}× ({verdict})")
        })
        .collect();
    if !verdicts.is_empty() {
        let _ = writeln!(
            table,
            "\ntest-filter against fail2ban-regex, per built-in filter (target, issue 31: at least \
             {TARGET:.0}×): {}.",
            verdicts.join(", ")
        );
    }
    shared::publish("filters", &csv, &table)
}
