//! Reading the `Lines:` row that `ban-agent test-filter` and fail2ban-regex both print,
//! for the tests and the detection benchmark.

/// The four numbers of the first row starting with `Lines: `, in order (test-filter:
/// read, matched, ignored, missed; fail2ban-regex: lines, ignored, matched, missed).
pub fn lines_row(report: &str) -> Option<[u64; 4]> {
    let row = report.lines().find(|l| l.starts_with("Lines: "))?;
    let numbers: Vec<u64> = row
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    numbers.try_into().ok()
}

/// `fail2ban-regex LOG FILTER` as the benchmarks run it (`--print-no-missed`), with the
/// unpacked fail2ban's modules when xtask says where they are.
#[allow(dead_code, reason = "the throughput benchmarks' part of the helpers")]
pub fn fail2ban_regex(
    script: &std::path::Path,
    log: &std::path::Path,
    filter: &std::path::Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script)
        .arg("--print-no-missed")
        .arg(log)
        .arg(filter);
    if let Some(path) = std::env::var_os("BAN_AGENT_FAIL2BAN_PYTHONPATH") {
        cmd.env("PYTHONPATH", path);
    }
    cmd
}

/// The lines read and the lines matched, from test-filter's report (`tool`
/// "test-filter") or fail2ban-regex's output.
#[allow(dead_code, reason = "the throughput benchmarks' part of the helpers")]
pub fn read_and_matched(tool: &str, report: &str) -> anyhow::Result<(u64, u64)> {
    match lines_row(report) {
        // "Lines: 1000000 read, 150204 matched, 0 ignored, 849796 missed"
        Some([lines, matched, ..]) if tool == "test-filter" => Ok((lines, matched)),
        // "Lines: 1000000 lines, 0 ignored, 150000 matched, 850000 missed"
        Some([lines, _ignored, matched, _missed]) => Ok((lines, matched)),
        None => anyhow::bail!("no Lines row in {tool}'s output:\n{report}"),
    }
}
