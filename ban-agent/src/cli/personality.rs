//! The binary under fail2ban's names. Run as `fail2ban-client` or `fail2ban-regex` (a
//! symlink the operator makes: the package does not take over fail2ban's names), it takes
//! those tools' command lines, so that scripts, cron jobs and exporters written for
//! fail2ban keep working: fail2ban-client's options and commands go to the daemon and are
//! answered in fail2ban-client's shapes; fail2ban-regex's `LOG FILTER [IGNOREREGEX]` and
//! options go to `test-filter`.

use std::{ffi::OsString, path::PathBuf};

use anyhow::bail;
use clap::Parser as _;

use super::{Cli, Command, verbs};

/// Which tool the binary is run as, from the name it was run by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Personality {
    BanAgent,
    Fail2banClient,
    Fail2banRegex,
}

impl Personality {
    pub fn of(program: Option<&OsString>) -> Self {
        let name = program
            .map(PathBuf::from)
            .and_then(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
            .unwrap_or_default();
        match name.as_str() {
            "fail2ban-client" => Self::Fail2banClient,
            "fail2ban-regex" => Self::Fail2banRegex,
            _ => Self::BanAgent,
        }
    }

    /// The name errors are reported under.
    pub fn name(self) -> &'static str {
        match self {
            Self::BanAgent => "ban-agent",
            Self::Fail2banClient => "fail2ban-client",
            Self::Fail2banRegex => "fail2ban-regex",
        }
    }
}

const CLIENT_USAGE: &str = "\
Usage: fail2ban-client [OPTIONS] <COMMAND>   (ban-agent, run under fail2ban-client's name)

Options:
  -s <SOCKET>        the daemon's control socket (ban-agent's, not fail2ban's)
  -c <FILE>          ban-agent's configuration file, for -t
  -t, --test         check the configuration, as `ban-agent check`
  -V, --version      print the version
  -h, --help         print this help
  -v, -q, -x, -f, -b, -p <FILE>, --timeout <T>, --loglevel <L>, --logtarget <T>, --async
                     accepted and left aside

