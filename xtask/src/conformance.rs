//! `cargo xtask conformance`: every annotated line of fail2ban's own filter tests run
//! through `ban-agent test-filter --json`, compared as fail2ban's `samplestestcase.py`
//! compares them (match, host, user, time; its fixed "now" and time zone), written to
//! `docs/conformance.md`. With `--speed`, each filter's log is also timed against
//! `fail2ban-regex`.
//!
//! fail2ban is GPL: its filters and logs are read where the Debian package unpacked them
//! (`.tools/fail2ban`), never copied here, and the report names lines by file and number
//! without quoting them.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::Workspace;

mod differential;
mod lines;

/// A filter to run on its test log: its name and its configuration folder.
type Job = (String, PathBuf);

/// `fail2ban-regex LOG FILTER` with `args` before them, in the test time zone.
fn fail2ban_regex(
    fail2ban: &crate::bench::Fail2ban,
    args: &[&str],
    log: &Path,
    filter: &Path,
) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(&fail2ban.regex)
        .args(args)
        .arg(log)
        .arg(filter)
        .env("PYTHONPATH", &fail2ban.pythonpath)
        .env("TZ", TEST_TZ);
    command
}

/// `ban-agent test-filter LOG --filter FILTER` (a fail2ban filter of `dir`), read in the
/// test time zone, with `args` after.
fn test_filter(agent: &Path, (log, filter, dir): (&Path, &Path, &Path), args: &[&str]) -> Command {
    let mut command = Command::new(agent);
    command
        .arg("test-filter")
        .arg(log)
        .arg("--filter")
        .arg(filter)
        .arg("--fail2ban-dir")
        .arg(dir)
        .args(["--timezone", TEST_TZ])
        .args(args);
    command
}

/// `work` on every job (with its index), two at a time (fail2ban-regex spends most of its
/// time starting Python), the results in the jobs' order.
fn two_at_a_time<T: Send>(
    jobs: &[Job],
    work: impl Fn(usize, &Job) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(index) else {
                            return Ok(());
                        };
                        let result = work(index, job)?;
                        done.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((index, result));
                    }
                })
            })
            .collect();
        for worker in workers {
            match worker.join() {
                Ok(result) => result?,
                Err(_) => bail!("a worker thread panicked"),
            }
        }
        Ok(())
    })?;
    let mut done = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    done.sort_by_key(|(index, _)| *index);
    Ok(done.into_iter().map(|(_, result)| result).collect())
}

/// fail2ban's test "now" (`tests/utils.py`: TEST_NOW), Sun Aug 14 12:00:00 CEST 2005.
const TEST_NOW: i64 = 1_124_013_600;
/// fail2ban's test time zone (`tests/utils.py`).
const TEST_TZ: &str = "CET-01CEST-02,M3.5.0,M10.5.0";
/// Filters whose every annotated line must agree.
const MUST_AGREE: [&str; 8] = [
    "sshd",
    "nginx-http-auth",
    "nginx-limit-req",
    "apache-auth",
    "postfix",
    "dovecot",
    "recidive",
    "fastapi-auth",
];
/// Filters whose lines/s must be at least [`SPEED_TARGET`] times fail2ban-regex's.
const MUST_BE_FAST: [&str; 3] = ["sshd", "nginx-http-auth", "nginx-limit-req"];
const SPEED_TARGET: f64 = 20.0;
/// Lines a log is repeated to for `--speed`.
const SPEED_LINES: usize = 20_000;

