//! The running jails: each one's configuration, detector, counters and kernel id. Every
//! other part of the daemon reads them; the agent adds and removes them.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use tracing::warn;

use crate::{config::Jail, detect::Detector, ignore::Spared, tracker::BanRate};

/// A running jail.
pub(super) struct JailRun {
    /// Its index in the kernel maps.
    pub id: u32,
    pub config: Jail,
    pub detector: Detector,
    /// Bans since the agent started (restored ones included).
    pub total_banned: u64,
    pub failures: Counter,
    /// Lines of its JSON filter that are not JSON.
    pub malformed: Counter,
    /// The jail's `max_bans_per_minute`.
    pub rate: BanRate,
    /// Whether one spared address makes most of its failures (a proxy in the path).
    pub lost_clients: LostClients,
}

/// The running jails by name.
pub(super) type Jails = BTreeMap<String, JailRun>;

/// Failures a jail counts before it judges where they come from.
const LOST_AFTER: u64 = 20;

/// Spared addresses tallied at most (a wide `ignoreip` cannot grow the table).
const LOST_TRACKED: usize = 64;

/// Watches for the client's address lost on the way: when most failures of a jail come
/// from one address it never bans (this host's, such as a container bridge's gateway, or
/// one of `ignoreip`), something in the path stands in for every client: Docker's
/// userland proxy, rootless Docker's port driver, kube-proxy with
/// `externalTrafficPolicy: Cluster`, or a reverse proxy whose address header is not
/// read. Said once per jail, with the fixes.
#[derive(Debug, Default)]
pub struct LostClients {
    failures: u64,
    spared: HashMap<IpNet, u64>,
    said: bool,
}

impl LostClients {
    /// A failure counted against a client.
    pub fn counted(&mut self) {
        self.failures += 1;
    }

    /// A failure of a spared address; says so when that address makes most of them.
    pub fn spared(&mut self, jail: &str, target: IpNet, why: Spared) {
        self.failures += 1;
        if self.said {
            return;
        }
        if self.spared.len() >= LOST_TRACKED && !self.spared.contains_key(&target) {
            return;
        }
        let count = self.spared.entry(target).or_default();
        *count += 1;
        if self.failures >= LOST_AFTER && *count * 2 > self.failures {
            self.said = true;
            warn!(
                jail,
                address = %target,
                failures = *count,
                of = self.failures,
                "most failures of this jail come from one address it never bans ({why}): \
                 the app sees a proxy's address instead of each client's, so no attacker is \
                 banned. Docker: start dockerd with --userland-proxy=false (rootless Docker: \
                 its port driver hides the client; see docs/containers.md); Kubernetes: \
                 set externalTrafficPolicy: Local on the Service; behind a reverse proxy: \
                 read its address header (docs/proxies.md)"
            );
        }
    }
}
