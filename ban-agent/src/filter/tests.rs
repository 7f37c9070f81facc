use std::net::IpAddr;

use proptest::prelude::*;

use super::*;

/// The annotated sample log of each built-in filter (`filters/tests/NAME.log`).
const SAMPLES: [(&str, &str); 6] = [
    (
        "fastapi-auth",
        include_str!("../../../filters/tests/fastapi-auth.log"),
    ),
    (
        "uvicorn",
        include_str!("../../../filters/tests/uvicorn.log"),
    ),
    (
        "gunicorn",
        include_str!("../../../filters/tests/gunicorn.log"),
    ),
    ("nginx", include_str!("../../../filters/tests/nginx.log")),
    ("caddy", include_str!("../../../filters/tests/caddy.log")),
    (
        "traefik",
        include_str!("../../../filters/tests/traefik.log"),
    ),
];

/// What an annotation says a line yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    Host(IpNet),
    None,
    Malformed,
}

/// The sample lines of a log, each with its annotation (`# host: ADDR`, `# none`,
/// `# malformed` on the comment line above it).
fn annotated(name: &str, samples: &str) -> Vec<(usize, String, Expected)> {
    let mut expected = None;
    let mut lines = Vec::new();
    for (n, line) in samples.lines().enumerate() {
        if let Some(host) = line.strip_prefix("# host: ") {
            let addr: IpAddr = host.parse().expect("annotation is an address");
            expected = Some(Expected::Host(IpNet::from(addr)));
        } else if line == "# none" {
            expected = Some(Expected::None);
        } else if line == "# malformed" {
            expected = Some(Expected::Malformed);
        } else if !line.starts_with('#') {
            let want = expected
                .take()
                .unwrap_or_else(|| panic!("{name}.log line {} has no annotation", n + 1));
            lines.push((n + 1, line.to_owned(), want));
        }
    }
    lines
}

/// Every line of each built-in filter's sample log yields what is annotated above it.
#[test]
fn every_builtin_filter_matches_its_annotated_samples() {
    assert_eq!(SAMPLES.map(|(n, _)| n), BUILTIN.map(|(n, _)| n));
    for (name, samples) in SAMPLES {
        let text = builtin(name).expect("built in");
        let spec: FilterSpec = toml::from_str(text).expect("the filter parses");
        let filter = Filter::compile(&spec).expect("the filter compiles");
        let lines = annotated(name, samples);
        for (n, line, want) in &lines {
            let got = match filter.check(line) {
                Outcome::Failure { target, .. } | Outcome::Dated { target, .. } => {
                    Expected::Host(target)
                }
                Outcome::Malformed => Expected::Malformed,
                Outcome::Missed | Outcome::Ignored { .. } => Expected::None,
            };
            assert_eq!(got, *want, "{name}.log line {n}: {line}");
        }
        let failures = lines
            .iter()
            .filter(|(_, _, want)| matches!(want, Expected::Host(_)))
            .count();
        assert!(
            lines.len() >= 12 && failures >= 4,
            "{name}: only {} samples",
            lines.len()
        );
    }
}

/// The paths are options: a jail moves them (`nginx[login_path=/api/login]`).
#[test]
fn the_paths_of_a_builtin_filter_are_options() {
    let spec: FilterSpec = toml::from_str(builtin("nginx").expect("built in")).expect("parses");
    let set = [("login_path".to_owned(), "/api/v1/login|/auth".to_owned())];
    let filter = Filter::compile_with(&spec, &set).expect("compiles");
    let line = |path: &str| {
        format!(
            "192.0.2.7 - - [24/Nov/2026:12:00:00 +0000] \"POST {path} HTTP/1.1\" 401 3 \"-\" \"-\""
        )
    };
    assert!(matches!(
        filter.check(&line("/api/v1/login")),
        Outcome::Failure { .. }
    ));
    assert!(matches!(
        filter.check(&line("/auth?x=1")),
        Outcome::Failure { .. }
    ));
    assert_eq!(filter.check(&line("/login")), Outcome::Missed);
    let unknown = [("login".to_owned(), "/x".to_owned())];
    let error = Filter::compile_with(&spec, &unknown).expect_err("no such option");
    assert!(error.to_string().contains("login_path"), "{error}");
}