#[derive(Debug, clap::Args)]
pub struct ConformanceArgs {
    /// Also time each filter's log (repeated to 20,000 lines) against fail2ban-regex.
    #[arg(long)]
    speed: bool,
    /// Only these filters (all when omitted).
    filters: Vec<String>,
    /// Fail when a target of issue 17 is missed (CI).
    #[arg(long)]
    check: bool,
    /// Write the report here instead of docs/conformance.md.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

impl ConformanceArgs {
    /// What `cargo xtask test` runs: every filter, no timing, failing on a missed target,
    /// the report under `target/` (docs/conformance.md is written by hand, with --speed).
    pub fn check(ws: &Workspace) -> Self {
        Self {
            speed: false,
            filters: Vec::new(),
            check: true,
            out: Some(ws.root.join("target/conformance/conformance.md")),
        }
    }
}

/// One annotated line and the filter options it is judged under.
#[derive(Clone, Debug)]
struct Entry {
    file: String,
    number: usize,
    line: String,
    expected: serde_json::Map<String, Value>,
}

/// The lines one filter-option combination judges, in order (one filter object in
/// fail2ban's test, so state such as connection ids carries from line to line).
#[derive(Debug, Default)]
struct Run {
    options: Vec<(String, String)>,
    journal: bool,
    entries: Vec<Entry>,
}

/// What became of one filter.
#[derive(Debug, Default)]
struct Outcome {
    name: String,
    multiline: bool,
    lines: usize,
    agreed: usize,
    disagreements: Vec<String>,
    speed: Option<(f64, f64)>,
}

/// The test logs on which `test-filter`'s `Lines:` and fail2ban-regex's differ.
fn lines_differ(compared: &[lines::Compared]) -> Vec<&lines::Compared> {
    compared
        .iter()
        .filter(|(_, ours, theirs)| ours != theirs)
        .collect()
}

pub fn conformance(ws: &Workspace, args: &ConformanceArgs) -> anyhow::Result<()> {
    let fail2ban = crate::bench::fail2ban(ws)?;
    let package = fail2ban
        .pythonpath
        .join("fail2ban")
        .canonicalize()
        .context("the unpacked fail2ban package")?;
    let config = ws.tools.join("fail2ban/etc/fail2ban");
    let logs = package.join("tests/files/logs");
    crate::run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))?;
    let agent = ws.root.join("target/release/ban-agent");
    let scratch = ws.root.join("target/conformance");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let test_config = test_config_tree(&package, &config, &scratch)?;
    let mut filters = filters(&config, &test_config)?;
    filters.retain(|(name, _)| args.filters.is_empty() || args.filters.contains(name));
    let mut outcomes = Vec::new();
    let mut jobs = Vec::new();
    for (name, dir) in &filters {
        if !logs.join(name).is_file() {
            continue;
        }
        jobs.push((name.clone(), dir.clone()));
        let runs = runs(&logs, name)?;
        let conf = std::fs::read_to_string(dir.join("filter.d").join(format!("{name}.conf")))
            .unwrap_or_default();
        let mut outcome = Outcome {
            name: name.clone(),
            multiline: conf.contains("F-MLFID") || conf.contains("maxlines"),
            ..Outcome::default()
        };
        for run in &runs {
            judge_run(&agent, dir, name, run, &scratch, &mut outcome)?;
        }
        if args.speed {
            outcome.speed = Some(speed(&agent, &fail2ban, dir, name, &logs, &scratch)?);
        }
        eprintln!(
            "conformance: {name}: {}/{} agree",
            outcome.agreed, outcome.lines
        );
        outcomes.push(outcome);
    }
    // The seed's own filter, in both forms: fail2ban's file and our TOML.
    outcomes.push(fastapi(ws, &agent, &scratch)?);
    let compared = lines::compare_all(&agent, &fail2ban, &jobs, &logs)?;
    eprintln!(
        "conformance: Lines: the same as fail2ban-regex's on {} of {} test logs",
        compared.len() - lines_differ(&compared).len(),
        compared.len()
    );
    let streams = differential::run_all(&agent, &fail2ban, &jobs, &logs, &scratch)?;
    eprintln!(
        "conformance: differential: the same failures as fail2ban's on {} of {} streams",
        streams.iter().filter(|s| s.difference.is_none()).count(),
        streams.len()
    );
    let checks = Checks {
        lines: &compared,
        streams: &streams,
    };
    let (report, missed) = report(&outcomes, &checks, args.speed, &package);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| ws.root.join("docs/conformance.md"));
    std::fs::write(&out, report).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {}", out.display());
    for miss in &missed {
        println!("target missed: {miss}");
    }
    if args.check && !missed.is_empty() {
        bail!("{} conformance target(s) missed", missed.len());
    }
    Ok(())
}

/// fail2ban's filters, and its test filters (`zzz-*`), by name, with the configuration
/// folder each is in.
fn filters(config: &Path, test_config: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut filters = Vec::new();
    for (dir, only_zzz) in [(config, false), (test_config, true)] {
        let filter_dir = dir.join("filter.d");
        let entries = std::fs::read_dir(&filter_dir)
            .with_context(|| format!("cannot list {}", filter_dir.display()))?;
        for entry in entries.filter_map(Result::ok) {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".conf") else {
                continue;
            };
            if name == "common" || name.starts_with('.') || (only_zzz && !name.starts_with("zzz-"))
            {
                continue;
            }
            filters.push((name.to_owned(), dir.to_owned()));
        }
    }
    filters.sort();
    Ok(filters)
}

/// fail2ban's test filters (`tests/config/filter.d/zzz-*.conf`) include `common.conf`
/// by a path relative to fail2ban's source tree, which the Debian package does not
/// keep. A tree of symbolic links under `target/` gives that path its file, as fail2ban's
/// source tree does. Returns the folder to use as the filters' configuration folder.
fn test_config_tree(package: &Path, config: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    let root = scratch.join("tree");
    let dir = root.join("a/b/c/d/e/f");
    let filter_d = dir.join("filter.d");
    let common_d = root.join("config/filter.d");
    for d in [&filter_d, &common_d] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let link = |target: PathBuf, at: PathBuf| -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(&target, &at)
            .with_context(|| format!("cannot link {} to {}", at.display(), target.display()))
    };
    link(
        config.join("filter.d/common.conf"),
        common_d.join("common.conf"),
    )?;
    let tests = package.join("tests/config/filter.d");
    for entry in std::fs::read_dir(&tests)
        .with_context(|| format!("cannot list {}", tests.display()))?
        .filter_map(Result::ok)
    {
        link(entry.path(), filter_d.join(entry.file_name()))?;
    }
    Ok(dir)
}

