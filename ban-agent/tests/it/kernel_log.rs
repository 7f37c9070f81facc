//! Debug events travel from the XDP program to the agent's log through aya-log, and cost
//! nothing at the default level: no event is even produced. Its own binary, because it
//! installs the process-wide `log` logger.

use crate::common;

use std::sync::Mutex;

use aya::programs::{TestRun as _, TestRunOptions};
use ban_agent::{
    clock::Expiry,
    datapath::{Datapath, DatapathOptions, JailPorts, Protocol},
};
use common::{
    Pins,
    packet::{Frame, L4},
};

static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut records = RECORDS.lock().unwrap_or_else(|p| p.into_inner());
        records.push(format!("{} {}", record.level(), record.args()));
    }
    fn flush(&self) {}
}

/// Drops one packet from a banned source with the program loaded at `level`, and returns
/// what reached the log.
fn drop_one(level: aya_log::Level, tag: &str) -> Vec<String> {
    let pins = Pins::new(tag);
    let mut dp = Datapath::open(DatapathOptions {
        pin_dir: pins.dir.clone(),
        log_level: level,
        ..DatapathOptions::default()
    })
    .expect("load");
    dp.maps()
        .set_jails(&[JailPorts {
            jail: 3,
            ports: Some(vec![8000]),
            protocol: Protocol::Tcp,
        }])
        .expect("jails");
    dp.maps()
        .ban(3, "192.0.2.10/32".parse().expect("CIDR"), Expiry::Never)
        .expect("ban");
    let frame = Frame::v4([192, 0, 2, 10], L4::Tcp(8000)).bytes();
    let result = dp
        .program()
        .expect("program")
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            ..TestRunOptions::new()
        })
        .expect("test run");
    assert_eq!(result.return_value, 1, "XDP_DROP");
    RECORDS.lock().unwrap_or_else(|p| p.into_inner()).clear();
    dp.flush_kernel_log();
    RECORDS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[test]
fn drops_are_logged_at_debug_level_only() {
    let Some(_serial) = common::privileged("drops_are_logged_at_debug_level_only") else {
        return;
    };
    log::set_logger(&Capture).expect("first logger of this binary");
    log::set_max_level(log::LevelFilter::Trace);

    let records = drop_one(aya_log::Level::Debug, "log-debug");
    assert!(
        records.iter().any(|r| r.contains("drop 192.0.2.10 jail 3")),
        "no drop event: {records:?}"
    );
    let records = drop_one(aya_log::Level::Info, "log-info");
    assert!(records.is_empty(), "events at info level: {records:?}");
}
