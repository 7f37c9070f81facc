//! Who is never banned: loopback and unspecified addresses always, the host's own
//! addresses with `ignoreself`, and each jail's `ignoreip`.
//!
//! A target is spared when it overlaps an ignored network either way: a failure of an
//! address inside `ignoreip`, and a prefix ban (`ban_prefix_v4 = 24`) that would cover an
//! ignored address, are both refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a target is not banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spared {
    /// Loopback (127.0.0.0/8, ::1) or unspecified (0.0.0.0, ::).
    Reserved,
    /// One of this host's addresses (`ignoreself`).
    OwnAddress,
    /// The jail's `ignoreip`.
    IgnoreIp,
}

impl Spared {
    /// Every reason, in the order of [`Spared::index`].
    pub const ALL: [Spared; 3] = [Self::Reserved, Self::OwnAddress, Self::IgnoreIp];

    /// A position in per-reason counters.
    pub fn index(self) -> usize {
        match self {
            Self::Reserved => 0,
            Self::OwnAddress => 1,
            Self::IgnoreIp => 2,
        }
    }

    /// A short name, for counts.
    pub fn label(self) -> &'static str {
        match self {
            Self::Reserved => "loopback or unspecified",
            Self::OwnAddress => "this host's own",
            Self::IgnoreIp => "ignoreip",
        }
    }
}

impl std::fmt::Display for Spared {
    /// Why, as the end of "X is not banned: ...".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Reserved => "loopback and unspecified addresses are never banned",
            Self::OwnAddress => "it is (or covers) one of this host's addresses (ignoreself)",
            Self::IgnoreIp => "it is in (or covers part of) the jail's ignoreip",
        })
    }
}

/// The networks a jail never bans.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreList {
    ignoreip: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl IgnoreList {
    /// `ignoreip` of a jail, and the host's addresses when `ignoreself` is on.
    pub fn new(ignoreip: Vec<IpNet>, own: Vec<IpAddr>) -> Self {
        Self { ignoreip, own }
    }

    /// Whether `target` must not be banned, and why.
    pub fn spares(&self, target: &IpNet) -> Option<Spared> {
        if is_reserved(target) {
            return Some(Spared::Reserved);
        }
        if self.own.iter().any(|addr| target.contains(addr)) {
            return Some(Spared::OwnAddress);
        }
        self.ignoreip
            .iter()
            .any(|net| net.contains(target) || target.contains(net))
            .then_some(Spared::IgnoreIp)
    }
}

fn is_reserved(target: &IpNet) -> bool {
    const RESERVED: [IpNet; 4] = [
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
        IpNet::new_assert(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 32),
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
        IpNet::new_assert(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 128),
    ];
    RESERVED
        .iter()
        .any(|net| net.contains(target) || target.contains(net))
}

/// The addresses of this host's interfaces (for `ignoreself`).
pub fn own_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free with freeifaddrs below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut addrs = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        if let Some(addr) = unsafe { sockaddr_ip(entry.ifa_addr) } {
            addrs.push(addr);
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// The gateways of this network namespace's default routes, IPv4 and IPv6, as the kernel
/// lists them in `/proc/net/route` and `/proc/net/ipv6_route`.
pub fn default_gateways() -> Vec<IpAddr> {
    let mut gateways = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        gateways.extend(text.lines().skip(1).filter_map(ipv4_default_gateway));
    }
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        gateways.extend(text.lines().filter_map(ipv6_default_gateway));
    }
    gateways.sort();
    gateways.dedup();
    gateways
}

/// `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`, addresses in hex of the
/// kernel's (little-endian) byte order.
fn ipv4_default_gateway(line: &str) -> Option<IpAddr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (destination, gateway, mask) = (fields.get(1)?, fields.get(2)?, fields.get(7)?);
    if *destination != "00000000" || *mask != "00000000" || *gateway == "00000000" {
        return None;
    }
    let raw = u32::from_str_radix(gateway, 16).ok()?;
    Some(IpAddr::from(raw.to_le_bytes()))
}

/// `dest plen src plen next_hop metric refcnt use flags iface`, addresses as 32 hex digits.
fn ipv6_default_gateway(line: &str) -> Option<IpAddr> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (destination, prefix, next_hop) = (fields.first()?, fields.get(1)?, fields.get(4)?);
    let zero = "0".repeat(32);
    if **destination != zero || *prefix != "00" || **next_hop == zero {
        return None;
    }
    let raw = u128::from_str_radix(next_hop, 16).ok()?;
    Some(IpAddr::from(raw.to_be_bytes()))
}

/// # Safety
/// `sa` is null or points to a sockaddr whose family tells its real type.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per this function's contract.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            let v4 = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
        }
        libc::AF_INET6 => {
            let v6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(v6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
            .expect("an address or network")
    }

    #[test]
    fn loopback_and_unspecified_are_never_banned() {
        let list = IgnoreList::default();
        for target in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "0.0.0.0",
            "::",
            "0.0.0.0/0",
        ] {
            assert_eq!(
                list.spares(&net(target)),
                Some(Spared::Reserved),
                "{target}"
            );
        }
        assert_eq!(list.spares(&net("192.0.2.1")), None);
        assert_eq!(list.spares(&net("2001:db8::1")), None);
    }

    #[test]
    fn own_addresses_and_ignoreip_either_way() {
        let list = IgnoreList::new(
            vec![net("198.51.100.0/24"), net("2001:db8:1::/48")],
            vec!["192.0.2.10".parse().expect("address")],
        );
        assert_eq!(list.spares(&net("192.0.2.10")), Some(Spared::OwnAddress));
        assert_eq!(
            list.spares(&net("192.0.2.0/24")),
            Some(Spared::OwnAddress),
            "a prefix ban would cover the host"
        );
        assert_eq!(list.spares(&net("198.51.100.77")), Some(Spared::IgnoreIp));
        assert_eq!(list.spares(&net("198.51.0.0/16")), Some(Spared::IgnoreIp));
        assert_eq!(list.spares(&net("2001:db8:1:2::9")), Some(Spared::IgnoreIp));
        assert_eq!(list.spares(&net("192.0.2.11")), None);
        assert_eq!(list.spares(&net("2001:db8:2::1")), None);
    }

    #[test]
    fn this_host_has_a_loopback_address() {
        let own = own_addresses().expect("getifaddrs");
        assert!(own.iter().any(IpAddr::is_loopback), "{own:?}");
    }

    #[test]
    fn default_gateways_are_read_from_the_kernels_route_tables() {
        let v4 = "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0";
        assert_eq!(
            super::ipv4_default_gateway(v4),
            Some("192.0.2.1".parse().expect("address"))
        );
        let not_default = "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
        assert_eq!(super::ipv4_default_gateway(not_default), None);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                  20010db8000000000000000000000001 00000400 00000001 00000000 00000003 eth0";
        assert_eq!(
            super::ipv6_default_gateway(v6),
            Some("2001:db8::1".parse().expect("address"))
        );
    }
}
