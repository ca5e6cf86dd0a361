//! Command line in Go `flag` syntax, so scripts that start `nats-server`
//! work unchanged: `-flag`, `--flag`, `-flag=value`, `-flag value`; boolean
//! flags take no separate value (`-js`, `-js=false`).

use std::path::PathBuf;

use crate::options::{Options, Port};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Run,
    Version,
    Help,
    HelpTls,
    TestConfig,
    /// `--signal cmd[=pid|pidfile]`
    Signal {
        command: String,
        target: Option<String>,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CliError {
    #[error("flag provided but not defined: -{0}")]
    Unknown(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("invalid value {value:?} for flag -{flag}: {why}")]
    BadValue {
        flag: String,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// What the command line asked for. `set` names the options given on the
/// command line, so they can override the configuration file.
#[derive(Debug, Clone)]
pub struct Cli {
    pub action: Action,
    pub opts: Options,
    pub set: Vec<&'static str>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Value,
}

/// Every flag nats-server 2.9/2.10 defines, mapped to a canonical name.
const FLAGS: &[(&str, &str, Kind)] = &[
    ("a", "addr", Kind::Value),
    ("addr", "addr", Kind::Value),
    ("net", "addr", Kind::Value),
    ("p", "port", Kind::Value),
    ("port", "port", Kind::Value),
    ("n", "name", Kind::Value),
    ("name", "name", Kind::Value),
    ("server_name", "name", Kind::Value),
    ("P", "pid", Kind::Value),
    ("pid", "pid", Kind::Value),
    ("m", "http_port", Kind::Value),
    ("http_port", "http_port", Kind::Value),
    ("ms", "https_port", Kind::Value),
    ("https_port", "https_port", Kind::Value),
    ("c", "config", Kind::Value),
    ("config", "config", Kind::Value),
    ("t", "test", Kind::Bool),
    ("sl", "signal", Kind::Value),
    ("signal", "signal", Kind::Value),
    ("client_advertise", "client_advertise", Kind::Value),
    ("ports_file_dir", "ports_file_dir", Kind::Value),
    ("l", "log", Kind::Value),
    ("log", "log", Kind::Value),
    ("T", "logtime", Kind::Bool),
    ("logtime", "logtime", Kind::Bool),
    ("s", "syslog", Kind::Bool),
    ("syslog", "syslog", Kind::Bool),
    ("r", "remote_syslog", Kind::Value),
    ("remote_syslog", "remote_syslog", Kind::Value),
    ("D", "debug", Kind::Bool),
    ("debug", "debug", Kind::Bool),
    ("V", "trace", Kind::Bool),
    ("trace", "trace", Kind::Bool),
    ("VV", "trace_verbose", Kind::Bool),
    ("DV", "debug_trace", Kind::Bool),
    ("DVV", "debug_trace", Kind::Bool),
    ("log_size_limit", "log_size_limit", Kind::Value),
    ("max_traced_msg_len", "max_traced_msg_len", Kind::Value),
    ("js", "jetstream", Kind::Bool),
    ("jetstream", "jetstream", Kind::Bool),
    ("sd", "store_dir", Kind::Value),
    ("store_dir", "store_dir", Kind::Value),
    ("user", "user", Kind::Value),
    ("pass", "pass", Kind::Value),
    ("auth", "auth", Kind::Value),
    ("tls", "tls", Kind::Bool),
    ("tlscert", "tlscert", Kind::Value),
    ("tlskey", "tlskey", Kind::Value),
    ("tlsverify", "tlsverify", Kind::Bool),
    ("tlscacert", "tlscacert", Kind::Value),
    ("routes", "routes", Kind::Value),
    ("cluster", "cluster", Kind::Value),
    ("cluster_name", "cluster_name", Kind::Value),
    ("no_advertise", "no_advertise", Kind::Bool),
    ("cluster_advertise", "cluster_advertise", Kind::Value),
    ("connect_retries", "connect_retries", Kind::Value),
    ("cluster_listen", "cluster_listen", Kind::Value),
    ("profile", "profile", Kind::Value),
    ("h", "help", Kind::Bool),
    ("help", "help", Kind::Bool),
    ("help_tls", "help_tls", Kind::Bool),
    ("v", "version", Kind::Bool),
    ("version", "version", Kind::Bool),
    ("shards", "shards", Kind::Value),
    ("shard_fill", "shard_fill", Kind::Value),
];

fn lookup(name: &str) -> Option<(&'static str, Kind)> {
    FLAGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, canon, kind)| (*canon, *kind))
}

fn parse_bool(flag: &str, v: &str) -> Result<bool, CliError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(bad(flag, v, "parse error")),
    }
}

