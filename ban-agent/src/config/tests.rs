use super::*;

const MINIMAL: &str = r#"
[jail.auth]
logpath = "/var/log/app/auth.log"
filter = "fastapi-auth"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/ban-agent/ban-agent.toml"), text)
}

/// The error of `text`, as (line, column, key, message).
fn error(text: &str) -> (usize, usize, String, String) {
    match parse(text) {
        Err(ConfigError::Invalid {
            line,
            column,
            key,
            message,
            ..
        }) => (line, column, key, message),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[track_caller]
fn assert_error(text: &str, line: usize, key: &str, expected: &str) {
    let (at_line, column, at_key, message) = error(text);
    assert_eq!((at_line, at_key.as_str()), (line, key), "{message}");
    assert!(column >= 1);
    assert!(
        message.contains(expected),
        "{message:?} should contain {expected:?}"
    );
}

#[test]
fn a_minimal_jail_gets_the_defaults() {
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(config.global, Global::default());
    let jail = config.jail("auth").expect("jail");
    assert!(jail.enabled);
    assert_eq!(jail.logpath, [PathBuf::from("/var/log/app/auth.log")]);
    assert_eq!(jail.filter_origin, "built-in fastapi-auth");
    assert_eq!(jail.rules.maxretry, 5);
    assert_eq!(jail.rules.findtime, Duration::from_secs(600));
    assert_eq!((jail.rules.prefix_v4, jail.rules.prefix_v6), (32, 128));
    assert_eq!(jail.bantime, BanTime::For(Duration::from_secs(600)));
    assert_eq!(jail.ports, Ports::All);
    assert_eq!(jail.protocol, Protocol::Tcp);
    assert_eq!(jail.increment, None);
    assert_eq!(jail.datepattern, DatePattern::Auto);
    assert_eq!(jail.start, Start::Tail);
}

#[test]
fn every_setting_is_read() {
    let config = parse(
        r#"
ignoreself = false
state_dir = "/srv/state"
pin_dir = "/sys/fs/bpf/other"
interfaces = ["eth0", "veth1"]
metrics = "[::1]:9464"
filter_dir = "filters"

[defaults]
ignoreip = ["192.0.2.0/24", "2001:db8::1"]
maxretry = 3

[jail.web]
logpath = ["logs/*.log", "/var/log/b.log"]
failregex = ['^fail from <HOST>$']
ignoreregex = ['test']
findtime = 120
bantime = "1h 30m"
ports = [80, 443, "8000-8002", 443]
protocol = "all"
ban_prefix_v4 = 24
ban_prefix_v6 = 64
datepattern = "%Y-%m-%d %H:%M:%S"
start = "head"
max_tracked = 1000
max_bans_per_minute = 0

[jail.web.bantime_increment]
factor = 2
maxtime = "1d"
overall_jails = true

[jail.forever]
enabled = false
filter = "fastapi-auth"
bantime = "permanent"
ports = "8080, 9000-9001"

[jail.forever2]
enabled = false
filter = "fastapi-auth"
bantime = -1
"#,
    )
    .expect("valid");
    let g = &config.global;
    assert!(!g.ignoreself);
    assert_eq!(g.state_dir, PathBuf::from("/srv/state"));
    assert_eq!(g.pin_dir, PathBuf::from("/sys/fs/bpf/other"));
    assert_eq!(g.interfaces, ["eth0", "veth1"]);
    assert_eq!(g.metrics, Some("[::1]:9464".parse().expect("addr")));
    assert_eq!(g.filter_dir, PathBuf::from("/etc/ban-agent/filters"));
    let web = config.jail("web").expect("web");
    assert_eq!(
        web.logpath,
        [
            PathBuf::from("/etc/ban-agent/logs/*.log"),
            PathBuf::from("/var/log/b.log")
        ]
    );
    assert_eq!(
        (web.filter.len(), web.filter_origin.as_str()),
        (1, "inline")
    );
    assert_eq!(web.rules.maxretry, 3, "inherited from [defaults]");
    assert_eq!(web.rules.findtime, Duration::from_secs(120));
    assert_eq!(web.rules.max_tracked, 1000);
    assert_eq!(web.rules.max_bans_per_minute, 0, "0: no cap");
    assert_eq!((web.rules.prefix_v4, web.rules.prefix_v6), (24, 64));
    assert_eq!(web.bantime, BanTime::For(Duration::from_secs(5400)));
    assert_eq!(web.ports, Ports::List(vec![80, 443, 8000, 8001, 8002]));
    assert_eq!(web.protocol, Protocol::All);
    assert_eq!(
        web.ignoreip,
        [
            "192.0.2.0/24".parse::<IpNet>().expect("net"),
            "2001:db8::1/128".parse().expect("net")
        ]
    );
    assert_eq!(
        web.datepattern,
        DatePattern::Format("%Y-%m-%d %H:%M:%S".into())
    );
    assert_eq!(web.start, Start::Head);
    assert_eq!(
        web.increment,
        Some(Increment {
            factor: 2.0,
            maxtime: Duration::from_secs(86_400),
            overall_jails: true
        })
    );
    let forever = config.jail("forever").expect("forever");
    assert!(!forever.enabled);
    assert_eq!(forever.bantime, BanTime::Permanent);
    assert_eq!(forever.ports, Ports::List(vec![8080, 9000, 9001]));
    assert_eq!(
        config.jail("forever2").expect("forever2").bantime,
        BanTime::Permanent
    );
    assert_eq!(
        config
            .enabled()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>(),
        ["web"]
    );
}

#[test]
fn syntax_errors_are_located() {
    assert_error(
        "[jail.a]\nlogpath = \"/x\"\nmaxretry = = 3\n",
        3,
        "jail.a.maxretry",
        "",
    );
    assert_error("[jail.a\n", 1, "jail.a", "unclosed table");
}

#[test]
fn wrong_types_and_unknown_keys_name_the_key() {
    let text = format!("{MINIMAL}maxretry = \"five\"\n");
    assert_error(
        &text,
        5,
        "jail.auth.maxretry",
        "string \"five\" where a whole number (no quotes) is expected",
    );
    let text = format!("{MINIMAL}bantim = \"1h\"\n");
    assert_error(
        &text,
        5,
        "jail.auth.bantim",
        "unknown key `bantim`: did you mean `bantime`?",
    );
    assert_error(
        "statedir = \"/x\"\n",
        1,
        "statedir",
        "unknown key `statedir`: did you mean `state_dir`?",
    );
}

#[test]
fn out_of_range_numbers_say_the_range() {
    let cases = [
        ("maxretry = 0", "jail.auth.maxretry", "from 1 to"),
        (
            "ban_prefix_v4 = 33",
            "jail.auth.ban_prefix_v4",
            "from 8 to 32",
        ),
        (
            "ban_prefix_v6 = 8",
            "jail.auth.ban_prefix_v6",
            "from 16 to 128",
        ),
        ("max_tracked = -1", "jail.auth.max_tracked", "from 1 to"),
        (
            "max_bans_per_minute = -1",
            "jail.auth.max_bans_per_minute",
            "from 0 to",
        ),
    ];
    for (line, key, expected) in cases {
        assert_error(&format!("{MINIMAL}{line}\n"), 5, key, expected);
    }
}

#[test]
fn durations_are_human_or_seconds_and_only_bantime_is_permanent() {
    let cases = [
        (
            "findtime = \"10 parsecs\"",
            "jail.auth.findtime",
            "is not a duration",
        ),
        (
            "findtime = 0",
            "jail.auth.findtime",
            "expected a number of seconds",
        ),
        (
            "findtime = \"permanent\"",
            "jail.auth.findtime",
            "not a duration",
        ),
        (
            "findtime = -1",
            "jail.auth.findtime",
            "expected a number of seconds",
        ),
        (
            "findtime = \"10ms\"",
            "jail.auth.findtime",
            "below a second",
        ),
        (
            "bantime = true",
            "jail.auth.bantime",
            "\"permanent\" (or -1)",
        ),
        (
            "bantime = -2",
            "jail.auth.bantime",
            "expected a number of seconds",
        ),
    ];
    for (line, key, expected) in cases {
        assert_error(&format!("{MINIMAL}{line}\n"), 5, key, expected);
    }
    let config = parse(&format!("{MINIMAL}findtime = \"90s\"\nbantime = \"2d\"\n")).expect("ok");
    let jail = config.jail("auth").expect("auth");
    assert_eq!(jail.rules.findtime, Duration::from_secs(90));
    assert_eq!(jail.bantime, BanTime::For(Duration::from_secs(172_800)));
}

/// fail2ban reads units case-insensitively: a fail2ban user's "10M" is ten minutes, and
/// months are "mo". (humantime read "10M" as ten months.)
#[test]
fn durations_read_fail2ban_units_so_10m_upper_case_is_ten_minutes() {
    let config = parse(&format!("{MINIMAL}findtime = \"10M\"\nbantime = \"1mo\"\n")).expect("ok");
    let jail = config.jail("auth").expect("auth");
    assert_eq!(jail.rules.findtime, Duration::from_secs(600));
    assert_eq!(jail.bantime, BanTime::For(Duration::from_secs(2_629_800)));
}

#[test]
fn ports_protocol_and_addresses_are_checked() {
    let cases = [
        ("ports = [0]", "jail.auth.ports", "\"0\" is not a port"),
        ("ports = [70000]", "jail.auth.ports", "is not a port"),
        ("ports = \"http\"", "jail.auth.ports", "service names"),
        ("ports = \"10-5\"", "jail.auth.ports", "is not a port"),
        ("ports = [true]", "jail.auth.ports", "expected \"all\""),
        ("ports = []", "jail.auth.ports", "no port"),
        (
            "protocol = \"sctp\"",
            "jail.auth.protocol",
            "\"tcp\", \"udp\" or \"all\"",
        ),
        (
            "ignoreip = [\"192.0.2.300\"]",
            "jail.auth.ignoreip",
            "\"192.0.2.300\"",
        ),
        ("ignoreip = [1]", "jail.auth.ignoreip", "expected addresses"),
        ("start = \"middle\"", "jail.auth.start", "\"head\""),
    ];
    for (line, key, expected) in cases {
        assert_error(&format!("{MINIMAL}{line}\n"), 5, key, expected);
    }
    assert_error("metrics = \"localhost\"\n", 1, "metrics", "127.0.0.1:9464");
    assert_error(
        "interfaces = [\"a/b\"]\n",
        1,
        "interfaces",
        "not an interface",
    );
}

#[test]
fn a_jail_needs_a_log_and_one_filter() {
    assert_error(
        "[jail.x]\nfilter = \"fastapi-auth\"\n",
        1,
        "jail.x",
        "no `logpath`",
    );
    assert_error("[jail.x]\nlogpath = \"/l\"\n", 1, "jail.x", "no filter");
    assert_error(
        "[jail.x]\nlogpath = \"/l\"\nfilter = \"fastapi-auth\"\nfailregex = ['<HOST>']\n",
        3,
        "jail.x.filter",
        "keep one",
    );
    assert_error(
        "[jail.x]\nlogpath = \"/l\"\nfilter = \"nope\"\n",
        3,
        "jail.x.filter",
        "built-in: fastapi-auth",
    );
    assert_error(
        "[jail.x]\nlogpath = []\nfilter = \"fastapi-auth\"\n",
        2,
        "jail.x.logpath",
        "empty",
    );
    assert_error(
        "[jail.x]\nlogpath = \"/var/log/[a\"\nfilter = \"fastapi-auth\"\n",
        2,
        "jail.x.logpath",
        "not a valid glob",
    );
    // A disabled jail may be left unfinished.
    assert!(parse("[jail.x]\nenabled = false\nfilter = \"fastapi-auth\"\n").is_ok());
}

#[test]
fn regex_errors_point_at_the_regex() {
    let text = "[jail.x]\nlogpath = \"/l\"\nfailregex = [\n  '^ok <HOST>$',\n  'no tag here',\n]\n";
    assert_error(text, 5, "jail.x.failregex", "no address tag");
    let (line, column, _, _) = error(text);
    assert_eq!((line, column), (5, 3), "the second regex");
    let text = "[jail.x]\nlogpath = \"/l\"\nfailregex = ['<HOST> (']\n";
    assert_error(text, 3, "jail.x.failregex", "unclosed group");
    let text = "[jail.x]\nlogpath = \"/l\"\nfailregex = ['<HOST>']\nignoreregex = ['[z-a]']\n";
    assert_error(
        text,
        4,
        "jail.x.ignoreregex",
        "invalid character class range",
    );
    let text = "[defaults]\nfailregex = ['<HOST> <IP4>']\n[jail.x]\nlogpath = \"/l\"\n";
    assert_error(text, 2, "defaults.failregex", "more than one address tag");
}

#[test]
fn filter_files_are_found_and_their_errors_located() {
    let dir = std::env::temp_dir().join(format!("ban-agent-config-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("filter.d")).expect("mkdir");
    std::fs::write(
        dir.join("filter.d/mine.toml"),
        "failregex = ['^bad <HOST>$']\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("filter.d/broken.toml"),
        "# a comment\nfailregex = [\n  '^bad (<HOST>$',\n]\n",
    )
    .expect("write");
    let config_path = dir.join("ban-agent.toml");
    let config = Config::parse(
        &config_path,
        "filter_dir = \"filter.d\"\n[jail.a]\nlogpath = \"/l\"\nfilter = \"mine\"\n\
         [jail.b]\nlogpath = \"/l\"\nfilter = \"filter.d/mine.toml\"\n",
    )
    .expect("valid");
    let expected = dir.join("filter.d/mine.toml").display().to_string();
    assert_eq!(config.jail("a").expect("a").filter_origin, expected);
    assert_eq!(config.jail("b").expect("b").filter_origin, expected);
    let error = Config::parse(
        &config_path,
        "filter_dir = \"filter.d\"\n[jail.a]\nlogpath = \"/l\"\nfilter = \"broken\"\n",
    )
    .expect_err("broken filter");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}:3:3: `failregex`",
            dir.join("filter.d/broken.toml").display()
        )),
        "{shown}"
    );
    assert!(shown.contains("unclosed group"), "{shown}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_missing_file_says_which() {
    let error = Config::load(Path::new("/nonexistent/ban-agent.toml")).expect_err("missing");
    let shown = error.to_string();
    assert!(shown.contains("/nonexistent/ban-agent.toml"), "{shown}");
    assert!(shown.contains("No such file"), "{shown}");
}

#[test]
fn too_many_jails_are_refused() {
    let mut text = String::new();
    for i in 0..=ban_common::MAX_JAILS {
        text.push_str(&format!(
            "[jail.j{i}]\nlogpath = \"/l\"\nfilter = \"fastapi-auth\"\n"
        ));
    }
    let (_, _, key, message) = error(&text);
    assert_eq!(key, "jail");
    assert!(message.contains("at most 64"), "{message}");
}

#[test]
fn the_documented_example_is_valid() {
    let text = include_str!("../../../docs/ban-agent.example.toml");
    let config = parse(text).expect("docs/ban-agent.example.toml is valid");
    let auth = config.jail("fastapi-auth").expect("fastapi-auth");
    assert_eq!(auth.ports, Ports::List(vec![80, 443]));
    assert!(auth.increment.is_some());
    let admin = config.jail("admin").expect("admin");
    assert!(!admin.enabled);
    assert_eq!(admin.rules.prefix_v4, 24);
    assert_eq!(admin.bantime, BanTime::Permanent);
}

#[test]
fn the_reverse_proxy_example_is_valid_and_its_filters_take_their_options() {
    let text = include_str!("../../../examples/reverse-proxy/ban-agent.toml");
    let config = parse(text).expect("examples/reverse-proxy/ban-agent.toml is valid");
    let nginx = config.jail("login-nginx").expect("login-nginx");
    assert_eq!(nginx.ports, Ports::List(vec![80, 443]));
    let filter = &nginx.filter;
    assert!(!filter.is_model(), "nginx is a TOML filter");
    let line = "203.0.113.7 - - [24/Nov/2026:12:00:00 +0000] \"POST /api/login HTTP/1.1\" 401 3 \"-\" \"-\"";
    assert!(matches!(
        filter.check(line),
        crate::filter::Outcome::Failure { .. }
    ));
    assert!(!config.jail("login-uvicorn").expect("login-uvicorn").enabled);
}

#[test]
fn the_example_apps_configuration_says_what_its_readme_says() {
    let text = include_str!("../../../examples/fastapi-auth/ban-agent.toml");
    let config = parse(text).expect("examples/fastapi-auth/ban-agent.toml is valid");
    let auth = config.jail("fastapi-auth").expect("fastapi-auth");
    assert_eq!(auth.rules.maxretry, 5);
    assert_eq!(auth.rules.findtime, Duration::from_secs(600));
    assert_eq!(auth.bantime, BanTime::For(Duration::from_secs(3600)));
    assert_eq!(auth.ports, Ports::List(vec![8000]));
    let loopback: IpNet = "127.0.0.0/8".parse().expect("net");
    let ipv6_loopback: IpNet = "::1/128".parse().expect("net");
    assert_eq!(auth.ignoreip, [loopback, ipv6_loopback]);
}

#[test]
fn hooks_socket_and_log_level_are_read_and_checked() {
    let text = format!(
        "socket = \"ctl.sock\"\nlog_level = \"ban_agent=debug\"\n{MINIMAL}\
         [jail.auth.on_ban]\ncommand = [\"/bin/notify\", \"<ip>\"]\nwebhook = \"http://192.0.2.1/h\"\n\
         timeout = \"3s\"\n"
    );
    let config = parse(&text).expect("valid");
    assert_eq!(config.global.socket, Path::new("/etc/ban-agent/ctl.sock"));
    assert_eq!(config.global.log_level.as_deref(), Some("ban_agent=debug"));
    let hook = config.jails[0].on_ban.clone().expect("on_ban");
    assert_eq!(
        hook.command,
        Some(vec!["/bin/notify".into(), "<ip>".into()])
    );
    assert_eq!(hook.timeout, Duration::from_secs(3));
    assert_eq!(config.jails[0].on_unban, None);

    assert_error(
        &format!("{MINIMAL}[jail.auth.on_ban]\nwebhook = \"ftp://x\"\n"),
        6,
        "jail.auth.on_ban.webhook",
        "not an http(s) URL",
    );
    assert_error(
        &format!("{MINIMAL}[jail.auth.on_unban]\ncommand = []\n"),
        6,
        "jail.auth.on_unban.command",
        "empty",
    );
    assert_error(
        &format!("{MINIMAL}[jail.auth.on_ban]\ntimeout = \"3s\"\n"),
        5,
        "jail.auth.on_ban",
        "neither `command`, `webhook` nor `email`",
    );
    assert_error(
        &format!("log_level = \"ban_agent=loudest\"\n{MINIMAL}"),
        1,
        "log_level",
        "not a log level",
    );
}

#[test]
fn bans_per_minute_are_capped_by_default() {
    let config = Config::parse(Path::new("t.toml"), MINIMAL).expect("valid");
    let auth = config.jail("auth").expect("jail");
    assert_eq!(auth.rules.max_bans_per_minute, 1000);
}

// Whoever can write the configuration decides whom the agent bans. Without the trust check
// in `Config::load`, the group-and-world-writable file loads.
#[test]
fn a_configuration_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("ban-agent.toml");
    std::fs::write(&path, MINIMAL).expect("write");
    Config::load(&path).expect("a private configuration loads");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let message = Config::load(&path)
        .expect_err("writable by others")
        .to_string();
    assert!(
        message.contains("refusing") && message.contains("chmod go-w"),
        "{message}"
    );
}

