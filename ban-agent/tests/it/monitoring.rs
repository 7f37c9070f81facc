//! The shipped Prometheus rules, through Prometheus' own `promtool` (Debian's `prometheus`
//! package, which `cargo xtask setup` installs; its server is never started): they load,
//! and each alert fires on the series that should raise it and not on the others
//! (`deploy/prometheus/ban-agent-rules.test.yml`). That the dashboard and the rules name
//! only metrics the agent exports is a unit test of `metrics.rs`.

use std::{path::Path, process::Command};

#[test]
fn the_alerting_rules_load_and_fire_when_they_should() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let found = Command::new("promtool").arg("--version").output();
    if found.is_err() {
        crate::common::skip(
            "the_alerting_rules_load_and_fire_when_they_should",
            "no promtool (Debian's prometheus package; `cargo xtask setup` installs it)",
        );
        return;
    }
    for args in [
        ["check", "rules", "ban-agent-rules.yml"],
        ["test", "rules", "ban-agent-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&rules)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
