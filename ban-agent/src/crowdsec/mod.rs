//! CrowdSec's decisions, read as its bouncers read them: the Local API's decision stream
//! (`GET /v1/decisions/stream`, the whole set at `startup=true`, then what changed since
//! the last read). This module reads and checks what the API says; the [`task`] asks it
//! every `interval`; the agent applies what it hands over through the same rails as its
//! own bans.

pub mod task;

use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub use task::{Link, Status, spawn};

use crate::config::Scope;

/// A ban decision this host can enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The Local API's id of the decision.
    pub id: i64,
    /// The address (a host route) or network banned.
    pub target: IpNet,
    /// Who made it: `crowdsec`, `cscli`, `CAPI`, `lists`, ...
    pub origin: String,
    /// Why: the scenario, or `manual 'ban' from '...'`.
    pub scenario: String,
    /// How long it has left when read; `None`: it has ended.
    pub left: Option<Duration>,
}

/// One answer of the stream, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pull {
    /// The whole set of decisions in force (`startup=true`), not what changed.
    pub startup: bool,
    /// Decisions to enforce.
    pub new: Vec<Decision>,
    /// Decisions deleted or ended.
    pub deleted: Vec<Decision>,
    /// Decisions passed over: not bans, of another scope, or unreadable (each with why).
    pub skipped: Vec<Skipped>,
}

/// A decision this host does not enforce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The metric's reason: `type`, `scope` or `unreadable`.
    pub reason: &'static str,
    pub why: String,
}

/// The stream's answer, as the API writes it (lists are `null` when empty).
#[derive(Deserialize)]
struct RawStream {
    new: Option<Vec<RawDecision>>,
    deleted: Option<Vec<RawDecision>>,
}

#[derive(Deserialize)]
struct RawDecision {
    id: i64,
    #[serde(default)]
    origin: String,
    #[serde(default)]
    scenario: String,
    scope: String,
    #[serde(rename = "type")]
    kind: String,
    value: String,
    duration: String,
}

/// Reads one answer of the stream: the bans of `scopes` are kept, the rest passed over
/// with why; `Err` when the answer is not the stream's JSON.
pub fn read_stream(json: &str, startup: bool, scopes: &[Scope]) -> Result<Pull, String> {
    let raw: RawStream = serde_json::from_str(json).map_err(|e| {
        let start: String = json.chars().take(120).collect();
        format!("not the decision stream's JSON ({e}): {start:?}")
    })?;
    let mut pull = Pull {
        startup,
        ..Pull::default()
    };
    for (list, into_new) in [(raw.new, true), (raw.deleted, false)] {
        for raw in list.into_iter().flatten() {
            match decision(raw, scopes) {
                Ok(decision) if into_new => pull.new.push(decision),
                Ok(decision) => pull.deleted.push(decision),
                Err(skipped) => pull.skipped.push(skipped),
            }
        }
    }
    Ok(pull)
}

fn decision(raw: RawDecision, scopes: &[Scope]) -> Result<Decision, Skipped> {
    let about = || {
        format!(
            "decision {} ({} {} {})",
            raw.id, raw.kind, raw.scope, raw.value
        )
    };
    if !raw.kind.eq_ignore_ascii_case("ban") {
        return Err(Skipped {
            reason: "type",
            why: format!("{}: only bans are enforced in the kernel", about()),
        });
    }
    let scope = Scope::parse(&raw.scope).filter(|scope| scopes.contains(scope));
    let Some(scope) = scope else {
        return Err(Skipped {
            reason: "scope",
            why: format!("{}: not a scope of `scopes`", about()),
        });
    };
    let target = match scope {
        Scope::Ip => raw.value.parse::<std::net::IpAddr>().map(IpNet::from).ok(),
        Scope::Range => raw.value.parse::<IpNet>().map(|net| net.trunc()).ok(),
    };
    let Some(target) = target else {
        return Err(Skipped {
            reason: "unreadable",
            why: format!("{}: not an address or network", about()),
        });
    };
    let left = go_duration(&raw.duration).map_err(|why| Skipped {
        reason: "unreadable",
        why: format!("{}: duration {:?}: {why}", about(), raw.duration),
    })?;
    Ok(Decision {
        id: raw.id,
        target,
        origin: raw.origin,
        scenario: raw.scenario,
        left,
    })
}

