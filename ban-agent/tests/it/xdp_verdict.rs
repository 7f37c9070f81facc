//! The XDP verdict on crafted packets through `BPF_PROG_TEST_RUN`: banned and not banned,
//! each protocol, VLAN tags, IPv4 options, IPv6 extension headers, fragments, truncation at
//! every length, expiry, prefixes and counters. Needs root; see `common::privileged`.

use crate::common;

use std::time::Duration;

use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::{Datapath, DatapathOptions, JailPorts, Protocol},
};
use common::{
    Pins,
    packet::{Ext, Frame, Ip, L4},
    xdp::*,
};

#[test]
fn ipv4_bans_apply_to_their_jails_ports_only() {
    let Some(mut test) = setup("ipv4_bans_apply_to_their_jails_ports_only") else {
        return;
    };
    let dp = &mut test.dp;
    assert_eq!(verdict(dp, &Frame::v4(BANNED, L4::Tcp(PROTECTED))), DROP);
    assert_eq!(verdict(dp, &Frame::v4(CLEAN, L4::Tcp(PROTECTED))), PASS);
    assert_eq!(
        verdict(dp, &Frame::v4(BANNED, L4::Tcp(PROTECTED + 1))),
        PASS
    );
    assert_eq!(verdict(dp, &Frame::v4(BANNED, L4::Udp(PROTECTED))), PASS);
    assert_eq!(verdict(dp, &Frame::v4(BANNED, L4::Icmp)), PASS);
    // Prefix ban.
    assert_eq!(verdict(dp, &Frame::v4(IN_PREFIX, L4::Tcp(PROTECTED))), DROP);
    assert_eq!(
        verdict(dp, &Frame::v4(OUTSIDE_PREFIX, L4::Tcp(PROTECTED))),
        PASS
    );
    // All ports, all protocols.
    for l4 in [L4::Tcp(22), L4::Tcp(PROTECTED), L4::Udp(53), L4::Icmp] {
        assert_eq!(
            verdict(dp, &Frame::v4(ALL_PORTS_BANNED, l4)),
            DROP,
            "{l4:?}"
        );
    }
    // UDP jail.
    assert_eq!(
        verdict(dp, &Frame::v4(UDP_BANNED, L4::Udp(UDP_PROTECTED))),
        DROP
    );
    assert_eq!(
        verdict(dp, &Frame::v4(UDP_BANNED, L4::Tcp(UDP_PROTECTED))),
        PASS
    );
}

// Declaring the jails again rewrites only the port slots that change, as read from the map
// (in batches where the kernel can): a port no jail protects any more stops dropping, and
// `protected_jails` (`ban-agent ban`'s check) reads every slot. Without the slots read
// right, the old port keeps dropping or the jail 1 bit stays protected.
#[test]
fn declaring_the_jails_again_moves_their_ports() {
    let Some(mut test) = setup("declaring_the_jails_again_moves_their_ports") else {
        return;
    };
    let dp = &mut test.dp;
    assert_eq!(dp.maps().protected_jails().expect("read the slots"), 0b111);
    dp.maps()
        .set_jails(&[JailPorts {
            jail: 0,
            ports: Some(vec![PROTECTED + 1]),
            protocol: Protocol::Tcp,
        }])
        .expect("jails");
    assert_eq!(verdict(dp, &Frame::v4(BANNED, L4::Tcp(PROTECTED))), PASS);
    assert_eq!(
        verdict(dp, &Frame::v4(BANNED, L4::Tcp(PROTECTED + 1))),
        DROP
    );
    assert_eq!(
        verdict(dp, &Frame::v4(ALL_PORTS_BANNED, L4::Tcp(22))),
        PASS,
        "jail 1 protects nothing now"
    );
    assert_eq!(dp.maps().protected_jails().expect("read the slots"), 0b1);
}