#[test]
fn socket_group_is_a_group_name_or_id() {
    let group = |value: &str| {
        parse(&format!("socket_group = {value}\n{MINIMAL}")).map(|c| c.global.socket_group)
    };
    assert_eq!(group("\"root\"").expect("root's group"), Some(0));
    assert_eq!(group("4242").expect("an id"), Some(4242));
    assert_eq!(parse(MINIMAL).expect("valid").global.socket_group, None);
    let message = group("\"no-such-group-here\"")
        .expect_err("unknown")
        .to_string();
    assert!(
        message.contains("`socket_group`") && message.contains("getent group"),
        "{message}"
    );
}

/// Unknown keys get a near name or, for fail2ban's names, ours; fail2ban's dotted
/// `bantime.increment` says where it lives here.
#[test]
fn unknown_keys_say_what_was_meant() {
    let jail = "[jail.auth]\nlogpath = \"/var/log/app/auth.log\"\nfilter = \"fastapi-auth\"\n";
    let (_, _, _, message) = error(&format!("{jail}maxretyr = 3\n"));
    assert!(
        message.contains("unknown key `maxretyr`: did you mean `maxretry`?"),
        "{message}"
    );
    assert!(
        message.contains("? Keys allowed here: enabled, logpath"),
        "{message}"
    );
    let (_, _, _, message) = error(&format!("{jail}port = 8000\n"));
    assert!(
        message.contains("a fail2ban key: ban-agent's is `ports`"),
        "{message}"
    );
    let (_, _, _, message) = error(&format!("{jail}bantime.increment = true\n"));
    assert!(
        message.contains("[jail.NAME.bantime_increment]"),
        "{message}"
    );
}

