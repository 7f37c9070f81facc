//! `[fleet]`: several hosts sharing failures and bans through Redis or Valkey.
//!
//! ```toml
//! [fleet]
//! url = "rediss://redis.internal:6379/0"   # redis://, rediss:// (TLS), redis+unix:///path,
//!                                          # redis-sentinel://h1:26379,h2:26379/MASTER
//! username = "ban-agent"                   # the ACL user (default: none, "default")
//! password_file = "/etc/ban-agent/redis.password"
//! name = "web-1"                           # this host in the fleet (default: its host name)
//! prefix = "ban-agent"                     # of every key
//! key_file = "/etc/ban-agent/fleet.key"    # signs and checks every ban (HMAC-SHA256)
//! ca_file = "/etc/ban-agent/redis-ca.pem"  # a private CA for rediss:// (default: the system's)
//! batch = "0ms"                            # gather failures this long per round trip
//! ```

use std::{path::Path, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::{Spanned, Value};

use super::{ConfigError, error::Source};

/// Bans and failure counts waiting for the engine, at most (`outbox`).
const DEFAULT_OUTBOX: usize = 100_000;
/// How long failures are gathered before they are sent in one round trip (`batch`): none
/// by default, since what comes while a round trip is under way goes in the next one.
const DEFAULT_BATCH: Duration = Duration::ZERO;

/// The fleet's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fleet {
    /// Where the engine is.
    pub endpoint: Endpoint,
    /// The ACL user, when not the URL's.
    pub username: Option<String>,
    /// A file holding the password (read at each connection, never logged).
    pub password_file: Option<PathBuf>,
    /// This host's name in the fleet.
    pub name: String,
    /// Prefix of every key.
    pub prefix: String,
    /// A file holding the shared key that signs bans; `None`: bans are not signed.
    pub key_file: Option<PathBuf>,
    /// The CA (PEM) that signed the engine's certificate, for `rediss://`; `None`: the
    /// system's roots.
    pub ca_file: Option<PathBuf>,
    /// How long failures are gathered before one round trip (zero: none; what comes during
    /// a round trip goes in the next).
    pub batch: Duration,
    /// Entries waiting for the engine, at most.
    pub outbox: usize,
    /// The longest ban another host may impose here; `None`: the jail's own longest.
    pub max_bantime: Option<Duration>,
}

/// Where the engine is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `redis://`, `rediss://` or `redis+unix://` (the `redis` crate reads it).
    Url(String),
    /// Sentinels that name the primary `service`; `tls` for `rediss-sentinel://`.
    Sentinel {
        nodes: Vec<String>,
        service: String,
        tls: bool,
        db: i64,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    url: Spanned<String>,
    username: Option<String>,
    password_file: Option<String>,
    name: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    key_file: Option<String>,
    ca_file: Option<String>,
    batch: Option<Spanned<Value>>,
    outbox: Option<Spanned<i64>>,
    max_bantime: Option<Spanned<Value>>,
}

pub(super) fn fleet(
    source: &Source,
    raw: &Spanned<RawFleet>,
    base: &Path,
) -> Result<Fleet, ConfigError> {
    let raw = raw.get_ref();
    let endpoint = endpoint(raw.url.get_ref()).map_err(|why| {
        source.error(
            raw.url.span(),
            "fleet.url",
            format!(
                "{why}: expected \"redis://HOST:PORT/DB\", \"rediss://HOST:PORT/DB\" (TLS), \
                 \"redis+unix:///PATH\" or \"redis-sentinel://HOST:PORT,HOST:PORT/PRIMARY\""
            ),
        )
    })?;
    let name = match &raw.name {
        Some(name) => word(source, name, "fleet.name")?,
        None => crate::host_name().ok_or_else(|| {
            source.error(
                raw.url.span(),
                "fleet.name",
                "this host has no name (/proc/sys/kernel/hostname): set `name` to what the \
                 fleet calls it",
            )
        })?,
    };
    let prefix = match &raw.prefix {
        Some(prefix) => word(source, prefix, "fleet.prefix")?,
        None => "ban-agent".to_owned(),
    };
    let duration = |value: &Spanned<Value>, key: &str| duration(source, value, key);
    let batch = batch(source, raw.batch.as_ref())?;
    let outbox = outbox(source, raw.outbox.as_ref())?;
    Ok(Fleet {
        endpoint,
        username: raw.username.clone(),
        password_file: raw.password_file.as_ref().map(|file| base.join(file)),
        name,
        prefix,
        key_file: raw.key_file.as_ref().map(|file| base.join(file)),
        ca_file: raw.ca_file.as_ref().map(|file| base.join(file)),
        batch,
        outbox,
        max_bantime: raw
            .max_bantime
            .as_ref()
            .map(|value| duration(value, "fleet.max_bantime"))
            .transpose()?,
    })
}

