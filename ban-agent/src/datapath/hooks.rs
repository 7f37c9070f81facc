//! Which hook an interface gets, decided here and nowhere else, and how it is attached,
//! pinned, replaced in place and switched.
//!
//! - **XDP** (native, driver mode) drops before the kernel allocates an skb: the cheapest
//!   drop, where the driver runs XDP without giving anything up.
//! - **tc** (a TCX ingress link, Linux >= 6.6) runs once per GRO aggregate after the
//!   driver, copies nothing and changes no offload, and still drops before netfilter and
//!   the TCP stack.
//! - **XDP generic** (skb mode) only when asked for: it linearises or copies every GRO
//!   aggregate (`netif_receive_generic_xdp`), which costs legitimate traffic most.
//!
//! `auto` attaches native XDP, reads the interface's offload features (and a veth peer's)
//! before and after, and keeps XDP only if the driver took it and nothing was turned off;
//! otherwise it attaches tc and removes the XDP link. A veth, for one, strips its peer's
//! GSO whenever XDP is attached (`veth_xdp_set`), so the sender falls back to 1500-byte
//! segments; virtio_net turns off the guest's receive offloads or refuses XDP.
//!
//! Pins: `link_<interface>` holds an XDP link (the name earlier versions used), and
//! `tc_<interface>` a TCX link. A restart swaps the new program into whichever is pinned
//! (`BPF_LINK_UPDATE`); a change of hook attaches the new one before removing the old, so
//! no packet goes unjudged in between. A kernel without TCX (before 6.6) gets a filter on
//! the clsact qdisc instead, at a fixed priority and handle so that a restart replaces it
//! in place; the tc program pinned as `tcnl_<interface>` marks it, for restarts and
//! `detach`.

use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    programs::{
        LinkOrder, SchedClassifier, TcAttach, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcHandle},
        xdp::XdpLink,
    },
};
use tracing::{info, warn};

use super::{DatapathError, ethtool, remove_file};

/// How the operator asks an interface to be hooked (`mode` in the configuration,
/// `datapath attach --mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// Native XDP where the driver takes it without turning off an offload; tc elsewhere.
    #[default]
    Auto,
    /// Native XDP only: fail if the driver refuses it.
    #[value(alias = "native")]
    Xdp,
    /// tc ingress (a TCX link).
    Tc,
    /// Generic (skb) XDP: runs on every interface but copies or linearises every GRO
    /// aggregate; for testing.
    #[value(name = "xdp-generic", alias = "generic")]
    XdpGeneric,
}

impl AttachMode {
    /// The name in the configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Tc => "tc",
            Self::XdpGeneric => "xdp-generic",
        }
    }

    /// Parses a configuration value.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Auto, Self::Xdp, Self::Tc, Self::XdpGeneric]
            .into_iter()
            .find(|mode| mode.name() == text)
    }
}

/// The hook an interface runs the verdict in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Native XDP, or XDP kept from an earlier run (its mode unchanged).
    Xdp,
    /// Generic (skb) XDP.
    XdpGeneric,
    /// tc ingress.
    Tc,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::XdpGeneric => "xdp-generic",
            Self::Tc => "tc",
        }
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`super::Datapath::attach`] did on one interface, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    pub hook: Hook,
    /// `true`: the program replaced the one an earlier run left in the pinned link.
    pub replaced: bool,
    /// Why this hook, in words: the mode asked for, what the kernel refused or turned off.
    pub why: String,
}

impl Attached {
    /// A link made now (not a program replaced in a pinned one).
    fn new(hook: Hook, why: impl Into<String>) -> Self {
        Self {
            hook,
            replaced: false,
            why: why.into(),
        }
    }
}

impl std::fmt::Display for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = if self.replaced {
            "program replaced in place"
        } else {
            "attached"
        };
        write!(f, "{} {done} ({})", self.hook, self.why)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PinKind {
    /// An XDP link.
    Xdp,
    /// A TCX link.
    Tc,
    /// The tc program, marking its clsact filter (no TCX).
    TcClsact,
}