#[test]
fn an_expired_ban_stops_dropping_and_unban_lifts_at_once() {
    let Some(mut test) = setup("an_expired_ban_stops_dropping_and_unban_lifts_at_once") else {
        return;
    };
    let dp = &mut test.dp;
    assert_eq!(verdict(dp, &Frame::v4(EXPIRED, L4::Tcp(PROTECTED))), PASS);

    let soon = Expiry::after(boot_ns(), Duration::from_millis(300));
    let target = "192.0.2.20/32".parse().expect("CIDR");
    dp.maps().ban(0, target, soon).expect("ban");
    assert_eq!(verdict(dp, &Frame::v4(CLEAN, L4::Tcp(PROTECTED))), DROP);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(verdict(dp, &Frame::v4(CLEAN, L4::Tcp(PROTECTED))), PASS);

    dp.maps().ban(0, target, Expiry::Never).expect("ban");
    assert_eq!(verdict(dp, &Frame::v4(CLEAN, L4::Tcp(PROTECTED))), DROP);
    assert_eq!(
        dp.maps().expiry(0, target).expect("look up"),
        Some(Expiry::Never)
    );
    let network = "198.51.100.0/24".parse().expect("CIDR");
    dp.maps().ban(0, network, soon).expect("ban a network");
    assert_eq!(dp.maps().expiry(0, network).expect("look up"), Some(soon));
    assert_eq!(
        dp.maps().expiry(1, target).expect("look up"),
        None,
        "another jail"
    );
    assert!(dp.maps().unban(0, network).expect("unban the network"));
    assert!(dp.maps().unban(0, target).expect("unban"));
    assert_eq!(dp.maps().expiry(0, target).expect("look up"), None);
    assert!(!dp.maps().unban(0, target).expect("unban twice"));
    assert_eq!(verdict(dp, &Frame::v4(CLEAN, L4::Tcp(PROTECTED))), PASS);

    let expired = dp.maps().remove_expired(boot_ns()).expect("sweep");
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0].target.to_string(), "192.0.2.40/32");
}

#[test]
fn vlan_tags_and_ipv4_options_are_walked() {
    let Some(mut test) = setup("vlan_tags_and_ipv4_options_are_walked") else {
        return;
    };
    let dp = &mut test.dp;
    for vlans in [vec![0x8100], vec![0x88a8, 0x8100]] {
        for options in [0, 4, 40] {
            for (src, expected) in [(BANNED, DROP), (CLEAN, PASS)] {
                let frame = Frame {
                    vlans: vlans.clone(),
                    ip: Ip::V4 {
                        src,
                        options,
                        fragment_offset: 0,
                    },
                    l4: L4::Tcp(PROTECTED),
                };
                assert_eq!(verdict(dp, &frame), expected, "{frame:?}");
            }
        }
    }
    // A third tag is deeper than the parser goes: not parsed, so passed.
    let frame = Frame {
        vlans: vec![0x88a8, 0x8100, 0x8100],
        ..Frame::v4(BANNED, L4::Tcp(PROTECTED))
    };
    assert_eq!(verdict(dp, &frame), PASS);
}

#[test]
fn fragments_drop_only_for_all_ports_jails() {
    let Some(mut test) = setup("fragments_drop_only_for_all_ports_jails") else {
        return;
    };
    let dp = &mut test.dp;
    let fragment = |src, fragment_offset| Frame {
        vlans: vec![],
        ip: Ip::V4 {
            src,
            options: 0,
            fragment_offset,
        },
        l4: L4::Tcp(PROTECTED),
    };
    // The first fragment carries the port.
    assert_eq!(verdict(dp, &fragment(BANNED, 0)), DROP);
    // Later fragments have no port: only an all-ports jail can claim them.
    assert_eq!(verdict(dp, &fragment(BANNED, 185)), PASS);
    assert_eq!(verdict(dp, &fragment(ALL_PORTS_BANNED, 185)), DROP);
    assert_eq!(verdict(dp, &fragment(CLEAN, 185)), PASS);

    let v6_fragment = |src, offset| Frame {
        vlans: vec![],
        ip: Ip::V6 {
            src,
            ext: vec![Ext::Fragment(offset)],
        },
        l4: L4::Tcp(PROTECTED),
    };
    assert_eq!(verdict(dp, &v6_fragment(BANNED6, 0)), DROP);
    assert_eq!(verdict(dp, &v6_fragment(BANNED6, 100)), PASS);
    assert_eq!(verdict(dp, &v6_fragment(ALL_PORTS_BANNED6, 100)), DROP);
}