/// `failregex` as fail2ban writes it, one string with a regex per line, or as a list.
#[test]
fn failregex_is_a_list_or_one_regex_per_line() {
    let text = "[jail.auth]\nlogpath = \"/var/log/app/auth.log\"\nfailregex = \"\"\"\n\
                ^<HOST> login failed$\n\n  ^<HOST> register failed$\n\"\"\"\n";
    let config = parse(text).expect("one regex per line is valid");
    let filter = &config.jail("auth").expect("auth").filter;
    assert!(
        !filter.is_model(),
        "inline regexes are ours, not fail2ban's"
    );
    assert_eq!(filter.len(), 2);
    for line in ["192.0.2.7 login failed", "192.0.2.8 register failed"] {
        assert!(
            matches!(filter.check(line), crate::filter::Outcome::Failure { .. }),
            "{line}"
        );
    }
    let listed = "[jail.auth]\nlogpath = \"/var/log/app/auth.log\"\n\
                  failregex = [\"^<HOST> login failed$\"]\n";
    assert_eq!(
        parse(listed)
            .expect("a list is valid")
            .jail("auth")
            .expect("auth")
            .filter
            .len(),
        1
    );
}

/// `on_ban.email`: recipients, sender, an SMTP server (STARTTLS by default) or sendmail,
/// checked with what was expected.
#[test]
fn email_hooks_are_read_and_checked() {
    let text = format!(
        "{MINIMAL}[jail.auth.on_ban.email]\nto = [\"ops@example.org\"]\n\
         from = \"ban-agent@example.org\"\nsmtp = \"mail.example.org\"\n\
         credentials_file = \"smtp.credentials\"\n"
    );
    let config = parse(&text).expect("valid");
    let hook = config
        .jail("auth")
        .expect("auth")
        .on_ban
        .clone()
        .expect("on_ban");
    let email = hook.email.expect("email");
    assert_eq!(email.to, ["ops@example.org"]);
    assert_eq!(email.log_lines, 20);
    assert_eq!(
        email.logpath,
        [std::path::PathBuf::from("/var/log/app/auth.log")]
    );
    match email.via {
        super::MailVia::Smtp {
            host,
            port,
            starttls,
            credentials_file,
        } => {
            assert_eq!(
                (host.as_str(), port, starttls),
                ("mail.example.org", 587, true)
            );
            assert!(credentials_file.is_some_and(|f| f.ends_with("smtp.credentials")));
        }
        other => panic!("{other:?}"),
    }
    let sendmail = format!(
        "{MINIMAL}[jail.auth.on_ban.email]\nto = [\"ops@example.org\"]\nfrom = \"a@example.org\"\n"
    );
    let hook = parse(&sendmail)
        .expect("valid")
        .jail("auth")
        .expect("auth")
        .on_ban
        .clone();
    assert_eq!(
        hook.and_then(|h| h.email).map(|e| e.via),
        Some(super::MailVia::Sendmail)
    );
    let (_, _, key, message) = error(&format!(
        "{MINIMAL}[jail.auth.on_ban.email]\nto = [\"ops\"]\nfrom = \"a@example.org\"\n"
    ));
    assert_eq!(key, "jail.auth.on_ban.email.to");
    assert!(message.contains("mail addresses"), "{message}");
}

