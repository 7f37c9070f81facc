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
}
