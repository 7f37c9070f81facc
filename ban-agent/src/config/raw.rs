//! The file as written (serde, with spans) and its validation into [`Config`].
//!
//! Values that take several shapes (durations, ports, `ignoreip`) are read as TOML values
//! and checked here, so that each error says what was expected in words, not serde's.

use std::{collections::BTreeMap, net::IpAddr, ops::Range, path::Path, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;
use toml::{Spanned, Value};

use super::{
    Action, Config, ConfigError, DatePattern, Email, Global, Jail, MailVia, MissingLog, Ports,
    defaults, error::Source,
};
use crate::{
    datapath::{AttachMode, Protocol},
    tail::{
        Start,
        container::{LogFormat, Streams},
        docker::DockerSelector,
    },
    tracker::{BanTime, Increment, Rules},
};

/// fail2ban's dotted `bantime.*` keys, which TOML reads as a table under `bantime`.
const FAIL2BAN_BANTIME: [&str; 6] = [
    "increment",
    "factor",
    "maxtime",
    "overalljails",
    "rndtime",
    "multipliers",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ignoreself: Option<bool>,
    state_dir: Option<String>,
    pin_dir: Option<String>,
    interfaces: Option<Vec<Spanned<Value>>>,
    mode: Option<Spanned<String>>,
    metrics: Option<Spanned<String>>,
    filter_dir: Option<String>,
    fail2ban_dir: Option<String>,
    docker_root: Option<String>,
    socket: Option<String>,
    socket_group: Option<Spanned<Value>>,
    log_level: Option<Spanned<String>>,
    log_target: Option<Spanned<String>>,
    fleet: Option<Spanned<super::fleet::RawFleet>>,
    crowdsec: Option<Spanned<super::crowdsec::RawCrowdSec>>,
    #[serde(default)]
    defaults: RawJail,
    #[serde(default)]
    jail: BTreeMap<String, Spanned<RawJail>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJail {
    pub(super) enabled: Option<bool>,
    pub(super) logpath: Option<Spanned<Value>>,
    pub(super) filter: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "regex_list")]
    pub(super) failregex: Option<Vec<Spanned<String>>>,
    #[serde(default, deserialize_with = "regex_list")]
    pub(super) ignoreregex: Option<Vec<Spanned<String>>>,
    pub(super) maxretry: Option<Spanned<i64>>,
    pub(super) findtime: Option<Spanned<Value>>,
    pub(super) bantime: Option<Spanned<Value>>,
    pub(super) ports: Option<Spanned<Value>>,
    pub(super) protocol: Option<Spanned<String>>,
    pub(super) ignoreip: Option<Spanned<Value>>,
    pub(super) ban_prefix_v4: Option<Spanned<i64>>,
    pub(super) ban_prefix_v6: Option<Spanned<i64>>,
    pub(super) bantime_increment: Option<Spanned<RawIncrement>>,
    pub(super) datepattern: Option<Spanned<String>>,
    pub(super) backend: Option<Spanned<String>>,
    #[serde(default, deserialize_with = "regex_list")]
    pub(super) journalmatch: Option<Vec<Spanned<String>>>,
    pub(super) start: Option<Spanned<String>>,
    pub(super) missing_log: Option<Spanned<String>>,
    pub(super) log_format: Option<Spanned<String>>,
    pub(super) stream: Option<Spanned<String>>,
    pub(super) docker: Option<Spanned<Value>>,
    pub(super) docker_label: Option<Spanned<Value>>,
    pub(super) max_tracked: Option<Spanned<i64>>,
    pub(super) max_bans_per_minute: Option<Spanned<i64>>,
    pub(super) on_ban: Option<Spanned<RawAction>>,
    pub(super) on_unban: Option<Spanned<RawAction>>,
    /// fail2ban's actions: `"sendmail-whois[dest=ops@example.org]"`, or a list of them.
    pub(super) action: Option<Spanned<Value>>,
    pub(super) fleet: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    command: Option<Spanned<Vec<String>>>,
    webhook: Option<Spanned<String>>,
    timeout: Option<Spanned<Value>>,
    email: Option<Spanned<RawEmail>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmail {
    to: Spanned<Vec<String>>,
    from: Spanned<String>,
    smtp: Option<Spanned<String>>,
    starttls: Option<bool>,
    credentials_file: Option<String>,
    log_lines: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIncrement {
    enabled: Option<bool>,
    factor: Option<Spanned<f64>>,
    maxtime: Option<Spanned<Value>>,
    overall_jails: Option<bool>,
}

/// `failregex`/`ignoreregex`: a list of regexes, or one string with a regex per line as
/// fail2ban writes them (blank lines skipped). A list keeps each item's position for
/// errors; the lines of a string share the string's.
fn regex_list<'de, D>(deserializer: D) -> Result<Option<Vec<Spanned<String>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Regexes(Vec<Spanned<String>>, Option<String>);

    impl<'de> Deserialize<'de> for Regexes {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Regexes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a list of regexes, or a string with one regex per line")
                }
                fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Regexes, E> {
                    Ok(Regexes(Vec::new(), Some(text.to_owned())))
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Regexes, A::Error> {
                    let mut all = Vec::new();
                    while let Some(regex) = seq.next_element::<Spanned<String>>()? {
                        all.push(regex);
                    }
                    Ok(Regexes(all, None))
                }
            }
            deserializer.deserialize_any(Visit)
        }
    }

    let value = Spanned::<Regexes>::deserialize(deserializer)?;
    let span = value.span();
    let Regexes(list, lines) = value.into_inner();
    Ok(Some(match lines {
        None => list,
        Some(text) => text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| Spanned::new(span.clone(), line.to_owned()))
            .collect(),
    }))
}

