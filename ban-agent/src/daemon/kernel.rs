//! What the agent needs of the kernel maps, as a trait: the pinned [`Maps`] in a real run,
//! nothing at all in a dry run, and an in-memory fake in the agent's unit tests.

use ipnet::IpNet;

use crate::{
    clock::Expiry,
    datapath::{BanRecord, DatapathError, JailPorts, Maps},
};
use ban_common::JailCounters;

pub trait Kernel: Send {
    fn ban(&mut self, jail: u32, target: IpNet, expiry: Expiry) -> Result<(), DatapathError>;
    fn unban(&mut self, jail: u32, target: IpNet) -> Result<bool, DatapathError>;
    fn list(&self) -> Result<Vec<BanRecord>, DatapathError>;
    fn set_jails(&mut self, jails: &[JailPorts]) -> Result<(), DatapathError>;
    fn counters(&self) -> Result<Vec<(u32, JailCounters)>, DatapathError>;
    /// Capacity of each ban map by name; empty when there are no maps.
    fn capacities(&self) -> Vec<(&'static str, u32)>;
    /// Whether the maps are still pinned (always, when there are no pins).
    fn pinned(&self) -> bool {
        true
    }
    /// Pins the maps again after their pins went away.
    fn repin(&self) -> Result<(), DatapathError> {
        Ok(())
    }
    /// Whether bans reach a kernel (`false` in a dry run), for messages that must say
    /// what is true.
    fn writes(&self) -> bool {
        true
    }
}

impl Kernel for Maps {
    fn ban(&mut self, jail: u32, target: IpNet, expiry: Expiry) -> Result<(), DatapathError> {
        Maps::ban(self, jail, target, expiry)
    }
    fn unban(&mut self, jail: u32, target: IpNet) -> Result<bool, DatapathError> {
        Maps::unban(self, jail, target)
    }
    fn list(&self) -> Result<Vec<BanRecord>, DatapathError> {
        Maps::list(self)
    }
    fn set_jails(&mut self, jails: &[JailPorts]) -> Result<(), DatapathError> {
        Maps::set_jails(self, jails)
    }
    fn counters(&self) -> Result<Vec<(u32, JailCounters)>, DatapathError> {
        Maps::counters(self)
    }
    fn capacities(&self) -> Vec<(&'static str, u32)> {
        Maps::capacities(self).to_vec()
    }
    fn pinned(&self) -> bool {
        Maps::pinned(self)
    }
    fn repin(&self) -> Result<(), DatapathError> {
        Maps::repin(self)
    }
}

/// `--dry-run`: decisions are made and reported, nothing reaches the kernel.
pub struct NoKernel;

impl Kernel for NoKernel {
    fn ban(&mut self, _: u32, _: IpNet, _: Expiry) -> Result<(), DatapathError> {
        Ok(())
    }
    fn unban(&mut self, _: u32, _: IpNet) -> Result<bool, DatapathError> {
        Ok(true)
    }
    fn list(&self) -> Result<Vec<BanRecord>, DatapathError> {
        Ok(Vec::new())
    }
    fn set_jails(&mut self, _: &[JailPorts]) -> Result<(), DatapathError> {
        Ok(())
    }
    fn counters(&self) -> Result<Vec<(u32, JailCounters)>, DatapathError> {
        Ok(Vec::new())
    }
    fn capacities(&self) -> Vec<(&'static str, u32)> {
        Vec::new()
    }
    fn writes(&self) -> bool {
        false
    }
}
