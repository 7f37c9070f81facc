//! A filter's options: named parts of its regexes (`%(login_path)s`) with defaults in the
//! filter (`[options]`) that a jail may override (`filter = "nginx[login_path=/api/login]"`),
//! as fail2ban's `[Init]` options are. A value is a regex fragment, put in a group.

use std::collections::BTreeMap;

use thiserror::Error;

/// What is wrong with a filter's options or a jail's values for them.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("the filter has no options, so `{name}` cannot be set")]
    NoOptions { name: String },
    #[error("the filter has no option `{name}`; its options are: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("`%(` without a closing `)s` in {text:?}: write `%(name)s`, or `%%` for a %")]
    Unclosed { text: String },
    #[error(
        "`%({name})s` names no option of the filter (options: {})",
        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
    )]
    Unnamed { name: String, known: Vec<String> },
}

/// Defaults of the filter, overridden by the jail's values.
pub fn merge(
    defaults: &BTreeMap<String, String>,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, OptionError> {
    let mut merged = defaults.clone();
    for (name, value) in overrides {
        match merged.get_mut(name) {
            Some(slot) => value.clone_into(slot),
            None if defaults.is_empty() => {
                return Err(OptionError::NoOptions { name: name.clone() });
            }
            None => {
                return Err(OptionError::Unknown {
                    name: name.clone(),
                    known: defaults.keys().cloned().collect(),
                });
            }
        }
    }
    Ok(merged)
}

/// `text` with each `%(name)s` replaced by the option's value in a non-capturing group;
/// `%%` is a `%`. An unknown name is an error.
pub fn substitute(text: &str, options: &BTreeMap<String, String>) -> Result<String, OptionError> {
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('%') {
            out.push('%');
            rest = tail;
        } else if let Some(open) = after.strip_prefix('(') {
            let Some((name, tail)) = open.split_once(")s") else {
                return Err(OptionError::Unclosed {
                    text: text.to_owned(),
                });
            };
            let Some(value) = options.get(name) else {
                return Err(OptionError::Unnamed {
                    name: name.to_owned(),
                    known: options.keys().cloned().collect(),
                });
            };
            out.push_str("(?:");
            out.push_str(value);
            out.push(')');
            rest = tail;
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BTreeMap<String, String> {
        [("login_path".to_owned(), "/login".to_owned())].into()
    }

    #[test]
    fn names_are_replaced_by_grouped_values() {
        assert_eq!(
            substitute(r"^%(login_path)s(?:\?|$) 100%%", &options()).expect("known"),
            r"^(?:/login)(?:\?|$) 100%"
        );
        assert_eq!(substitute("5% off", &options()).expect("plain"), "5% off");
        assert!(substitute("%(nope)s", &options()).is_err());
        assert!(substitute("%(login_path", &options()).is_err());
    }

    #[test]
    fn overrides_must_name_an_option() {
        let over = [("login_path".to_owned(), "/api/login".to_owned())];
        assert_eq!(
            merge(&options(), &over).expect("known")["login_path"],
            "/api/login"
        );
        let bad = [("login".to_owned(), "/x".to_owned())];
        let error = merge(&options(), &bad).expect_err("unknown");
        assert!(error.to_string().contains("login_path"), "{error}");
        assert!(merge(&BTreeMap::new(), &bad).is_err());
    }
}
