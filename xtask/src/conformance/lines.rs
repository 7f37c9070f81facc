//! The `Lines:` summaries of `ban-agent test-filter` and `fail2ban-regex` on each test
//! log of fail2ban's corpus, which use the same definitions and so must print the same
//! counts. fail2ban-regex runs with `--raw`: it then leaves host names unresolved, as the
//! agent always does (resolved, a name that resolves would count matched and one that
//! does not missed, which depends on the machine's network).

use std::path::Path;

use anyhow::Context as _;

use super::{Job, TEST_NOW};
use crate::bench::Fail2ban;

/// Lines matched, ignored, missed.
pub(super) type Counts = [i64; 3];

/// One test log's summaries: ours, then fail2ban-regex's.
pub(super) type Compared = (String, Counts, Counts);

/// Both tools' summaries of every job's log.
pub(super) fn compare_all(
    agent: &Path,
    fail2ban: &Fail2ban,
    jobs: &[Job],
    logs: &Path,
) -> anyhow::Result<Vec<Compared>> {
    super::two_at_a_time(jobs, |_, (name, dir)| {
        let log = logs.join(name);
        let filter = dir.join("filter.d").join(format!("{name}.conf"));
        Ok((
            name.clone(),
            ours(agent, dir, &filter, &log)?,
            theirs(fail2ban, &filter, &log)?,
        ))
    })
}

fn ours(agent: &Path, dir: &Path, filter: &Path, log: &Path) -> anyhow::Result<Counts> {
    let output = super::test_filter(agent, (log, filter, dir), &["--now", &TEST_NOW.to_string()])
        .output()
        .context("cannot run ban-agent test-filter")?;
    summary("ban-agent test-filter", log, &output)
}

fn theirs(fail2ban: &Fail2ban, filter: &Path, log: &Path) -> anyhow::Result<Counts> {
    let output = super::fail2ban_regex(fail2ban, &["--raw"], log, filter)
        .output()
        .context("cannot run fail2ban-regex")?;
    summary("fail2ban-regex", log, &output)
}

/// The `Lines:` counts `tool` printed for `log`.
fn summary(tool: &str, log: &Path, output: &std::process::Output) -> anyhow::Result<Counts> {
    parse(&String::from_utf8_lossy(&output.stdout)).with_context(|| {
        format!(
            "{tool} {} printed no Lines: summary: {}",
            log.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The counts of a `Lines:` summary, ours (`Lines: 399 read, 68 matched, 42 ignored, 38
/// missed`) or fail2ban-regex's (`Lines: 148 lines, 42 ignored, 68 matched, 38 missed`).
fn parse(text: &str) -> Option<Counts> {
    let line = text.lines().find_map(|l| l.strip_prefix("Lines: "))?;
    let count = |word: &str| number_before(line, word);
    Some([count("matched")?, count("ignored")?, count("missed")?])
}

/// The number written before `word` in a list like `3 matched, 4 missed`.
fn number_before(line: &str, word: &str) -> Option<i64> {
    line.split(',')
        .map(str::trim)
        .find_map(|part| part.strip_suffix(word))
        .and_then(|number| number.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_summaries_are_read() {
        assert_eq!(
            parse("x\nLines: 399 read, 68 matched, 42 ignored, 38 missed\n"),
            Some([68, 42, 38])
        );
        assert_eq!(
            parse("Lines: 148 lines, 42 ignored, 64 matched, 42 missed\n"),
            Some([64, 42, 42])
        );
        assert_eq!(
            parse("Lines: 3 read, -1 matched, 0 ignored, 4 missed"),
            Some([-1, 0, 4])
        );
        assert_eq!(parse("no summary"), None);
    }
}
