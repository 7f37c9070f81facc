use proptest::prelude::*;

use super::*;

/// Every line of `filters/tests/fastapi-auth.log` yields the address annotated above it.
#[test]
fn shipped_filter_matches_its_annotated_samples() {
    let samples = include_str!("../../../filters/tests/fastapi-auth.log");
    let filter = fastapi_auth();
    let mut expected: Option<Option<IpNet>> = None;
    let mut checked = 0;
    for (n, line) in samples.lines().enumerate() {
        if let Some(host) = line.strip_prefix("# host: ") {
            let addr: IpAddr = host.parse().expect("annotation is an address");
            expected = Some(Some(IpNet::from(addr)));
        } else if line == "# none" {
            expected = Some(None);
        } else if !line.starts_with('#') {
            let want = expected
                .take()
                .unwrap_or_else(|| panic!("line {} has no annotation", n + 1));
            let got = match filter.check(line) {
                Outcome::Failure { target, .. } => Some(target),
                _ => None,
            };
            assert_eq!(got, want, "line {}: {line}", n + 1);
            checked += 1;
        }
    }
    assert!(checked >= 15, "only {checked} samples");
}

#[test]
fn every_failregex_needs_exactly_one_address_tag() {
    let spec = |re: &str| FilterSpec {
        failregex: vec![re.to_owned()],
        ignoreregex: vec![],
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
            Outcome::Missed | Outcome::Ignored { .. } => {}
        }
    }

    /// The filter never panics, whatever the line.
    #[test]
    fn arbitrary_lines_never_panic(line in "\\PC{0,200}") {
        let _ = fastapi_auth().check(&line);
    }
}