#[test]
fn ipv6_bans_and_extension_headers() {
    let Some(mut test) = setup("ipv6_bans_and_extension_headers") else {
        return;
    };
    let dp = &mut test.dp;
    assert_eq!(verdict(dp, &Frame::v6(BANNED6, L4::Tcp(PROTECTED))), DROP);
    assert_eq!(verdict(dp, &Frame::v6(CLEAN6, L4::Tcp(PROTECTED))), PASS);
    assert_eq!(verdict(dp, &Frame::v6(BANNED6, L4::Tcp(22))), PASS);
    assert_eq!(
        verdict(dp, &Frame::v6(IN_PREFIX6, L4::Tcp(PROTECTED))),
        DROP
    );
    assert_eq!(verdict(dp, &Frame::v6(ALL_PORTS_BANNED6, L4::Icmp)), DROP);
    assert_eq!(
        verdict(dp, &Frame::v6(ALL_PORTS_BANNED6, L4::Udp(53))),
        DROP
    );

    let chains: [Vec<Ext>; 4] = [
        vec![Ext::HopByHop(0)],
        vec![Ext::HopByHop(1), Ext::DestOpts(0), Ext::Routing(2)],
        vec![
            Ext::HopByHop(0),
            Ext::DestOpts(3),
            Ext::Routing(0),
            Ext::Fragment(0),
            Ext::Ah(1),
            Ext::DestOpts(0),
        ],
        // Large: 2 KiB of hop-by-hop options.
        vec![Ext::HopByHop(255)],
    ];
    for ext in chains {
        for (src, expected) in [(BANNED6, DROP), (CLEAN6, PASS)] {
            let frame = Frame {
                vlans: vec![0x8100],
                ip: Ip::V6 {
                    src,
                    ext: ext.clone(),
                },
                l4: L4::Tcp(PROTECTED),
            };
            assert_eq!(verdict(dp, &frame), expected, "{ext:?}");
        }
    }
    // More extension headers than a valid packet has: the port is not looked for, so only
    // all-ports jails apply.
    let too_many = vec![Ext::DestOpts(0); 9];
    for (src, expected) in [(BANNED6, PASS), (ALL_PORTS_BANNED6, DROP)] {
        let frame = Frame {
            vlans: vec![],
            ip: Ip::V6 {
                src,
                ext: too_many.clone(),
            },
            l4: L4::Tcp(PROTECTED),
        };
        assert_eq!(verdict(dp, &frame), expected);
    }
}

