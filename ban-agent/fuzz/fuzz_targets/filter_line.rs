//! Every built-in filter's whole detection path (filter, date, ignore list, tracker) on
//! arbitrary log text: never a panic, and every address it counts is written in the line
//! (for a JSON line: in one of its strings, once unescaped).
#![no_main]

use std::{net::IpAddr, path::Path, sync::OnceLock};

use ban_agent::{
    config::Config,
    detect::{Detector, Detection},
    filter::BUILTIN,
};
use libfuzzer_sys::fuzz_target;

/// One jail per built-in filter.
fn config() -> &'static Config {
    static CONFIG_PARSED: OnceLock<Config> = OnceLock::new();
    CONFIG_PARSED.get_or_init(|| {
        let mut text = String::from("ignoreself = false\n");
        for (name, _) in BUILTIN {
            text.push_str(&format!(
                "[jail.{name}]\nlogpath = \"/nonexistent/{name}.log\"\nfilter = \"{name}\"\n\
                 maxretry = 3\nignoreip = [\"198.51.100.0/24\"]\n"
            ));
        }
        Config::parse(Path::new("fuzz.toml"), &text).expect("the fuzz configuration parses")
    })
}

/// Whether `addr` is written in `line`, in any spelling (case, zero compression, an IPv4
/// address mapped into IPv6), alone or with a port (`192.0.2.7:51234`, as uvicorn writes).
fn written_in(line: &str, addr: IpAddr) -> bool {
    line.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .map(|token| token.trim_matches('.'))
        .flat_map(|token| [Some(token), token.rsplit_once(':').map(|(host, _)| host)])
        .filter_map(|token| token?.parse::<IpAddr>().ok())
        .any(|found| found.to_canonical() == addr)
}

/// Whether a string of the JSON `value` holds `addr` (JSON may escape any character).
fn in_json(value: &serde_json::Value, addr: IpAddr) -> bool {
    match value {
        serde_json::Value::String(text) => written_in(text, addr),
        serde_json::Value::Array(items) => items.iter().any(|v| in_json(v, addr)),
        serde_json::Value::Object(map) => map.values().any(|v| in_json(v, addr)),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (name, _) in BUILTIN {
        let jail = config().jail(name).expect("a jail per built-in filter");
        let mut detector = Detector::for_jail(jail, Vec::new(), jiff::tz::TimeZone::UTC);
        for (n, line) in text.lines().enumerate() {
            let now = 1_795_521_600_000 + i64::try_from(n).unwrap_or(0) * 1000;
            let target = match detector.line(line, now) {
                Detection::Counted { target, .. } => target,
                Detection::Ban { decision, .. } => decision.target,
                _ => continue,
            };
            let addr = target.addr();
            let json = serde_json::from_str::<serde_json::Value>(line).ok();
            assert!(
                written_in(line, addr) || json.is_some_and(|v| in_json(&v, addr)),
                "{name}: {target} counted from a line that does not hold it: {line:?}"
            );
        }
    }
});
