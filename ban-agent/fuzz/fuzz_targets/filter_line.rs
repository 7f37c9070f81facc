//! The shipped filter's whole detection path (filter, date, ignore list, tracker) on
//! arbitrary log text: never a panic, and every address it counts is written in the line.
#![no_main]

use std::{net::IpAddr, path::Path, sync::OnceLock};

use ban_agent::{
    config::Config,
    detect::{Detector, Verdict},
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
ignoreself = false
[jail.auth]
logpath = "/nonexistent/auth.log"
filter = "fastapi-auth"
maxretry = 3
ignoreip = ["198.51.100.0/24"]
"#;

fn detector() -> Detector {
    static CONFIG_PARSED: OnceLock<Config> = OnceLock::new();
    let config = CONFIG_PARSED.get_or_init(|| {
        Config::parse(Path::new("fuzz.toml"), CONFIG).expect("the fuzz configuration parses")
    });
    let jail = config.jail("auth").expect("jail auth");
    Detector::for_jail(jail, Vec::new(), jiff::tz::TimeZone::UTC)
}

/// Whether `addr` is written in `line`, in any spelling (case, zero compression, an IPv4
/// address mapped into IPv6).
fn written_in(line: &str, addr: IpAddr) -> bool {
    line.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .filter_map(|token| token.trim_matches('.').parse::<IpAddr>().ok())
        .any(|found| found.to_canonical() == addr)
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut detector = detector();
    for (n, line) in text.lines().enumerate() {
        let now = 1_795_521_600_000 + i64::try_from(n).unwrap_or(0) * 1000;
        let target = match detector.line(line, now) {
            Verdict::Counted { target, .. } => target,
            Verdict::Ban { decision, .. } => decision.target,
            _ => continue,
        };
        assert!(
            written_in(line, target.addr()),
            "{target} counted from a line that does not hold it: {line:?}"
        );
    }
});
