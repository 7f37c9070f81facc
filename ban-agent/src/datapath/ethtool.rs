//! What the kernel says about an interface, through the `SIOCETHTOOL` ioctl: its driver,
//! its active offload features by name, and (veth) the index of its peer. `auto` compares
//! the features before and after attaching native XDP to see what XDP would cost.
//!
//! Written here rather than taken from a crate: the Rust ethtool crates speak generic
//! netlink through an async runtime, while these are four fixed-size ioctls that every
//! kernel since 2.6.39 answers, in the caller's network namespace.

use std::{
    collections::BTreeSet,
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETH_SS_STATS: u32 = 1;
const ETH_SS_FEATURES: u32 = 4;
const ETH_GSTRING_LEN: usize = 32;

/// The active features of an interface, by ethtool name (`tx-tcp-segmentation`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features(pub BTreeSet<String>);

impl Features {
    /// Features active in `self` and no longer in `after`.
    pub fn lost(&self, after: &Features) -> Vec<String> {
        self.0.difference(&after.0).cloned().collect()
    }
}

/// An interface of this network namespace, asked through one socket.
pub struct Ethtool {
    socket: OwnedFd,
    name: [libc::c_char; libc::IFNAMSIZ],
}

impl Ethtool {
    pub fn new(interface: &str) -> io::Result<Self> {
        let bytes = CString::new(interface)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the name"))?;
        let bytes = bytes.as_bytes();
        if bytes.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface names are at most 15 bytes",
            ));
        }
        let mut name = [0; libc::IFNAMSIZ];
        for (to, &from) in name.iter_mut().zip(bytes) {
            *to = from as libc::c_char;
        }
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { socket, name })
    }

    /// The driver's name (`veth`, `virtio_net`, `mlx5_core`, ...).
    pub fn driver(&self) -> io::Result<String> {
        let mut info = [0u32; 49]; // struct ethtool_drvinfo: 196 bytes
        info[0] = ETHTOOL_GDRVINFO;
        self.ioctl(info.as_mut_ptr().cast())?;
        let bytes: Vec<u8> = info[1..9].iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(c_string(&bytes))
    }

    /// The features active now.
    pub fn features(&self) -> io::Result<Features> {
        let names = self.strings(ETH_SS_FEATURES)?;
        let blocks = names.len().div_ceil(32);
        // struct ethtool_gfeatures: cmd, size, then per block available, requested,
        // active, never_changed.
        let mut buffer = vec![0u32; 2 + 4 * blocks];
        buffer[0] = ETHTOOL_GFEATURES;
        buffer[1] = blocks as u32;
        self.ioctl(buffer.as_mut_ptr().cast())?;
        let active = |bit: usize| buffer[2 + 4 * (bit / 32) + 2] & (1 << (bit % 32)) != 0;
        Ok(Features(
            names
                .into_iter()
                .enumerate()
                .filter(|&(bit, ref name)| !name.is_empty() && active(bit))
                .map(|(_, name)| name)
                .collect(),
        ))
    }

    /// A driver statistic by name (veth reports `peer_ifindex`).
    pub fn statistic(&self, wanted: &str) -> io::Result<Option<u64>> {
        let names = self.strings(ETH_SS_STATS)?;
        let Some(index) = names.iter().position(|name| name == wanted) else {
            return Ok(None);
        };
        // struct ethtool_stats: cmd, n_stats, then n_stats u64 values.
        let mut buffer = vec![0u64; 1 + names.len()];
        let header = (u64::from(names.len() as u32) << 32) | u64::from(ETHTOOL_GSTATS);
        buffer[0] = if cfg!(target_endian = "little") {
            header
        } else {
            header.rotate_left(32)
        };
        self.ioctl(buffer.as_mut_ptr().cast())?;
        Ok(buffer.get(1 + index).copied())
    }

    /// The names of a string set, in bit or index order.
    fn strings(&self, set: u32) -> io::Result<Vec<String>> {
        // struct ethtool_sset_info: cmd, reserved, sset_mask (u64), then one u32 per set.
        let mut info = [0u32; 5];
        info[0] = ETHTOOL_GSSET_INFO;
        let mask = 1u64 << set;
        info[2] = mask as u32;
        info[3] = (mask >> 32) as u32;
        self.ioctl(info.as_mut_ptr().cast())?;
        let count = info[4] as usize;
        let answered = u64::from(info[2]) | (u64::from(info[3]) << 32);
        if answered & mask == 0 || count == 0 {
            return Ok(Vec::new());
        }
        // struct ethtool_gstrings: cmd, string_set, len, then len names of 32 bytes.
        let mut buffer = vec![0u32; 3 + count * ETH_GSTRING_LEN / 4];
        buffer[0] = ETHTOOL_GSTRINGS;
        buffer[1] = set;
        buffer[2] = count as u32;
        self.ioctl(buffer.as_mut_ptr().cast())?;
        let bytes: Vec<u8> = buffer[3..].iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(bytes.chunks(ETH_GSTRING_LEN).map(c_string).collect())
    }

    fn ioctl(&self, data: *mut libc::c_void) -> io::Result<()> {
        #[repr(C)]
        struct IfReq {
            name: [libc::c_char; libc::IFNAMSIZ],
            data: *mut libc::c_void,
            _pad: [u8; 16],
        }
        let mut request = IfReq {
            name: self.name,
            data,
            _pad: [0; 16],
        };
        // SAFETY: `request` is a valid struct ifreq whose data points at a buffer sized
        // for the command in its first word, as each caller builds it.
        let status = unsafe {
            libc::ioctl(
                self.socket.as_raw_fd(),
                SIOCETHTOOL as _,
                &mut request as *mut IfReq,
            )
        };
        if status < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The name of an interface of this namespace by index.
pub fn interface_name(index: u32) -> Option<String> {
    let mut buffer = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: the buffer holds IFNAMSIZ bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    let bytes: Vec<u8> = buffer.iter().map(|&c| c as u8).collect();
    Some(c_string(&bytes))
}

/// The index of an interface of this namespace, `None` when there is none.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Where an interface's veth peer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Not a veth (no `peer_ifindex` statistic).
    None,
    /// In this namespace, under this name.
    Here(String),
    /// In another namespace, out of reach.
    Elsewhere,
}