/// The runs of a filter's test log, read as `samplestestcase.py` reads it.
fn runs(logs: &Path, name: &str) -> anyhow::Result<Vec<Run>> {
    let mut collected = Collected::default();
    let mut files = vec![name.to_owned()];
    let mut common = serde_json::Map::new();
    let mut tests: Option<Vec<OptionSet>> = None;
    let mut ignore_block = false;
    let mut index = 0;
    while index < files.len() {
        let file = files[index].clone();
        index += 1;
        let path = logs.join(&file);
        let text =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let text = String::from_utf8_lossy(&text);
        let mut lines = text.lines().enumerate();
        while let Some((at, line)) = lines.next() {
            let mut number = at + 1;
            let mut line = line;
            let mut expected = serde_json::Map::new();
            if let Some((kind, json)) = annotation(line) {
                let value: Value = serde_json::from_str(json)
                    .with_context(|| format!("{}:{number}: bad JSON", path.display()))?;
                match kind {
                    "fileOptions" => {
                        common = value.as_object().cloned().unwrap_or_default();
                        continue;
                    }
                    "filterOptions" => {
                        let (list, ignored) = option_sets(value, &common, name)?;
                        ignore_block = ignored;
                        tests = Some(list);
                        continue;
                    }
                    "addFILE" => {
                        if let Value::String(more) = value {
                            files.push(more);
                        }
                        continue;
                    }
                    _ => {
                        expected = value.as_object().cloned().unwrap_or_default();
                        let Some((next_at, next)) = lines.next() else {
                            break;
                        };
                        number = next_at + 1;
                        line = next;
                    }
                }
            } else if ignore_block || line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if ignore_block {
                continue;
            }
            let tests = tests.get_or_insert_with(|| vec![(String::new(), serde_json::Map::new())]);
            for (key, options) in tests.iter() {
                if let Some(Value::String(constraint)) = expected.get("constraint")
                    && !condition_holds(constraint, name, options)?
                {
                    continue;
                }
                let at = (file.as_str(), number, line);
                collected.add(key, options, at, &expected);
            }
        }
    }
    Ok(collected.in_order())
}

/// A run's key and its options.
type OptionSet = (String, serde_json::Map<String, Value>);

/// `# filterOptions:` — one set of options or a list of them, each over the file's
/// common options; the sets whose `test.condition` does not hold are left out, and when
/// one does not, the lines up to the next `filterOptions` are skipped (`true`).
fn option_sets(
    value: Value,
    common: &serde_json::Map<String, Value>,
    name: &str,
) -> anyhow::Result<(Vec<OptionSet>, bool)> {
    let mut list = Vec::new();
    let mut ignore_block = false;
    let sets = match value {
        Value::Array(sets) => sets,
        other => vec![other],
    };
    for set in sets {
        let mut options = common.clone();
        options.extend(set.as_object().cloned().unwrap_or_default());
        if let Some(Value::String(condition)) = options.get("test.condition") {
            ignore_block = !condition_holds(condition, name, &options)?;
        }
        if !ignore_block {
            let key = run_key(&options);
            list.push((key, options));
        }
    }
    Ok((list, ignore_block))
}

/// The runs of a test log as they are read, in the order they first appear.
#[derive(Default)]
struct Collected {
    runs: BTreeMap<String, Run>,
    order: Vec<String>,
}

impl Collected {
    /// A line of `file` at `number`, with what is expected of it, into the run of the
    /// options `key`.
    fn add(
        &mut self,
        key: &str,
        options: &serde_json::Map<String, Value>,
        (file, number, line): (&str, usize, &str),
        expected: &serde_json::Map<String, Value>,
    ) {
        let order = &mut self.order;
        let run = self.runs.entry(key.to_owned()).or_insert_with(|| {
            order.push(key.to_owned());
            Run {
                options: options
                    .iter()
                    .filter(|(k, _)| !k.starts_with("test."))
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect(),
                journal: options.get("logtype").and_then(Value::as_str) == Some("journal"),
                entries: Vec::new(),
            }
        });
        let prefix = match options.get("test.prefix-line") {
            Some(Value::String(prefix)) if run.journal => prefix.as_str(),
            _ => "",
        };
        run.entries.push(Entry {
            file: file.to_owned(),
            number,
            line: format!("{prefix}{}", line.trim_end_matches(['\r', '\n'])),
            expected: expected.clone(),
        });
    }

