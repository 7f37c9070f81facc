//! The XDP program loaded with a fixture of jails and bans, run on single frames through
//! `BPF_PROG_TEST_RUN`: shared by the verdict tests and the verdict property test.

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions};
use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::{Datapath, DatapathOptions, JailPorts, Protocol},
};

use super::{Pins, packet::Frame};

pub const PASS: u32 = 2; // XDP_PASS
pub const DROP: u32 = 1; // XDP_DROP

pub const PROTECTED: u16 = 8000;
pub const UDP_PROTECTED: u16 = 5353;

pub const BANNED: [u8; 4] = [192, 0, 2, 10];
pub const CLEAN: [u8; 4] = [192, 0, 2, 20];
pub const ALL_PORTS_BANNED: [u8; 4] = [192, 0, 2, 30];
pub const EXPIRED: [u8; 4] = [192, 0, 2, 40];
pub const UDP_BANNED: [u8; 4] = [192, 0, 2, 50];
pub const IN_PREFIX: [u8; 4] = [198, 51, 100, 77];
pub const OUTSIDE_PREFIX: [u8; 4] = [198, 51, 101, 1];

pub const BANNED6: [u8; 16] = v6(0xa);
pub const CLEAN6: [u8; 16] = v6(0xb);
pub const ALL_PORTS_BANNED6: [u8; 16] = v6(0xd);
pub const IN_PREFIX6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];

pub const fn v6(last: u8) -> [u8; 16] {
    [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last,
    ]
}

/// Jail 0 protects TCP 8000, jail 1 everything, jail 2 UDP 5353; bans as the names say.
pub fn fixture(pins: &Pins) -> Datapath {
    let mut dp = Datapath::open(DatapathOptions {
        pin_dir: pins.dir.clone(),
        ..DatapathOptions::default()
    })
    .expect("load the XDP program");
    let maps = dp.maps();
    maps.set_jails(&[
        JailPorts {
            jail: 0,
            ports: Some(vec![PROTECTED]),
            protocol: Protocol::Tcp,
        },
        JailPorts {
            jail: 1,
            ports: None,
            protocol: Protocol::All,
        },
        JailPorts {
            jail: 2,
            ports: Some(vec![UDP_PROTECTED]),
            protocol: Protocol::Udp,
        },
    ])
    .expect("configure jails");
    let hour = Expiry::after(boot_ns(), Duration::from_secs(3600));
    let ban = |maps: &mut ban_agent::datapath::Maps, jail, target: &str, expiry| {
        maps.ban(jail, target.parse().expect("CIDR"), expiry)
            .expect("ban");
    };
    ban(maps, 0, "192.0.2.10/32", hour);
    ban(maps, 1, "192.0.2.30/32", Expiry::Never);
    ban(maps, 0, "192.0.2.40/32", Expiry::At(boot_ns() - 1));
    ban(maps, 2, "192.0.2.50/32", hour);
    ban(maps, 0, "198.51.100.0/24", hour);
    ban(maps, 0, "2001:db8::a/128", hour);
    ban(maps, 1, "2001:db8::d/128", hour);
    ban(maps, 0, "2001:db8:1::/64", hour);
    dp
}

/// One privileged test's program, pins and turn. Fields drop in order: the program,
/// then the pins (detached), then the serial lock.
pub struct Setup {
    pub dp: Datapath,
    _pins: Pins,
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// The [`fixture`] for `test`, or `None` when the test is skipped (not root).
pub fn setup(test: &str) -> Option<Setup> {
    let serial = super::privileged(test)?;
    let pins = Pins::new(test);
    Some(Setup {
        dp: fixture(&pins),
        _pins: pins,
        _serial: serial,
    })
}

/// The verdict for one frame; `None` when the kernel refuses to run a frame that short.
pub fn run(dp: &mut Datapath, bytes: &[u8]) -> Option<u32> {
    let program = dp.program().expect("program");
    let result = program.test_run(TestRunOptions {
        data_in: Some(bytes),
        ..TestRunOptions::new()
    });
    match result {
        Ok(result) => {
            assert!(
                result.return_value == PASS || result.return_value == DROP,
                "verdict {} for {bytes:02x?}",
                result.return_value
            );
            Some(result.return_value)
        }
        Err(e) if bytes.len() < 14 => {
            let _refused = e;
            None
        }
        Err(e) => panic!("BPF_PROG_TEST_RUN on {} bytes: {e}", bytes.len()),
    }
}

pub fn verdict(dp: &mut Datapath, frame: &Frame) -> u32 {
    run(dp, &frame.bytes()).expect("a full frame runs")
}