/// A configuration, compiled filters included, can be shared between threads (the fuzz
/// targets keep one in a static).
#[test]
fn a_configuration_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<super::Config>();
}

#[test]
fn a_fleet_is_shared_by_every_jail_unless_one_says_no() {
    let text = r#"
[fleet]
url = "rediss://redis.internal:6380/2"
username = "ban-agent"
password_file = "redis.password"
name = "web-1"
key_file = "/etc/ban-agent/fleet.key"

[jail.auth]
logpath = "/var/log/app/auth.log"
filter = "fastapi-auth"

[jail.ssh]
logpath = "/var/log/auth.log"
filter = "fastapi-auth"
fleet = false
"#;
    let config = parse(text).expect("valid");
    let fleet = config.global.fleet.as_ref().expect("a fleet");
    assert_eq!(
        fleet.endpoint,
        Endpoint::Url("rediss://redis.internal:6380/2".to_owned())
    );
    assert_eq!(fleet.name, "web-1");
    assert_eq!(fleet.prefix, "ban-agent");
    assert_eq!(
        fleet.password_file.as_deref(),
        Some(Path::new("/etc/ban-agent/redis.password"))
    );
    assert_eq!(fleet.batch, Duration::ZERO);
    assert!(config.jail("auth").expect("auth").fleet);
    assert!(!config.jail("ssh").expect("ssh").fleet);
    let alone = parse(MINIMAL).expect("valid");
    assert!(alone.global.fleet.is_none() && !alone.jails[0].fleet);
}