    fn in_order(mut self) -> Vec<Run> {
        let runs = &mut self.runs;
        self.order
            .into_iter()
            .filter_map(|k| runs.remove(&k))
            .collect()
    }
}

/// `# failJSON: {...}` and its kin: (kind, JSON).
fn annotation(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start_matches('#');
    if rest.len() == line.len() {
        return None;
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    ["failJSON", "fileOptions", "filterOptions", "addFILE"]
        .into_iter()
        .find_map(|kind| {
            rest.strip_prefix(kind)
                .and_then(|r| r.strip_prefix(':'))
                .map(|json| (kind, json))
        })
}

/// The options of a run, as one key (fail2ban names its filter objects the same way).
fn run_key(options: &serde_json::Map<String, Value>) -> String {
    let parts: Vec<String> = options
        .iter()
        .filter(|(k, _)| !k.starts_with("test.") || k.as_str() == "test.filter-name")
        .map(|(k, v)| format!("{k}={}", value_text(v)))
        .collect();
    parts.join(",")
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Python conditions fail2ban's test logs use: `name == 'x'`, `name != 'x'`,
/// `opts.get('k') == 'x'` and `!=`.
fn condition_holds(
    condition: &str,
    name: &str,
    options: &serde_json::Map<String, Value>,
) -> anyhow::Result<bool> {
    let compact: String = condition.chars().filter(|c| !c.is_whitespace()).collect();
    let (left, right, equal) = if let Some((l, r)) = compact.split_once("==") {
        (l, r, true)
    } else if let Some((l, r)) = compact.split_once("!=") {
        (l, r, false)
    } else {
        bail!("condition {condition:?} is not of a form this harness reads");
    };
    let right = right.trim_matches(['\'', '"']);
    let left = if left == "name" {
        Some(name.to_owned())
    } else if let Some(key) = left
        .strip_prefix("opts.get(")
        .and_then(|k| k.strip_suffix(')'))
    {
        options.get(key.trim_matches(['\'', '"'])).map(value_text)
    } else {
        bail!("condition {condition:?} is not of a form this harness reads");
    };
    Ok((left.as_deref() == Some(right)) == equal)
}

/// The filter reference test-filter is given: `name[k="v", ...]`.
fn reference(name: &str, options: &[(String, String)]) -> String {
    if options.is_empty() {
        return name.to_owned();
    }
    let parts: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}[{}]", parts.join(", "))
}

fn judge_run(
    agent: &Path,
    dir: &Path,
    name: &str,
    run: &Run,
    scratch: &Path,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let input = scratch.join(format!("{name}.log"));
    let text: String = run
        .entries
        .iter()
        .map(|e| format!("{}\n", e.line))
        .collect();
    std::fs::write(&input, text).with_context(|| format!("cannot write {}", input.display()))?;
    let reference = reference(name, &run.options);
    let mut command = Command::new(agent);
    command
        .arg("test-filter")
        .arg(&input)
        .args(["--filter", &reference, "--fail2ban-dir"])
        .arg(dir)
        .args(["--json", "--now", &TEST_NOW.to_string()])
        .args(["--timezone", TEST_TZ]);
    if run.journal {
        command.arg("--journal-lines");
    }
    let output = command
        .output()
        .with_context(|| format!("cannot run {}", agent.display()))?;
    let results: Vec<serde_json::Map<String, Value>> = if output.status.success() {
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.as_object().cloned())
            .collect()
    } else {
        Vec::new()
    };
    let error = (!output.status.success()).then(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        stderr
            .lines()
            .next()
            .unwrap_or("test-filter failed")
            .to_owned()
    });
    for (i, entry) in run.entries.iter().enumerate() {
        outcome.lines += 1;
        let verdict = match (&error, results.get(i)) {
            (Some(error), _) => Err(format!("the filter did not load: {error}")),
            (None, None) => Err("no result".to_owned()),
            (None, Some(ours)) => compare(&entry.expected, ours),
        };
        match verdict {
            Ok(()) => outcome.agreed += 1,
            Err(reason) => outcome.disagreements.push(format!(
                "`{}:{}` ({}): {reason}",
                entry.file,
                entry.number,
                if reference == name {
                    "default options"
                } else {
                    &reference
                }
            )),
        }
    }
    Ok(())
}