const PIN_KINDS: [PinKind; 3] = [PinKind::Xdp, PinKind::Tc, PinKind::TcClsact];

/// Priority of the clsact filter on kernels without TCX: fixed, so that a restart finds
/// it and replaces its program in place (lower runs first; Cilium takes 1).
const CLSACT_PRIORITY: u16 = 0xba;
/// Handle of that filter.
const CLSACT_HANDLE: TcHandle = TcHandle::new(0, 0xba);
/// Prefix of the clsact marker pins.
const CLSACT_PIN_PREFIX: &str = "tcnl_";

impl PinKind {
    fn hook(self) -> Hook {
        match self {
            Self::Xdp => Hook::Xdp,
            Self::Tc | Self::TcClsact => Hook::Tc,
        }
    }
}

/// Where the link of `kind` on `interface` is pinned.
fn pin_path(pin_dir: &Path, interface: &str, kind: PinKind) -> PathBuf {
    let prefix = match kind {
        PinKind::Xdp => "link_",
        PinKind::Tc => "tc_",
        PinKind::TcClsact => CLSACT_PIN_PREFIX,
    };
    // Interface names cannot contain '/', but a caller's typo must not escape the directory.
    pin_dir.join(format!("{prefix}{}", interface.replace('/', "_")))
}

/// The pins of `interface`'s links, XDP first.
pub fn link_pins(pin_dir: &Path, interface: &str) -> [PathBuf; 2] {
    [
        pin_path(pin_dir, interface, PinKind::Xdp),
        pin_path(pin_dir, interface, PinKind::Tc),
    ]
}

/// Whether a pin name under the pin directory is a link.
pub fn is_link_pin(name: &str) -> bool {
    name.starts_with("link_") || name.starts_with("tc_")
}

/// The interface of a clsact marker pin's name, when it is one.
pub fn clsact_interface(pin_name: &str) -> Option<&str> {
    pin_name.strip_prefix(CLSACT_PIN_PREFIX)
}

/// The programs, one per hook, each loaded (and so verified) when first asked for, so an
/// agent pays only for the hook it attaches.
pub struct Programs<'a> {
    pub ebpf: &'a mut Ebpf,
    /// The XDP program loaded so far, if any.
    pub xdp_name: &'a mut Option<&'static str>,
    /// Load the single-buffer XDP twin.
    pub xdp_linear: bool,
    /// Attach tc as a clsact filter even where TCX links exist.
    pub clsact: bool,
}

impl Programs<'_> {
    fn xdp(&mut self) -> Result<&mut Xdp, DatapathError> {
        super::xdp_loaded(self.ebpf, self.xdp_name, self.xdp_linear)
    }

    fn tc(&mut self) -> Result<&mut SchedClassifier, DatapathError> {
        super::tc_loaded(self.ebpf)
    }
}

/// The hook an earlier run pinned on this interface, with the new program put in it
/// with no gap, when `mode` allows that hook; `None` to attach anew (an unusable pin is
/// removed first).
fn keep_pinned(
    programs: &mut Programs<'_>,
    pin_dir: &Path,
    name: Name<'_>,
    mode: AttachMode,
) -> Result<Option<Attached>, DatapathError> {
    let interface = name.text;
    let pinned = PIN_KINDS
        .into_iter()
        .find(|&kind| pin_path(pin_dir, interface, kind).exists());
    let keep = match (mode, pinned) {
        (AttachMode::Auto, Some(kind)) => Some(kind),
        (AttachMode::Xdp | AttachMode::XdpGeneric, Some(PinKind::Xdp)) => Some(PinKind::Xdp),
        (AttachMode::Tc, Some(kind)) if kind != PinKind::Xdp => Some(kind),
        _ => None,
    };
    if let Some(kind) = keep {
        let path = pin_path(pin_dir, interface, kind);
        let replaced = match kind {
            PinKind::TcClsact => replace_clsact(programs.tc()?, name, &path),
            PinKind::Xdp => replace_xdp_in_pinned_link(programs.xdp()?, &path),
            PinKind::Tc => replace_tc_in_pinned_link(programs.tc()?, &path),
        };
        match replaced {
            Ok(()) => {
                return Ok(Some(Attached {
                    hook: kind.hook(),
                    replaced: true,
                    why: format!(
                        "mode {}: the hook an earlier run chose, kept with no gap",
                        mode.name()
                    ),
                }));
            }
            Err(detail) => {
                // The interface went away (the link is defunct), the filter was removed,
                // or the pin is not ours.
                warn!(
                    "the pinned link {} is unusable ({detail}); attaching anew",
                    path.display()
                );
                remove_file(&path)?;
            }
        }
    }
    Ok(None)
}

