//! fail2ban's two interpolations. `%(var)s` is Python `ConfigParser`'s, looked up in the
//! jail's options, the section, then `[DEFAULT]`, with fail2ban's `%(section/var)s` and
//! `%(known/var)s`. `<tag>` is fail2ban's own, applied afterwards to a filter's options:
//! a tag is another option, a jail option, or `section/option`, resolved until none is
//! left, nested (`<mdre-<mode>>`) included; tags that name nothing (`<HOST>`, `<F-USER>`)
//! stay for the regex compiler.

use std::collections::HashMap;

use super::{
    Fail2banError,
    ini::{Ini, IniValue},
};

/// Python's `MAX_INTERPOLATION_DEPTH`.
const MAX_DEPTH: usize = 10;
/// fail2ban's `MAX_TAG_REPLACE_COUNT`.
const MAX_TAG_REPLACE: usize = 25;

/// Options given by the jail (`sshd[mode=aggressive]`), by key.
pub type Vars = HashMap<String, String>;

/// Why a lookup found nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Absent {
    Section,
    Option,
}

impl Ini {
    /// `ConfigParser.get(section, option, vars=vars)`: the interpolated value. `Err(Ok(_))`
    /// when the section or option is absent, `Err(Err(_))` when interpolation fails.
    pub fn get(
        &self,
        section: &str,
        option: &str,
        vars: &Vars,
    ) -> Result<String, Result<Absent, Fail2banError>> {
        let option = option.to_lowercase();
        if !self.has_section(section) {
            return Err(Ok(Absent::Section));
        }
        let (raw, entry) = self.raw(section, &option, vars).ok_or(Ok(Absent::Option))?;
        let mut out = String::new();
        self.interpolate(section, &option, entry, &raw, vars, &mut out, 1)
            .map_err(Err)?;
        Ok(out)
    }

    /// fail2ban's `get_ex`: `section/option`, `known/option` and `default/option` name an
    /// option of another section; anything else is [`Ini::get`].
    pub fn get_ex(
        &self,
        section: &str,
        option: &str,
        vars: &Vars,
    ) -> Result<String, Result<Absent, Fail2banError>> {
        if let Some((other, name)) = section_option(option) {
            let candidates = match other.to_lowercase().as_str() {
                "known" => vec![format!("KNOWN/{section}"), section.to_owned()],
                "default" => vec!["DEFAULT".to_owned()],
                _ => vec![other.to_owned()],
            };
            for candidate in candidates {
                match self.get(&candidate, name, &Vars::new()) {
                    Err(Ok(_)) => continue,
                    found => return found,
                }
            }
        }
        self.get(section, option, vars)
    }

    /// The raw value of `option` as `get` sees it: the jail's vars, then the section, then
    /// `[DEFAULT]`; with where it was written when it comes from a file.
    fn raw(&self, section: &str, option: &str, vars: &Vars) -> Option<(String, Option<&IniValue>)> {
        if let Some(value) = vars
            .iter()
            .find(|(k, _)| k.to_lowercase() == option)
            .map(|(_, v)| v)
        {
            return Some((value.clone(), None));
        }
        if option == "__name__" {
            return Some((section.to_owned(), None));
        }
        let entry = self
            .section(section)
            .and_then(|s| s.get(option))
            .or_else(|| self.defaults.get(option))?;
        Some((entry.value.clone(), Some(entry)))
    }

    /// What `%(var)s` stands for in `section`: like [`Ini::raw`], plus fail2ban's
    /// `%(section/var)s` (and `known/`, `default/`), which fall back to `[DEFAULT]`.
    fn reference(
        &self,
        section: &str,
        var: &str,
        vars: &Vars,
    ) -> Option<(String, Option<&IniValue>)> {
        if let Some(found) = self.raw(section, var, vars) {
            return Some(found);
        }
        let (other, name) = section_option(var)?;
        let from_section = match other.to_lowercase().as_str() {
            "default" => None,
            "known" => self
                .section(&format!("KNOWN/{section}"))
                .and_then(|s| s.get(name)),
            _ => {
                // A section that does not exist leaves the reference unresolved.
                self.section(other)?.get(name)
            }
        };
        let entry = from_section.or_else(|| self.defaults.get(name))?;
        Some((entry.value.clone(), Some(entry)))
    }

    /// Python's `BasicInterpolation._interpolate_some`, with fail2ban's section references.
    #[allow(clippy::too_many_arguments)]
    fn interpolate(
        &self,
        section: &str,
        option: &str,
        entry: Option<&IniValue>,
        mut rest: &str,
        vars: &Vars,
        out: &mut String,
        depth: usize,
    ) -> Result<(), Fail2banError> {
        let fail = |problem: String| Fail2banError::Interpolation {
            at: entry.map_or_else(|| "the jail's options".to_owned(), IniValue::at),
            section: section.to_owned(),
            key: option.to_owned(),
            problem,
        };
        if depth > MAX_DEPTH {
            return Err(fail(format!(
                "more than {MAX_DEPTH} levels of %(...)s: a reference loop?"
            )));
        }
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            rest = &rest[at..];
            if let Some(after) = rest.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("%(") {
                let Some(end) = after.find(")s") else {
                    return Err(fail(format!(
                        "bad reference {rest:?}: write %(name)s, or %% for a percent sign"
                    )));
                };
                let var = after[..end].to_lowercase();
                rest = &after[end + 2..];
                let Some((value, _)) = self.reference(section, &var, vars) else {
                    return Err(fail(format!(
                        "%({var})s names no option of [{section}], [DEFAULT] or the jail's options"
                    )));
                };
                if value.contains('%') {
                    self.interpolate(section, option, entry, &value, vars, out, depth + 1)?;
                } else {
                    out.push_str(&value);
                }
            } else {
                return Err(fail(format!(
                    "'%' must be followed by '%' or '(': {rest:?} (write %% for a percent sign)"
                )));
            }
        }
        out.push_str(rest);
        Ok(())
    }
}

