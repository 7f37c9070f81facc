//! The differential run: fail2ban itself as the oracle. fail2ban-regex with `--out` runs
//! fail2ban's own `Filter` as the daemon does (the first failregex that matches decides,
//! a connection's lines wait for its address), and prints each failure it finds;
//! `ban-agent test-filter --json --no-check-all` runs ours the same way. Each filter's
//! test log is fed to both as one stream, then shuffled together with the next filter's
//! log (a fixed seed), so that lines meet in orders no annotation was written for. The
//! failures must be the same, in the same order: who (address, host name or id, as
//! written: `--raw` keeps fail2ban from resolving names, as the agent never does) and
//! when.

use std::{path::Path, process::Command};

use anyhow::Context as _;
use serde_json::Value;

use super::Job;
use crate::bench::Fail2ban;

/// One failure: who, and when (epoch seconds; `None` when ours found no date).
type Failure = (String, Option<f64>);

/// One stream run through both.
#[derive(Debug)]
pub(super) struct Stream {
    /// `sshd` or `sshd + slapd, shuffled`.
    pub name: String,
    pub failures: usize,
    /// The first failure where they part, said in words.
    pub difference: Option<String>,
}

/// Both streams of every job.
pub(super) fn run_all(
    agent: &Path,
    fail2ban: &Fail2ban,
    jobs: &[Job],
    logs: &Path,
    scratch: &Path,
) -> anyhow::Result<Vec<Stream>> {
    let dir = scratch.join("differential");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let streams = super::two_at_a_time(jobs, |index, job| {
        let neighbour = &jobs[(index + 1) % jobs.len()].0;
        let own = lines_of(&logs.join(&job.0))?;
        let mut mixed = own.clone();
        mixed.extend(lines_of(&logs.join(neighbour))?);
        fastrand::Rng::with_seed(31 + index as u64).shuffle(&mut mixed);
        let mut out = Vec::new();
        for (name, lines) in [
            (job.0.clone(), own),
            (format!("{} + {neighbour}, shuffled", job.0), mixed),
        ] {
            let file = dir.join(format!("{}.{}.log", job.0, out.len()));
            std::fs::write(&file, lines.join("\n") + "\n")
                .with_context(|| format!("cannot write {}", file.display()))?;
            out.push(compare(agent, fail2ban, job, name, &file)?);
        }
        Ok(out)
    })?;
    Ok(streams.into_iter().flatten().collect())
}

/// The lines fail2ban-regex reads of a test log: not its comments, not empty ones.
fn lines_of(log: &Path) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(log).with_context(|| format!("cannot read {}", log.display()))?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn compare(
    agent: &Path,
    fail2ban: &Fail2ban,
    (filter_name, dir): &Job,
    name: String,
    stream: &Path,
) -> anyhow::Result<Stream> {
    let filter = dir.join("filter.d").join(format!("{filter_name}.conf"));
    // fail2ban-regex reads dates without a year against the real clock: ours is given
    // the same "now".
    let now = jiff::Timestamp::now().as_second();
    let theirs = theirs(fail2ban, &filter, stream)?;
    let ours = ours(agent, dir, &filter, stream, now)?;
    Ok(Stream {
        name,
        failures: theirs.len(),
        difference: difference(&ours, &theirs),
    })
}

fn theirs(fail2ban: &Fail2ban, filter: &Path, stream: &Path) -> anyhow::Result<Vec<Failure>> {
    let mut command = super::fail2ban_regex(
        fail2ban,
        &["--raw", "--out", "<fid>\t<time>"],
        stream,
        filter,
    );
    let output = succeeded(&mut command, "fail2ban-regex --out", stream)?;
    Ok(parse_theirs(&output))
}

/// What `command` printed, when it succeeded.
fn succeeded(command: &mut Command, what: &str, stream: &Path) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{what} on {} failed: {}",
        stream.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// fail2ban-regex's `--out '<fid>\t<time>'`: one failure a line.
fn parse_theirs(text: &str) -> Vec<Failure> {
    text.lines()
        .filter_map(|line| {
            let (who, when) = line.rsplit_once('\t')?;
            Some((who.to_owned(), when.trim().parse::<f64>().ok()))
        })
        .collect()
}

fn ours(
    agent: &Path,
    dir: &Path,
    filter: &Path,
    stream: &Path,
    now: i64,
) -> anyhow::Result<Vec<Failure>> {
    let now = now.to_string();
    let args = ["--json", "--no-check-all", "--now", &now];
    let mut command = super::test_filter(agent, (stream, filter, dir), &args);
    parse_ours(&succeeded(
        &mut command,
        "ban-agent test-filter --json",
        stream,
    )?)
}

/// test-filter's `--json` lines: the failures among them.
fn parse_ours(text: &str) -> anyhow::Result<Vec<Failure>> {
    let mut failures = Vec::new();
    for line in text.lines() {
        let object: Value = serde_json::from_str(line)
            .with_context(|| format!("test-filter --json printed {line:?}"))?;
        if object["match"] != Value::Bool(true) {
            continue;
        }
        let who = object["host"].as_str().unwrap_or_default().to_owned();
        let when = object["time"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond() as f64 / 1000.0);
        failures.push((who, when));
    }
    Ok(failures)
}

/// Where the two lists of failures part, if they do. A failure ours found no date for
/// is compared by who only: fail2ban then takes the time it read the line.
fn difference(ours: &[Failure], theirs: &[Failure]) -> Option<String> {
    let same = |(a, at): &Failure, (b, bt): &Failure| {
        a == b
            && match (at, bt) {
                (Some(at), Some(bt)) => (at - bt).abs() < 0.001,
                (None, _) => true,
                (Some(_), None) => false,
            }
    };
    let at = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| !same(a, b))
        .or_else(|| (ours.len() != theirs.len()).then(|| ours.len().min(theirs.len())))?;
    let show = |list: &[Failure]| {
        list.get(at).map_or_else(
            || "none".to_owned(),
            |(who, when)| format!("{who} at {when:?}"),
        )
    };
    Some(format!(
        "failure #{} ({} in all for fail2ban, {} for ours): fail2ban {}, ours {}",
        at + 1,
        theirs.len(),
        ours.len(),
        show(theirs),
        show(ours)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_compared_in_order_by_who_and_when() {
        let theirs = parse_theirs("192.0.2.1\t1124013600.0\nexample.org\t1124013601.5\n");
        assert_eq!(theirs.len(), 2);
        let ours = parse_ours(
            "{\"match\":true,\"host\":\"192.0.2.1\",\"time\":\"2005-08-14T10:00:00Z\"}\n\
             {\"match\":false,\"host\":null,\"time\":null}\n\
             {\"match\":true,\"host\":\"example.org\",\"time\":\"2005-08-14T10:00:01.5Z\"}\n",
        )
        .expect("JSON");
        assert_eq!(difference(&ours, &theirs), None);
        let late = vec![ours[0].clone(), ("example.org".to_owned(), Some(1.0))];
        assert!(difference(&late, &theirs).is_some());
        assert!(difference(&ours[..1], &theirs).is_some());
        let untimed = vec![ours[0].clone(), ("example.org".to_owned(), None)];
        assert_eq!(difference(&untimed, &theirs), None);
    }
}