/// Attaches the verdict to `interface` as `mode` asks; see the module's documentation.
pub fn attach(
    mut programs: Programs<'_>,
    pin_dir: &Path,
    interface: &str,
    mode: AttachMode,
) -> Result<Attached, DatapathError> {
    let Ok(c_name) = std::ffi::CString::new(interface) else {
        return Err(DatapathError::InterfaceName {
            interface: interface.to_owned(),
        });
    };
    let name = Name {
        text: interface,
        c: &c_name,
    };
    if ethtool::interface_index(interface).is_none() {
        return Err(DatapathError::NoInterface {
            interface: interface.to_owned(),
        });
    }
    if let Some(attached) = keep_pinned(&mut programs, pin_dir, name, mode)? {
        return Ok(attached);
    }
    let (attached, kind) = match mode {
        AttachMode::Xdp => {
            attach_xdp(programs.xdp()?, pin_dir, name, XdpMode::Driver)?;
            let attached = Attached::new(Hook::Xdp, "mode xdp");
            (attached, PinKind::Xdp)
        }
        AttachMode::XdpGeneric => {
            attach_xdp(programs.xdp()?, pin_dir, name, XdpMode::Skb)?;
            warn!(
                interface,
                "generic XDP asked for: it copies or linearises every GRO aggregate, which \
                 costs legitimate traffic far more than tc; use it for testing only"
            );
            let attached = Attached::new(Hook::XdpGeneric, "mode xdp-generic");
            (attached, PinKind::Xdp)
        }
        AttachMode::Tc => {
            let clsact = programs.clsact;
            let kind = attach_tc(programs.tc()?, pin_dir, name, clsact)?;
            let attached = Attached::new(Hook::Tc, format!("mode tc{}", backend_note(kind)));
            (attached, kind)
        }
        AttachMode::Auto => choose(programs, pin_dir, name)?,
    };
    // A change of hook: the new one runs already, the old one goes.
    for other in PIN_KINDS.into_iter().filter(|&other| other != kind) {
        let old = pin_path(pin_dir, interface, other);
        if old.exists() {
            remove_pin(&old, interface, other)?;
            info!(interface, from = ?other, to = %attached.hook, "hook switched with no gap");
        }
    }
    Ok(attached)
}

/// How tc was attached, for `why`: nothing to say for a TCX link.
fn backend_note(kind: PinKind) -> &'static str {
    if kind == PinKind::TcClsact {
        " (a clsact filter, as on kernels without TCX links)"
    } else {
        ""
    }
}

/// Removes the pin of `kind` and what it holds: the link, or the clsact filter.
fn remove_pin(path: &Path, interface: &str, kind: PinKind) -> Result<(), DatapathError> {
    if kind == PinKind::TcClsact {
        remove_clsact_filter(interface)?;
        return remove_file(path);
    }
    unpin_link(path)
}

