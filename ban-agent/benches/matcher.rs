//! `cargo xtask bench matcher`: the filter alone (criterion), per line: the shipped
//! FastAPI filter on a failure, a success and another logger's line; and a line that no
//! failregex matches, against 1 and 50 failregexes (rejected by the literal prefilter, or
//! passing it and rejected by the regex set), to show that the cost of a line that fails
//! does not grow with the number of regexes.

use std::hint::black_box;

use ban_agent::filter::{Filter, FilterSpec, fastapi_auth};
use criterion::{Criterion, criterion_group, criterion_main};

const FAILURE: &str =
    r#"2026-11-24 12:00:00,001 - fastapi-auth - INFO - 203.0.113.7 - "POST /login" 401 - 0.0087s"#;
const SUCCESS: &str =
    r#"2026-11-24 12:00:00,001 - fastapi-auth - INFO - 203.0.113.7 - "POST /login" 200 - 0.0087s"#;
const FAILURE_V6: &str = r#"2026-11-24 12:00:00,001 - fastapi-auth - INFO - 2001:db8::7 - "POST /register" 400 - 0.0087s"#;
const OTHER: &str = "2026-11-24 12:00:00,001 - uvicorn.access - INFO - 203.0.113.7:51234 - \"GET /items HTTP/1.1\" 200";

fn fastapi(c: &mut Criterion) {
    let filter = fastapi_auth();
    let mut scratch = filter.scratch();
    let mut group = c.benchmark_group("fastapi-auth");
    for (name, line) in [
        ("failure", FAILURE),
        ("failure_ipv6", FAILURE_V6),
        ("success", SUCCESS),
        ("other_logger", OTHER),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| filter.check_with(&mut scratch, black_box(line)))
        });
    }
    group.finish();
}

/// fail2ban-style regexes of other services: none matches a FastAPI line.
fn many_regexes(count: usize) -> Filter {
    let failregex = (0..count)
        .map(|i| format!(r"^\S+ sshd\[\d+\]: Failed password for user{i} from <HOST> port \d+"))
        .collect();
    Filter::compile(&FilterSpec {
        failregex,
        ignoreregex: vec![],
        ..Default::default()
    })
    .expect("compiles")
}

/// An sshd line that has the regexes' literals but matches none of them.
const NEAR_MISS: &str =
    "Nov 24 12:00:00 host sshd[812]: Failed password for root from 192.0.2.7 port 22 ssh2";

fn regex_count(c: &mut Criterion) {
    for (group_name, line) in [("unmatched_line", SUCCESS), ("near_miss_line", NEAR_MISS)] {
        let mut group = c.benchmark_group(group_name);
        for count in [1, 50] {
            let filter = many_regexes(count);
            let mut scratch = filter.scratch();
            group.bench_function(format!("{count}_failregexes"), |b| {
                b.iter(|| filter.check_with(&mut scratch, black_box(line)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, fastapi, regex_count);
criterion_main!(benches);