/// Cuts frames at every length. An unbanned source passes whatever is missing; a banned one
/// is dropped exactly when the frame still holds the destination port.
#[test]
fn truncated_frames_at_every_length() {
    let Some(mut test) = setup("truncated_frames_at_every_length") else {
        return;
    };
    let dp = &mut test.dp;
    let frames = [
        (
            Frame {
                vlans: vec![0x88a8, 0x8100],
                ip: Ip::V4 {
                    src: BANNED,
                    options: 8,
                    fragment_offset: 0,
                },
                l4: L4::Tcp(PROTECTED),
            },
            CLEAN.to_vec(),
        ),
        (
            Frame {
                vlans: vec![0x8100],
                ip: Ip::V6 {
                    src: BANNED6,
                    ext: vec![Ext::HopByHop(0), Ext::Fragment(0), Ext::DestOpts(1)],
                },
                l4: L4::Udp(PROTECTED),
            },
            CLEAN6.to_vec(),
        ),
        (Frame::v4(BANNED, L4::Tcp(PROTECTED)), CLEAN.to_vec()),
    ];
    // The UDP frame's jail: make 8000/udp protected by jail 0 too.
    dp.maps()
        .set_jails(&[JailPorts {
            jail: 0,
            ports: Some(vec![PROTECTED]),
            protocol: Protocol::All,
        }])
        .expect("jails");
    for (banned_frame, clean_src) in frames {
        let banned = banned_frame.bytes();
        let mut clean_frame = banned_frame.clone();
        match &mut clean_frame.ip {
            Ip::V4 { src, .. } => src.copy_from_slice(&clean_src),
            Ip::V6 { src, .. } => src.copy_from_slice(&clean_src),
        }
        let clean = clean_frame.bytes();
        // The destination port ends 4 bytes into the L4 header.
        let l4_len = match banned_frame.l4 {
            L4::Tcp(_) => 20,
            L4::Udp(_) | L4::Icmp => 8,
        };
        let port_end = banned.len() - l4_len + 4;
        for len in 0..=banned.len() {
            if let Some(v) = run(dp, &clean[..len]) {
                assert_eq!(v, PASS, "unbanned source dropped at {len} bytes");
            }
            if let Some(v) = run(dp, &banned[..len]) {
                let expected = if len >= port_end { DROP } else { PASS };
                assert_eq!(
                    v,
                    expected,
                    "banned source at {len} of {} bytes",
                    banned.len()
                );
            }
        }
    }
}

/// Each program counts what it judged: packets and bytes, dropped and passed, per jail.
#[test]
fn counters_count_drops_and_passes_per_jail() {
    let Some(mut test) = setup("counters_count_drops_and_passes_per_jail") else {
        return;
    };
    let dp = &mut test.dp;
    let dropped = Frame::v4(BANNED, L4::Tcp(PROTECTED)).bytes();
    let passed = Frame::v4(CLEAN, L4::Tcp(PROTECTED)).bytes();
    let jail = |dp: &mut Datapath, id: u32| {
        dp.maps()
            .counters()
            .expect("counters")
            .into_iter()
            .find(|(jail, _)| *jail == id)
            .map(|(_, c)| c)
            .unwrap_or_default()
    };
    for program in PROGRAMS {
        let (before0, before1) = (jail(dp, 0), jail(dp, 1));
        for _ in 0..3 {
            run_on(dp, program, &dropped);
        }
        run_on(dp, program, &passed);
        let (jail0, jail1) = (jail(dp, 0), jail(dp, 1));
        let what = format!("{program:?}");
        assert_eq!(jail0.dropped_packets - before0.dropped_packets, 3, "{what}");
        assert_eq!(
            jail0.dropped_bytes - before0.dropped_bytes,
            3 * dropped.len() as u64,
            "{what}"
        );
        assert_eq!(jail0.passed_packets - before0.passed_packets, 1, "{what}");
        assert_eq!(
            jail0.passed_bytes - before0.passed_bytes,
            passed.len() as u64,
            "{what}"
        );
        // Jail 1 protects every port, so it saw the passed packet too.
        assert_eq!(jail1.passed_packets - before1.passed_packets, 1, "{what}");
    }
    // Jail 2 protects 5353/udp only: it saw nothing.
    assert_eq!(jail(dp, 2), Default::default());
}

#[test]
fn a_full_map_is_an_error_not_a_panic() {
    let Some(_serial) = common::privileged("a_full_map_is_an_error_not_a_panic") else {
        return;
    };
    let pins = Pins::new("full");
    let mut dp = Datapath::open(DatapathOptions {
        pin_dir: pins.dir.clone(),
        max_bans_v4: 4,
        ..DatapathOptions::default()
    })
    .expect("load");
    for i in 0..4u8 {
        let target = format!("192.0.2.{i}/32").parse().expect("CIDR");
        dp.maps()
            .ban(0, target, Expiry::Never)
            .expect("ban within capacity");
    }
    let error = dp
        .maps()
        .ban(0, "192.0.2.99/32".parse().expect("CIDR"), Expiry::Never)
        .expect_err("a fifth ban does not fit");
    let message = error.to_string();
    assert!(
        message.contains("full") && message.contains("4 entries"),
        "{message}"
    );
}

