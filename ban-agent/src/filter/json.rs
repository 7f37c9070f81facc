//! Structured (JSON) log lines matched by field instead of by a regex over the text, as
//! Caddy and Traefik write their access logs: the address comes from a named field, so
//! nothing a client sends (a header, a path) can stand where the address is read.
//!
//! ```toml
//! [json]
//! host = ["request.client_ip", "request.remote_ip"]   # the first one present
//! time = "ts"                                          # epoch seconds or RFC 3339
//! [[json.failure]]                                     # every condition must hold
//! status = 401
//! "request.uri" = '^%(login_path)s(?:\?.*)?$'          # a string is a regex
//! ```
//!
//! Most lines of an access log are not failures, and parsing a line is most of what it
//! costs. So each failure rule also gives the words a failure line must hold (a gate): the
//! digits of an integer it equals, and for a regex, the longest run of letters, digits and
//! `-_.:` in each literal every match starts with (`login` of `^/login`). A line with
//! none of a rule's words for one of its conditions cannot meet that rule, and a line no
//! rule can meet is not parsed. Those characters are the ones JSON writers never escape
//! (`/` may be written `\/`, and Go's encoder writes `<>&` as `\u003c`...), so a failure
//! is never skipped for how its line was escaped.

use std::collections::BTreeMap;

use ipnet::IpNet;
use memchr::memmem;
use regex::Regex;
use serde_json::Value;

use super::{Tag, options, pick::Picker};

/// The `[json]` table of a filter, as written.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    /// The field holding the client's address, or several: the first present is read.
    pub host: Fields,
    /// The field holding the time of the line: a number of seconds since the epoch, or
    /// an RFC 3339 text. Without it (or when absent from a line), the time it is read.
    #[serde(default)]
    pub time: Option<String>,
    /// Failure rules: a line is a failure when every condition of one rule holds.
    pub failure: Vec<BTreeMap<String, Condition>>,
    /// Rules that veto a failure, as `ignoreregex` does.
    #[serde(default)]
    pub ignore: Vec<BTreeMap<String, Condition>>,
}

/// One field name or several.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Fields {
    One(String),
    Many(Vec<String>),
}

impl Fields {
    fn list(&self) -> Vec<String> {
        match self {
            Self::One(field) => vec![field.clone()],
            Self::Many(fields) => fields.clone(),
        }
    }
}

/// What a field must be: an integer it equals (a JSON number, or a text of one), or a
/// regex its text matches (numbers and booleans are matched as written).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Condition {
    Equals(i64),
    Matches(String),
}

/// Where the [`Picker`] puts a field's value.
type Slot = usize;

#[derive(Clone, Debug)]
enum Test {
    Equals(i64),
    Matches(Regex),
}

#[derive(Clone, Debug)]
struct Rule {
    conditions: Vec<(Slot, Test)>,
}

/// The words a line must hold to meet one failure rule: for each condition that gives
/// some, one of them.
#[derive(Clone, Debug)]
struct Words(Vec<Vec<memmem::Finder<'static>>>);

impl Words {
    fn in_line(&self, line: &[u8]) -> bool {
        self.0
            .iter()
            .all(|any| any.iter().any(|word| word.find(line).is_some()))
    }
}

/// The compiled `[json]` rules of a filter.
#[derive(Clone, Debug)]
pub struct JsonRules {
    /// Takes every field below out of a line, in one pass.
    picker: Picker,
    host: Vec<Slot>,
    time: Option<Slot>,
    failure: Vec<Rule>,
    ignore: Vec<Rule>,
    /// Per failure rule, the words its lines hold; `None` when a rule gives none (every
    /// line is then parsed).
    gate: Option<Vec<Words>>,
    /// Each failure rule in words, for reports.
    described: Vec<String>,
}

/// What a JSON line amounts to; `time` is its time field, when it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonOutcome {
    /// Not parsed: no failure rule's words are in it, so it cannot be a failure.
    Skipped,
    /// Not a JSON object.
    Malformed,
    Missed {
        time: Option<i64>,
    },
    Ignored {
        rule: usize,
        time: Option<i64>,
    },
    Failure {
        target: IpNet,
        rule: usize,
        time: Option<i64>,
    },
}

/// Why `[json]` rules do not compile; each says where (the rule and field) first.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("json.host: name the field with the address")]
    NoHost,
    #[error("json.failure: no failure rule: add `[[json.failure]]` with the fields a failure has")]
    NoFailure,
    #[error("json.{kind}[{index}]: a rule without conditions would match every line")]
    EmptyRule { kind: &'static str, index: usize },
    #[error("json.{kind}[{index}].{field}: {source}")]
    Option {
        kind: &'static str,
        index: usize,
        field: String,
        source: options::OptionError,
    },
    #[error("json.{kind}[{index}].{field}: not a valid regex: {message}")]
    Regex {
        kind: &'static str,
        index: usize,
        field: String,
        message: String,
    },
}

