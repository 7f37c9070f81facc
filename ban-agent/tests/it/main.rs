//! The integration tests, in one binary (as aya's are), so that the helpers of `common/`
//! compile once: the daemon, the CLI and the datapath as an operator runs them, each
//! privileged test in namespaces of its own and serial (`common::privileged`).

// A test reads as one story, from the namespaces it builds to what it checks: the
// 80-line limit on functions (clippy.toml) is for the product's code.
#![allow(clippy::too_many_lines)]

#[path = "../common/mod.rs"]
mod common;

mod containers;
mod crowdsec;
mod daemon_run;
mod fail2ban_actions;
mod fail2ban_client;
mod fastapi_e2e;
mod faults;
mod fleet;
mod fleet_engine;
mod journal;
mod kernel_log;
mod log_target;
mod monitoring;
mod namespace;
mod test_filter;
mod xdp_property;
mod xdp_verdict;