/// A duration as Go writes it (`time.Duration.String()`): `1h59m58.912084877s`,
/// `-9.166385ms`, `0s`. `None` for a negative or zero one (the decision has ended).
/// Written here: the crates that read Go's durations are unmaintained, and the grammar
/// is a sign, then numbers with a unit each.
pub fn go_duration(text: &str) -> Result<Option<Duration>, String> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(None);
    }
    if rest.is_empty() {
        return Err("empty".to_owned());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or("a number without a unit")?;
        let number: f64 = rest[..number_end]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..number_end]))?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            unit => return Err(format!("{unit:?} is not a unit")),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    if negative || total <= 0.0 {
        return Ok(None);
    }
    Duration::try_from_secs_f64(total)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_read_as_go_writes_them() {
        let secs = |s: f64| Ok(Some(Duration::from_secs_f64(s)));
        assert_eq!(go_duration("1h59m58.5s"), secs(7198.5));
        assert_eq!(go_duration("3h"), secs(10800.0));
        assert_eq!(go_duration("500ms"), secs(0.5));
        assert_eq!(go_duration("1.5µs"), secs(0.000_001_5));
        assert_eq!(
            go_duration("167h59m59.912082734s"),
            secs(604_799.912_082_734)
        );
        assert_eq!(go_duration("-9.166385ms"), Ok(None));
        assert_eq!(go_duration("0s"), Ok(None));
        assert_eq!(go_duration("0"), Ok(None));
        for wrong in ["", "5", "1x", "h", "1..2s", "-"] {
            assert!(go_duration(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_stream_keeps_the_bans_of_its_scopes_and_says_why_it_passes_over_the_rest() {
        // An answer of CrowdSec 1.4.6's Local API.
        let json = r#"{"deleted":[{"duration":"-4.09713378s","id":4,"origin":"cscli",
            "scenario":"manual 'ban' from 'test'","scope":"Ip","type":"ban","value":"192.0.2.7"}],
            "new":[{"duration":"1h59m58.912084877s","id":1,"origin":"cscli","scenario":"s",
            "scope":"Ip","type":"ban","value":"192.0.2.9"},
            {"duration":"3h59m58.9s","id":2,"origin":"CAPI","scenario":"s","scope":"Range",
            "type":"ban","value":"198.51.100.77/24"},
            {"duration":"4h","id":3,"origin":"cscli","scenario":"s","scope":"Ip",
            "type":"captcha","value":"2001:db8::5"},
            {"duration":"4h","id":5,"origin":"cscli","scenario":"s","scope":"Country",
            "type":"ban","value":"FR"},
            {"duration":"4h","id":6,"origin":"cscli","scenario":"s","scope":"Ip",
            "type":"ban","value":"not-an-ip"}]}"#;
        let pull = read_stream(json, false, &[Scope::Ip, Scope::Range]).expect("stream");
        let targets: Vec<String> = pull.new.iter().map(|d| d.target.to_string()).collect();
        assert_eq!(targets, ["192.0.2.9/32", "198.51.100.0/24"]);
        assert_eq!(pull.new[1].origin, "CAPI");
        assert_eq!(pull.deleted.len(), 1);
        assert_eq!(pull.deleted[0].left, None);
        let reasons: Vec<&str> = pull.skipped.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["type", "scope", "unreadable"]);
        assert!(
            pull.skipped[2].why.contains("decision 6"),
            "{:?}",
            pull.skipped
        );

        let only_ips = read_stream(json, false, &[Scope::Ip]).expect("stream");
        assert_eq!(only_ips.new.len(), 1);

        let empty = read_stream(r#"{"deleted":null,"new":null}"#, true, &[Scope::Ip]);
        assert_eq!(
            empty,
            Ok(Pull {
                startup: true,
                ..Pull::default()
            })
        );
        let wrong = read_stream("<html>", false, &[Scope::Ip]).expect_err("not JSON");
        assert!(wrong.contains("<html>"), "{wrong}");
    }
}