#[test]
fn sentinels_are_read_from_their_url() {
    let text =
        "[fleet]\nurl = \"redis-sentinel://10.0.0.1:26379,10.0.0.2:26379/main/3\"\nname = \"a\"\n";
    let config = parse(&format!("{text}{MINIMAL}")).expect("valid");
    assert_eq!(
        config.global.fleet.expect("fleet").endpoint,
        Endpoint::Sentinel {
            nodes: vec![
                "redis://10.0.0.1:26379".to_owned(),
                "redis://10.0.0.2:26379".to_owned()
            ],
            service: "main".to_owned(),
            tls: false,
            db: 3,
        }
    );
}

#[test]
fn fleet_errors_name_the_key() {
    assert_error(
        "[fleet]\nurl = \"http://redis:6379\"\n",
        2,
        "fleet.url",
        "http:// is not an engine's scheme",
    );
    assert_error(
        "[fleet]\nurl = \"redis://r\"\nname = \"web 1\"\n",
        3,
        "fleet.name",
        "expected 1 to 64 letters",
    );
    assert_error(
        "[fleet]\nurl = \"redis://r\"\nbatch = \"5s\"\n",
        3,
        "fleet.batch",
        "longer than a second",
    );
    assert_error(
        "[fleet]\nurl = \"redis-sentinel://h:26379\"\n",
        2,
        "fleet.url",
        "names no primary",
    );
    assert_error(
        "[fleet]\nurl = \"redis://r\"\nhost = \"x\"\n",
        3,
        "fleet.host",
        "unknown",
    );
}