/// A duration of `[fleet]` or `[crowdsec]`: seconds, or text with a unit (`ms` too);
/// never zero.
pub(super) fn duration(
    source: &Source,
    value: &Spanned<Value>,
    key: &str,
) -> Result<Duration, ConfigError> {
    let fail = |what: String| {
        source.error(
            value.span(),
            key,
            format!("{what}: expected {}", crate::duration::UNITS_HELP),
        )
    };
    match value.get_ref() {
        Value::Integer(n) if *n > 0 => Ok(Duration::from_secs(n.unsigned_abs())),
        // Milliseconds, which bans and windows never need, are for the intervals here.
        Value::String(text)
            if let Some(ms) = text.trim().strip_suffix("ms")
                && let Ok(ms) = ms.trim().parse::<u64>() =>
        {
            match ms {
                0 => Err(fail("zero".to_owned())),
                ms => Ok(Duration::from_millis(ms)),
            }
        }
        Value::String(text) => crate::duration::parse(text.trim())
            .map_err(|e| fail(e.to_string()))
            .and_then(|d| {
                if d.is_zero() {
                    Err(fail("zero".to_owned()))
                } else {
                    Ok(d)
                }
            }),
        other => Err(fail(other.to_string())),
    }
}

/// `batch`: zero, or at most a second.
fn batch(source: &Source, value: Option<&Spanned<Value>>) -> Result<Duration, ConfigError> {
    let Some(value) = value else {
        return Ok(DEFAULT_BATCH);
    };
    if is_zero(value.get_ref()) {
        return Ok(Duration::ZERO);
    }
    let batch = duration(source, value, "fleet.batch")?;
    if batch > Duration::from_secs(1) {
        return Err(source.error(
            value.span(),
            "fleet.batch",
            "longer than a second: bans would reach the other hosts late; expected \
             a few milliseconds, e.g. \"2ms\"",
        ));
    }
    Ok(batch)
}

/// `outbox`: 1 to 10 million entries.
fn outbox(source: &Source, value: Option<&Spanned<i64>>) -> Result<usize, ConfigError> {
    match value {
        Some(n) if (1..=10_000_000).contains(n.get_ref()) => {
            Ok(usize::try_from(*n.get_ref()).unwrap_or(DEFAULT_OUTBOX))
        }
        Some(n) => Err(source.error(
            n.span(),
            "fleet.outbox",
            format!(
                "{} is out of range: expected 1 to 10000000 entries",
                n.get_ref()
            ),
        )),
        None => Ok(DEFAULT_OUTBOX),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Integer(0) => true,
        Value::String(text) => matches!(text.trim(), "0" | "0s" | "0ms"),
        _ => false,
    }
}

/// A name or prefix: it goes into keys, so no spaces, colons or control characters.
pub(super) fn word(
    source: &Source,
    value: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let text = value.get_ref();
    let fine = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(text.clone())
    } else {
        Err(source.error(
            value.span(),
            key,
            format!(
                "{text:?}: expected 1 to 64 letters, digits, '-', '_' or '.' (it is part of \
                 the engine's keys)"
            ),
        ))
    }
}

/// The engine's address, checked.
fn endpoint(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    match scheme {
        "redis" | "rediss" | "redis+unix" | "unix" => {
            redis::Client::open(url).map_err(|e| format!("{url:?}: {e}"))?;
            Ok(Endpoint::Url(url.to_owned()))
        }
        "redis-sentinel" | "rediss-sentinel" => {
            let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (service, db) = path.split_once('/').unwrap_or((path, "0"));
            if service.is_empty() {
                return Err(format!("{url:?} names no primary after the sentinels"));
            }
            let db: i64 = db
                .parse()
                .map_err(|_| format!("{url:?}: {db:?} is no database number"))?;
            let tls = scheme == "rediss-sentinel";
            let mut nodes = Vec::new();
            for host in hosts.split(',') {
                let node = format!("{}://{host}", if tls { "rediss" } else { "redis" });
                redis::Client::open(node.as_str())
                    .map_err(|e| format!("sentinel {host:?}: {e}"))?;
                nodes.push(node);
            }
            Ok(Endpoint::Sentinel {
                nodes,
                service: service.to_owned(),
                tls,
                db,
            })
        }
        other => Err(format!("{other}:// is not an engine's scheme")),
    }
}

impl Endpoint {
    /// The address for messages, without a password.
    pub fn shown(&self) -> String {
        match self {
            Self::Url(url) => redact(url),
            Self::Sentinel { nodes, service, .. } => {
                let nodes: Vec<String> = nodes.iter().map(|n| redact(n)).collect();
                format!("sentinels {} for {service}", nodes.join(", "))
            }
        }
    }
}

/// A URL with its password left out, for messages: the user information of
/// `redis://user:password@host`, and `pass=` in a `redis+unix://` query.
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key == "pass" || key == "password" => format!("{key}=…"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("redis://agent:secret@10.0.0.5:6379/0"),
            "redis://…@10.0.0.5:6379/0"
        );
        assert_eq!(redact("redis://10.0.0.5"), "redis://10.0.0.5");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=…"
        );
    }
}
