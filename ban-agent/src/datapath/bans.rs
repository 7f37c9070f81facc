//! Bans in the kernel maps: add, lift, list, and sweep the expired ones.
//!
//! A single address goes into the exact hash map of its family; a wider prefix into the
//! family's LPM trie, and the jail's bit in `DatapathConfig::prefix_v4/v6` tells the
//! program to search the trie at all.

use std::net::IpAddr;

use aya::{
    Pod,
    maps::{HashMap, IterableMap as _, MapData, MapError, lpm_trie::Key},
    sys::SyscallError,
};
use ban_common::{Ban, BanKeyV4, BanKeyV6, PREFIX_JAIL_BITS, PrefixV4, PrefixV6, maps};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::{DatapathError, Maps, jail_bit};
use crate::clock::Expiry;

/// What a ban covers: one address, or a whole network.
pub type Target = IpNet;

/// One ban as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanRecord {
    pub jail: u32,
    /// A host route (/32, /128) for a single address.
    pub target: Target,
    pub expiry: Expiry,
}

impl Maps {
    /// Bans `target` in `jail` until `expiry`; banning again replaces the expiry.
    pub fn ban(&mut self, jail: u32, target: Target, expiry: Expiry) -> Result<(), DatapathError> {
        jail_bit(jail)?;
        let ban = Ban {
            expires_at_ns: expiry.to_kernel(),
        };
        let target = target.trunc();
        let result = match target {
            IpNet::V4(net) if net.prefix_len() == 32 => {
                let key = BanKeyV4 {
                    jail,
                    addr: net.addr().octets(),
                };
                self.ban_v4
                    .insert(&key, &ban, 0)
                    .map_err(|e| full_or(e, maps::BAN_V4, self.capacity.ban_v4))
            }
            IpNet::V6(net) if net.prefix_len() == 128 => {
                let key = BanKeyV6 {
                    jail,
                    addr: net.addr().octets(),
                };
                self.ban_v6
                    .insert(&key, &ban, 0)
                    .map_err(|e| full_or(e, maps::BAN_V6, self.capacity.ban_v6))
            }
            IpNet::V4(net) => {
                let key = prefix_key_v4(jail, net);
                self.prefix_v4
                    .insert(&key, &ban, 0)
                    .map_err(|e| full_or(e, maps::PREFIX_V4, self.capacity.prefix_v4))
            }
            IpNet::V6(net) => {
                let key = prefix_key_v6(jail, net);
                self.prefix_v6
                    .insert(&key, &ban, 0)
                    .map_err(|e| full_or(e, maps::PREFIX_V6, self.capacity.prefix_v6))
            }
        };
        result?;
        if !is_host(target) {
            self.refresh_prefix_flags()?;
        }
        Ok(())
    }

    /// Lifts the ban of `target` in `jail`; `false` if there was none.
    pub fn unban(&mut self, jail: u32, target: Target) -> Result<bool, DatapathError> {
        jail_bit(jail)?;
        let target = target.trunc();
        let removed = match target {
            IpNet::V4(net) if net.prefix_len() == 32 => absent_is_false(
                self.ban_v4.remove(&BanKeyV4 {
                    jail,
                    addr: net.addr().octets(),
                }),
                maps::BAN_V4,
            ),
            IpNet::V6(net) if net.prefix_len() == 128 => absent_is_false(
                self.ban_v6.remove(&BanKeyV6 {
                    jail,
                    addr: net.addr().octets(),
                }),
                maps::BAN_V6,
            ),
            IpNet::V4(net) => absent_is_false(
                self.prefix_v4.remove(&prefix_key_v4(jail, net)),
                maps::PREFIX_V4,
            ),
            IpNet::V6(net) => absent_is_false(
                self.prefix_v6.remove(&prefix_key_v6(jail, net)),
                maps::PREFIX_V6,
            ),
        }?;
        if removed && !is_host(target) {
            self.refresh_prefix_flags()?;
        }
        Ok(removed)
    }