impl JsonError {
    /// The key of the rule or field at fault, as the configuration spells it.
    pub fn at(&self) -> String {
        match self {
            Self::NoHost => "json.host".to_owned(),
            Self::NoFailure => "json.failure".to_owned(),
            Self::EmptyRule { kind, index } => format!("json.{kind}[{index}]"),
            Self::Option {
                kind, index, field, ..
            }
            | Self::Regex {
                kind, index, field, ..
            } => format!("json.{kind}[{index}].{field}"),
        }
    }

    /// What is wrong there, and what to do.
    pub fn problem(&self) -> String {
        let text = self.to_string();
        let at = self.at();
        text.strip_prefix(&format!("{at}: "))
            .map_or_else(|| text.clone(), str::to_owned)
    }
}

impl JsonRules {
    /// Compiles the rules, with `%(name)s` replaced by the filter's options.
    pub fn compile(spec: &JsonSpec, options: &BTreeMap<String, String>) -> Result<Self, JsonError> {
        let host = spec.host.list();
        if host.is_empty() || host.iter().any(String::is_empty) {
            return Err(JsonError::NoHost);
        }
        if spec.failure.is_empty() {
            return Err(JsonError::NoFailure);
        }
        let mut picker = Picker::default();
        let mut rules = |kind: &'static str, list: &[BTreeMap<String, Condition>]| {
            list.iter()
                .enumerate()
                .map(|(index, rule)| compile_rule(kind, index, rule, options, &mut picker))
                .collect::<Result<Vec<_>, _>>()
        };
        let failure = rules("failure", &spec.failure)?;
        let ignore = rules("ignore", &spec.ignore)?;
        let gate = spec
            .failure
            .iter()
            .map(|rule| rule_words(rule, options))
            .collect();
        let described = spec
            .failure
            .iter()
            .map(|rule| describe(rule, options))
            .collect();
        Ok(Self {
            host: host.iter().map(|field| picker.want(field)).collect(),
            time: spec.time.as_deref().map(|field| picker.want(field)),
            picker,
            failure,
            ignore,
            gate,
            described,
        })
    }

    /// The failure rules in words, in order.
    pub fn described(&self) -> &[String] {
        &self.described
    }

    /// Judges a line that starts with `{`.
    pub fn check(&self, line: &str) -> JsonOutcome {
        if let Some(gate) = &self.gate
            && !gate.iter().any(|words| words.in_line(line.as_bytes()))
        {
            return JsonOutcome::Skipped;
        }
        let Ok(value) = self.picker.pick(line) else {
            return JsonOutcome::Malformed;
        };
        let time = self.time_of(&value);
        let Some(rule) = self.failure.iter().position(|rule| rule.holds(&value)) else {
            return JsonOutcome::Missed { time };
        };
        let host = self
            .host
            .iter()
            .find_map(|&slot| value[slot].as_ref()?.as_str().filter(|s| !s.is_empty()));
        let Some(target) =
            host.and_then(|text| super::address::target(text.trim(), Tag::Addr, None))
        else {
            return JsonOutcome::Missed { time };
        };
        if self.ignore.iter().any(|rule| rule.holds(&value)) {
            return JsonOutcome::Ignored { rule, time };
        }
        JsonOutcome::Failure { target, rule, time }
    }

    fn time_of(&self, value: &[Option<Value>]) -> Option<i64> {
        match value[self.time?].as_ref()? {
            Value::Number(n) => seconds_to_ms(n.as_f64()?),
            Value::String(text) => match text.parse::<f64>() {
                Ok(seconds) => seconds_to_ms(seconds),
                Err(_) => text
                    .parse::<jiff::Timestamp>()
                    .ok()
                    .map(|t| t.as_millisecond()),
            },
            _ => None,
        }
    }
}

fn seconds_to_ms(seconds: f64) -> Option<i64> {
    // Beyond ±10^11 s (year 5138) is no log's time.
    (seconds.is_finite() && seconds.abs() < 1e11).then(|| (seconds * 1000.0).round() as i64)
}