fn bad(flag: &str, value: &str, why: &str) -> CliError {
    CliError::BadValue {
        flag: flag.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

fn parse_port(flag: &str, v: &str) -> Result<Port, CliError> {
    match v.trim().parse::<i64>() {
        Ok(-1) => Ok(Port::Random),
        Ok(p) if (0..=65535).contains(&p) => Ok(Port::Fixed(p as u16)),
        _ => Err(bad(flag, v, "parse error")),
    }
}

/// Parses `args` (without the program name).
pub fn parse<I, S>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let args: Vec<String> = args.into_iter().map(Into::into).collect();
    let mut cli = Cli {
        action: Action::Run,
        opts: Options::default(),
        set: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(stripped) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|s| !s.is_empty())
        else {
            // Go's flag package stops at the first non-flag argument.
            break;
        };
        let (name, inline) = match stripped.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (stripped, None),
        };
        let (canon, kind) = lookup(name).ok_or_else(|| CliError::Unknown(name.to_string()))?;
        let value = match kind {
            Kind::Bool => match inline {
                Some(v) => parse_bool(name, &v)?.to_string(),
                None => "true".to_string(),
            },
            Kind::Value => match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| CliError::MissingValue(name.to_string()))?;
                    i += 1;
                    v.clone()
                }
            },
        };
        apply(&mut cli, name, canon, &value)?;
    }
    Ok(cli)
}

fn apply(cli: &mut Cli, flag: &str, canon: &'static str, v: &str) -> Result<(), CliError> {
    let o = &mut cli.opts;
    let on = v == "true";
    match canon {
        "addr" => o.host = v.to_string(),
        "port" => o.port = parse_port(flag, v)?,
        "name" => o.server_name = Some(v.to_string()),
        "pid" => o.pid_file = Some(PathBuf::from(v)),
        "http_port" => o.http_port = Some(parse_port(flag, v)?),
        "config" => o.config_file = Some(PathBuf::from(v)),
        "test" => {
            if on {
                cli.action = Action::TestConfig
            }
        }
        "signal" => {
            let (command, target) = match v.split_once('=') {
                Some((c, t)) => (c.to_string(), Some(t.to_string())),
                None => (v.to_string(), None),
            };
            cli.action = Action::Signal { command, target };
        }
        "ports_file_dir" => o.ports_file_dir = Some(PathBuf::from(v)),
        "log" => o.log_file = Some(PathBuf::from(v)),
        "logtime" => o.logtime = on,
        "debug" => o.debug = on,
        "trace" | "trace_verbose" => o.trace = on,
        "debug_trace" => {
            o.debug = on;
            o.trace = on;
        }
        "jetstream" => o.jetstream = on,
        "store_dir" => o.store_dir = Some(PathBuf::from(v)),
        "user" => o.username = Some(v.to_string()),
        "pass" => o.password = Some(v.into()),
        "auth" => o.auth_token = Some(v.into()),
        "help" => {
            if on {
                cli.action = Action::Help
            }
        }
        "help_tls" => {
            if on {
                cli.action = Action::HelpTls
            }
        }
        "version" => {
            if on {
                cli.action = Action::Version
            }
        }
        "shards" => match v.parse::<usize>() {
            Ok(n) if n >= 1 => o.shards = Some(n),
            _ => return Err(bad(flag, v, "expected a positive number of shards")),
        },
        "shard_fill" => match v.parse::<usize>() {
            Ok(n) if n >= 1 => o.shard_fill = n,
            _ => return Err(bad(flag, v, "expected a positive number of clients")),
        },
        // Accepted for compatibility: without routes it changes nothing.
        "client_advertise" => {}
        "log_size_limit" | "max_traced_msg_len" => {
            return Err(CliError::Unsupported(format!(
                "-{flag}: not supported by this build of Broker Edge"
            )));
        }
        "syslog" | "remote_syslog" => {
            if canon == "remote_syslog" || on {
                return Err(CliError::Unsupported(format!(
                    "-{flag}: syslog output is not supported by Broker Edge; use -l FILE or journald"
                )));
            }
        }
        "tls" => {
            if on {
                o.tls.get_or_insert_with(Default::default);
            }
        }
        "tlscert" => o.tls.get_or_insert_with(Default::default).cert_file = Some(PathBuf::from(v)),
        "tlskey" => o.tls.get_or_insert_with(Default::default).key_file = Some(PathBuf::from(v)),
        "tlscacert" => o.tls.get_or_insert_with(Default::default).ca_file = Some(PathBuf::from(v)),
        "tlsverify" => {
            if on {
                o.tls.get_or_insert_with(Default::default).verify = true;
            }
        }
        "https_port" => {
            return Err(CliError::Unsupported(format!(
                "-{flag}: HTTPS monitoring is not available in this build of Broker Edge yet"
            )));
        }
        "routes" | "cluster" | "cluster_name" | "no_advertise" | "cluster_advertise"
        | "connect_retries" | "cluster_listen" => {
            return Err(CliError::Unsupported(format!(
                "-{flag}: clustering is not available in this build of Broker Edge yet"
            )));
        }
        "profile" => {
            return Err(CliError::Unsupported(format!(
                "-{flag}: the Go profiler endpoint does not exist in Broker Edge"
            )));
        }
        _ => return Err(CliError::Unknown(flag.to_string())),
    }
    if !cli.set.contains(&canon) {
        cli.set.push(canon);
    }
    Ok(())
}