#[test]
fn log_format_and_stream_are_read_and_checked() {
    use crate::tail::container::{LogFormat, Streams};
    let config = parse(MINIMAL).expect("valid");
    assert_eq!(
        (config.jails[0].log_format, config.jails[0].stream),
        (LogFormat::Auto, Streams::Both)
    );
    let config = parse(&format!(
        "{MINIMAL}log_format = \"docker\"\nstream = \"stderr\"\n"
    ))
    .expect("valid");
    assert_eq!(
        (config.jails[0].log_format, config.jails[0].stream),
        (LogFormat::Docker, Streams::Stderr)
    );
    let config = parse(&format!("[defaults]\nlog_format = \"cri\"\n{MINIMAL}")).expect("valid");
    assert_eq!(config.jails[0].log_format, LogFormat::Cri);
    assert_error(
        &format!("{MINIMAL}log_format = \"json-file\"\n"),
        5,
        "jail.auth.log_format",
        "expected \"auto\"",
    );
    assert_error(
        &format!("{MINIMAL}stream = \"stdin\"\n"),
        5,
        "jail.auth.stream",
        "expected \"stdout\", \"stderr\" or \"both\"",
    );
    assert_error(
        &format!("{MINIMAL}log_format = \"plain\"\nstream = \"stdout\"\n"),
        6,
        "jail.auth.stream",
        "a plain log has no streams",
    );
    assert_error(
        "[jail.auth]\nbackend = \"systemd\"\nfilter = \"fastapi-auth\"\nstream = \"stdout\"\n",
        4,
        "jail.auth.stream",
        "a journal jail reads the journal",
    );
}

