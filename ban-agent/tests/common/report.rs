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