pub const USAGE: &str = "\
Usage: broker-edge [options]

Server Options:
    -a, --addr, --net <host>         Bind to host address (default: 0.0.0.0)
    -p, --port <port>                Use port for clients (default: 4222, -1 random)
    -n, --name, --server_name <name> Server name (default: auto)
    -P, --pid <file>                 File to store PID
    -m, --http_port <port>           Use port for http monitoring
    -c, --config <file>              Configuration file
    -t                               Test configuration and exit
    -sl,--signal <signal>[=<pid>]    Send signal to a broker-edge process (ldm, stop, quit, term, reload)
                                     <pid> can be a PID or the path to a PID file
        --ports_file_dir <dir>       Creates a ports file in the directory (<executable_name>_<pid>.ports)
        --shards <n>                 Number of shards (executors; default: one per CPU)
        --shard_fill <n>             Clients a shard takes before the next is used (default: 16)

Logging Options:
    -l, --log <file>                 File to redirect log output
    -T, --logtime                    Timestamp log entries (default: true)
    -D, --debug                      Enable debugging output
    -V, --trace                      Trace the raw protocol
    -DV                              Debug and trace

JetStream Options:
    -js, --jetstream                 Enable JetStream functionality
    -sd, --store_dir <dir>           Set the storage directory

Authorization Options:
        --user <user>                User required for connections
        --pass <password>            Password required for connections
        --auth <token>               Authorization token required for connections

TLS Options:
        --tls                        Enable TLS, do not verify clients (default: false)
        --tlscert <file>             Server certificate file
        --tlskey <file>              Private key for server certificate
        --tlsverify                  Enable TLS, verify client certificates
        --tlscacert <file>           Client certificate CA for verification

Cluster Options: accepted by nats-server, not yet available here.

Common Options:
    -h, --help                       Show this message
    -v, --version                    Show version
";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Cli {
        parse(args.iter().copied()).expect("parses")
    }

    #[test]
    fn go_flag_forms() {
        for form in [
            &["-p", "1234"][..],
            &["--port", "1234"],
            &["-port=1234"],
            &["--port=1234"],
            &["-p=1234"],
        ] {
            assert_eq!(p(form).opts.port, Port::Fixed(1234), "{form:?}");
        }
        assert_eq!(p(&["-p", "-1"]).opts.port, Port::Random);
        let c = p(&["-a=127.0.0.1", "-js", "-sd=/x", "-DV", "--shards", "3"]);
        assert_eq!(c.opts.host, "127.0.0.1");
        assert!(c.opts.jetstream && c.opts.debug && c.opts.trace);
        assert_eq!(c.opts.store_dir, Some(PathBuf::from("/x")));
        assert_eq!(c.opts.shards, Some(3));
        assert!(c.set.contains(&"port") || !c.set.contains(&"port"));
        assert!(!p(&["-js=false"]).opts.jetstream);
    }

    #[test]
    fn actions() {
        assert_eq!(p(&["-v"]).action, Action::Version);
        assert_eq!(p(&["--help"]).action, Action::Help);
        assert_eq!(
            p(&["--signal", "ldm=123"]).action,
            Action::Signal {
                command: "ldm".into(),
                target: Some("123".into())
            }
        );
        assert_eq!(p(&["-t", "-c", "x.conf"]).action, Action::TestConfig);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(["-bogus"]).unwrap_err(),
            CliError::Unknown("bogus".into())
        );
        assert_eq!(
            parse(["-p"]).unwrap_err(),
            CliError::MissingValue("p".into())
        );
        assert!(matches!(
            parse(["-p", "abc"]).unwrap_err(),
            CliError::BadValue { .. }
        ));
        assert!(matches!(
            parse(["--https_port", "1"]).unwrap_err(),
            CliError::Unsupported(_)
        ));
        let c = parse(["--tlscert", "c.pem", "--tlskey=k.pem", "--tlsverify"]).unwrap();
        let t = c.opts.tls.expect("tls options");
        assert!(t.verify);
        assert_eq!(t.cert_file, Some(PathBuf::from("c.pem")));
    }
}
