//! A fail2ban filter file and log lines, both arbitrary (the filter's text up to a line
//! `----`, the log after it): reading, interpolating and compiling the filter fails with an
//! error or succeeds, and matching never panics nor hangs (the backtracking engine has a
//! step limit; libFuzzer's timeout is the judge). Every address a hit reports is written
//! in the line, or in one of the buffered lines before it.
#![no_main]

use std::path::Path;

use ban_agent::fail2ban::{FilterRef, definition, ini};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (filter, log) = text.split_once("\n----\n").unwrap_or((&text, ""));
    let Ok(parsed) = ini::parse(Path::new("fuzz.conf"), filter) else {
        return;
    };
    let reference = FilterRef {
        name: "fuzz".to_owned(),
        options: Vec::new(),
    };
    let Ok(definition) = definition::resolve(&parsed, &reference) else {
        return;
    };
    let Ok(mut filter) = definition.compile(jiff::tz::TimeZone::UTC, 2026) else {
        return;
    };
    let mut scratch = filter.scratch();
    let mut seen = String::new();
    for (n, line) in log.lines().enumerate() {
        seen.push_str(line);
        seen.push('\n');
        let now = 1_795_521_600_000 + i64::try_from(n).unwrap_or(0) * 1000;
        filter.judge(&mut scratch, line, now, None);
        for hit in filter.hits().unwrap_or_default() {
            if let Some((address, _)) = &hit.address {
                assert!(
                    seen.contains(address.as_str()),
                    "{address} reported from lines that do not hold it"
                );
            }
        }
    }
});