/// `auto` on an interface with nothing pinned: native XDP if the driver takes it without
/// turning anything off, tc otherwise.
fn choose(
    mut programs: Programs<'_>,
    pin_dir: &Path,
    name: Name<'_>,
) -> Result<(Attached, PinKind), DatapathError> {
    let offloads = Offloads::read(name.text);
    let driver = offloads.driver.clone();
    let tc = |kind: PinKind, why: String| {
        let attached = Attached::new(Hook::Tc, format!("{why}{}", backend_note(kind)));
        (attached, kind)
    };
    let clsact = programs.clsact;
    let xdp = match programs.xdp()?.attach(name.c, XdpMode::Driver) {
        Ok(id) => id,
        Err(e) => {
            let kind = attach_tc(programs.tc()?, pin_dir, name, clsact)?;
            let why = format!(
                "auto: the {driver} driver refused native XDP ({}); tc drops before netfilter \
                 and keeps every offload",
                crate::cause_text(&e)
            );
            return Ok(tc(kind, why));
        }
    };
    let Some(why) = offloads.cost_of_xdp() else {
        pin_xdp(programs.xdp()?, xdp, pin_dir, name.text)?;
        let attached = Attached::new(
            Hook::Xdp,
            format!("auto: the {driver} driver runs native XDP with every offload kept"),
        );
        return Ok((attached, PinKind::Xdp));
    };
    // tc first, then XDP off: the interface is never without the verdict.
    let kind = attach_tc(programs.tc()?, pin_dir, name, clsact)?;
    programs
        .xdp()?
        .detach(xdp)
        .map_err(|e| DatapathError::program("detach the probe of", e))?;
    Ok(tc(kind, why))
}

/// An interface's offload features (and its veth peer's) read before native XDP is
/// attached, to compare with what is left after.
struct Offloads {
    interface: String,
    driver: String,
    peer: ethtool::Peer,
    own: Option<ethtool::Features>,
    peers: Option<ethtool::Features>,
}

impl Offloads {
    fn read(interface: &str) -> Self {
        let driver = ethtool::Ethtool::new(interface)
            .and_then(|probe| probe.driver())
            .unwrap_or_else(|_| "unknown driver".to_owned());
        let peer = ethtool::veth_peer(interface);
        let peers = match &peer {
            ethtool::Peer::Here(name) => features(name),
            _ => None,
        };
        Self {
            interface: interface.to_owned(),
            driver,
            peer,
            own: features(interface),
            peers,
        }
    }

    /// With native XDP attached: `None` when every offload is still on, else why XDP
    /// costs too much (what went off, or what could not be checked).
    fn cost_of_xdp(&self) -> Option<String> {
        let interface = &self.interface;
        let mut lost = Vec::new();
        let mut unchecked = Vec::new();
        // What went off on `name` since `before`, or why that cannot be told.
        let mut compare = |name: &str, before: &Option<ethtool::Features>, whose: String| match (
            before,
            features(name),
        ) {
            (Some(before), Some(after)) => lost.extend(
                before
                    .lost(&after)
                    .into_iter()
                    .map(|f| format!("{f} on {name}")),
            ),
            _ => unchecked.push(format!("{whose} offloads could not be read")),
        };
        compare(interface, &self.own, format!("{interface}'s"));
        if let ethtool::Peer::Here(peer) = &self.peer {
            compare(peer, &self.peers, format!("the {peer} peer's"));
        } else if self.peer == ethtool::Peer::Elsewhere {
            unchecked.push(
                "its veth peer is in another namespace, where its offloads cannot be read \
                 (veth turns off the peer's segmentation offloads under XDP)"
                    .to_owned(),
            );
        }
        let driver = &self.driver;
        if !lost.is_empty() {
            Some(format!(
                "auto: native XDP on {driver} turned off {}; tc keeps them",
                lost.join(", ")
            ))
        } else if !unchecked.is_empty() {
            Some(format!(
                "auto: native XDP on {driver} could not be checked ({}); tc keeps every \
                 offload",
                unchecked.join("; ")
            ))
        } else {
            None
        }
    }
}

fn features(interface: &str) -> Option<ethtool::Features> {
    ethtool::Ethtool::new(interface)
        .and_then(|probe| probe.features())
        .ok()
}

/// An interface's name, as text and as the C string aya takes.
#[derive(Clone, Copy)]
struct Name<'a> {
    text: &'a str,
    c: &'a std::ffi::CStr,
}

