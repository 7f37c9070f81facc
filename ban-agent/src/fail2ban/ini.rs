//! fail2ban's configuration files as its readers see them: Python `ConfigParser` syntax
//! (sections, `key = value` or `key: value`, indented continuation lines, `#`/`;` comments,
//! `;` inline comments after a space, lower-cased keys), fail2ban's `[INCLUDES] before/after`
//! with `.local` siblings, the `NAME.conf`, `NAME.d/*.conf`, `NAME.local`, `NAME.d/*.local`
//! stack, and the merge that keeps an overridden value under `KNOWN/section`.
//!
//! Interpolation (`%(var)s`, `<tag>`) is in [`super::interpolate`]; this module only reads.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use hashlink::LinkedHashMap;

use super::Fail2banError;

/// The name fail2ban gives the section of includes.
const INCLUDES: &str = "INCLUDES";
/// How deep includes may nest before we call it a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniValue {
    pub value: String,
    pub file: Arc<Path>,
    /// 1-based line of the key.
    pub line: usize,
}

impl IniValue {
    /// `file:line`, for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// Options of one section, in the order written; keys lower-cased.
pub type Section = LinkedHashMap<String, IniValue>;

/// One or more files merged as fail2ban merges them.
#[derive(Clone, Debug, Default)]
pub struct Ini {
    pub defaults: Section,
    pub sections: LinkedHashMap<String, Section>,
    /// The files read, in the order merged.
    pub files: Vec<PathBuf>,
}

impl Ini {
    /// Reads fail2ban's stack for `base` (a path without extension, such as
    /// `/etc/fail2ban/filter.d/sshd`): `base.conf`, `base.d/*.conf`, `base.local`,
    /// `base.d/*.local`, those that exist, each with its includes.
    pub fn read_stack(base: &Path) -> Result<Self, Fail2banError> {
        let mut files = vec![with_extension(base, "conf")];
        let dir = with_extension(base, "d");
        files.extend(sorted_glob(&dir, "conf"));
        files.push(with_extension(base, "local"));
        files.extend(sorted_glob(&dir, "local"));
        let files: Vec<PathBuf> = files.into_iter().filter(|f| f.is_file()).collect();
        if files.is_empty() {
            return Err(Fail2banError::Missing {
                tried: with_extension(base, "conf"),
            });
        }
        Self::read_files(&files)
    }

    /// Reads `files` with their includes, merged in fail2ban's order.
    pub fn read_files(files: &[PathBuf]) -> Result<Self, Fail2banError> {
        let mut cache = HashMap::new();
        let mut order = Vec::new();
        for file in with_locals(files) {
            order.extend(includes_of(&file, &[], &mut cache, 0)?);
        }
        let mut merged = Ini::default();
        for file in order {
            if let Some(parsed) = cache.get(&file) {
                merged.merge(parsed);
                merged.files.push(file);
            }
        }
        Ok(merged)
    }

    /// Merges a later file: its defaults and options win; a section's options it
    /// overrides stay readable under `KNOWN/<section>`.
    fn merge(&mut self, later: &Ini) {
        for (key, entry) in &later.defaults {
            self.defaults.replace(key.clone(), entry.clone());
        }
        for (name, section) in &later.sections {
            let (name, section) = conditional(name, section);
            match self.sections.get_mut(&name) {
                Some(existing) => {
                    let known: Vec<(String, IniValue)> = existing
                        .iter()
                        .filter(|(key, _)| section.contains_key(*key))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for (key, entry) in section {
                        existing.replace(key, entry);
                    }
                    let known_section = self
                        .sections
                        .entry(format!("KNOWN/{name}"))
                        .or_insert_with(Section::new);
                    for (key, entry) in known {
                        known_section.replace(key, entry);
                    }
                }
                None => {
                    self.sections.insert(name, section);
                }
            }
        }
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.get(name)
    }