#[test]
fn every_failregex_needs_exactly_one_address_tag() {
    let spec = |re: &str| FilterSpec {
        failregex: vec![re.to_owned()],
        ignoreregex: vec![],
        ..Default::default()
    };
    assert!(matches!(
        Filter::compile(&spec("login failed")),
        Err(FilterError::Tag { index: 0, .. })
    ));
    assert!(matches!(
        Filter::compile(&spec("<HOST> <ADDR>")),
        Err(FilterError::Tag { .. })
    ));
    let error = Filter::compile(&spec("<HOST> (unclosed")).expect_err("invalid regex");
    assert!(error.to_string().contains("unclosed"), "{error}");
    assert_eq!(
        Filter::compile(&FilterSpec::default()).err(),
        Some(FilterError::Empty)
    );
}

#[test]
fn tags_accept_only_their_family_and_cidr_is_truncated() {
    let compile = |re: &str| {
        Filter::compile(&FilterSpec {
            failregex: vec![re.to_owned()],
            ignoreregex: vec![],
            ..Default::default()
        })
        .expect("compiles")
    };
    let ip4 = compile("^fail <IP4>$");
    assert!(matches!(
        ip4.check("fail 192.0.2.1"),
        Outcome::Failure { .. }
    ));
    assert_eq!(ip4.check("fail 2001:db8::1"), Outcome::Missed);
    let ip6 = compile("^fail <IP6>$");
    assert_eq!(ip6.check("fail 192.0.2.1"), Outcome::Missed);
    assert!(matches!(
        ip6.check("fail [2001:db8::1]"),
        Outcome::Failure { .. }
    ));
    let cidr = compile("^fail <CIDR>$");
    assert_eq!(
        cidr.check("fail 198.51.100.77/24"),
        Outcome::Failure {
            target: "198.51.100.0/24".parse().expect("CIDR"),
            regex: 0
        }
    );
}

#[test]
fn ignoreregex_vetoes_and_the_matching_regex_is_reported() {
    let filter = Filter::compile(&FilterSpec {
        failregex: vec![
            "^auth fail <HOST>$".into(),
            "^bad token from <HOST>$".into(),
        ],
        ignoreregex: vec!["192\\.0\\.2\\.99".into()],
        ..Default::default()
    })
    .expect("compiles");
    assert_eq!(
        filter.check("bad token from 192.0.2.1"),
        Outcome::Failure {
            target: "192.0.2.1/32".parse().expect("CIDR"),
            regex: 1
        }
    );
    assert_eq!(
        filter.check("auth fail 192.0.2.99"),
        Outcome::Ignored { regex: 0 }
    );
    assert_eq!(filter.check("all good"), Outcome::Missed);
}

/// What addresses are written with, and what comes next to them.
const ADDRESS_PARTS: [&str; 20] = [
    "192.0.2.7",
    "2001:db8::7",
    "::ffff:",
    "1.2.3.4",
    ":",
    "::",
    ".",
    "[",
    "]",
    "0",
    "1",
    "ff",
    "dead:beef",
    "99",
    "999.",
    "1:2:3:4:5:6:7",
    ":8080",
    "a",
    " ",
    "-",
];

fn builtin_filter(name: &str) -> Filter {
    let spec: FilterSpec = toml::from_str(builtin(name).expect("built in")).expect("parses");
    Filter::compile(&spec).expect("compiles")
}

/// The seed's filter is read in one scan. uvicorn's `<HOST>:\d+` is not one-pass (an
/// IPv6 address holds colons too), nor is nginx's `.*?`.
#[test]
fn the_fastapi_auth_filter_is_read_in_one_scan() {
    for (name, one_pass) in [("fastapi-auth", 1), ("uvicorn", 0), ("nginx", 0)] {
        assert_eq!(builtin_filter(name).one_pass_len(), one_pass, "{name}");
    }
}