/// The words a line that meets `rule` holds (see the module's documentation); `None` when
/// no condition gives any.
fn rule_words(
    rule: &BTreeMap<String, Condition>,
    options: &BTreeMap<String, String>,
) -> Option<Words> {
    let words: Vec<Vec<memmem::Finder<'static>>> = rule
        .values()
        .filter_map(|condition| match condition {
            // A number is written in digits; a text of one may add a sign or zeros.
            Condition::Equals(n) => Some(vec![n.unsigned_abs().to_string()]),
            Condition::Matches(text) => regex_words(&options::substitute(text, options).ok()?),
        })
        .map(|any| {
            any.iter()
                .map(|word| memmem::Finder::new(word.as_bytes()).into_owned())
                .collect()
        })
        .collect();
    (!words.is_empty()).then_some(Words(words))
}

/// For a regex over a field's text: per literal that every match starts with, its
/// longest run of characters no JSON writer escapes; `None` when there are no such
/// literals or a run would be shorter than 3 bytes.
fn regex_words(pattern: &str) -> Option<Vec<String>> {
    let literals = super::prefilter::starting_literals(pattern)?;
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.:".contains(b);
    let mut words: Vec<String> = literals
        .iter()
        .map(|literal| {
            literal
                .split(|b| !plain(b))
                .max_by_key(|run| run.len())
                .map(|run| String::from_utf8_lossy(run).into_owned())
                .unwrap_or_default()
        })
        .collect();
    words.sort_unstable();
    words.dedup();
    (!words.is_empty() && words.iter().all(|word| word.len() >= 3)).then_some(words)
}

fn compile_rule(
    kind: &'static str,
    index: usize,
    rule: &BTreeMap<String, Condition>,
    options: &BTreeMap<String, String>,
    picker: &mut Picker,
) -> Result<Rule, JsonError> {
    if rule.is_empty() {
        return Err(JsonError::EmptyRule { kind, index });
    }
    let mut conditions = Vec::with_capacity(rule.len());
    for (field, condition) in rule {
        let test =
            match condition {
                Condition::Equals(n) => Test::Equals(*n),
                Condition::Matches(text) => {
                    let pattern =
                        options::substitute(text, options).map_err(|source| JsonError::Option {
                            kind,
                            index,
                            field: field.clone(),
                            source,
                        })?;
                    Test::Matches(Regex::new(&super::ascii::perl_classes(&pattern)).map_err(
                        |e| JsonError::Regex {
                            kind,
                            index,
                            field: field.clone(),
                            message: e.to_string(),
                        },
                    )?)
                }
            };
        conditions.push((picker.want(field), test));
    }
    Ok(Rule { conditions })
}

fn describe(rule: &BTreeMap<String, Condition>, options: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = rule
        .iter()
        .map(|(field, condition)| match condition {
            Condition::Equals(n) => format!("{field} = {n}"),
            Condition::Matches(text) => {
                let text = options::substitute(text, options).unwrap_or_else(|_| text.clone());
                format!("{field} ~ {text}")
            }
        })
        .collect();
    format!("json: {}", parts.join(", "))
}

impl Rule {
    fn holds(&self, picked: &[Option<Value>]) -> bool {
        self.conditions
            .iter()
            .all(|&(slot, ref test)| picked[slot].as_ref().is_some_and(|v| test.holds(v)))
    }
}