/// `Ok` when ban-agent says what the annotation says.
fn compare(
    expected: &serde_json::Map<String, Value>,
    ours: &serde_json::Map<String, Value>,
) -> Result<(), String> {
    let want = expected
        .get("match")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let got = ours.get("match").and_then(Value::as_bool).unwrap_or(false);
    match (want, got) {
        (false, false) => return Ok(()),
        (false, true) => {
            return Err(format!(
                "matched (host {}), fail2ban does not",
                ours.get("host").map(value_text).unwrap_or_default()
            ));
        }
        (true, false) => return Err("no match, fail2ban matches".to_owned()),
        (true, true) => {}
    }
    if let Some(n) = ours.get("failures").and_then(Value::as_u64)
        && n > 1
    {
        return Err(format!(
            "{n} failregexes found a failure, fail2ban's test wants one"
        ));
    }
    for (key, value) in expected {
        if matches!(key.as_str(), "time" | "match" | "desc" | "constraint") {
            continue;
        }
        let ours_value = ours.get(key).cloned().unwrap_or(Value::Null);
        let same = match (value, &ours_value) {
            (Value::Array(a), Value::Array(b)) => {
                let mut a: Vec<String> = a.iter().map(value_text).collect();
                let mut b: Vec<String> = b.iter().map(value_text).collect();
                a.sort();
                b.sort();
                a == b
            }
            (a, b) => value_text(a) == value_text(b),
        };
        if !same {
            return Err(format!("{key} {} where fail2ban has {}", ours_value, value));
        }
    }
    if let Some(Value::String(time)) = expected.get("time") {
        let want = local_ms(time).map_err(|e| format!("annotation time {time:?}: {e}"))?;
        let got = ours
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond());
        if got != Some(want) {
            return Err(format!(
                "time {} where fail2ban has {time} (local)",
                ours.get("time").map(value_text).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

/// An annotation's local time (fail2ban's test zone) in milliseconds since the epoch.
fn local_ms(text: &str) -> anyhow::Result<i64> {
    let zone = jiff::tz::TimeZone::posix(TEST_TZ)?;
    // Python's strptime takes one-digit fields (`2005-03-7T02:09:33`); jiff wants two.
    let (date, time) = text.split_once('T').context("no T between date and time")?;
    let date: Vec<String> = date.split('-').map(|part| format!("{part:0>2}")).collect();
    let civil: jiff::civil::DateTime = format!("{}T{time}", date.join("-")).parse()?;
    Ok(civil.to_zoned(zone)?.timestamp().as_millisecond())
}

/// Lines in the example app's log format: failures and successes on each endpoint, over
/// IPv4 and IPv6, and a line of another kind.
fn fastapi_sample() -> String {
    let mut out = String::new();
    let requests = [
        ("POST /login", 401),
        ("POST /login", 200),
        ("POST /register", 400),
        ("POST /register", 201),
        ("POST /login", 400),
        ("GET /health", 200),
        ("GET /login", 401),
    ];
    for (i, host) in ["203.0.113.7", "2001:db8::7", "198.51.100.23"]
        .iter()
        .enumerate()
    {
        for (j, (request, status)) in requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "2026-11-25 12:0{i}:{j:02},001 - fastapi-auth - INFO - {host} - \"{request}\" {status} - 0.0087s"
            );
        }
    }
    out.push_str("2026-11-25 12:05:00,000 - uvicorn - INFO - Application startup complete.\n");
    out
}

/// The seed's fail2ban filter and our TOML filter over lines of the example app's log:
/// both must find the same failures.
fn fastapi(ws: &Workspace, agent: &Path, scratch: &Path) -> anyhow::Result<Outcome> {
    let example = ws.root.join("examples/fastapi-auth");
    let sample = scratch.join("fastapi-auth.log");
    std::fs::write(&sample, fastapi_sample())
        .with_context(|| format!("cannot write {}", sample.display()))?;
    let conf = example.join("fail2ban/filter.d/fastapi-auth.conf");
    let json = |filter: &Path| -> anyhow::Result<Vec<serde_json::Map<String, Value>>> {
        let output = Command::new(agent)
            .arg("test-filter")
            .arg(&sample)
            .arg("--filter")
            .arg(filter)
            .args(["--json", "--timezone", "UTC"])
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", agent.display()))?;
        if !output.status.success() {
            bail!("test-filter --filter {} failed", filter.display());
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.as_object().cloned())
            .collect())
    };
    let theirs = json(&conf)?;
    let ours = json(&ws.root.join("filters/fastapi-auth.toml"))?;
    let mut outcome = Outcome {
        name: "fastapi-auth".to_owned(),
        ..Outcome::default()
    };
    for (i, (a, b)) in theirs.iter().zip(&ours).enumerate() {
        outcome.lines += 1;
        let same = a.get("match") == b.get("match") && a.get("host") == b.get("host");
        if same {
            outcome.agreed += 1;
        } else {
            outcome.disagreements.push(format!(
                "sample line {}: fail2ban's filter says {} {}, ours {} {}",
                i + 1,
                a.get("match").map(value_text).unwrap_or_default(),
                a.get("host").map(value_text).unwrap_or_default(),
                b.get("match").map(value_text).unwrap_or_default(),
                b.get("host").map(value_text).unwrap_or_default(),
            ));
        }
    }
    if theirs.len() != ours.len() || theirs.is_empty() {
        outcome.disagreements.push(format!(
            "{} lines judged by one, {} by the other",
            theirs.len(),
            ours.len()
        ));
    }
    Ok(outcome)
}

/// Lines per second of ban-agent's test-filter and of fail2ban-regex over the filter's
/// test log repeated to [`SPEED_LINES`] lines.
fn speed(
    agent: &Path,
    fail2ban: &crate::bench::Fail2ban,
    dir: &Path,
    name: &str,
    logs: &Path,
    scratch: &Path,
) -> anyhow::Result<(f64, f64)> {
    let text = std::fs::read(logs.join(name)).context("test log")?;
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return Ok((0.0, 0.0));
    }
    let mut body = String::new();
    for i in 0..SPEED_LINES {
        body.push_str(lines[i % lines.len()]);
        body.push('\n');
    }
    let input = scratch.join(format!("{name}.speed.log"));
    std::fs::write(&input, body).with_context(|| format!("cannot write {}", input.display()))?;
    let filter_file = dir.join("filter.d").join(format!("{name}.conf"));
    let timed = |command: &mut Command| -> anyhow::Result<f64> {
        let started = Instant::now();
        let status = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run the timed command")?;
        if !status.success() {
            bail!("{command:?} failed");
        }
        Ok(SPEED_LINES as f64 / started.elapsed().as_secs_f64())
    };
    let ours = timed(&mut test_filter(
        agent,
        (&input, &filter_file, dir),
        &["--now", &TEST_NOW.to_string()],
    ))?;
    let theirs = timed(&mut fail2ban_regex(fail2ban, &[], &input, &filter_file)).unwrap_or(0.0);
    Ok((ours, theirs))
}