/// A frame longer than one page reaches a frags program in several buffers
/// (`BPF_PROG_TEST_RUN` puts about 3.5 KiB in the first). Here 3.5 KiB of IPv6 extension
/// headers push the TCP header into the second buffer: the port is read through
/// `bpf_xdp_load_bytes`, and the bytes counted are the whole frame's. Without the helper
/// fallback in `Cursor::read`, the banned source passes (its port looks cut off).
#[test]
fn a_multi_buffer_frame_is_judged_by_its_headers_in_any_buffer() {
    let Some(mut test) = setup("a_multi_buffer_frame_is_judged_by_its_headers_in_any_buffer")
    else {
        return;
    };
    let dp = &mut test.dp;
    assert_eq!(
        dp.xdp_program_name().expect("XDP program"),
        ban_common::programs::XDP
    );
    let jumbo = |src| Frame {
        vlans: vec![],
        ip: Ip::V6 {
            src,
            // (255 + 1) * 8 + (180 + 1) * 8 = 3496 bytes of options.
            ext: vec![Ext::HopByHop(255), Ext::DestOpts(180)],
        },
        l4: L4::Tcp(PROTECTED),
    };
    let banned = jumbo(BANNED6).bytes();
    assert!(banned.len() > 3560, "{} bytes", banned.len());
    let before = dp.maps().counters().expect("counters");
    assert_eq!(run_on(dp, Program::Xdp, &banned), Some(DROP));
    assert_eq!(run_on(dp, Program::Xdp, &jumbo(CLEAN6).bytes()), Some(PASS));
    let after = dp.maps().counters().expect("counters");
    let dropped = |counters: &[(u32, ban_common::JailCounters)]| {
        counters
            .iter()
            .find(|(jail, _)| *jail == 0)
            .map_or(0, |(_, c)| c.dropped_bytes)
    };
    assert_eq!(dropped(&after) - dropped(&before), banned.len() as u64);
}

/// `list` reads the exact-ban maps in batches of 8192 (BPF_MAP_LOOKUP_BATCH): more than
/// two batches come back whole, each ban once with its expiry, beside a prefix ban.
#[test]
fn listing_many_bans_gives_each_once_with_its_expiry() {
    let Some(_serial) = common::privileged("listing_many_bans_gives_each_once_with_its_expiry")
    else {
        return;
    };
    let pins = Pins::new("list");
    let mut dp = Datapath::open(DatapathOptions {
        pin_dir: pins.dir.clone(),
        ..DatapathOptions::default()
    })
    .expect("load");
    let mut wanted = std::collections::BTreeMap::new();
    // 20,000 IPv6 addresses (more than two batches) and 512 IPv4 ones, in 3 jails.
    let v6 = (0..20_000u32).map(|i| {
        let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, (i >> 16) as u16, i as u16);
        std::net::IpAddr::V6(addr)
    });
    let v4 = (0..512u32).map(|i| {
        let base = if i < 256 { 0xc000_0200 } else { 0xc633_6400 };
        std::net::IpAddr::V4(std::net::Ipv4Addr::from(base + i % 256))
    });
    for (i, addr) in (0u32..).zip(v6.chain(v4)) {
        let target = ipnet::IpNet::from(addr);
        let expiry = Expiry::At(1_000_000 + u64::from(i));
        dp.maps().ban(i % 3, target, expiry).expect("ban");
        wanted.insert((i % 3, target), expiry);
    }
    let prefix: ipnet::IpNet = "2001:db8:1::/64".parse().expect("CIDR");
    dp.maps().ban(1, prefix, Expiry::Never).expect("ban");
    wanted.insert((1, prefix), Expiry::Never);
    let listed = dp.maps().list().expect("list");
    let got: std::collections::BTreeMap<_, _> = listed
        .iter()
        .map(|ban| ((ban.jail, ban.target), ban.expiry))
        .collect();
    assert_eq!(listed.len(), wanted.len(), "an entry listed twice");
    assert_eq!(got, wanted);
}