proptest! {
    /// Whatever a client puts in the path (anything but a line break, which the app must
    /// escape), the shipped filter yields the client's own address or nothing.
    #[test]
    fn no_path_gets_another_address_banned(path in "[^\r\n]{0,120}", status in prop::sample::select(vec![200u16, 400, 401])) {
        let client = "203.0.113.7";
        let line = format!(
            "2026-11-24 12:00:00,001 - fastapi-auth - INFO - {client} - \"POST {path}\" {status} - 0.0100s"
        );
        match fastapi_auth().check(&line) {
            Outcome::Failure { target, .. } | Outcome::Dated { target, .. } => {
                prop_assert_eq!(target.addr().to_string(), client)
            }
            Outcome::Missed | Outcome::Ignored { .. } | Outcome::Malformed => {}
        }
    }

    /// Whatever a client puts in the path and the user agent of an access log line, the
    /// built-in filters yield the client's own address or nothing.
    #[test]
    fn no_request_gets_another_address_banned_by_a_builtin(
        path in "[^\r\n]{0,80}",
        agent in "[^\r\n]{0,80}",
        status in prop::sample::select(vec![200u16, 400, 401]),
    ) {
        let client = "203.0.113.7";
        let lines = [
            ("uvicorn", format!("INFO:     {client}:1 - \"POST {path} HTTP/1.1\" {status} Unauthorized")),
            ("gunicorn", format!("{client}:1 - \"POST {path} HTTP/1.1\" {status}")),
            ("gunicorn", format!("{client} - {agent} [24/Nov/2026:12:00:00 +0000] \"POST {path} HTTP/1.1\" {status} 3 \"-\" \"{agent}\"")),
            ("nginx", format!("{client} - - [24/Nov/2026:12:00:00 +0000] \"POST {path} HTTP/1.1\" {status} 3 \"-\" \"{agent}\"")),
            ("traefik", format!("{client} - - [24/Nov/2026:12:00:00 +0000] \"POST {path} HTTP/1.1\" {status} 3 \"-\" \"{agent}\" 1 \"r\" \"s\" 1ms")),
        ];
        for (name, line) in lines {
            let spec: FilterSpec = toml::from_str(builtin(name).expect("built in")).expect("parses");
            if let Outcome::Failure { target, .. } | Outcome::Dated { target, .. } =
                Filter::compile(&spec).expect("compiles").check(&line)
            {
                prop_assert_eq!(target.addr().to_string(), client, "{}: {}", name, line);
            }
        }
    }

    /// The one-pass scan decides every line as the exact regex does, with the same
    /// address and time: on the built-in filters' sample lines with their address
    /// replaced by anything address-like, and on regexes whose address ends the match.
    #[test]
    fn one_pass_scans_judge_as_the_exact_regexes(
        sample in any::<prop::sample::Index>(),
        address in prop::collection::vec(prop::sample::select(ADDRESS_PARTS.to_vec()), 1..5),
        tail in "[ -~]{0,6}",
    ) {
        let address = address.concat();
        let mut lines = Vec::new();
        for (name, samples) in SAMPLES {
            let all = annotated(name, samples);
            let (_, line, expected) = &all[sample.index(all.len())];
            let Expected::Host(host) = expected else { continue };
            let line = line.replacen(&host.addr().to_string(), &address, 1);
            lines.push((builtin_filter(name), line));
        }
        for regex in ["^from <HOST>", "^from <HOST>(?: .*)?$", "^from <ADDR>:\\d+ x$", "^from <IP4>\\S*", "^from <IP6>( |$)"] {
            let spec = FilterSpec { failregex: vec![regex.to_owned()], ..FilterSpec::default() };
            let filter = Filter::compile(&spec).expect("compiles");
            lines.push((filter, format!("from {address}{tail}")));
        }
        for (filter, line) in lines {
            let exact = filter.exact_only();
            let (mut fast_room, mut exact_room) = (filter.scratch(), exact.scratch());
            let fast = filter.check_with(&mut fast_room, &line);
            prop_assert_eq!(fast, exact.check_with(&mut exact_room, &line), "{}", line);
            if let Outcome::Failure { regex, .. } = fast {
                prop_assert_eq!(
                    filter.time_text(&fast_room, regex, &line),
                    exact.time_text(&exact_room, regex, &line)
                );
            }
        }
    }

    /// The filter never panics, whatever the line.
    #[test]
    fn arbitrary_lines_never_panic(line in "\\PC{0,200}") {
        let _ = fastapi_auth().check(&line);
    }
}