/// Why the speed is what it is, under the table.
const SPEED_NOTE: &str = "\
fail2ban's test logs are made of failures: most of their lines match, so each needs the \
date read, `prefregex`'s captures and a failregex's captures, which is most of the work \
a line can cost, and where the literal prefilters cannot skip anything. sshd's filter \
also runs five of its failregexes on the backtracking engine (conditionals and \
lookaheads). Multi-line filters that tie lines together by back-references (slapd, \
mongodb-auth: `maxlines = 20`) run that regex on the backtracking engine over the whole \
buffer for every line, as fail2ban does, and are about as slow as it is. A dash is a \
log with no line of its own (it only pulls others in with `addFILE`). The headline comparison on a production-like log, where most lines are not \
failures, is `cargo xtask bench throughput` (docs/BENCHMARKS.md). \
Where the time goes for sshd (`perf record` of `test-filter` on its log repeated to \
20,000 lines, 2026-12-07, after the date scans and the one gate scan a line): the lazy \
DFA's forward and reverse scans that find the matches of `prefregex` and the failregexes \
(17%), regex's bounded backtracker taking their captures (12%), the gate's one scan for \
every failregex's literals (13%), fancy-regex for the five failregexes it needs (9%), \
allocating and freeing (11%: fail2ban's model still copies a line's text and groups for \
its buffer), compiling the regexes at start (13% of a 20,000-line run), and the date (2%: \
syslog's and ISO dates are read by a scan before any template's regex; it was 11%). \
fail2ban's 30 default date templates are now compiled when a line first needs one, \
rather than all at start (a quarter of it): sshd's start went from 35 to 22 ms. \
The median over every timed filter (the line under the table: 6.1 to 6.4× in the runs of \
the morning of 2026-12-07, 8.2 to 8.4× once the templates were compiled when needed, on another \
machine of the same kind; target 20×) is short for the same reasons: each corpus log is all failures, so every line pays its date, \
`prefregex`'s and a failregex's captures and the model's copies, and a filter's start \
(20 to 30 ms: reading its files, compiling its regexes) is 15 to 20% of a 20,000-line \
run. On a log where most lines are not failures the literal gate skips most of that: \
the seed's own fail2ban filter reads the throughput bench's site log at 15 times \
fail2ban-regex's rate (docs/BENCHMARKS.md). \
These filters run on one core: their \
model keeps state from line to line, so `test-filter` does not split them across \
threads as it does ours.";

/// The report, and the targets missed.
/// What is checked against fail2ban itself rather than against the annotations.
struct Checks<'a> {
    lines: &'a [lines::Compared],
    streams: &'a [differential::Stream],
}

