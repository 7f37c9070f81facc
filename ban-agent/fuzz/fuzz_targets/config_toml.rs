//! The configuration parser on arbitrary text: an error or a configuration, never a
//! panic; every jail of an accepted configuration builds its detector.
#![no_main]

use std::path::Path;

use ban_agent::{config::Config, detect::Detector};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(Path::new("fuzz.toml"), text) else {
        return;
    };
    for jail in config.enabled() {
        let mut detector = Detector::for_jail(jail, Vec::new(), jiff::tz::TimeZone::UTC);
        let _ = detector.line(
            "2026-11-24 12:00:00,000 - x - INFO - 192.0.2.1 - \"POST /login\" 401",
            0,
        );
    }
});