fn attach_xdp(
    program: &mut Xdp,
    pin_dir: &Path,
    name: Name<'_>,
    mode: XdpMode,
) -> Result<(), DatapathError> {
    let id = program
        .attach(name.c, mode)
        .map_err(|e| DatapathError::Attach {
            interface: name.text.to_owned(),
            hook: if mode == XdpMode::Skb {
                "xdp-generic"
            } else {
                "xdp"
            },
            source: Box::new(e),
        })?;
    pin_xdp(program, id, pin_dir, name.text)
}

fn pin_xdp(
    program: &mut Xdp,
    id: aya::programs::xdp::XdpLinkId,
    pin_dir: &Path,
    interface: &str,
) -> Result<(), DatapathError> {
    let link = program
        .take_link(id)
        .map_err(|e| DatapathError::program("take the link of", e))?;
    pin_link(
        link,
        &pin_path(pin_dir, interface, PinKind::Xdp),
        "this kernel has no bpf_link for XDP (Linux >= 5.9 needed)",
    )
}

/// Attaches tc ingress as a TCX link, or, on a kernel without TCX (or when `clsact` asks
/// for it), as a filter on the clsact qdisc; returns which.
fn attach_tc(
    program: &mut SchedClassifier,
    pin_dir: &Path,
    name: Name<'_>,
    clsact: bool,
) -> Result<PinKind, DatapathError> {
    if !clsact {
        let tcx = TcAttach::Tcx {
            attach_type: TcAttachType::Ingress,
            order: LinkOrder::default(),
        };
        match program.attach(name.c, tcx) {
            Ok(id) => {
                let link = program
                    .take_link(id)
                    .map_err(|e| DatapathError::program("take the link of", e))?;
                pin_link(
                    link,
                    &pin_path(pin_dir, name.text, PinKind::Tc),
                    "tc mode needs bpf_link (Linux >= 5.9)",
                )?;
                return Ok(PinKind::Tc);
            }
            Err(e) => warn!(
                interface = name.text,
                "no TCX link ({}): attaching tc as a clsact filter, as on Linux before 6.6",
                crate::cause_text(&e)
            ),
        }
    }
    attach_clsact(program, pin_dir, name)?;
    Ok(PinKind::TcClsact)
}

/// tc ingress as a filter on the clsact qdisc (added when missing), at a fixed priority
/// and handle; the program pinned as the marker.
fn attach_clsact(
    program: &mut SchedClassifier,
    pin_dir: &Path,
    name: Name<'_>,
) -> Result<(), DatapathError> {
    // The qdisc may be there already: another tool's, or ours from before.
    let _exists = tc::qdisc_add_clsact(name.c);
    let id = program
        .attach(
            name.c,
            TcAttach::Netlink {
                parent: TcAttachType::Ingress.into(),
                options: NlOptions {
                    priority: CLSACT_PRIORITY,
                    handle: CLSACT_HANDLE,
                    classid: None,
                },
            },
        )
        .map_err(|e| DatapathError::Attach {
            interface: name.text.to_owned(),
            hook: "tc",
            source: Box::new(e),
        })?;
    let link = program
        .take_link(id)
        .map_err(|e| DatapathError::program("take the link of", e))?;
    // Dropping the link would delete the filter; the qdisc keeps it, and the program.
    std::mem::forget(link);
    pin_marker(program, &pin_path(pin_dir, name.text, PinKind::TcClsact))
}

/// Replaces the program of our clsact filter in place (a netlink replace of the filter at
/// our priority and handle; it fails when the filter is gone), and moves the marker.
fn replace_clsact(tc: &mut SchedClassifier, name: Name<'_>, marker: &Path) -> Result<(), String> {
    let ours = SchedClassifierLink::attached(
        name.c,
        TcAttachType::Ingress.into(),
        CLSACT_PRIORITY,
        CLSACT_HANDLE,
        None,
    )
    .map_err(|e| e.to_string())?;
    let id = tc.attach_to_link(ours).map_err(|e| crate::cause_text(&e))?;
    let link = tc.take_link(id).map_err(|e| e.to_string())?;
    // As in attach_clsact: the filter must outlive this process.
    std::mem::forget(link);
    std::fs::remove_file(marker).map_err(|e| e.to_string())?;
    pin_marker(tc, marker).map_err(|e| e.to_string())
}

