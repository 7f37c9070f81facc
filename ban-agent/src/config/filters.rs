//! Which filter a jail uses: a built-in, a file (in `filter_dir` or by path) or inline
//! regexes; compiled here so that a bad regex is reported where it is written.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, Global,
    error::Source,
    raw::{JailCtx, Setting},
};
use crate::{
    fail2ban::{self, Fail2banError, FilterRef},
    filter::{self, Filter, FilterError, FilterSpec, json::JsonSpec},
};

/// A filter file: the same two lists as an inline filter, and optionally the options its
/// regexes name and rules for JSON lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    #[serde(default)]
    pub failregex: Vec<Spanned<String>>,
    #[serde(default)]
    pub ignoreregex: Vec<Spanned<String>>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub json: Option<Spanned<JsonSpec>>,
}

impl JailCtx<'_> {
    /// The jail's filter; `journal`: it reads the journal, so a fail2ban filter gets
    /// `logtype=journal` unless the jail gives a logtype (as fail2ban does).
    pub(super) fn filter(
        &self,
        global: &Global,
        journal: bool,
    ) -> Result<(Filter, String), ConfigError> {
        let named = self.pick("filter", |j| j.filter.as_ref());
        let inline = self.pick("failregex", |j| j.failregex.as_ref());
        match (named, inline) {
            (Some(named), Some(inline)) => Err(self.error(
                named.value.span(),
                &named.key,
                format!(
                    "both a named filter and `{}`: keep one; a named filter's regexes are in \
                     its file",
                    inline.key
                ),
            )),
            (Some(named), None) => {
                let (filter, origin) = self.named_filter(&named, global)?;
                let text = named.value.get_ref();
                if !journal || !filter.is_model() || text.contains("logtype=") {
                    return Ok((filter, origin));
                }
                let with_logtype = match text.strip_suffix(']') {
                    Some(open) => format!("{open}, logtype=journal]"),
                    None => format!("{text}[logtype=journal]"),
                };
                let base = self.source.path.parent().unwrap_or(Path::new("."));
                let dirs = FilterDirs {
                    toml: &global.filter_dir,
                    fail2ban: &global.fail2ban_dir,
                };
                find_filter(&with_logtype, base, &dirs)
                    .map_err(|error| self.error(named.value.span(), &named.key, error.to_string()))
            }
            (None, Some(inline)) => {
                let ignore = self.pick("ignoreregex", |j| j.ignoreregex.as_ref());
                let ignore = ignore.map_or(&[][..], |s| s.value.as_slice());
                let raw = RawFilter {
                    failregex: inline.value.clone(),
                    ignoreregex: ignore.to_vec(),
                    options: BTreeMap::new(),
                    json: None,
                };
                let key_prefix = inline.key.trim_end_matches("failregex").to_owned();
                compile(self.source, &raw, &key_prefix, &[]).map(|f| (f, "inline".to_owned()))
            }
            (None, None) => Err(self.error(
                self.span.clone(),
                &format!("jail.{}", self.name),
                "no filter: expected `filter = \"NAME\"` (a built-in such as \"fastapi-auth\" \
                 or a file) or `failregex = [...]`",
            )),
        }
    }

    fn named_filter(
        &self,
        named: &Setting<Spanned<String>>,
        global: &Global,
    ) -> Result<(Filter, String), ConfigError> {
        let base = self.source.path.parent().unwrap_or(Path::new("."));
        let dirs = FilterDirs {
            toml: &global.filter_dir,
            fail2ban: &global.fail2ban_dir,
        };
        find_filter(named.value.get_ref(), base, &dirs).map_err(|error| match error {
            FindFilterError::Invalid(error) => error,
            other => self.error(named.value.span(), &named.key, other.to_string()),
        })
    }
}