fn report(
    outcomes: &[Outcome],
    checks: &Checks<'_>,
    speed: bool,
    package: &Path,
) -> (String, Vec<String>) {
    let totals = Totals::of(outcomes);
    let mut missed = missed_targets(outcomes, speed, &totals);
    let differ = lines_differ(checks.lines);
    if !differ.is_empty() {
        missed.push(format!(
            "Lines: differs from fail2ban-regex's on {} of {} test logs (target none; see \
             Lines)",
            differ.len(),
            checks.lines.len()
        ));
    }
    let parted = checks
        .streams
        .iter()
        .filter(|s| s.difference.is_some())
        .count();
    if parted > 0 {
        missed.push(format!(
            "differential: failures differ from fail2ban's on {parted} of {} streams \
             (target none; see Differential run)",
            checks.streams.len()
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# fail2ban conformance\n\n\
         Every annotated line of fail2ban's own filter tests (`tests/files/logs/*`, with their \
         `# failJSON:` and `# filterOptions:` comments), from the Debian package's files \
         (`{}`), judged by `ban-agent test-filter --json` (every failregex tried, as fail2ban's tests do) with fail2ban's test \
         \"now\" ({TEST_NOW}) and time zone (`{TEST_TZ}`), and compared as fail2ban's \
         `samplestestcase.py` compares them: match, host, user(s), attempts, time.\n\n\
         Made by `cargo xtask conformance{}`; the lines are named by file and number, not \
         quoted (fail2ban is GPL-2).\n",
        package.display(),
        if speed { " --speed" } else { "" }
    );
    write_summary(&mut out, &totals, &missed);
    write_per_filter(&mut out, outcomes, speed);
    if speed {
        let _ = writeln!(out, "\n## Speed\n\n{SPEED_NOTE}");
    }
    write_disagreements(&mut out, outcomes);
    write_lines(&mut out, checks.lines);
    write_differential(&mut out, checks.streams);
    (out, missed)
}

/// The differential run: where ours and fail2ban's failures part, stream by stream.
fn write_differential(out: &mut String, streams: &[differential::Stream]) {
    let parted: Vec<_> = streams.iter().filter(|s| s.difference.is_some()).collect();
    let failures: usize = streams.iter().map(|s| s.failures).sum();
    let _ = writeln!(
        out,
        "\n## Differential run\n\n\
         fail2ban's own `Filter` (`fail2ban-regex --raw --out '<fid>\\t<time>'`, the first \
         failregex deciding, as the daemon runs it) and ours (`ban-agent test-filter --json \
         --no-check-all`) over each filter's test log as one stream, and over it shuffled \
         with the next filter's log (a fixed seed): the failures each reports, in order, who \
         and when. The same on {} of {} streams ({failures} failures from fail2ban).\n",
        streams.len() - parted.len(),
        streams.len()
    );
    for stream in parted {
        let _ = writeln!(
            out,
            "- {}: {}",
            stream.name,
            stream.difference.as_deref().unwrap_or_default()
        );
    }
}

/// `test-filter`'s `Lines:` against fail2ban-regex's, log by log where they differ.
fn write_lines(out: &mut String, compared: &[lines::Compared]) {
    let differ = lines_differ(compared);
    let _ = writeln!(
        out,
        "\n## Lines\n\n\
         The `Lines:` summary (matched, ignored, missed) of `ban-agent test-filter LOG \
         --filter FILTER` and of `fail2ban-regex --raw LOG FILTER` on each filter's test log \
         as it is (comments included, which both skip), with the filter's default options. \
         `--raw` leaves host names unresolved, as the agent does: resolved, a name counts \
         matched or missed as the machine's network answers. The same on {} of {} logs.\n",
        compared.len() - differ.len(),
        compared.len()
    );
    if differ.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| log | test-filter | fail2ban-regex --raw |\n|---|---|---|"
    );
    for (name, ours, theirs) in differ {
        let _ = writeln!(out, "| {name} | {ours:?} | {theirs:?} |");
    }
}

/// Lines and agreements of the single-line and the multi-line filters.
struct Totals {
    single: usize,
    single_ok: usize,
    multi: usize,
    multi_ok: usize,
}

impl Totals {
    fn of(outcomes: &[Outcome]) -> Self {
        let mut totals = Self {
            single: 0,
            single_ok: 0,
            multi: 0,
            multi_ok: 0,
        };
        for o in outcomes {
            if o.multiline {
                totals.multi += o.lines;
                totals.multi_ok += o.agreed;
            } else {
                totals.single += o.lines;
                totals.single_ok += o.agreed;
            }
        }
        totals
    }
}

fn percent(ok: usize, all: usize) -> f64 {
    if all == 0 {
        100.0
    } else {
        100.0 * ok as f64 / all as f64
    }
}

/// The targets of issue 17 that the outcomes miss.
fn missed_targets(outcomes: &[Outcome], speed: bool, totals: &Totals) -> Vec<String> {
    let mut missed = Vec::new();
    if percent(totals.single_ok, totals.single) < 98.0 {
        missed.push(format!(
            "single-line entries agree {:.1}% (target 98%)",
            percent(totals.single_ok, totals.single)
        ));
    }
    if percent(totals.multi_ok, totals.multi) < 90.0 {
        missed.push(format!(
            "multi-line entries agree {:.1}% (target 90%)",
            percent(totals.multi_ok, totals.multi)
        ));
    }
    for name in MUST_AGREE {
        match outcomes.iter().find(|o| o.name == name) {
            Some(o) if o.agreed == o.lines && o.disagreements.is_empty() => {}
            Some(o) => missed.push(format!(
                "{name}: {}/{} agree (target all)",
                o.agreed, o.lines
            )),
            None => missed.push(format!("{name}: no test log was run")),
        }
    }
    if speed {
        for name in MUST_BE_FAST {
            match outcomes
                .iter()
                .find(|o| o.name == name)
                .and_then(|o| o.speed)
            {
                Some((ours, theirs)) if theirs > 0.0 && ours / theirs >= SPEED_TARGET => {}
                Some((ours, theirs)) if theirs > 0.0 => missed.push(format!(
                    "{name}: {:.1}× fail2ban-regex's lines/s (target {SPEED_TARGET}×; see Speed)",
                    ours / theirs
                )),
                _ => missed.push(format!("{name}: not timed")),
            }
        }
        match median_ratio(outcomes) {
            Some((median, _)) if median >= SPEED_TARGET => {}
            Some((median, timed)) => missed.push(format!(
                "median over the {timed} timed filters: {median:.1}× fail2ban-regex's lines/s \
                 (target {SPEED_TARGET}×; see Speed)"
            )),
            None => missed.push("no filter was timed".to_owned()),
        }
    }
    missed
}

fn write_summary(out: &mut String, totals: &Totals, missed: &[String]) {
    let Totals {
        single,
        single_ok,
        multi,
        multi_ok,
    } = totals;
    let _ = writeln!(
        out,
        "## Summary\n\n\
         | entries | lines | agree | % |\n|---|---:|---:|---:|\n\
         | single-line filters | {single} | {single_ok} | {:.1} |\n\
         | multi-line filters (`maxlines` or `<F-MLFID>`) | {multi} | {multi_ok} | {:.1} |\n",
        percent(*single_ok, *single),
        percent(*multi_ok, *multi)
    );
    if missed.is_empty() {
        let _ = writeln!(out, "Every target of issue 17 is met.\n");
    } else {
        let _ = writeln!(out, "Targets missed:\n");
        for miss in missed {
            let _ = writeln!(out, "- {miss}");
        }
        out.push('\n');
    }
}

fn write_per_filter(out: &mut String, outcomes: &[Outcome], speed: bool) {
    let _ = writeln!(out, "## Per filter\n");
    if speed {
        let _ = writeln!(
            out,
            "Lines/s: the filter's test log repeated to {SPEED_LINES} lines, `ban-agent \
             test-filter` (the report) and `fail2ban-regex` on the same file, one run each; \
             the ratio is what to read, the machine is shared.\n\n\
             | filter | lines | agree | disagree | ban-agent lines/s | fail2ban-regex lines/s | ratio |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        );
    } else {
        let _ = writeln!(
            out,
            "| filter | lines | agree | disagree |\n|---|---:|---:|---:|"
        );
    }
    for o in outcomes {
        let name = if o.multiline {
            format!("{} (multi-line)", o.name)
        } else {
            o.name.clone()
        };
        let _ = write!(
            out,
            "| {name} | {} | {} | {} |",
            o.lines,
            o.agreed,
            o.lines - o.agreed
        );
        if let Some((ours, theirs)) = o
            .speed
            .filter(|(ours, theirs)| *ours > 0.0 && *theirs > 0.0)
        {
            let _ = write!(out, " {ours:.0} | {theirs:.0} | {:.1}× |", ours / theirs);
        } else if speed {
            let _ = write!(out, " — | — | — |");
        }
        out.push('\n');
    }
    if let Some((median, timed)) = speed.then(|| median_ratio(outcomes)).flatten() {
        let _ = writeln!(
            out,
            "\nMedian ratio over the {timed} timed filters: {median:.1}× (target {SPEED_TARGET}×)."
        );
    }
}

/// The median of ours / fail2ban-regex's lines per second over the timed filters, and
/// how many were timed.
fn median_ratio(outcomes: &[Outcome]) -> Option<(f64, usize)> {
    let mut ratios: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.speed)
        .filter(|(ours, theirs)| *ours > 0.0 && *theirs > 0.0)
        .map(|(ours, theirs)| ours / theirs)
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let mid = ratios.len() / 2;
    let median = if ratios.len().is_multiple_of(2) {
        (ratios[mid - 1] + ratios[mid]) / 2.0
    } else {
        ratios[mid]
    };
    Some((median, ratios.len()))
}

fn write_disagreements(out: &mut String, outcomes: &[Outcome]) {
    let _ = writeln!(out, "\n## Disagreements\n");
    let mut any = false;
    for o in outcomes {
        for d in &o.disagreements {
            any = true;
            let _ = writeln!(out, "- {}: {d}", o.name);
        }
    }
    if !any {
        let _ = writeln!(out, "None.");
    }
}