    pub fn has_section(&self, name: &str) -> bool {
        name == "DEFAULT" || self.sections.contains_key(name)
    }
}

/// `[name?cond]` sections: fail2ban renames their keys `key?cond` into section `name`.
fn conditional(name: &str, section: &Section) -> (String, Section) {
    let split = name
        .find('?')
        .filter(|&at| at > 0 && name[..at].chars().all(|c| c.is_alphanumeric() || c == '_'));
    match split {
        Some(at) => {
            let (base, cond) = name.split_at(at);
            let renamed = section
                .iter()
                .map(|(k, v)| (format!("{k}{cond}"), v.clone()))
                .collect();
            (base.to_owned(), renamed)
        }
        None => (name.to_owned(), section.clone()),
    }
}

fn with_extension(base: &Path, extension: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// `dir/*.EXT`, sorted by name; nothing when `dir` is absent.
fn sorted_glob(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

/// Each file followed by its `.local` sibling when that exists and is not listed.
fn with_locals(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        out.push(file.clone());
        let local = file.with_extension("local");
        if !files.contains(&local) && local != *file && local.is_file() {
            out.push(local);
        }
    }
    out
}

/// `before` includes, the file, `after` includes: the order fail2ban merges them in.
fn includes_of(
    file: &Path,
    seen: &[PathBuf],
    cache: &mut HashMap<PathBuf, Ini>,
    depth: usize,
) -> Result<Vec<PathBuf>, Fail2banError> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(Fail2banError::IncludeLoop {
            file: file.to_owned(),
        });
    }
    if !cache.contains_key(file) {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            // fail2ban reads the includes that exist and skips the others.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Fail2banError::Unreadable {
                    file: file.to_owned(),
                    source,
                });
            }
        };
        cache.insert(file.to_owned(), parse(file, &text)?);
    }
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut seen_here = seen.to_vec();
    seen_here.push(file.to_owned());
    let mut before = Vec::new();
    let mut after = Vec::new();
    for (option, list) in [("before", &mut before), ("after", &mut after)] {
        let value = cache
            .get(file)
            .and_then(|ini| ini.sections.get(INCLUDES))
            .and_then(|section| section.get(option))
            .map(|entry| entry.value.clone());
        for name in value.iter().flat_map(|v| v.lines()) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            let included = dir.join(name);
            if seen.contains(&included) {
                continue;
            }
            for with_local in with_locals(std::slice::from_ref(&included)) {
                list.extend(includes_of(&with_local, &seen_here, cache, depth + 1)?);
            }
        }
    }
    before.push(file.to_owned());
    before.extend(after);
    Ok(before)
}

/// Parses one file with Python `ConfigParser`'s rules (strict off: a repeated key or
/// section is merged, the later value winning, as fail2ban's files expect).
pub fn parse(file: &Path, text: &str) -> Result<Ini, Fail2banError> {
    let file: Arc<Path> = Arc::from(file);
    let mut ini = Ini::default();
    // The section being filled (`None`: DEFAULT), the key being continued and its indent.
    let mut section: Option<Option<String>> = None;
    let mut key: Option<String> = None;
    let mut indent = usize::MAX;
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let comment_at = comment_start(raw);
        let content = raw[..comment_at.unwrap_or(raw.len())].trim();
        if content.is_empty() {
            // An empty line belongs to the value being continued (ConfigParser's
            // `empty_lines_in_values`); a comment line does not.
            if comment_at.is_none()
                && let (Some(current), Some(name)) = (&section, &key)
                && let Some(entry) = target(&mut ini, current).get_mut(name)
            {
                entry.value.push('\n');
            }
            continue;
        }
        let this_indent = raw.len() - raw.trim_start().len();
        if let (Some(current), Some(name)) = (&section, &key)
            && this_indent > indent
        {
            if let Some(entry) = target(&mut ini, current).get_mut(name) {
                entry.value.push('\n');
                entry.value.push_str(content);
            }
            continue;
        }
        indent = this_indent;
        if let Some(name) = content
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            key = None;
            if name == "DEFAULT" {
                section = Some(None);
            } else {
                ini.sections
                    .entry(name.to_owned())
                    .or_insert_with(Section::new);
                section = Some(Some(name.to_owned()));
            }
            continue;
        }
        let Some(current) = &section else {
            return Err(Fail2banError::Syntax {
                file: file.to_path_buf(),
                line: number,
                problem: "a value before any [section] header".into(),
            });
        };
        let Some(at) = content.find(['=', ':']) else {
            return Err(Fail2banError::Syntax {
                file: file.to_path_buf(),
                line: number,
                problem: format!("{content:?} is neither a [section], nor `key = value`"),
            });
        };
        let name = content[..at].trim_end().to_lowercase();
        let value = content[at + 1..].trim().to_owned();
        target(&mut ini, current).replace(
            name.clone(),
            IniValue {
                value,
                file: file.clone(),
                line: number,
            },
        );
        key = Some(name);
    }
    // ConfigParser strips the trailing empty lines of every value.
    for section in std::iter::once(&mut ini.defaults).chain(ini.sections.values_mut()) {
        for (_, entry) in section.iter_mut() {
            let trimmed = entry.value.trim_end().len();
            entry.value.truncate(trimmed);
        }
    }
    Ok(ini)
}