#[test]
fn docker_containers_are_picked_by_name_or_label_without_a_logpath() {
    let text = "docker_root = \"/srv/docker\"\n[jail.api]\nfilter = \"uvicorn\"\n\
                docker = [\"api\", \"/web\"]\ndocker_label = \"ban-agent.jail=api\"\n";
    let config = parse(text).expect("valid");
    let selector = config.jails[0].docker.clone().expect("a selector");
    assert_eq!(selector.root, Path::new("/srv/docker"));
    assert_eq!(selector.names, ["api", "web"]);
    assert_eq!(
        selector.labels,
        [("ban-agent.jail".to_owned(), Some("api".to_owned()))]
    );
    assert!(config.jails[0].logpath.is_empty());
    let config =
        parse("[jail.api]\nfilter = \"uvicorn\"\ndocker_label = \"tier\"\n").expect("valid");
    let selector = config.jails[0].docker.clone().expect("a selector");
    assert_eq!(selector.root, Path::new("/var/lib/docker"));
    assert_eq!(selector.labels, [("tier".to_owned(), None)]);
    assert_error(
        "[jail.api]\nfilter = \"uvicorn\"\ndocker = [\"my api\"]\n",
        3,
        "jail.api.docker",
        "expected a container's name",
    );
    assert_error(
        "[jail.api]\nbackend = \"systemd\"\nfilter = \"uvicorn\"\ndocker = \"api\"\n",
        4,
        "jail.api.docker",
        "a journal jail reads the journal",
    );
}

