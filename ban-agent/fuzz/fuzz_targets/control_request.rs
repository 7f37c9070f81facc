//! The control protocol on arbitrary lines, as the daemon's socket receives them: decoded,
//! and when valid handled by a running agent (no kernel). An error reply, never a panic.
#![no_main]

use std::sync::Mutex;

use ban_agent::{
    clock::Now,
    config::Config,
    control::protocol::{self, Request},
    daemon::{Agent, NoKernel, Setup},
    metrics::Metrics,
};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
ignoreself = false
[jail.auth]
logpath = "auth.log"
filter = "fastapi-auth"
maxretry = 3
ports = [8000]
ignoreip = ["198.51.100.0/24"]
[jail.api]
logpath = "auth.log"
filter = "fastapi-auth"
ports = "all"
"#;

struct Scene {
    _dir: tempfile::TempDir,
    agent: Agent,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("ban-agent.toml");
    std::fs::write(&path, CONFIG).expect("write the configuration");
    std::fs::write(dir.path().join("auth.log"), "").expect("write the log");
    let config = Config::parse(&path, CONFIG).expect("the fuzz configuration parses");
    let setup = Setup {
        own: Vec::new(),
        zone: jiff::tz::TimeZone::UTC,
        metrics: Metrics::new(),
        events: None,
    };
    let agent =
        Agent::start(config, Box::new(NoKernel), None, setup, now()).expect("the agent starts");
    Scene { _dir: dir, agent }
}

fn now() -> Now {
    Now {
        wall: 1_795_521_600_000,
        boot: 1_000_000_000_000,
    }
}

static SCENE: Mutex<Option<Scene>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let Ok(request) = protocol::decode::<Request>(&line) else {
        return;
    };
    let mut guard = SCENE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let scene = guard.get_or_insert_with(scene);
    let (reply, _after) = scene.agent.handle(request, now());
    // The reply goes back on the socket: it must encode, and decode to itself.
    let encoded = protocol::encode(&reply);
    let _ = protocol::decode::<protocol::Reply>(encoded.trim_end()).expect("a reply decodes");
});
