use std::process::ExitCode;

use broker_edge::cli::{self, Action};
use broker_edge::protocol::info::{NATS_VERSION, PRODUCT_VERSION};
use broker_edge::{logging, server, signal};

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
        Action::TestConfig => {
            eprintln!("configuration files are not supported by this build yet");
            return ExitCode::from(1);
        }
        Action::Run => {}
    }
    let opts = parsed.opts;
    if let Err(e) = logging::init(
        opts.log_file.as_deref(),
        opts.debug,
        opts.trace,
        opts.logtime,
    ) {
        eprintln!("could not open log file: {e}");
        return ExitCode::from(1);
    }
    if opts.config_file.is_some() {
        tracing::error!(target: "fatal", "configuration files are not supported by this build yet");
        return ExitCode::from(1);
    }
    match server::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(target: "fatal", "{e}");
            ExitCode::from(1)
        }
    }
}