fn target<'a>(ini: &'a mut Ini, section: &Option<String>) -> &'a mut Section {
    match section {
        None => &mut ini.defaults,
        Some(name) => ini
            .sections
            .entry(name.clone())
            .or_insert_with(Section::new),
    }
}

/// Where a comment starts: a line whose first non-blank is `#` or `;`, or an inline `;`
/// at the start or after white space.
fn comment_start(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return Some(0);
    }
    let bytes = line.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b';' && (i == 0 || bytes[i - 1].is_ascii_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        parse(Path::new("t.conf"), text).expect("parses")
    }

    fn value<'a>(ini: &'a Ini, section: &str, key: &str) -> &'a str {
        let section = if section == "DEFAULT" {
            &ini.defaults
        } else {
            ini.section(section).expect("section")
        };
        &section.get(key).expect("key").value
    }

    #[test]
    fn continuation_lines_comments_and_case() {
        let ini = ini(
            "# head\n[Definition]\nFailRegex = ^a <HOST>$\n            ^b <HOST>$\n# gone\n  ; gone too\n\n            ^c <HOST> ; tail\nignoreregex =\n[DEFAULT]\nx: 1\n",
        );
        assert_eq!(
            value(&ini, "Definition", "failregex"),
            "^a <HOST>$\n^b <HOST>$\n\n^c <HOST>"
        );
        assert_eq!(value(&ini, "Definition", "ignoreregex"), "");
        assert_eq!(value(&ini, "DEFAULT", "x"), "1");
    }

    #[test]
    fn a_semicolon_inside_a_word_is_not_a_comment() {
        let ini = ini("[D]\nre = a;b ; comment\n");
        assert_eq!(value(&ini, "D", "re"), "a;b");
    }

    #[test]
    fn a_value_before_a_section_is_an_error_with_its_line() {
        let error = parse(Path::new("f.conf"), "\nkey = 1\n").expect_err("refused");
        assert!(error.to_string().contains("f.conf:2"), "{error}");
    }

    #[test]
    fn overrides_keep_the_known_value() {
        let mut base = ini("[Definition]\na = 1\nb = 2\n");
        base.merge(&ini("[Definition]\na = 3\n"));
        assert_eq!(value(&base, "Definition", "a"), "3");
        assert_eq!(value(&base, "KNOWN/Definition", "a"), "1");
        assert_eq!(value(&base, "Definition", "b"), "2");
    }

    #[test]
    fn includes_come_before_and_after_with_local_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write");
        };
        write("common.conf", "[DEFAULT]\nx = common\ny = common\n");
        write("common.local", "[DEFAULT]\ny = common-local\n");
        write("after.conf", "[Definition]\nz = after\n");
        write(
            "f.conf",
            "[INCLUDES]\nbefore = common.conf\nafter = after.conf\n[DEFAULT]\nx = f\n[Definition]\nz = f\n",
        );
        write("f.local", "[Definition]\nw = local\n");
        std::fs::create_dir(dir.path().join("f.d")).expect("mkdir");
        write("f.d/10.conf", "[Definition]\nw = d-conf\n");
        let ini = Ini::read_stack(&dir.path().join("f")).expect("reads");
        assert_eq!(value(&ini, "DEFAULT", "x"), "f");
        assert_eq!(value(&ini, "DEFAULT", "y"), "common-local");
        assert_eq!(value(&ini, "Definition", "z"), "after");
        assert_eq!(value(&ini, "Definition", "w"), "local");
    }

    #[test]
    fn a_missing_filter_names_the_file_tried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let error = Ini::read_stack(&dir.path().join("nope")).expect_err("missing");
        assert!(error.to_string().contains("nope.conf"), "{error}");
    }
}