/// What `import-fail2ban` writes for a jail with a firewall and a mail action is a
/// configuration this reader takes, the mail's addresses carried.
#[test]
fn an_imported_jails_mail_action_is_read_as_its_email() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("filter.d")).expect("mkdir");
    std::fs::write(
        dir.path().join("filter.d/auth.conf"),
        "[Definition]\nfailregex = ^<HOST> failed$\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("jail.conf"),
        "[auth]\nenabled = true\nfilter = auth\nlogpath = /var/log/a.log\nport = 8000\n\
         action = iptables-multiport[port=8000]\n  sendmail-whois[dest=admin@example.com]\n",
    )
    .expect("write");
    let imported = crate::fail2ban::jails::import(dir.path(), &|_| None, "web1").expect("imports");
    let text = imported.to_toml(dir.path());
    let path = dir.path().join("ban-agent.toml");
    let config = Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let email = config
        .jail("auth")
        .and_then(|jail| jail.on_ban.as_ref())
        .and_then(|hook| hook.email.as_ref())
        .expect("the mail action's email");
    assert_eq!(email.to, ["admin@example.com"]);
    assert_eq!(email.from, "fail2ban@web1");
    assert_eq!(email.log_lines, 0);
}

#[test]
fn crowdsec_gets_a_jail_of_its_own_that_reads_no_log() {
    let config = parse(&format!(
        "{MINIMAL}\n[defaults]\nports = [8000]\nmax_bans_per_minute = 10\n\
         ignoreip = [\"192.0.2.7\"]\n\
         [crowdsec]\napi_key_file = \"crowdsec.key\"\norigins = [\"cscli\", \"CAPI\"]\n"
    ))
    .expect("valid");
    let crowdsec = config.global.crowdsec.as_ref().expect("[crowdsec]");
    assert_eq!(crowdsec.url, "http://127.0.0.1:8080/");
    assert_eq!(
        crowdsec.api_key_file,
        Path::new("/etc/ban-agent/crowdsec.key")
    );
    assert_eq!(crowdsec.interval, Duration::from_secs(1));
    assert_eq!(crowdsec.scopes, [Scope::Ip, Scope::Range]);
    assert_eq!(crowdsec.origins, ["cscli", "CAPI"]);
    let names: Vec<&str> = config.jails.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["auth", "crowdsec"]);
    let jail = config.jail("crowdsec").expect("the CrowdSec jail");
    assert!(jail.crowdsec && jail.enabled && jail.logpath.is_empty());
    // Every port and protocol and no cap, as CrowdSec's firewall bouncer bans, whatever
    // [defaults] says for the log jails; ignoreip is inherited.
    assert_eq!(jail.ports, Ports::All);
    assert_eq!(jail.protocol, crate::datapath::Protocol::All);
    assert_eq!(jail.rules.max_bans_per_minute, 0);
    assert_eq!(
        jail.ignoreip,
        ["192.0.2.7/32".parse::<IpNet>().expect("net")]
    );
    assert!(config.missing_logs().iter().all(|m| m.jail == "auth"));

    // Its own table sets what a ban does, not what a log would.
    let own = parse(&format!(
        "{MINIMAL}\n[crowdsec]\napi_key_file = \"k\"\njail = \"cs\"\ninterval = \"250ms\"\n\
         [jail.cs]\nports = [443]\nmax_bans_per_minute = 100\n"
    ))
    .expect("valid");
    let jail = own.jail("cs").expect("the CrowdSec jail");
    assert_eq!(jail.ports, Ports::List(vec![443]));
    assert_eq!(jail.rules.max_bans_per_minute, 100);
    assert_eq!(
        own.global.crowdsec.as_ref().map(|c| c.interval),
        Some(Duration::from_millis(250))
    );
}

#[test]
fn crowdsec_errors_say_what_to_write() {
    assert_error(
        &format!("{MINIMAL}\n[crowdsec]\nurl = \"127.0.0.1:8080\"\n"),
        7,
        "crowdsec.url",
        "not an http:// or https:// URL",
    );
    assert_error(
        &format!("{MINIMAL}\n[crowdsec]\nurl = \"http://127.0.0.1:8080\"\n"),
        6,
        "crowdsec.api_key_file",
        "cscli bouncers add",
    );
    assert_error(
        &format!("{MINIMAL}\n[crowdsec]\napi_key_file = \"k\"\nscopes = [\"country\"]\n"),
        8,
        "crowdsec.scopes",
        "\"ip\" and/or \"range\"",
    );
    assert_error(
        &format!("{MINIMAL}\n[crowdsec]\napi_key_file = \"k\"\ninterval = \"10ms\"\n"),
        8,
        "crowdsec.interval",
        "100ms to 1h",
    );
    assert_error(
        &format!(
            "{MINIMAL}\n[crowdsec]\napi_key_file = \"k\"\n[jail.crowdsec]\n\
             logpath = \"/var/log/x.log\"\n"
        ),
        9,
        "jail.crowdsec.logpath",
        "reads no log",
    );
}