/// `section/option` as fail2ban writes it (`^([\w\-]+)/([^\s>]+)$`).
fn section_option(name: &str) -> Option<(&str, &str)> {
    let (section, option) = name.split_once('/')?;
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '-';
    (!section.is_empty()
        && section.chars().all(word)
        && !option.is_empty()
        && !option.contains(|c: char| c.is_whitespace() || c == '>'))
    .then_some((section, option))
}

/// fail2ban's `substituteRecursiveTags`: replaces `<tag>` in every value of `tags` with
/// the value of that tag, or what `lookup` finds for it, until nothing changes. Tags in
/// `ignore`, and tags nothing names, stay.
pub fn substitute_tags(
    tags: &mut [(String, String)],
    ignore: &[String],
    lookup: &dyn Fn(&str) -> Result<Option<String>, Fail2banError>,
) -> Result<(), Fail2banError> {
    let mut done = vec![false; tags.len()];
    let mut counts: HashMap<(usize, String), usize> = HashMap::new();
    loop {
        let mut again = false;
        for index in 0..tags.len() {
            let name = tags[index].0.clone();
            if done[index] || ignore.contains(&name) {
                continue;
            }
            let original = tags[index].1.clone();
            let mut value = original.clone();
            let mut from = 0;
            while let Some((start, end)) = next_tag(&value, from) {
                let referenced = value[start + 1..end - 1].to_owned();
                if ignore.contains(&referenced) {
                    from = end;
                    continue;
                }
                let count = counts.entry((index, referenced.clone())).or_insert(0);
                if referenced == name || *count >= MAX_TAG_REPLACE {
                    return Err(Fail2banError::TagLoop {
                        tag: name,
                        found: referenced,
                    });
                }
                let replacement = match tags.iter().find(|(k, _)| *k == referenced) {
                    Some((_, v)) => Some(v.clone()),
                    None => lookup(&referenced)?,
                };
                let Some(replacement) = replacement else {
                    from = end;
                    continue;
                };
                *count += 1;
                value = value.replace(&format!("<{referenced}>"), &replacement);
                from = start;
            }
            if value != original {
                if next_tag(&value, 0).is_some() {
                    again = true;
                }
                tags[index].1 = value.clone();
            }
            if !value.contains('<') {
                done[index] = true;
            }
        }
        if !again {
            return Ok(());
        }
    }
}

/// The next `<name>` (no blank, `<` or `>` inside) at or after `from`: its byte range.
fn next_tag(value: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = value.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        match b {
            b'<' => start = Some(i),
            b'>' => {
                if let Some(s) = start
                    && i > s + 1
                {
                    return Some((s, i + 1));
                }
                start = None;
            }
            b' ' => start = None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fail2ban::ini::parse;

    fn ini(text: &str) -> Ini {
        parse(Path::new("t.conf"), text).expect("parses")
    }

    #[test]
    fn percent_references_resolve_from_vars_section_and_default() {
        let ini = ini(
            "[DEFAULT]\nd = default\n[lt_file]\np = file-prefix %(d)s\n[Definition]\na = <%(b)s> %(d)s %%\nb = B\nc = %(lt_file/p)s\n",
        );
        let vars = Vars::new();
        assert_eq!(
            ini.get("Definition", "a", &vars).expect("a"),
            "<B> default %"
        );
        assert_eq!(
            ini.get("Definition", "c", &vars).expect("c"),
            "file-prefix default"
        );
        let vars = Vars::from([("b".to_owned(), "from jail".to_owned())]);
        assert_eq!(
            ini.get("Definition", "a", &vars).expect("a"),
            "<from jail> default %"
        );
    }

    #[test]
    fn a_missing_reference_names_file_line_section_and_key() {
        let ini = parse(Path::new("f.conf"), "[Definition]\n\nx = %(nope)s\n").expect("parses");
        let error = ini
            .get("Definition", "x", &Vars::new())
            .expect_err("missing")
            .expect_err("an error");
        let text = error.to_string();
        assert!(text.contains("f.conf:3") && text.contains("nope"), "{text}");
    }

    #[test]
    fn nested_tags_resolve_and_unknown_tags_stay() {
        let mut tags = vec![
            ("failregex".to_owned(), "<mdre-<mode>> <HOST>".to_owned()),
            ("mode".to_owned(), "ddos".to_owned()),
        ];
        let lookup = |name: &str| {
            Ok((name == "mdre-ddos").then(|| "^ddos <__suff>".to_owned()))
                .map(|v| v.or_else(|| (name == "__suff").then(|| "$".to_owned())))
        };
        substitute_tags(&mut tags, &[], &lookup).expect("resolves");
        assert_eq!(tags[0].1, "^ddos $ <HOST>");
    }

    #[test]
    fn a_self_reference_is_an_error() {
        let mut tags = vec![("a".to_owned(), "x<a>".to_owned())];
        assert!(substitute_tags(&mut tags, &[], &|_| Ok(None)).is_err());
    }
}