fn pin_marker(program: &mut SchedClassifier, marker: &Path) -> Result<(), DatapathError> {
    program.pin(marker).map_err(|e| DatapathError::Link {
        op: "pin",
        path: marker.to_owned(),
        detail: e.to_string(),
    })
}

/// Removes our clsact filter from `interface` (none there is no error, and neither is an
/// interface absent from this namespace: its filter went with it, or lives where this
/// process cannot reach). The qdisc stays: other tools' filters may hang from it.
pub fn remove_clsact_filter(interface: &str) -> Result<(), DatapathError> {
    let Ok(c_name) = std::ffi::CString::new(interface) else {
        return Ok(());
    };
    if ethtool::interface_index(interface).is_none() {
        warn!(
            interface,
            "no such interface here: its clsact filter was not removed (run detach in the \
             interface's network namespace, or delete the interface)"
        );
        return Ok(());
    }
    match tc::qdisc_detach_program(
        c_name.as_c_str(),
        TcAttachType::Ingress.into(),
        ban_common::programs::TC,
    ) {
        Ok(()) => Ok(()),
        Err(tc::TcError::IoError(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DatapathError::Io {
            op: "remove the clsact filter of",
            path: PathBuf::from(interface),
            source: std::io::Error::other(crate::cause_text(&e)),
        }),
    }
}

/// Pins a link taken from its program; `needs` says what a kernel without bpf_link for
/// this hook lacks.
fn pin_link<L>(link: L, pin: &Path, needs: &str) -> Result<(), DatapathError>
where
    FdLink: TryFrom<L>,
    <FdLink as TryFrom<L>>::Error: std::fmt::Display,
{
    let link = FdLink::try_from(link).map_err(|e| DatapathError::Link {
        op: "create",
        path: pin.to_owned(),
        detail: format!("{e}: {needs}"),
    })?;
    link.pin(pin).map_err(|e| DatapathError::Link {
        op: "pin",
        path: pin.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(())
}

/// Puts `xdp` into the pinned XDP link in place.
fn replace_xdp_in_pinned_link(xdp: &mut Xdp, pin: &Path) -> Result<(), String> {
    // Keep the link out of the program's ownership so that dropping the program closes
    // only our descriptor; the pin keeps the link, and so the hook, alive.
    let link = XdpLink::try_from(pinned_link(pin)?).map_err(|e| e.to_string())?;
    let id = xdp.attach_to_link(link).map_err(|e| e.to_string())?;
    let link = xdp.take_link(id).map_err(|e| e.to_string())?;
    drop(FdLink::try_from(link).map_err(|e| e.to_string())?);
    Ok(())
}

/// Puts `tc` into the pinned TCX link in place.
fn replace_tc_in_pinned_link(tc: &mut SchedClassifier, pin: &Path) -> Result<(), String> {
    // As for XDP: the pin, not this process, keeps the link.
    let link = SchedClassifierLink::try_from(pinned_link(pin)?).map_err(|e| e.to_string())?;
    let id = tc.attach_to_link(link).map_err(|e| e.to_string())?;
    let link = tc.take_link(id).map_err(|e| e.to_string())?;
    drop(FdLink::try_from(link).map_err(|e| e.to_string())?);
    Ok(())
}

fn pinned_link(pin: &Path) -> Result<FdLink, String> {
    let pinned = PinnedLink::from_pin(pin).map_err(|e| e.to_string())?;
    Ok(FdLink::from(pinned))
}

/// Removes a link's pin: the last reference, so the kernel detaches the program.
pub fn unpin_link(path: &Path) -> Result<(), DatapathError> {
    match PinnedLink::from_pin(path) {
        Ok(link) => {
            let _detached = link.unpin().map_err(|source| DatapathError::Io {
                op: "unpin",
                path: path.to_owned(),
                source,
            })?;
            Ok(())
        }
        Err(_) => remove_file(path),
    }
}