Commands (as fail2ban-client's, answered in its shapes):
  status [JAIL]                      ping                      version
  reload [--unban] [JAIL]            stop                      echo ARGS...
  unban --all | unban IP...          banned [IP...]
  set JAIL banip IP...               set JAIL unbanip [--report-absent] IP...
  set JAIL addignoreip|delignoreip IP
  set JAIL bantime|findtime|maxretry VALUE
  get JAIL banip [--with-time|SEP]
  get JAIL bantime|findtime|maxretry|maxlines|ignoreip|logpath|actions

ban-agent's daemon is started by its service (`systemctl start ban-agent`) or by
`ban-agent run`, not by `fail2ban-client start`. See `man ban-agent`.";

const REGEX_USAGE: &str = "\
Usage: fail2ban-regex [OPTIONS] <LOG> <FILTER> [<IGNOREREGEX>]
       (ban-agent test-filter, run under fail2ban-regex's name)

LOG is a file or `-`; FILTER a filter file or name (a fail2ban .conf, NAME in
--config's filter.d, a ban-agent filter) or a failregex with <HOST>.

Options:
  -c, --config <DIR>     fail2ban's configuration folder, for a FILTER given by name
  --print-all-missed     print the lines no failregex matched
  --no-check-all         let the first failregex that matches decide
  -r, --raw, -v, --verbose, -l <LEVEL>, --print-no-missed, --print-no-ignored,
  -e utf-8               accepted and left aside (no name is ever resolved)
  -V, --version, -h, --help

See `ban-agent test-filter --help` for the report, and its options beyond these.";

/// fail2ban-client's options, and the command after them.
#[derive(Debug, Default)]
struct ClientLine {
    socket: Option<String>,
    config: Option<String>,
    test: bool,
    words: Vec<String>,
}

/// What fail2ban-client's command line asks; `None` when it was answered already
/// (`-h`, `-V`).
fn client_line(args: &[OsString]) -> anyhow::Result<Option<ClientLine>> {
    let mut line = ClientLine::default();
    let mut args = Args::new(args);
    // Options come before the command; everything after its first word is the command's.
    while let Some(token) = args.next(!line.words.is_empty()) {
        let (flag, inline) = match token {
            Token::Word(word) => {
                line.words.push(word);
                continue;
            }
            Token::Flag(flag, inline) => (flag, inline),
        };
        let mut value = |name: &str| args.value(name, inline.clone());
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{CLIENT_USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-t" | "--test" => line.test = true,
            "-s" | "--socket" => line.socket = Some(value(&flag)?),
            "-c" | "--conf" => line.config = Some(value(&flag)?),
            "-p" | "--pidfile" | "--pname" | "--loglevel" | "--logtarget" | "--syslogsocket"
            | "--timeout" => drop(value(&flag)?),
            "-v" | "-q" | "-x" | "-f" | "-b" | "--async" => {}
            "-d" | "--dp" | "--dump-pretty" => bail!(
                "{flag}: ban-agent has no fail2ban configuration to dump; `ban-agent check` \
                 checks its own and says what it runs"
            ),
            "-i" => bail!("-i: there is no interactive mode; run one command a call"),
            _ => bail!("unknown option {flag}; `fail2ban-client -h` lists those understood"),
        }
    }
    Ok(Some(line))
}

/// A command line read as getopt reads it: words, and options with their values
/// (`-s VALUE`, `--socket VALUE`, `--socket=VALUE`).
struct Args {
    args: std::vec::IntoIter<String>,
}

enum Token {
    Word(String),
    /// An option, with the value written after its `=`.
    Flag(String, Option<String>),
}

impl Args {
    fn new(args: &[OsString]) -> Self {
        let args: Vec<String> = args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        Self {
            args: args.into_iter(),
        }
    }

    /// The next argument; with `words_only`, as a word even if it starts with `-`.
    fn next(&mut self, words_only: bool) -> Option<Token> {
        let arg = self.args.next()?;
        if words_only || !arg.starts_with('-') || arg == "-" {
            return Some(Token::Word(arg));
        }
        Some(match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                Token::Flag(flag.to_owned(), Some(value.to_owned()))
            }
            _ => Token::Flag(arg, None),
        })
    }

    /// The value of option `name`: the one after its `=`, else the next argument.
    fn value(&mut self, name: &str, inline: Option<String>) -> anyhow::Result<String> {
        match inline.or_else(|| self.args.next()) {
            Some(value) => Ok(value),
            None => bail!("{name} needs a value"),
        }
    }
}

/// `fail2ban-client ARGS...`.
pub fn fail2ban_client(args: &[OsString]) -> anyhow::Result<()> {
    let Some(ClientLine {
        socket,
        config,
        test,
        mut words,
    }) = client_line(args)?
    else {
        return Ok(());
    };
    if test {
        let path = config.map_or_else(|| PathBuf::from(crate::config::DEFAULT_PATH), PathBuf::from);
        if path.is_dir() {
            bail!(
                "-c {}: a folder; ban-agent reads one configuration file (`-c \
                 /etc/ban-agent/ban-agent.toml`), not fail2ban's folder",
                path.display()
            );
        }
        super::check(&path, true)?;
        println!("OK: configuration test is successful");
        if words.is_empty() {
            return Ok(());
        }
    }
    let Some(first) = words.first().cloned() else {
        println!("{CLIENT_USAGE}");
        return Ok(());
    };
    match first.as_str() {
        "start" | "restart" => bail!(
            "`{first}`: ban-agent's daemon is started by its service (`systemctl {first} \
             ban-agent`) or by `ban-agent run --config FILE`"
        ),
        "stop" if words.len() > 1 => bail!(
            "`stop {}`: a jail is stopped by disabling it in the configuration and \
             `reload`ing",
            words[1]
        ),
        "echo" => {
            println!("{}", words[1..].join(" "));
            return Ok(());
        }
        "help" => {
            println!("{CLIENT_USAGE}");
            return Ok(());
        }
        "ping" => words.truncate(1),
        "status" | "reload" | "unban" | "banned" | "set" | "get" | "version" | "stop" => {}
        other => bail!("Invalid command {other:?}; `fail2ban-client -h` lists the commands"),
    }
    let mut argv: Vec<String> = vec!["fail2ban-client".into()];
    argv.extend(words);
    let cli = Cli::try_parse_from(argv)?;
    let Some(Command::Verb(verb)) = cli.command else {
        bail!("Invalid command; `fail2ban-client -h` lists the commands");
    };
    verbs::run(verb, socket.map(PathBuf::from), verbs::Style::Fail2ban)
}

/// `fail2ban-regex ARGS...`: `ban-agent test-filter` with fail2ban-regex's options.
pub fn fail2ban_regex(args: &[OsString]) -> anyhow::Result<()> {
    let mut argv: Vec<String> = vec!["fail2ban-regex".into(), "test-filter".into()];
    let mut positional = Vec::new();
    let mut args = Args::new(args);
    while let Some(token) = args.next(false) {
        let (flag, inline) = match token {
            Token::Word(word) => {
                positional.push(word);
                continue;
            }
            Token::Flag(flag, inline) => (flag, inline),
        };
        let mut value = |name: &str| args.value(name, inline.clone());
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{REGEX_USAGE}");
                return Ok(());
            }
            "-V" | "--version" => {
                println!("{}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "-c" | "--config" => {
                argv.push("--fail2ban-dir".into());
                argv.push(value(&flag)?);
            }
            "--print-all-missed" => argv.push("--print-missed".into()),
            "--no-check-all" => argv.push("--no-check-all".into()),
            "-r"
            | "--raw"
            | "-v"
            | "--verbose"
            | "--print-no-missed"
            | "--print-no-ignored"
            | "--print-all-matched"
            | "--print-all-ignored"
            | "-D"
            | "--debuggex" => {}
            "-l" | "--log-level" | "--verbosity" => drop(value(&flag)?),
            "-e" | "--encoding" => {
                let encoding = value(&flag)?;
                if !encoding.eq_ignore_ascii_case("utf-8") && !encoding.eq_ignore_ascii_case("utf8")
                {
                    bail!("{flag} {encoding}: logs are read as UTF-8 (invalid bytes replaced)");
                }
            }
            _ => bail!(
                "{flag} is not among the fail2ban-regex options ban-agent takes; `ban-agent \
                 test-filter --help` lists its own (e.g. --timezone, --json)"
            ),
        }
    }
    match positional.as_slice() {
        [_, _] | [_, _, _] => argv.extend(positional),
        _ => bail!("expected LOG FILTER [IGNOREREGEX]; `fail2ban-regex -h` says more"),
    }
    let cli = Cli::try_parse_from(argv)?;
    let Some(Command::TestFilter(args)) = cli.command else {
        bail!("expected LOG FILTER [IGNOREREGEX]");
    };
    super::init_logging(None);
    super::test_filter::run(&args.resolved()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_run_by_picks_the_tool() {
        let of = |name: &str| Personality::of(Some(&OsString::from(name)));
        assert_eq!(
            of("/usr/local/bin/fail2ban-client"),
            Personality::Fail2banClient
        );
        assert_eq!(of("fail2ban-regex"), Personality::Fail2banRegex);
        assert_eq!(of("/usr/sbin/ban-agent"), Personality::BanAgent);
        assert_eq!(of("fail2ban-server"), Personality::BanAgent);
        assert_eq!(Personality::of(None), Personality::BanAgent);
    }

    #[test]
    fn fail2ban_clients_commands_parse_as_our_verbs() {
        let parse = |words: &[&str]| {
            let mut argv = vec!["fail2ban-client"];
            argv.extend(words);
            match Cli::try_parse_from(argv) {
                Ok(Cli {
                    command: Some(Command::Verb(verb)),
                    ..
                }) => format!("{verb:?}"),
                other => format!("not a verb: {other:?}"),
            }
        };
        for words in [
            &["status"][..],
            &["status", "auth"],
            &["status", "auth", "basic"],
            &["set", "auth", "banip", "192.0.2.7", "198.51.100.9"],
            &["set", "auth", "unbanip", "--report-absent", "192.0.2.7"],
            &["set", "auth", "bantime", "600"],
            &["set", "auth", "addignoreip", "192.0.2.0/24"],
            &["get", "auth", "banip", "--with-time"],
            &["get", "auth", "banip", ","],
            &["get", "auth", "maxlines"],
            &["get", "auth", "actions"],
            &["unban", "--all"],
            &["unban", "192.0.2.7", "198.51.100.9"],
            &["banned"],
            &["banned", "192.0.2.7"],
            &["reload", "--restart", "--unban", "--if-exists", "auth"],
            &["stop"],
            &["version"],
        ] {
            let parsed = parse(words);
            assert!(!parsed.starts_with("not a verb"), "{words:?}: {parsed}");
        }
        assert!(parse(&["status", "auth", "cymru"]).starts_with("not a verb"));
        assert!(parse(&["set", "auth", "bogus", "1"]).starts_with("not a verb"));
    }

    #[test]
    fn fail2ban_clients_options_are_taken_or_refused_with_a_reason() {
        let run = |words: &[&str]| {
            let args: Vec<OsString> = words.iter().map(OsString::from).collect();
            fail2ban_client(&args).map_err(|e| e.to_string())
        };
        assert!(run(&["-d"]).is_err_and(|e| e.contains("ban-agent check")));
        assert!(run(&["start"]).is_err_and(|e| e.contains("ban-agent run")));
        assert!(run(&["--bogus"]).is_err_and(|e| e.contains("unknown option")));
        assert!(run(&["frobnicate"]).is_err_and(|e| e.contains("Invalid command")));
        assert!(run(&["-s"]).is_err_and(|e| e.contains("needs a value")));
        // No daemon listens there: the command was understood and sent.
        let missing = "/nonexistent/ban-agent-test.sock";
        assert!(run(&["-s", missing, "status"]).is_err_and(|e| e.contains("not running")));
        assert!(
            run(&["--socket=/nonexistent/x.sock", "ping", "1"])
                .is_err_and(|e| e.contains("not running"))
        );
    }
}