pub(super) fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let source = Source {
        path: path.to_owned(),
        text,
    };
    let raw: RawConfig = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let global = global(&source, &raw, base)?;
    // CrowdSec's jail, when `[jail.NAME]` does not set it up.
    let crowdsec_jail = global
        .crowdsec
        .as_ref()
        .map(|crowdsec| crowdsec.jail.as_str())
        .filter(|name| !raw.jail.contains_key(*name));
    let count = raw.jail.len() + usize::from(crowdsec_jail.is_some());
    if count > ban_common::MAX_JAILS as usize {
        return Err(source.error(
            0..0,
            "jail",
            format!(
                "{count} jails, at most {} are supported; merge jails that watch the same log",
                ban_common::MAX_JAILS
            ),
        ));
    }
    let mut jails = Vec::with_capacity(count);
    let no_table = RawJail::default();
    let tables = raw
        .jail
        .iter()
        .map(|(name, table)| (name.as_str(), table.span(), table.get_ref()))
        .chain(crowdsec_jail.map(|name| {
            let span = raw.crowdsec.as_ref().map_or(0..0, Spanned::span);
            (name, span, &no_table)
        }));
    for (name, span, table) in tables {
        let ctx = JailCtx {
            source: &source,
            name,
            span,
            jail: table,
            defaults: &raw.defaults,
        };
        let crowdsec = global.crowdsec.as_ref().filter(|c| c.jail == name);
        jails.push(match crowdsec {
            Some(crowdsec) => ctx.crowdsec_jail(&global, crowdsec, base)?,
            None => ctx.jail(&global, base)?,
        });
    }
    jails.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Config {
        path: path.to_owned(),
        global,
        jails,
    })
}

