//! The running jails: each one's configuration, detector, counters and kernel id. Every
//! other part of the daemon reads them; the agent adds and removes them.

use std::collections::BTreeMap;

use prometheus_client::metrics::counter::Counter;

use crate::{config::Jail, detect::Detector, tracker::BanRate};

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
}

/// The running jails by name.
pub(super) type Jails = BTreeMap<String, JailRun>;