/// Why `filter = NAME` (or `test-filter --filter NAME`) names no usable filter.
#[derive(Debug, thiserror::Error)]
pub enum FindFilterError {
    #[error("cannot read filter file {}: {source}", file.display())]
    Unreadable {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Untrusted(#[from] crate::trust::TrustError),
    #[error("no filter {name:?}: neither {} nor {} exists, nor is it built in (built-in: {})", tried.display(), fail2ban.display(), filter::BUILTIN.map(|(n, _)| n).join(", "))]
    Unknown {
        name: String,
        tried: PathBuf,
        fail2ban: PathBuf,
    },
    #[error("filter {filter}: {problem}")]
    Options {
        filter: String,
        problem: filter::options::OptionError,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error(transparent)]
    Fail2ban(#[from] Fail2banError),
}

/// Where named filters are looked for.
pub struct FilterDirs<'a> {
    /// Our TOML filters (`filter_dir`).
    pub toml: &'a Path,
    /// fail2ban's configuration (`fail2ban_dir`), whose `filter.d` holds its filters.
    pub fail2ban: &'a Path,
}

/// Reads a fail2ban filter file (with its includes and overlays) and compiles it for the
/// system time zone.
pub fn fail2ban_filter(
    dir: &Path,
    reference: &FilterRef,
) -> Result<(Filter, String), FindFilterError> {
    let definition = fail2ban::definition::read(dir, reference)?;
    // Every file the filter was read from is one whose regexes decide bans.
    for file in &definition.files {
        crate::trust::check_file(file)?;
    }
    let year = jiff::Zoned::now().year();
    let filter = definition.compile(jiff::tz::TimeZone::system(), year)?;
    let origin = format!(
        "fail2ban {} ({})",
        definition.name,
        definition.file.display()
    );
    Ok((filter, origin))
}

/// The filter `name` names, with its options (`nginx[login_path=/api/login]`): a
/// fail2ban filter file when it ends in `.conf` or `.local`; else a TOML file (a name with
/// `/`, ending in `.toml`, or a file in `base`), else `NAME.toml` in our filter folder,
/// else a built-in filter, else fail2ban's `filter.d/NAME.conf` (also when no such file
/// is there but options are given: `sshd[mode=aggressive]`). Returns it with where it
/// came from, for messages.
pub fn find_filter(
    name: &str,
    base: &Path,
    dirs: &FilterDirs<'_>,
) -> Result<(Filter, String), FindFilterError> {
    let fail2ban_dir = dirs.fail2ban.join("filter.d");
    let reference = FilterRef::parse(name)?;
    if reference.name.ends_with(".conf") || reference.name.ends_with(".local") {
        let reference = FilterRef {
            name: if reference.name.contains('/') {
                base.join(&reference.name).display().to_string()
            } else {
                reference.name.clone()
            },
            ..reference
        };
        return fail2ban_filter(&fail2ban_dir, &reference);
    }
    let filter_dir = dirs.toml;
    let bare = reference.name.as_str();
    let as_path = bare.contains('/') || bare.ends_with(".toml") || base.join(bare).is_file();
    let file = if as_path {
        base.join(bare)
    } else {
        filter_dir.join(format!("{bare}.toml"))
    };
    if file.exists() || as_path {
        crate::trust::check_file(&file)?;
        let text =
            std::fs::read_to_string(&file).map_err(|source| FindFilterError::Unreadable {
                file: file.clone(),
                source,
            })?;
        let filter = parse_filter(&file, &text, bare, &reference.options)?;
        return Ok((filter, file.display().to_string()));
    }
    if let Some(text) = filter::builtin(bare) {
        let origin = format!("(built-in filter {bare})");
        let filter = parse_filter(Path::new(&origin), text, bare, &reference.options)?;
        return Ok((filter, format!("built-in {bare}")));
    }
    let fail2ban = fail2ban_dir.join(format!("{bare}.conf"));
    if fail2ban.is_file() || !reference.options.is_empty() {
        return fail2ban_filter(&fail2ban_dir, &reference);
    }
    Err(FindFilterError::Unknown {
        name: name.to_owned(),
        tried: file,
        fail2ban,
    })
}

/// Compiles the text of a filter file (`failregex = [...]`, `ignoreregex = [...]`,
/// `[options]`, `[json]`) with the options `overrides` sets (`NAME[option=value]`), the
/// others at their defaults. `path` locates errors in the file; `name` names the filter
/// when an option set is not one of its own (the jail's mistake, not the file's).
pub fn parse_filter(
    path: &Path,
    text: &str,
    name: &str,
    overrides: &[(String, String)],
) -> Result<Filter, FindFilterError> {
    let source = Source {
        path: path.to_owned(),
        text,
    };
    let raw: RawFilter = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    filter::options::merge(&raw.options, overrides).map_err(|problem| {
        FindFilterError::Options {
            filter: name.to_owned(),
            problem,
        }
    })?;
    Ok(compile(&source, &raw, "", overrides)?)
}

/// Compiles a filter's regexes, locating an error at the regex that caused it.
fn compile(
    source: &Source,
    raw: &RawFilter,
    key_prefix: &str,
    overrides: &[(String, String)],
) -> Result<Filter, ConfigError> {
    let spec = FilterSpec {
        failregex: raw.failregex.iter().map(|r| r.get_ref().clone()).collect(),
        ignoreregex: raw
            .ignoreregex
            .iter()
            .map(|r| r.get_ref().clone())
            .collect(),
        options: raw.options.clone(),
        json: raw.json.as_ref().map(|json| json.get_ref().clone()),
    };
    Filter::compile_with(&spec, overrides).map_err(|error| {
        if let FilterError::Json(_) = &error {
            let span = raw.json.as_ref().map_or(0..0, Spanned::span);
            return source.error(span, &format!("{key_prefix}json"), error.to_string());
        }
        let (list, index) = match &error {
            FilterError::Tag { index, .. } => (&raw.failregex, *index),
            FilterError::Regex { kind, index, .. } if *kind == "ignoreregex" => {
                (&raw.ignoreregex, *index)
            }
            FilterError::Regex { index, .. } => (&raw.failregex, *index),
            FilterError::Empty
            | FilterError::DatePattern { .. }
            | FilterError::Option(_)
            | FilterError::Json(_) => (&raw.failregex, 0),
        };
        let kind = if std::ptr::eq(list, &raw.ignoreregex) {
            "ignoreregex"
        } else {
            "failregex"
        };
        let span = list.get(index).map_or(0..0, Spanned::span);
        source.error(span, &format!("{key_prefix}{kind}"), error.to_string())
    })
}