/// One entry of `interfaces`: `"eth0"`, or `{ name = "eth0", mode = "tc" }`.
fn interface(
    source: &Source,
    entry: &Spanned<Value>,
) -> Result<(String, Option<AttachMode>), ConfigError> {
    let shape = || {
        source.error(
            entry.span(),
            "interfaces",
            "expected an interface name such as \"eth0\", or a table such as \
             { name = \"eth0\", mode = \"tc\" }",
        )
    };
    let (name, mode) = match entry.get_ref() {
        Value::String(name) => (name.clone(), None),
        Value::Table(table) => {
            if let Some(key) = table.keys().find(|key| *key != "name" && *key != "mode") {
                return Err(source.error(
                    entry.span(),
                    "interfaces",
                    format!("unknown key {key:?} in an interface: expected `name` and `mode`"),
                ));
            }
            let name = table
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(shape)?;
            let mode = match table.get("mode") {
                None => None,
                Some(Value::String(mode)) => Some(
                    AttachMode::parse(mode)
                        .ok_or_else(|| mode_error(source, entry.span(), "interfaces", mode))?,
                ),
                Some(other) => {
                    return Err(mode_error(
                        source,
                        entry.span(),
                        "interfaces",
                        &other.to_string(),
                    ));
                }
            };
            (name.to_owned(), mode)
        }
        _ => return Err(shape()),
    };
    let valid = !name.is_empty() && name.len() < libc::IFNAMSIZ && !name.contains(['/', ' ', ':']);
    if !valid {
        return Err(source.error(
            entry.span(),
            "interfaces",
            format!(
                "{name:?} is not an interface name: expected a name such as \"eth0\" of at \
                 most {} characters, as `ip link` shows",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    Ok((name, mode))
}

fn mode_error(source: &Source, span: Range<usize>, key: &str, mode: &str) -> ConfigError {
    source.error(
        span,
        key,
        format!(
            "{mode:?} is not a mode: expected \"auto\" (native XDP where the driver keeps \
             its offloads, tc elsewhere), \"xdp\", \"tc\" or \"xdp-generic\""
        ),
    )
}

/// `socket_group`: a group name from the group database, or a numeric id.
fn socket_group(source: &Source, group: &Spanned<Value>) -> Result<u32, ConfigError> {
    let found = match group.get_ref() {
        Value::Integer(id) => u32::try_from(*id).ok(),
        Value::String(name) => crate::trust::group_named(name),
        _ => None,
    };
    found.ok_or_else(|| {
        source.error(
            group.span(),
            "socket_group",
            format!(
                "{} is not a group of this host: expected a group name from /etc/group \
                 (`getent group NAME` shows it) or a numeric group id",
                group.get_ref()
            ),
        )
    })
}

fn global(source: &Source, raw: &RawConfig, base: &Path) -> Result<Global, ConfigError> {
    let mut global = Global::default();
    if let Some(ignoreself) = raw.ignoreself {
        global.ignoreself = ignoreself;
    }
    for (path, setting) in [
        (&mut global.state_dir, &raw.state_dir),
        (&mut global.pin_dir, &raw.pin_dir),
        (&mut global.filter_dir, &raw.filter_dir),
        (&mut global.fail2ban_dir, &raw.fail2ban_dir),
        (&mut global.docker_root, &raw.docker_root),
        (&mut global.socket, &raw.socket),
    ] {
        if let Some(text) = setting {
            *path = base.join(text);
        }
    }
    if let Some(group) = &raw.socket_group {
        global.socket_group = Some(socket_group(source, group)?);
    }
    if let Some(level) = &raw.log_level {
        tracing_subscriber::EnvFilter::try_new(level.get_ref()).map_err(|e| {
            source.error(
                level.span(),
                "log_level",
                format!(
                    "{:?} is not a log level ({e}): expected \"error\", \"warn\", \"info\", \
                     \"debug\" or \"trace\", or a filter such as \"ban_agent=debug\"",
                    level.get_ref()
                ),
            )
        })?;
        global.log_level = Some(level.get_ref().clone());
    }
    if let Some(target) = &raw.log_target {
        global.log_target = crate::logging::LogTarget::parse(target.get_ref(), base)
            .map_err(|why| source.error(target.span(), "log_target", why))?;
    }
    global.fleet = (raw.fleet.as_ref())
        .map(|fleet| super::fleet::fleet(source, fleet, base))
        .transpose()?;
    global.crowdsec = (raw.crowdsec.as_ref())
        .map(|crowdsec| super::crowdsec::crowdsec(source, crowdsec, base))
        .transpose()?;
    if let Some(mode) = &raw.mode {
        global.mode = AttachMode::parse(mode.get_ref())
            .ok_or_else(|| mode_error(source, mode.span(), "mode", mode.get_ref()))?;
    }
    for entry in raw.interfaces.iter().flatten() {
        let (name, mode) = interface(source, entry)?;
        if global.interfaces.contains(&name) {
            return Err(source.error(
                entry.span(),
                "interfaces",
                format!("{name:?} is listed twice: list each interface once"),
            ));
        }
        if let Some(mode) = mode {
            global.interface_modes.insert(name.clone(), mode);
        }
        global.interfaces.push(name);
    }
    if let Some(metrics) = &raw.metrics {
        global.metrics = Some(metrics.get_ref().parse().map_err(|_| {
            source.error(
                metrics.span(),
                "metrics",
                format!(
                    "{:?} is not an address and port: expected e.g. \"127.0.0.1:9464\" or \
                     \"[::1]:9464\"",
                    metrics.get_ref()
                ),
            )
        })?);
    }
    Ok(global)
}

/// One `[jail.NAME]` table with `[defaults]` behind it.
pub(super) struct JailCtx<'a> {
    pub(super) source: &'a Source<'a>,
    pub(super) name: &'a str,
    pub(super) span: Range<usize>,
    pub(super) jail: &'a RawJail,
    pub(super) defaults: &'a RawJail,
}

/// A value set in the jail or inherited from `[defaults]`, with the key it was written at.
pub(super) struct Setting<'a, T> {
    pub(super) value: &'a T,
    pub(super) key: String,
}

impl<'a> JailCtx<'a> {
    pub(super) fn pick<T>(
        &self,
        field: &str,
        get: impl Fn(&'a RawJail) -> Option<&'a T>,
    ) -> Option<Setting<'a, T>> {
        if let Some(value) = get(self.jail) {
            return Some(Setting {
                value,
                key: format!("jail.{}.{field}", self.name),
            });
        }
        get(self.defaults).map(|value| Setting {
            value,
            key: format!("defaults.{field}"),
        })
    }

    pub(super) fn error(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        self.source.error(span, key, message)
    }

    /// `enabled`, true unless set.
    fn enabled(&self) -> bool {
        self.pick("enabled", |j| j.enabled.as_ref())
            .is_none_or(|s| *s.value)
    }

    /// `bantime`, [`defaults::BANTIME`] unless set.
    fn bantime(&self) -> Result<BanTime, ConfigError> {
        match self.pick("bantime", |j| j.bantime.as_ref()) {
            Some(s) => self.duration(&s, true),
            None => Ok(BanTime::For(defaults::BANTIME)),
        }
    }

    fn jail(&self, global: &Global, base: &Path) -> Result<Jail, ConfigError> {
        let enabled = self.enabled();
        let journal = self.journal(base)?;
        let (filter, filter_origin) = self.filter(global, journal.is_some())?;
        let journal = journal.map(|mut spec| {
            if spec.matches.is_empty() {
                spec.matches = filter.journalmatch().to_vec();
            }
            spec
        });
        let bantime = self.bantime()?;
        let docker = self.docker(global, journal.is_some())?;
        let logpath = self.logpath(base, enabled && journal.is_none() && docker.is_none())?;
        let (log_format, stream) = self.container(journal.is_some())?;
        let ports = self.ports()?;
        let protocol = self.protocol()?;
        Ok(Jail {
            actions: self.actions(global, &ports, protocol)?,
            name: self.name.to_owned(),
            enabled,
            on_ban: self.hook("on_ban", base, &logpath, |j| j.on_ban.as_ref())?,
            on_unban: self.hook("on_unban", base, &logpath, |j| j.on_unban.as_ref())?,
            logpath,
            filter,
            filter_origin,
            rules: self.rules()?,
            bantime,
            increment: self.increment()?,
            ports,
            protocol,
            ignoreip: self.ignoreip()?,
            datepattern: self.datepattern(),
            start: self.start()?,
            missing_log: self.missing_log()?,
            log_format,
            stream,
            docker,
            journal,
            fleet: global.fleet.is_some()
                && self
                    .pick("fleet", |j| j.fleet.as_ref())
                    .is_none_or(|s| *s.value),
            crowdsec: false,
        })
    }

    /// The jail of CrowdSec's bans (`[crowdsec]`'s `jail`): it reads no log, so the keys
    /// about logs and failures are refused in its own table (and not taken from
    /// `[defaults]`); it bans every port and protocol, with no cap on bans per minute,
    /// unless its own table says otherwise, as CrowdSec's firewall bouncer does.
    fn crowdsec_jail(
        &self,
        global: &Global,
        crowdsec: &super::CrowdSec,
        base: &Path,
    ) -> Result<Jail, ConfigError> {
        self.no_log_keys()?;
        let enabled = self.enabled();
        let bantime = self.bantime()?;
        let own = |field| Setting {
            value: field,
            key: format!("jail.{}", self.name),
        };
        let ports = match &self.jail.ports {
            Some(_) => self.ports()?,
            None => Ports::All,
        };
        let protocol = match &self.jail.protocol {
            Some(_) => self.protocol()?,
            None => Protocol::All,
        };
        let max_bans_per_minute = match &self.jail.max_bans_per_minute {
            Some(max) => self.integer(&own(max), 0, i64::from(u32::MAX), "bans (0: no cap)")?,
            None => 0,
        };
        Ok(Jail {
            actions: self.actions(global, &ports, protocol)?,
            name: self.name.to_owned(),
            enabled,
            on_ban: self.hook("on_ban", base, &[], |j| j.on_ban.as_ref())?,
            on_unban: self.hook("on_unban", base, &[], |j| j.on_unban.as_ref())?,
            logpath: Vec::new(),
            filter: crate::filter::Filter::none(),
            filter_origin: format!("CrowdSec's decisions ({})", crowdsec.url),
            rules: Rules {
                max_bans_per_minute,
                ..Rules::default()
            },
            bantime,
            increment: None,
            ports,
            protocol,
            ignoreip: self.ignoreip()?,
            datepattern: DatePattern::Auto,
            start: Start::Tail,
            missing_log: MissingLog::Wait,
            log_format: LogFormat::Auto,
            stream: Streams::Both,
            docker: None,
            journal: None,
            fleet: false,
            crowdsec: true,
        })
    }

    /// The keys about logs and failures, refused in the CrowdSec jail's own table.
    fn no_log_keys(&self) -> Result<(), ConfigError> {
        let j = self.jail;
        let log_keys: [(&str, Option<Range<usize>>); 18] = [
            ("logpath", j.logpath.as_ref().map(Spanned::span)),
            ("filter", j.filter.as_ref().map(Spanned::span)),
            (
                "failregex",
                j.failregex
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(Spanned::span),
            ),
            (
                "ignoreregex",
                j.ignoreregex
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(Spanned::span),
            ),
            ("maxretry", j.maxretry.as_ref().map(Spanned::span)),
            ("findtime", j.findtime.as_ref().map(Spanned::span)),
            ("ban_prefix_v4", j.ban_prefix_v4.as_ref().map(Spanned::span)),
            ("ban_prefix_v6", j.ban_prefix_v6.as_ref().map(Spanned::span)),
            (
                "bantime_increment",
                j.bantime_increment.as_ref().map(Spanned::span),
            ),
            ("datepattern", j.datepattern.as_ref().map(Spanned::span)),
            ("backend", j.backend.as_ref().map(Spanned::span)),
            (
                "journalmatch",
                j.journalmatch
                    .as_ref()
                    .and_then(|l| l.first())
                    .map(Spanned::span),
            ),
            ("start", j.start.as_ref().map(Spanned::span)),
            ("missing_log", j.missing_log.as_ref().map(Spanned::span)),
            ("log_format", j.log_format.as_ref().map(Spanned::span)),
            (
                "docker",
                j.docker
                    .as_ref()
                    .or(j.docker_label.as_ref())
                    .map(Spanned::span),
            ),
            ("max_tracked", j.max_tracked.as_ref().map(Spanned::span)),
            ("stream", j.stream.as_ref().map(Spanned::span)),
        ];
        if let Some((key, Some(span))) = log_keys.into_iter().find(|(_, span)| span.is_some()) {
            return Err(self.error(
                span,
                &format!("jail.{}.{key}", self.name),
                format!(
                    "the jail {} holds CrowdSec's decisions (`[crowdsec]`) and reads no log: \
                     remove `{key}`, or give `[crowdsec]` another `jail`",
                    self.name
                ),
            ));
        }
        if self.jail.fleet == Some(true) {
            return Err(self.error(
                self.span.clone(),
                &format!("jail.{}.fleet", self.name),
                "every host reads CrowdSec's decisions itself: its jail is not shared with \
                 the fleet; remove `fleet`",
            ));
        }
        Ok(())
    }

    /// `backend = "systemd"` (fail2ban's, with `[journalpath=DIR]` or
    /// `[journalfiles=...]`) and `journalmatch`: the jail reads the journal.
    fn journal(
        &self,
        base: &Path,
    ) -> Result<Option<crate::tail::journal::JournalSpec>, ConfigError> {
        let matches = self.pick("journalmatch", |j| j.journalmatch.as_ref());
        let backend = self.pick("backend", |j| j.backend.as_ref());
        let spec = match &backend {
            Some(s) => {
                let text = s.value.get_ref().trim();
                let reference = crate::fail2ban::FilterRef::parse(text)
                    .map_err(|e| self.error(s.value.span(), &s.key, e.to_string()))?;
                match reference.name.as_str() {
                    "auto" | "pyinotify" | "polling" | "gamin" | "inotify" | "files" => None,
                    "systemd" => Some(
                        crate::tail::journal::JournalSpec::from_backend(&reference.options)
                            .map_err(|e| self.error(s.value.span(), &s.key, e))?,
                    ),
                    other => {
                        return Err(self.error(
                            s.value.span(),
                            &s.key,
                            format!(
                                "{other:?}: expected \"auto\" (files: inotify and a poll) or \
                                 \"systemd\" (the journal, optionally \
                                 \"systemd[journalpath=/var/log/journal]\")"
                            ),
                        ));
                    }
                }
            }
            None => matches.as_ref().map(|_| Default::default()),
        };
        Ok(spec.map(|mut spec: crate::tail::journal::JournalSpec| {
            spec.path = spec.path.map(|p| base.join(p));
            spec.files = spec.files.iter().map(|f| base.join(f)).collect();
            if let Some(matches) = &matches {
                spec.matches = matches.value.iter().map(|m| m.get_ref().clone()).collect();
            }
            spec
        }))
    }

    /// `action`: fail2ban's actions, read from `fail2ban_dir`'s `action.d` for this jail
    /// (its name, ports and protocol given to them, as fail2ban's jails give them).
    fn actions(
        &self,
        global: &Global,
        ports: &Ports,
        protocol: Protocol,
    ) -> Result<Vec<crate::fail2ban::action::Fail2banAction>, ConfigError> {
        let Some(s) = self.pick("action", |j| j.action.as_ref()) else {
            return Ok(Vec::new());
        };
        let expected = "expected fail2ban's actions: \"sendmail-whois[dest=ops@example.org]\", \
                        or a list of them";
        let texts: Vec<String> = match s.value.get_ref() {
            Value::String(text) => crate::fail2ban::jails::split_actions(text),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| self.error(s.value.span(), &s.key, expected))?,
            _ => return Err(self.error(s.value.span(), &s.key, expected)),
        };
        let port = match ports {
            Ports::All => "0:65535".to_owned(),
            Ports::List(list) => list
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
        };
        let protocol = match protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::All => "all",
        };
        let vars: crate::fail2ban::interpolate::Vars = [
            ("name", self.name),
            ("port", port.as_str()),
            ("protocol", protocol),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let dir = global.fail2ban_dir.join("action.d");
        let mut actions = Vec::with_capacity(texts.len());
        for text in texts {
            let at = |e: &dyn std::fmt::Display| {
                self.error(s.value.span(), &s.key, format!("{text:?}: {e}"))
            };
            let reference = crate::fail2ban::FilterRef::parse(&text).map_err(|e| at(&e))?;
            let action =
                crate::fail2ban::action::read(&dir, &reference, &vars).map_err(|e| at(&e))?;
            // Its commands run as the agent: its files must be root's (or the agent's).
            for file in &action.files {
                crate::trust::check_file(file).map_err(|e| at(&e))?;
            }
            actions.push(action);
        }
        Ok(actions)
    }

    fn hook(
        &self,
        field: &str,
        base: &Path,
        logpath: &[std::path::PathBuf],
        get: impl Fn(&'a RawJail) -> Option<&'a Spanned<RawAction>>,
    ) -> Result<Option<Action>, ConfigError> {
        let Some(s) = self.pick(field, get) else {
            return Ok(None);
        };
        let raw = s.value.get_ref();
        let command = match &raw.command {
            Some(command) if command.get_ref().is_empty() => {
                return Err(self.error(
                    command.span(),
                    &format!("{}.command", s.key),
                    "empty: expected the program and its arguments, e.g. \
                     [\"/usr/local/bin/notify-ban\", \"<ip>\", \"<jail>\"]",
                ));
            }
            Some(command) => Some(command.get_ref().clone()),
            None => None,
        };
        let webhook = match &raw.webhook {
            Some(url)
                if url.get_ref().starts_with("http://")
                    || url.get_ref().starts_with("https://") =>
            {
                Some(url.get_ref().clone())
            }
            Some(url) => {
                return Err(self.error(
                    url.span(),
                    &format!("{}.webhook", s.key),
                    format!(
                        "{:?} is not an http(s) URL: expected e.g. \
                         \"https://hooks.example.com/ban-agent\"",
                        url.get_ref()
                    ),
                ));
            }
            None => None,
        };
        let email = match &raw.email {
            Some(email) => Some(Email {
                logpath: logpath.to_vec(),
                ..self.email(email, base, &format!("{}.email", s.key))?
            }),
            None => None,
        };
        if command.is_none() && webhook.is_none() && email.is_none() {
            return Err(self.error(
                s.value.span(),
                &s.key,
                "neither `command`, `webhook` nor `email`: expected at least one of them",
            ));
        }
        let timeout = match &raw.timeout {
            None => defaults::HOOK_TIMEOUT,
            Some(value) => self.finite_duration(&Setting {
                value,
                key: format!("{}.timeout", s.key),
            })?,
        };
        Ok(Some(Action {
            command,
            webhook,
            timeout,
            email,
        }))
    }

    /// `email = { to = [...], from = "...", smtp = "host:port" or "sendmail", ... }`.
    fn email(&self, raw: &Spanned<RawEmail>, base: &Path, key: &str) -> Result<Email, ConfigError> {
        let email = raw.get_ref();
        let address = |text: &str| text.contains('@') && !text.contains(char::is_whitespace);
        if email.to.get_ref().is_empty() || !email.to.get_ref().iter().all(|a| address(a)) {
            return Err(self.error(
                email.to.span(),
                &format!("{key}.to"),
                "expected a list of mail addresses, e.g. [\"ops@example.org\"]",
            ));
        }
        if !address(email.from.get_ref()) {
            return Err(self.error(
                email.from.span(),
                &format!("{key}.from"),
                format!(
                    "{:?} is not a mail address: expected e.g. \"ban-agent@example.org\"",
                    email.from.get_ref()
                ),
            ));
        }
        let via = match &email.smtp {
            None => MailVia::Sendmail,
            Some(server) if server.get_ref() == "sendmail" => MailVia::Sendmail,
            Some(server) => {
                let text = server.get_ref();
                let (host, port) = match text.rsplit_once(':') {
                    Some((host, port)) if !host.is_empty() && !host.ends_with(':') => {
                        match port.parse::<u16>() {
                            Ok(port) if port > 0 => (host.trim_matches(['[', ']']), port),
                            _ => (text.as_str(), 0),
                        }
                    }
                    _ => (text.as_str(), 587),
                };
                if host.is_empty() || port == 0 || host.contains('/') {
                    return Err(self.error(
                        server.span(),
                        &format!("{key}.smtp"),
                        format!(
                            "{text:?} is not an SMTP server: expected \"HOST\" or \"HOST:PORT\" \
                             (587 by default), e.g. \"mail.example.org:587\", or \"sendmail\" \
                             for the local sendmail"
                        ),
                    ));
                }
                MailVia::Smtp {
                    host: host.to_owned(),
                    port,
                    starttls: email.starttls.unwrap_or(true),
                    credentials_file: email.credentials_file.as_ref().map(|file| base.join(file)),
                }
            }
        };
        let log_lines = match &email.log_lines {
            None => 20,
            Some(n) if (0..=1000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return Err(self.error(
                    n.span(),
                    &format!("{key}.log_lines"),
                    "expected a number of lines from 0 to 1000",
                ));
            }
        };
        Ok(Email {
            to: email.to.get_ref().clone(),
            from: email.from.get_ref().clone(),
            via,
            log_lines,
            logpath: Vec::new(),
        })
    }

    fn logpath(&self, base: &Path, enabled: bool) -> Result<Vec<std::path::PathBuf>, ConfigError> {
        let Some(setting) = self.pick("logpath", |j| j.logpath.as_ref()) else {
            if enabled {
                return Err(self.error(
                    self.span.clone(),
                    &format!("jail.{}", self.name),
                    "no `logpath`: expected the log file(s) this jail reads, e.g. \
                     logpath = \"/var/log/app/auth.log\"",
                ));
            }
            return Ok(Vec::new());
        };
        let expected = "expected a file or glob pattern, or a list of them, e.g. \
                        \"/var/log/app/*.log\"";
        let span = setting.value.span();
        let mut paths = Vec::new();
        for text in strings(setting.value.get_ref()) {
            let text = text.ok_or_else(|| self.error(span.clone(), &setting.key, expected))?;
            let path = base.join(text);
            let pattern = path.to_string_lossy();
            glob::Pattern::new(&pattern).map_err(|e| {
                self.error(
                    span.clone(),
                    &setting.key,
                    format!("{text:?} is not a valid glob: {e}"),
                )
            })?;
            paths.push(path);
        }
        if paths.is_empty() {
            return Err(self.error(span, &setting.key, format!("empty: {expected}")));
        }
        Ok(paths)
    }

    fn rules(&self) -> Result<Rules, ConfigError> {
        let mut rules = Rules::default();
        if let Some(s) = self.pick("maxretry", |j| j.maxretry.as_ref()) {
            rules.maxretry = self.integer(&s, 1, i64::from(u32::MAX), "failures")?;
        }
        if let Some(s) = self.pick("findtime", |j| j.findtime.as_ref()) {
            rules.findtime = self.finite_duration(&s)?;
        }
        if let Some(s) = self.pick("ban_prefix_v4", |j| j.ban_prefix_v4.as_ref()) {
            rules.prefix_v4 = self.integer(&s, 8, 32, "prefix length")?;
        }
        if let Some(s) = self.pick("ban_prefix_v6", |j| j.ban_prefix_v6.as_ref()) {
            rules.prefix_v6 = self.integer(&s, 16, 128, "prefix length")?;
        }
        if let Some(s) = self.pick("max_tracked", |j| j.max_tracked.as_ref()) {
            rules.max_tracked = self.integer(&s, 1, 1 << 30, "addresses")?;
        }
        if let Some(s) = self.pick("max_bans_per_minute", |j| j.max_bans_per_minute.as_ref()) {
            rules.max_bans_per_minute =
                self.integer(&s, 0, i64::from(u32::MAX), "bans (0: no cap)")?;
        }
        Ok(rules)
    }

    fn integer<T: TryFrom<i64>>(
        &self,
        s: &Setting<Spanned<i64>>,
        min: i64,
        max: i64,
        what: &str,
    ) -> Result<T, ConfigError> {
        let value = *s.value.get_ref();
        let out_of_range = || {
            self.error(
                s.value.span(),
                &s.key,
                format!("{value} is out of range: expected {what} from {min} to {max}"),
            )
        };
        if !(min..=max).contains(&value) {
            return Err(out_of_range());
        }
        T::try_from(value).map_err(|_| out_of_range())
    }

    /// `10m`, `1h 30m`, a number of seconds, and, where allowed, `permanent` / `-1`.
    fn duration(
        &self,
        s: &Setting<Spanned<Value>>,
        permanent: bool,
    ) -> Result<BanTime, ConfigError> {
        let expected = if permanent {
            format!(
                "expected {}, or \"permanent\" (or -1) for a ban that never ends",
                crate::duration::UNITS_HELP
            )
        } else {
            format!("expected {}", crate::duration::UNITS_HELP)
        };
        let fail = |what: String| self.error(s.value.span(), &s.key, format!("{what}: {expected}"));
        let duration = match s.value.get_ref() {
            Value::Integer(-1) if permanent => return Ok(BanTime::Permanent),
            Value::Integer(n) if *n > 0 => Duration::from_secs(n.unsigned_abs()),
            Value::String(text) => match text.trim() {
                "-1" | "permanent" | "never" if permanent => return Ok(BanTime::Permanent),
                trimmed => crate::duration::parse(trimmed).map_err(|e| fail(e.to_string()))?,
            },
            Value::Table(table) if table.keys().any(|k| FAIL2BAN_BANTIME.contains(&k.as_str())) => {
                return Err(self.error(
                    s.value.span(),
                    &s.key,
                    "fail2ban's `bantime.increment`, `bantime.factor`, `bantime.maxtime` and \
                     `bantime.overalljails` are a table here: `[jail.NAME.bantime_increment]` \
                     (or `[defaults.bantime_increment]`) with `enabled`, `factor`, `maxtime` \
                     and `overall_jails`",
                ));
            }
            other => return Err(fail(format!("{other}"))),
        };
        if duration.is_zero() {
            return Err(fail("zero".to_owned()));
        }
        Ok(BanTime::For(duration))
    }

    fn finite_duration(&self, s: &Setting<Spanned<Value>>) -> Result<Duration, ConfigError> {
        match self.duration(s, false)? {
            BanTime::For(duration) => Ok(duration),
            BanTime::Permanent => Err(self.error(s.value.span(), &s.key, "cannot be permanent")),
        }
    }

    fn increment(&self) -> Result<Option<Increment>, ConfigError> {
        let Some(s) = self.pick("bantime_increment", |j| j.bantime_increment.as_ref()) else {
            return Ok(None);
        };
        let raw = s.value.get_ref();
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let factor = match &raw.factor {
            None => defaults::INCREMENT_FACTOR,
            Some(f) if f.get_ref().is_finite() && *f.get_ref() > 0.0 => *f.get_ref(),
            Some(f) => {
                return Err(self.error(
                    f.span(),
                    &format!("{}.factor", s.key),
                    format!(
                        "{} is not a factor: expected a positive number such as 1 or 2.5",
                        f.get_ref()
                    ),
                ));
            }
        };
        let maxtime = match &raw.maxtime {
            None => defaults::INCREMENT_MAXTIME,
            Some(value) => {
                let setting = Setting {
                    value,
                    key: format!("{}.maxtime", s.key),
                };
                self.finite_duration(&setting)?
            }
        };
        Ok(Some(Increment {
            factor,
            maxtime,
            overall_jails: raw.overall_jails.unwrap_or(false),
        }))
    }

    fn ports(&self) -> Result<Ports, ConfigError> {
        let Some(s) = self.pick("ports", |j| j.ports.as_ref()) else {
            return Ok(Ports::All);
        };
        let expected = "expected \"all\", a port, a range such as \"8000-8010\", or a list of \
                        them, e.g. [80, 443, \"8000-8010\"] (service names such as \"http\" \
                        are not looked up: write 80)";
        if let Value::String(text) = s.value.get_ref()
            && text.trim() == "all"
        {
            return Ok(Ports::All);
        }
        let mut ports = Vec::new();
        for item in port_items(s.value.get_ref()) {
            let range = item.ok_or_else(|| self.error(s.value.span(), &s.key, expected))?;
            let range = range.map_err(|text| {
                self.error(
                    s.value.span(),
                    &s.key,
                    format!("{text:?} is not a port: {expected}"),
                )
            })?;
            ports.extend(range);
        }
        ports.sort_unstable();
        ports.dedup();
        if ports.is_empty() {
            return Err(self.error(s.value.span(), &s.key, format!("no port: {expected}")));
        }
        Ok(Ports::List(ports))
    }

    fn protocol(&self) -> Result<Protocol, ConfigError> {
        let Some(s) = self.pick("protocol", |j| j.protocol.as_ref()) else {
            return Ok(Protocol::Tcp);
        };
        let text = s.value.get_ref();
        <Protocol as clap::ValueEnum>::from_str(text, false).map_err(|_| {
            self.error(
                s.value.span(),
                &s.key,
                format!("{text:?}: expected \"tcp\", \"udp\" or \"all\""),
            )
        })
    }

    fn ignoreip(&self) -> Result<Vec<IpNet>, ConfigError> {
        let Some(s) = self.pick("ignoreip", |j| j.ignoreip.as_ref()) else {
            return Ok(Vec::new());
        };
        let expected = "expected addresses or networks, e.g. [\"192.0.2.7\", \"2001:db8::/32\"]";
        let span = s.value.span();
        let mut nets = Vec::new();
        for text in strings(s.value.get_ref()) {
            let text = text.ok_or_else(|| self.error(span.clone(), &s.key, expected))?;
            for word in text.split([' ', ',', '\t']).filter(|w| !w.is_empty()) {
                let net = word
                    .parse::<IpNet>()
                    .map(|n| n.trunc())
                    .or_else(|_| word.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        self.error(
                            span.clone(),
                            &s.key,
                            format!("{word:?} is not an address or network: {expected}"),
                        )
                    })?;
                nets.push(net);
            }
        }
        Ok(nets)
    }

    fn datepattern(&self) -> DatePattern {
        match self.pick("datepattern", |j| j.datepattern.as_ref()) {
            None => DatePattern::Auto,
            Some(s) => match s.value.get_ref().as_str() {
                "auto" | "" => DatePattern::Auto,
                "none" => DatePattern::None,
                format => DatePattern::Format(format.to_owned()),
            },
        }
    }

    fn missing_log(&self) -> Result<MissingLog, ConfigError> {
        let Some(s) = self.pick("missing_log", |j| j.missing_log.as_ref()) else {
            return Ok(MissingLog::Refuse);
        };
        match s.value.get_ref().as_str() {
            "refuse" => Ok(MissingLog::Refuse),
            "wait" => Ok(MissingLog::Wait),
            other => Err(self.error(
                s.value.span(),
                &s.key,
                format!(
                    "{other:?}: expected \"refuse\" (a log path that does not exist is an \
                     error, as in fail2ban) or \"wait\" (it is read once it appears)"
                ),
            )),
        }
    }

    /// A key about log files, in a journal jail.
    fn files_only(&self, span: Range<usize>, key: &str) -> ConfigError {
        self.error(
            span,
            key,
            "a journal jail reads the journal's entries, not files: remove it, or read the \
             container's log files (`logpath`, `docker`) instead of `backend = \"systemd\"`",
        )
    }

    /// `docker` and `docker_label`: Docker containers whose json-file logs the jail
    /// reads, picked by name or label.
    fn docker(
        &self,
        global: &Global,
        journal: bool,
    ) -> Result<Option<DockerSelector>, ConfigError> {
        let names = self.pick("docker", |j| j.docker.as_ref());
        let labels = self.pick("docker_label", |j| j.docker_label.as_ref());
        if names.is_none() && labels.is_none() {
            return Ok(None);
        }
        if journal && let Some(s) = names.as_ref().or(labels.as_ref()) {
            return Err(self.files_only(s.value.span(), &s.key));
        }
        let list = |setting: &Option<Setting<'_, Spanned<Value>>>, what: &str| {
            let Some(s) = setting else {
                return Ok(Vec::new());
            };
            let mut items = Vec::new();
            for item in strings(s.value.get_ref()) {
                match item.map(str::trim) {
                    Some(text) if !text.is_empty() && !text.contains(char::is_whitespace) => {
                        items.push(text.to_owned());
                    }
                    _ => {
                        return Err(self.error(
                            s.value.span(),
                            &s.key,
                            format!("expected {what}, or a list of them"),
                        ));
                    }
                }
            }
            Ok(items)
        };
        let names = list(&names, "a container's name, e.g. \"api\"")?
            .into_iter()
            .map(|name| name.trim_start_matches('/').to_owned())
            .collect();
        let labels = list(
            &labels,
            "a label, \"key=value\" or \"key\", e.g. \"ban-agent.jail=fastapi-auth\"",
        )?
        .into_iter()
        .map(|label| match label.split_once('=') {
            Some((key, value)) => (key.to_owned(), Some(value.to_owned())),
            None => (label, None),
        })
        .collect();
        Ok(Some(DockerSelector {
            root: global.docker_root.clone(),
            names,
            labels,
        }))
    }

    /// `log_format` and `stream`: how the files' lines are wrapped (a container
    /// runtime's), and which of a container's streams the jail reads.
    fn container(&self, journal: bool) -> Result<(LogFormat, Streams), ConfigError> {
        let format = self.pick("log_format", |j| j.log_format.as_ref());
        let stream = self.pick("stream", |j| j.stream.as_ref());
        if journal && let Some(s) = format.as_ref().or(stream.as_ref()) {
            return Err(self.files_only(s.value.span(), &s.key));
        }
        let log_format = match &format {
            None => LogFormat::Auto,
            Some(s) => LogFormat::from_name(s.value.get_ref()).ok_or_else(|| {
                self.error(
                    s.value.span(),
                    &s.key,
                    format!(
                        "{:?}: expected \"auto\" (told from the first line), \"plain\", \
                         \"docker\" (Docker's json-file driver) or \"cri\" (containerd, CRI-O, \
                         Kubernetes' /var/log/pods and /var/log/containers, podman's k8s-file)",
                        s.value.get_ref()
                    ),
                )
            })?,
        };
        let streams = match &stream {
            None => Streams::Both,
            Some(s) if log_format == LogFormat::Plain => {
                return Err(self.error(
                    s.value.span(),
                    &s.key,
                    "a plain log has no streams: remove `stream`, or set `log_format` to \
                     \"docker\", \"cri\" or \"auto\"",
                ));
            }
            Some(s) => Streams::from_name(s.value.get_ref()).ok_or_else(|| {
                self.error(
                    s.value.span(),
                    &s.key,
                    format!(
                        "{:?}: expected \"stdout\", \"stderr\" or \"both\"",
                        s.value.get_ref()
                    ),
                )
            })?,
        };
        Ok((log_format, streams))
    }

    fn start(&self) -> Result<Start, ConfigError> {
        let Some(s) = self.pick("start", |j| j.start.as_ref()) else {
            return Ok(Start::Tail);
        };
        match s.value.get_ref().as_str() {
            "tail" | "end" => Ok(Start::Tail),
            "head" | "beginning" => Ok(Start::Head),
            other => Err(self.error(
                s.value.span(),
                &s.key,
                format!(
                    "{other:?}: expected \"tail\" (new lines only) or \"head\" (the whole file)"
                ),
            )),
        }
    }
}