impl Test {
    fn holds(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Equals(n), Value::Number(number)) => number.as_i64() == Some(*n),
            (Self::Equals(n), Value::String(text)) => text.trim().parse::<i64>() == Ok(*n),
            (Self::Matches(regex), Value::String(text)) => regex.is_match(text),
            (Self::Matches(regex), Value::Number(number)) => regex.is_match(&number.to_string()),
            (Self::Matches(regex), Value::Bool(b)) => {
                regex.is_match(if *b { "true" } else { "false" })
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> JsonRules {
        #[derive(serde::Deserialize)]
        struct File {
            json: JsonSpec,
        }
        let file: File = toml::from_str(toml_text).expect("spec parses");
        let options = [("login".to_owned(), "/login".to_owned())].into();
        JsonRules::compile(&file.json, &options).expect("compiles")
    }

    const SPEC: &str = r#"
        [json]
        host = ["request.client_ip", "request.remote_ip"]
        time = "ts"
        [[json.failure]]
        status = 401
        "request.uri" = '^%(login)s(?:\?.*)?$'
        [[json.ignore]]
        "request.host" = '^internal\.'
    "#;

    #[test]
    fn a_failure_by_field_with_its_time() {
        let rules = rules(SPEC);
        let line = r#"{"ts":1795521600.5,"request":{"remote_ip":"192.0.2.1","client_ip":"198.51.100.7","uri":"/login?next=/","host":"a"},"status":401}"#;
        assert_eq!(
            rules.check(line),
            JsonOutcome::Failure {
                target: "198.51.100.7/32".parse().expect("net"),
                rule: 0,
                time: Some(1_795_521_600_500),
            }
        );
        let success = line.replace("401", "200");
        assert_eq!(
            rules.check(&success),
            JsonOutcome::Skipped,
            "without 401 the line cannot be a failure: not parsed"
        );
        let fallback =
            r#"{"request":{"remote_ip":"::ffff:192.0.2.1","uri":"/login"},"status":"401"}"#;
        assert!(matches!(
            rules.check(fallback),
            JsonOutcome::Failure { target, time: None, .. } if target.to_string() == "192.0.2.1/32"
        ));
    }

    #[test]
    fn other_lines_miss_are_ignored_or_are_malformed() {
        let rules = rules(SPEC);
        let missed = JsonOutcome::Missed { time: None };
        let ok = r#"{"request":{"client_ip":"192.0.2.1","uri":"/login"},"status":200,"n":401}"#;
        assert_eq!(rules.check(ok), missed);
        let other_path = r#"{"request":{"client_ip":"192.0.2.1","uri":"/loginx"},"status":401}"#;
        assert_eq!(rules.check(other_path), missed);
        let no_address = r#"{"request":{"client_ip":"example.com","uri":"/login"},"status":401}"#;
        assert_eq!(rules.check(no_address), missed);
        let internal = r#"{"ts":"2026-11-24T12:00:00Z","request":{"client_ip":"192.0.2.1","uri":"/login","host":"internal.x"},"status":401}"#;
        assert_eq!(
            rules.check(internal),
            JsonOutcome::Ignored {
                rule: 0,
                time: Some(1_795_521_600_000)
            }
        );
        assert_eq!(
            rules.check(r#"{"status":401,"uri":"/login""#),
            JsonOutcome::Malformed
        );
        assert_eq!(rules.check("[401, \"/login\"]"), JsonOutcome::Malformed);
        assert_eq!(
            rules.check(r#"{"status":401"#),
            JsonOutcome::Skipped,
            "no `login`: whatever it is, not a failure"
        );
    }

    /// The gate looks for words JSON writers never escape: a failure written with `/` as
    /// `\/` or `\u002f`, or with its status as a text, is still found.
    #[test]
    fn no_failure_is_skipped_for_how_its_line_is_escaped() {
        let rules = rules(SPEC);
        for line in [
            r#"{"request":{"client_ip":"192.0.2.1","uri":"\/login"},"status":401}"#,
            r#"{"request":{"client_ip":"192.0.2.1","uri":"\u002flogin"},"status":401}"#,
            r#"{"request":{"client_ip":"192.0.2.1","uri":"/login"},"status":"0401"}"#,
        ] {
            assert!(
                matches!(rules.check(line), JsonOutcome::Failure { .. }),
                "{line}"
            );
        }
        assert_eq!(
            regex_words(r"^(?:/login|/api/v1/sign-in)(?:\?.*)?$"),
            Some(vec!["login".to_owned(), "sign-in".to_owned()])
        );
        assert_eq!(regex_words(r"^/a/b"), None, "too short to look for");
        assert_eq!(regex_words(r"\d+"), None, "no literal");
        let any_path: JsonSpec = toml::from_str(
            r#"
            host = "ip"
            [[failure]]
            uri = '.*'
            [[failure]]
            status = 401
        "#,
        )
        .expect("spec parses");
        let rules = JsonRules::compile(&any_path, &BTreeMap::new()).expect("compiles");
        assert!(
            rules.gate.is_none(),
            "a rule without words: every line is parsed"
        );
    }

    #[test]
    fn a_header_cannot_stand_for_the_address() {
        let rules = rules(SPEC);
        let line = r#"{"request":{"client_ip":"192.0.2.1","uri":"/login","headers":{"X-Forwarded-For":["198.51.100.1"],"client_ip":["198.51.100.2"]}},"status":401}"#;
        assert!(matches!(
            rules.check(line),
            JsonOutcome::Failure { target, .. } if target.to_string() == "192.0.2.1/32"
        ));
    }

    #[test]
    fn bad_rules_are_refused_with_where() {
        let spec = JsonSpec {
            host: Fields::One("ip".into()),
            time: None,
            failure: vec![[("uri".to_owned(), Condition::Matches("(".into()))].into()],
            ignore: vec![],
        };
        let error = JsonRules::compile(&spec, &BTreeMap::new()).expect_err("bad regex");
        let (at, problem) = (error.at(), error.problem());
        assert_eq!(at, "json.failure[0].uri");
        assert!(problem.contains("regex"), "{problem}");
        let empty = JsonSpec {
            failure: vec![BTreeMap::new()],
            ..spec
        };
        assert!(JsonRules::compile(&empty, &BTreeMap::new()).is_err());
    }
}
