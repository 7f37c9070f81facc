//! Which filter a jail uses: a built-in, a file (in `filter_dir` or by path) or inline
//! regexes; compiled here so that a bad regex is reported where it is written.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{
    ConfigError, Global,
    error::Source,
    raw::{JailCtx, Setting},
};
use crate::filter::{self, Filter, FilterError, FilterSpec};

/// A filter file: the same two lists as an inline filter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    #[serde(default)]
    pub failregex: Vec<Spanned<String>>,
    #[serde(default)]
    pub ignoreregex: Vec<Spanned<String>>,
}

impl JailCtx<'_> {
    pub(super) fn filter(&self, global: &Global) -> Result<(Filter, String), ConfigError> {
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
            (Some(named), None) => self.named_filter(&named, global),
            (None, Some(inline)) => {
                let ignore = self.pick("ignoreregex", |j| j.ignoreregex.as_ref());
                let ignore = ignore.map_or(&[][..], |s| s.value.as_slice());
                let raw = RawFilter {
                    failregex: inline.value.clone(),
                    ignoreregex: ignore.to_vec(),
                };
                let key_prefix = inline.key.trim_end_matches("failregex").to_owned();
                compile(self.source, &raw, &key_prefix).map(|f| (f, "inline".to_owned()))
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
        find_filter(named.value.get_ref(), base, &global.filter_dir).map_err(|error| match error {
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
    #[error("no filter {name:?}: neither {} exists nor is it built in (built-in: {})", tried.display(), filter::BUILTIN.map(|(n, _)| n).join(", "))]
    Unknown { name: String, tried: PathBuf },
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// The filter `name` names: a file (a name with `/`, ending in `.toml`, or a file in
/// `base`), else `filter_dir/NAME.toml`, else a built-in filter. Returns it with where it
/// came from, for messages.
pub fn find_filter(
    name: &str,
    base: &Path,
    filter_dir: &Path,
) -> Result<(Filter, String), FindFilterError> {
    let as_path = name.contains('/') || name.ends_with(".toml") || base.join(name).is_file();
    let file = if as_path {
        base.join(name)
    } else {
        filter_dir.join(format!("{name}.toml"))
    };
    if file.exists() || as_path {
        crate::trust::check_file(&file)?;
        let text =
            std::fs::read_to_string(&file).map_err(|source| FindFilterError::Unreadable {
                file: file.clone(),
                source,
            })?;
        let filter = parse_filter(&file, &text)?;
        return Ok((filter, file.display().to_string()));
    }
    let Some(text) = filter::builtin(name) else {
        return Err(FindFilterError::Unknown {
            name: name.to_owned(),
            tried: file,
        });
    };
    let filter = parse_filter(Path::new(&format!("(built-in filter {name})")), text)?;
    Ok((filter, format!("built-in {name}")))
}

/// Compiles the text of a filter file (`failregex = [...]`, `ignoreregex = [...]`);
/// `path` locates errors.
pub fn parse_filter(path: &Path, text: &str) -> Result<Filter, ConfigError> {
    let source = Source {
        path: path.to_owned(),
        text,
    };
    let raw: RawFilter = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    compile(&source, &raw, "")
}

/// Compiles a filter's regexes, locating an error at the regex that caused it.
fn compile(source: &Source, raw: &RawFilter, key_prefix: &str) -> Result<Filter, ConfigError> {
    let spec = FilterSpec {
        failregex: raw.failregex.iter().map(|r| r.get_ref().clone()).collect(),
        ignoreregex: raw
            .ignoreregex
            .iter()
            .map(|r| r.get_ref().clone())
            .collect(),
    };
    Filter::compile(&spec).map_err(|error| {
        let (list, index) = match &error {
            FilterError::Tag { index, .. } => (&raw.failregex, *index),
            FilterError::Regex { kind, index, .. } if *kind == "ignoreregex" => {
                (&raw.ignoreregex, *index)
            }
            FilterError::Regex { index, .. } => (&raw.failregex, *index),
            FilterError::Empty => (&raw.failregex, 0),
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