    /// The expiry of the ban of exactly `target` in `jail`, if the maps hold one (expired
    /// or not). One lookup, where [`Maps::list`] walks every ban.
    pub fn expiry(&self, jail: u32, target: Target) -> Result<Option<Expiry>, DatapathError> {
        let target = target.trunc();
        let (result, map) = match target {
            IpNet::V4(net) if net.prefix_len() == 32 => {
                let key = BanKeyV4 {
                    jail,
                    addr: net.addr().octets(),
                };
                (self.ban_v4.get(&key, 0), maps::BAN_V4)
            }
            IpNet::V6(net) if net.prefix_len() == 128 => {
                let key = BanKeyV6 {
                    jail,
                    addr: net.addr().octets(),
                };
                (self.ban_v6.get(&key, 0), maps::BAN_V6)
            }
            // The trie answers the longest match; only an exact one is this target's.
            _ => {
                let found = self
                    .list()?
                    .into_iter()
                    .find(|ban| ban.jail == jail && ban.target == target);
                return Ok(found.map(|ban| ban.expiry));
            }
        };
        match result {
            Ok(ban) => Ok(Some(Expiry::from_kernel(ban.expires_at_ns))),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Ok(None)
            }
            Err(e) => Err(DatapathError::map("look up a ban", map, e)),
        }
    }

    /// Every ban in the maps, expired ones included (the kernel ignores those).
    pub fn list(&self) -> Result<Vec<BanRecord>, DatapathError> {
        let mut out = Vec::new();
        let record = |jail, target, ban: Ban| BanRecord {
            jail,
            target,
            expiry: Expiry::from_kernel(ban.expires_at_ns),
        };
        for (key, ban) in entries(&self.ban_v4, maps::BAN_V4)? {
            out.push(record(key.jail, host(IpAddr::from(key.addr)), ban));
        }
        for (key, ban) in entries(&self.ban_v6, maps::BAN_V6)? {
            out.push(record(key.jail, host(IpAddr::from(key.addr)), ban));
        }
        for entry in self.prefix_v4.iter() {
            let (key, ban) = entry.map_err(|e| DatapathError::map("list", maps::PREFIX_V4, e))?;
            let data = key.data();
            let len = key.prefix_len().saturating_sub(PREFIX_JAIL_BITS) as u8;
            let net = Ipv4Net::new(data.addr.into(), len).unwrap_or_default();
            out.push(record(data.jail, IpNet::V4(net), ban));
        }
        for entry in self.prefix_v6.iter() {
            let (key, ban) = entry.map_err(|e| DatapathError::map("list", maps::PREFIX_V6, e))?;
            let data = key.data();
            let len = key.prefix_len().saturating_sub(PREFIX_JAIL_BITS) as u8;
            let net = Ipv6Net::new(data.addr.into(), len).unwrap_or_default();
            out.push(record(data.jail, IpNet::V6(net), ban));
        }
        Ok(out)
    }

    /// Removes the bans that expired by boot-clock time `now_ns` and returns them. The
    /// kernel already lets their packets through; this frees their slots.
    pub fn remove_expired(&mut self, now_ns: u64) -> Result<Vec<BanRecord>, DatapathError> {
        let expired: Vec<BanRecord> = self
            .list()?
            .into_iter()
            .filter(|ban| ban.expiry.expired(now_ns))
            .collect();
        for ban in &expired {
            self.unban(ban.jail, ban.target)?;
        }
        Ok(expired)
    }

    /// Jails that hold at least one prefix ban, from what the tries hold.
    pub(super) fn jails_with_prefix_bans(&self) -> Result<u64, DatapathError> {
        let mut jails = 0;
        for key in self.prefix_v4.keys() {
            let key = key.map_err(|e| DatapathError::map("list", maps::PREFIX_V4, e))?;
            jails |= jail_bit(key.data().jail)?;
        }
        for key in self.prefix_v6.keys() {
            let key = key.map_err(|e| DatapathError::map("list", maps::PREFIX_V6, e))?;
            jails |= jail_bit(key.data().jail)?;
        }
        Ok(jails)
    }

    /// Keeps the slots' "search the tries" bits in step with the tries. The bits change
    /// only when a jail gets its first prefix ban or loses its last, so the slots are
    /// rarely rewritten.
    fn refresh_prefix_flags(&mut self) -> Result<(), DatapathError> {
        let jails = self.jails_with_prefix_bans()?;
        let changed = jails ^ self.prefix_jails;
        if changed == 0 {
            return Ok(());
        }
        self.prefix_jails = jails;
        self.write_slots(|_, slot| slot.jails & changed != 0, |_, slot| slot.jails)
    }
}