/// The strings of a value that is a string or a list of strings; `None` for an item of
/// another type. (TOML values carry no spans of their own: errors point at the value.)
fn strings(value: &Value) -> Vec<Option<&str>> {
    match value {
        Value::String(text) => vec![Some(text.as_str())],
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => vec![None],
    }
}

/// Port items of `ports`: `None` for a value of the wrong type, `Err(text)` for a string
/// that is no port or range.
fn port_items(value: &Value) -> Vec<Option<Result<std::ops::RangeInclusive<u16>, String>>> {
    let one = |item: &Value| match item {
        Value::Integer(n) => Some(
            u16::try_from(*n)
                .ok()
                .filter(|p| *p > 0)
                .map(|p| p..=p)
                .ok_or_else(|| n.to_string()),
        ),
        Value::String(text) => Some(port_range(text).ok_or_else(|| text.clone())),
        _ => None,
    };
    match value {
        Value::Array(items) => items.iter().map(one).collect(),
        Value::String(text) => text
            .split(',')
            .map(|part| one(&Value::String(part.trim().to_owned())))
            .collect(),
        other => vec![one(other)],
    }
}

fn port_range(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let port = |t: &str| t.trim().parse::<u16>().ok().filter(|p| *p > 0);
    match text.split_once(['-', ':']) {
        Some((low, high)) => {
            let (low, high) = (port(low)?, port(high)?);
            (low <= high).then_some(low..=high)
        }
        None => port(text).map(|p| p..=p),
    }
}
