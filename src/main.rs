use std::process::ExitCode;

use broker_edge::cli::{self, Action};
use broker_edge::global::ReloadBase;
use broker_edge::protocol::info::{NATS_VERSION, PRODUCT_VERSION};
use broker_edge::{config, logging, server, signal};

fn main() -> ExitCode {
    let parsed = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    match parsed.action {
        Action::Version => {
            println!("broker-edge: v{PRODUCT_VERSION} (NATS {NATS_VERSION})");
            return ExitCode::SUCCESS;
        }
        Action::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Action::HelpTls => {
            println!("TLS is not available in this build of Broker Edge yet.");
            return ExitCode::SUCCESS;
        }
        Action::Signal { command, target } => {
            return match signal::send(&command, target.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            };
        }
        Action::TestConfig | Action::Run => {}
    }
    let mut opts = parsed.opts.clone();
    let reload_base = opts.config_file.is_some().then(|| ReloadBase {
        cli: parsed.opts.clone(),
        set: parsed.set.clone(),
    });
    match opts.config_file.clone() {
        Some(path) => {
            match config::options::apply_file(&path, &mut opts, &parsed.set) {
                Err(errs) => {
                    let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                    eprintln!("broker-edge: {}", text.join("\n"));
                    return ExitCode::from(1);
                }
                // As the reference: warnings let the server start but fail -t.
                Ok(warnings) if !warnings.is_empty() => {
                    let text: Vec<String> = warnings.iter().map(|e| e.to_string()).collect();
                    eprintln!("broker-edge: {}", text.join("\n"));
                    if parsed.action == Action::TestConfig {
                        return ExitCode::from(1);
                    }
                }
                Ok(_) => {}
            }
            // TLS flags override the file's tls block, as in the reference.
            if parsed.opts.tls.is_some() {
                opts.tls = parsed.opts.tls.clone();
            }
            if parsed.action == Action::TestConfig {
                eprintln!(
                    "broker-edge: configuration file {} is valid",
                    path.display()
                );
                return ExitCode::SUCCESS;
            }
        }
        None if parsed.action == Action::TestConfig => {
            eprintln!(
                "broker-edge: must specify [-c, --config] option to check configuration file(s)"
            );
            return ExitCode::from(1);
        }
        None => {}
    }
    if let Err(e) = logging::init(
        opts.log_file.as_deref(),
        opts.debug,
        opts.trace,
        opts.logtime,
    ) {
        eprintln!("could not open log file: {e}");
        return ExitCode::from(1);
    }
    broker_edge::crash::install_hook();
    match server::run(opts, reload_base) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "fatal", "{e}");
            ExitCode::from(1)
        }
    }
}
