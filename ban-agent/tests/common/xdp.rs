//! The programs loaded with a fixture of jails and bans, run on single frames through
//! `BPF_PROG_TEST_RUN`: shared by the verdict tests and the verdict property test. Every
//! frame goes through the three entry points (XDP with frags, its single-buffer twin, tc
//! ingress), which must agree: one verdict, whatever the hook.

use std::time::Duration;

use aya::programs::{TestRun as _, TestRunOptions};
use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::{Datapath, DatapathOptions, JailPorts, Protocol},
};

use super::{Pins, packet::Frame};

pub const PASS: u32 = 2; // XDP_PASS
pub const DROP: u32 = 1; // XDP_DROP

/// An entry point of the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `ban_xdp` (`xdp.frags`).
    Xdp,
    /// `ban_xdp_linear`, what a kernel before 5.18 runs.
    XdpLinear,
    /// `ban_tc`.
    Tc,
}

pub const PROGRAMS: [Program; 3] = [Program::Xdp, Program::XdpLinear, Program::Tc];

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

/// The verdict for one frame, the same from every program that runs it (asserted); `None`
/// when the kernel refuses to run a frame that short.
pub fn run(dp: &mut Datapath, bytes: &[u8]) -> Option<u32> {
    let xdp = run_on(dp, Program::Xdp, bytes);
    for program in [Program::XdpLinear, Program::Tc] {
        if let (Some(other), Some(xdp)) = (run_on(dp, program, bytes), xdp) {
            assert_eq!(
                other, xdp,
                "{program:?} judged {bytes:02x?} otherwise than ban_xdp (1 drop, 2 pass)"
            );
        }
    }
    xdp
}

/// The verdict of one program for one frame, as XDP codes (tc's drop and pass mapped to
/// them); `None` when the kernel refuses to run a frame that short.
pub fn run_on(dp: &mut Datapath, program: Program, bytes: &[u8]) -> Option<u32> {
    let options = TestRunOptions {
        data_in: Some(bytes),
        ..TestRunOptions::new()
    };
    let result = match program {
        Program::Xdp => dp.program().expect("program").test_run(options),
        Program::XdpLinear => dp.xdp_linear_program().expect("twin").test_run(options),
        Program::Tc => dp.tc_program().expect("tc program").test_run(options),
    };
    match result {
        Ok(result) => {
            let verdict = match (program, result.return_value as i32) {
                (Program::Tc, ban_common::TC_PASS) => PASS,
                (Program::Tc, ban_common::TC_DROP) => DROP,
                (Program::Tc, other) => panic!("tc verdict {other} for {bytes:02x?}"),
                (_, _) => result.return_value,
            };
            assert!(
                verdict == PASS || verdict == DROP,
                "{program:?}: verdict {} for {bytes:02x?}",
                result.return_value
            );
            Some(verdict)
        }
        // XDP runs from 14 bytes on. The skb test run also refuses frames too short for
        // their IP header; no NIC delivers a frame under Ethernet's 60-byte minimum.
        Err(e) if bytes.len() < 14 || (program == Program::Tc && bytes.len() < 60) => {
            let _refused = e;
            None
        }
        Err(e) => panic!(
            "BPF_PROG_TEST_RUN of {program:?} on {} bytes: {e}",
            bytes.len()
        ),
    }
}

pub fn verdict(dp: &mut Datapath, frame: &Frame) -> u32 {
    run(dp, &frame.bytes()).expect("a full frame runs")
}
