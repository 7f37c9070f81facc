//! A filter's options: named parts of its regexes (`%(login_path)s`) with defaults in the
//! filter (`[options]`) that a jail may override (`filter = "nginx[login_path=/api/login]"`),
//! as fail2ban's `[Init]` options are. A value is a regex fragment, put in a group.

use std::collections::BTreeMap;

/// Defaults of the filter, overridden by the jail's values.
pub fn merge(
    defaults: &BTreeMap<String, String>,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let mut merged = defaults.clone();
    for (name, value) in overrides {
        match merged.get_mut(name) {
            Some(slot) => value.clone_into(slot),
            None if defaults.is_empty() => {
                return Err(format!(
                    "the filter has no options, so `{name}` cannot be set"
                ));
            }
            None => {
                return Err(format!(
                    "the filter has no option `{name}`; its options are: {}",
                    defaults.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    Ok(merged)
}

/// `text` with each `%(name)s` replaced by the option's value in a non-capturing group;
/// `%%` is a `%`. An unknown name is an error.
pub fn substitute(text: &str, options: &BTreeMap<String, String>) -> Result<String, String> {
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
                return Err(format!(
                    "`%(` without a closing `)s` in {text:?}: write `%(name)s`, or `%%` for a %"
                ));
            };
            let Some(value) = options.get(name) else {
                return Err(format!(
                    "`%({name})s` names no option of the filter (options: {})",
                    if options.is_empty() {
                        "none".to_owned()
                    } else {
                        options.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ));
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
        assert!(error.contains("login_path"), "{error}");
        assert!(merge(&BTreeMap::new(), &bad).is_err());
    }
}