fn host(addr: IpAddr) -> IpNet {
    IpNet::from(addr)
}

fn is_host(target: IpNet) -> bool {
    target.prefix_len() == target.max_prefix_len()
}

/// A target as an operator writes it: an address alone, a network with its prefix.
pub fn show(target: &Target) -> String {
    if is_host(*target) {
        target.addr().to_string()
    } else {
        target.to_string()
    }
}

/// The name of the map that holds a ban of `target`.
pub fn map_of(target: &Target) -> &'static str {
    match (target, is_host(*target)) {
        (IpNet::V4(_), true) => maps::BAN_V4,
        (IpNet::V6(_), true) => maps::BAN_V6,
        (IpNet::V4(_), false) => maps::PREFIX_V4,
        (IpNet::V6(_), false) => maps::PREFIX_V6,
    }
}

fn prefix_key_v4(jail: u32, net: Ipv4Net) -> Key<PrefixV4> {
    Key::new(
        PREFIX_JAIL_BITS + u32::from(net.prefix_len()),
        PrefixV4 {
            jail,
            addr: net.network().octets(),
        },
    )
}

fn prefix_key_v6(jail: u32, net: Ipv6Net) -> Key<PrefixV6> {
    Key::new(
        PREFIX_JAIL_BITS + u32::from(net.prefix_len()),
        PrefixV6 {
            jail,
            addr: net.network().octets(),
            reserved: 0,
        },
    )
}

/// A full hash map answers E2BIG, a full trie ENOSPC: both become [`DatapathError::MapFull`].
fn full_or(error: MapError, map: &'static str, capacity: u32) -> DatapathError {
    if let MapError::SyscallError(syscall) = &error
        && matches!(
            syscall.io_error.raw_os_error(),
            Some(libc::E2BIG | libc::ENOSPC)
        )
    {
        return DatapathError::MapFull { map, capacity };
    }
    DatapathError::map("add a ban", map, error)
}

fn absent_is_false(result: Result<(), MapError>, map: &'static str) -> Result<bool, DatapathError> {
    match result {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(DatapathError::map("lift a ban", map, e)),
    }
}

/// Every entry of an exact-ban map: in batches where the kernel can, one by one elsewhere.
fn entries<K: Pod, V: Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    let batched = super::batch::entries(map.map()).map_err(|io_error| {
        let call = "bpf_map_lookup_batch";
        DatapathError::map("list", name, SyscallError { call, io_error }.into())
    })?;
    if let Some(entries) = batched {
        return Ok(entries);
    }
    map.iter()
        .map(|entry| entry.map_err(|e| DatapathError::map("list", name, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_keys_count_the_jail_bits_and_zero_host_bits() {
        let net: Ipv4Net = "198.51.100.77/24".parse().expect("valid CIDR");
        let key = prefix_key_v4(3, net);
        assert_eq!(key.prefix_len(), 32 + 24);
        assert_eq!(key.data().addr, [198, 51, 100, 0]);
        assert_eq!(key.data().jail, 3);

        let net: Ipv6Net = "2001:db8:1:2:3::1/64".parse().expect("valid CIDR");
        let key = prefix_key_v6(1, net);
        assert_eq!(key.prefix_len(), 32 + 64);
        assert_eq!(&key.data().addr[8..], &[0; 8]);
    }

    #[test]
    fn host_routes_are_exact_bans() {
        assert!(is_host(host("192.0.2.1".parse().expect("address"))));
        assert!(is_host(host("2001:db8::1".parse().expect("address"))));
        assert!(!is_host("192.0.2.0/24".parse().expect("CIDR")));
    }
}