/// The veth peer of `interface`: veth reports its peer's index, which means this
/// namespace's interface only if that one is another interface that names `interface`
/// back (indexes are per namespace: a peer elsewhere often has the same index as
/// `interface` itself).
pub fn veth_peer(interface: &str) -> Peer {
    let peer_of = |name: &str| {
        Ethtool::new(name)
            .ok()?
            .statistic("peer_ifindex")
            .ok()
            .flatten()
    };
    let (Some(own), Some(peer_index)) = (interface_index(interface), peer_of(interface)) else {
        return Peer::None;
    };
    let here = u32::try_from(peer_index)
        .ok()
        .filter(|&index| index != own)
        .and_then(interface_name)
        .filter(|peer| peer_of(peer) == Some(u64::from(own)));
    here.map_or(Peer::Elsewhere, Peer::Here)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_with_its_driver_and_features() {
        // Every namespace has lo; its features include loopback itself.
        let Ok(lo) = Ethtool::new("lo") else { return };
        let Ok(features) = lo.features() else { return };
        assert!(features.0.contains("loopback"), "{features:?}");
        assert!(!features.0.iter().any(String::is_empty));
    }

    #[test]
    fn lost_lists_what_went_off_only() {
        let set = |names: &[&str]| Features(names.iter().map(|s| s.to_string()).collect());
        let before = set(&["a", "b", "c"]);
        let after = set(&["a", "c", "d"]);
        assert_eq!(before.lost(&after), vec!["b".to_owned()]);
    }

    #[test]
    fn long_names_are_refused() {
        assert!(Ethtool::new("an-interface-name-too-long").is_err());
    }
}
