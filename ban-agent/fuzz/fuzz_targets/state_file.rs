//! The state on arbitrary bytes, as a broken disk or a hand edit leaves it: an old
//! `state.json` taken in (bans, history, log checkpoints, jail ids), or the state database
//! itself when the bytes start as SQLite's files do. The agent starts from it or refuses
//! it with an error, never a panic, and never restores a ban of an address it must spare.
#![no_main]

use ban_agent::{
    clock::Now,
    config::Config,
    control::protocol::{Reply, Request},
    daemon::{Agent, NoKernel, Setup},
    metrics::Metrics,
    store::Store,
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
ignoreself = false
state_dir = "state"
[jail.auth]
logpath = "auth.log"
filter = "fastapi-auth"
maxretry = 3
ports = [8000]
start = "head"
"#;

/// The target's own folder under the temporary directory, created by the target itself
/// (a new machine has none). Its place is fixed, so that the seed corpus can name the log
/// in its checkpoints (`/tmp/ban-agent-fuzz-state/auth.log` where TMPDIR is unset) and a
/// crash replays with `cargo fuzz run state_file INPUT`.
const DIR: &str = "ban-agent-fuzz-state";

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(DIR);
    std::fs::create_dir_all(&dir).expect("create the fuzz target's folder");
    let path = dir.join("ban-agent.toml");
    std::fs::write(&path, CONFIG).expect("write the configuration");
    std::fs::write(dir.join("auth.log"), "a line\nand another\n").expect("write the log");
    let config = Config::parse(&path, CONFIG).expect("the fuzz configuration parses");
    let state = dir.join("state");
    let _fresh = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).expect("state directory");
    let file = if data.starts_with(b"SQLite format 3\0") {
        "state.db"
    } else {
        "state.json"
    };
    std::fs::write(state.join(file), data).expect("write the state");
    let now = Now {
        wall: 1_795_521_600_000,
        boot: 1_000_000_000_000,
    };
    let Ok(store) = Store::open(&config.global.state_dir, now.wall) else {
        return;
    };
    let setup = Setup {
        own: Vec::new(),
        zone: jiff::tz::TimeZone::UTC,
        metrics: Metrics::new(),
        events: None,
    };
    let Ok(mut agent) = Agent::start(config, Box::new(NoKernel), Some(store), setup, now) else {
        return;
    };
    let _ = agent.poll(now);
    if let (Reply::Bans { bans }, _) = agent.handle(
        Request::Banned {
            target: None,
            jail: None,
        },
        now,
    ) {
        for ban in bans {
            let addr = ban.target.addr();
            assert!(
                !(addr.is_loopback() || addr.is_unspecified()),
                "restored a ban of {addr}, which is never banned"
            );
        }
    }
});
