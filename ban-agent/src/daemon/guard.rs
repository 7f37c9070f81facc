//! Keeps the datapath in place while the daemon runs: the XDP links are held open (so
//! that unmounting bpffs or removing the pins does not detach the program), pins that went
//! away are made again, and an interface that is removed and comes back (or is recreated
//! under the same name) is attached again.

use std::collections::BTreeMap;

use tracing::{error, info, warn};

use super::{agent::Agent, said::Said};
use crate::datapath::{HeldLinks, ethtool::interface_index};

pub struct Guard {
    links: Option<HeldLinks>,
    /// Interface index of each configured interface when last seen; `None`: absent.
    interfaces: BTreeMap<String, Option<u32>>,
    /// Why the pins cannot be made again, said once.
    pin_error: Said,
}

impl Guard {
    /// Holds the links of the interfaces the agent was attached to.
    pub fn new(agent: &Agent) -> Self {
        let mut guard = Self {
            links: None,
            interfaces: BTreeMap::new(),
            pin_error: Said::default(),
        };
        guard.attached(agent);
        guard
    }

    /// Attaches to the configured interfaces again: after a reload (interfaces added), or
    /// when an interface came back. Interfaces already attached keep their link.
    pub fn reattach(&mut self, agent: &mut Agent, when: &str) {
        match super::attach(agent.global(), agent.config_path()) {
            Ok(hooks) => agent.set_hooks(hooks),
            Err(e) => warn!("{when}: {}", crate::error_text(&e)),
        }
        self.attached(agent);
    }

    /// After an attach: holds the links anew and notes the interfaces' indexes.
    fn attached(&mut self, agent: &Agent) {
        let global = agent.global();
        self.links = match HeldLinks::hold(&global.pin_dir, &global.interfaces) {
            Ok(links) => Some(links),
            Err(e) => {
                warn!("cannot hold the links open: {e}; unmounting bpffs would detach them");
                None
            }
        };
        self.interfaces = global
            .interfaces
            .iter()
            .map(|name| (name.clone(), interface_index(name)))
            .collect();
    }

    /// Once a tick: pins again what lost its pins, and says whether an interface must be
    /// attached again (it came back, or is another one under the same name).
    pub fn check(&mut self, agent: &Agent) -> bool {
        self.check_pins(agent);
        let mut attach = false;
        for (name, seen) in &mut self.interfaces {
            let now = interface_index(name);
            if now == *seen {
                continue;
            }
            match now {
                None => warn!(
                    interface = name.as_str(),
                    "the interface is gone: its packets are not filtered until it is back \
                     (ban-agent attaches to it again then)"
                ),
                Some(index) => {
                    info!(
                        interface = name.as_str(),
                        index, "the interface is (back) here"
                    );
                    attach = true;
                }
            }
            *seen = now;
        }
        attach
    }

    fn check_pins(&mut self, agent: &Agent) {
        let links_pinned = self.links.as_ref().is_none_or(HeldLinks::pinned);
        if agent.kernel.pinned() && links_pinned {
            return;
        }
        let pin_dir = &agent.global().pin_dir;
        let repinned = agent.kernel.repin().and_then(|()| match &mut self.links {
            Some(links) => links.repin(),
            None => Ok(()),
        });
        match repinned {
            Ok(()) => {
                info!(
                    pin_dir = %pin_dir.display(),
                    "maps and links pinned again (bpffs was unmounted or the pins removed); \
                     the program and the bans stayed in force"
                );
                self.pin_error.ended();
            }
            Err(e) => {
                let message = e.to_string();
                if self.pin_error.first(&message) {
                    error!(
                        pin_dir = %pin_dir.display(),
                        "the pins are gone and cannot be made again: {message}. The program \
                         and the bans stay in force while ban-agent runs; mount bpffs there \
                         again (`mount -t bpf bpf DIR`) and they are pinned again"
                    );
                }
            }
        }
    }
}
