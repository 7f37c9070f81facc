//! Keeps the datapath in place while the daemon runs: the XDP links are held open (so
//! that unmounting bpffs does not detach the program), pins lost with an unmount are made
//! again, and an interface that is removed and comes back (or is recreated under the same
//! name) is attached again. What the operator or the package manager removed on purpose
//! is not put back: a pin folder removed from a bpffs still mounted (`datapath detach`,
//! a package's removal), or the daemon's own binary deleted with nothing in its place,
//! stops the daemon.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tracing::{error, info, warn};

use super::{agent::Agent, log_once::LogOnce};
use crate::{
    config::Global,
    control::protocol::InterfaceHook,
    datapath::{
        AttachMode, Datapath, DatapathOptions, HeldLinks, ethtool::interface_index, pin_instance,
    },
};

/// What a tick's check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Fine,
    /// An interface came back, or is another one under the same name: attach it again.
    Reattach,
    /// The datapath or the binary was removed on purpose: stop (the message says what).
    Removed {
        what: String,
        detach: bool,
    },
}

pub struct Guard {
    links: Option<HeldLinks>,
    /// The interfaces attached and the mode each was asked for, at the last attach.
    modes: Vec<(String, AttachMode)>,
    /// The bpffs instance the pins were made on, at the last attach.
    instance: Option<u64>,
    /// Interface index of each configured interface when last seen; `None`: absent.
    interfaces: BTreeMap<String, Option<u32>>,
    /// Why the pins cannot be made again, said once.
    pin_error: LogOnce,
}

impl Guard {
    /// Holds the links of the interfaces the agent was attached to.
    pub fn new(agent: &Agent) -> Self {
        let mut guard = Self {
            links: None,
            modes: Vec::new(),
            instance: None,
            interfaces: BTreeMap::new(),
            pin_error: LogOnce::default(),
        };
        guard.attached(agent);
        guard
    }

    /// After a reload: attaches again only when the interfaces or their hooks changed.
    /// Otherwise the loaded programs and their links stay as they are: loading a program
    /// again costs the verifier about a second, during which nothing is read nor banned.
    pub fn reloaded(&mut self, agent: &mut Agent) {
        if self.modes != modes(agent) {
            self.reattach(agent, "after the reload");
        }
    }

    /// Attaches to the configured interfaces again: after a reload (interfaces added), or
    /// when an interface came back. Interfaces already attached keep their link.
    pub fn reattach(&mut self, agent: &mut Agent, when: &str) {
        match attach(agent.global(), agent.config_path()) {
            Ok(hooks) => agent.set_hooks(hooks),
            Err(e) => warn!("{when}: {}", crate::error_text(&e)),
        }
        self.attached(agent);
    }

    /// After an attach: holds the links anew and notes the interfaces' indexes.
    fn attached(&mut self, agent: &Agent) {
        let global = agent.global();
        self.modes = modes(agent);
        self.instance = pin_instance(&global.pin_dir);
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

    /// Once a tick: whether the operator removed the datapath or the binary; else pins
    /// again what lost its pins, and says whether an interface must be attached again (it
    /// came back, or is another one under the same name).
    pub fn check(&mut self, agent: &Agent) -> Check {
        if let Some(removed) = self.removed(agent) {
            return removed;
        }
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
        if attach { Check::Reattach } else { Check::Fine }
    }

    /// A pin folder removed from the bpffs it was made on, which is still mounted, or
    /// this process's binary deleted with no other at its path (a package's removal; an
    /// upgrade puts the new one there, and this one runs on until restarted).
    fn removed(&mut self, agent: &Agent) -> Option<Check> {
        let pin_dir = &agent.global().pin_dir;
        let now = pin_instance(pin_dir);
        if now.is_none() {
            // Unmounted: whatever is mounted there next is another instance.
            self.instance = None;
        }
        if self.instance.is_some() && !pin_dir.exists() && now == self.instance {
            return Some(Check::Removed {
                what: format!(
                    "the pin folder {} was removed while its bpffs stays mounted \
                     (`ban-agent datapath detach`, or the package's removal)",
                    pin_dir.display()
                ),
                detach: true,
            });
        }
        let binary = deleted_binary()?;
        Some(Check::Removed {
            what: format!(
                "this program's binary {} was deleted and nothing took its place (the \
                 package's removal)",
                binary.display()
            ),
            detach: false,
        })
    }

    fn check_pins(&mut self, agent: &Agent) {
        let links_pinned = self.links.as_ref().is_none_or(HeldLinks::pinned);
        if agent.kernel().pinned() && links_pinned {
            return;
        }
        let pin_dir = &agent.global().pin_dir;
        let repinned = agent.kernel().repin().and_then(|()| match &mut self.links {
            Some(links) => links.repin(),
            None => Ok(()),
        });
        match repinned {
            Ok(()) => {
                self.instance = pin_instance(pin_dir);
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

/// Attaches every configured interface in its mode; the log says which hook and why.
pub fn attach(global: &Global, config: &Path) -> anyhow::Result<Vec<InterfaceHook>> {
    let mut datapath = Datapath::open(DatapathOptions {
        pin_dir: global.pin_dir.clone(),
        ..DatapathOptions::default()
    })?;
    if global.interfaces.is_empty() {
        warn!(
            "no `interfaces` in {}: bans are kept in the maps but no packet is dropped",
            config.display()
        );
    }
    let mut hooks = Vec::new();
    for interface in &global.interfaces {
        let attached = datapath
            .attach(interface, global.mode_of(interface))
            .with_context(|| {
                format!(
                    "interface {interface} (`interfaces` in {})",
                    config.display()
                )
            })?;
        hooks.push(InterfaceHook {
            interface: interface.clone(),
            hook: attached.hook.name().to_owned(),
            why: attached.why,
        });
    }
    Ok(hooks)
}

/// Each configured interface with the mode it asks for.
fn modes(agent: &Agent) -> Vec<(String, AttachMode)> {
    let global = agent.global();
    global
        .interfaces
        .iter()
        .map(|name| (name.clone(), global.mode_of(name)))
        .collect()
}

/// This process's binary, when it was deleted and no file is at its path now.
fn deleted_binary() -> Option<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let text = exe.to_str()?;
    let path = PathBuf::from(text.strip_suffix(" (deleted)")?);
    (!path.exists()).then_some(path)
}
