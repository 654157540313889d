//! One service as an OS process (`--processes`): the child side of the conversation
//! with the scenario that started it.
//!
//! The child reports on stdout, one line each (`clew-demo ready`, `clew-demo trace
//! lock_request ID`, …), and listens on stdin: a `go` line starts the story, and the end
//! of stdin (the parent closed it, or died) stops the service. Its stderr is the
//! parent's, so its warnings reach the user.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;

use crate::services::{BusChoice, Phase, Reporter, Setup, drive};
use crate::{Export, Fault, Report, Service, TraceLabel};

const PREFIX: &str = "clew-demo";

/// What the hidden `clew demo service …` command was given.
#[derive(Debug, Clone)]
pub struct ServiceProcess {
    pub service: Service,
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// Only Redis crosses process boundaries.
    pub redis_url: String,
    pub export: Export,
    pub ares_addr: Option<SocketAddr>,
}

/// Runs the service until its story ends or stdin closes, shuts its tracer provider
/// down (exporting every span it recorded) and exits the process with the service's
/// code: 666 for a destroyed drone, as in the seed.
pub async fn run_service_process(options: ServiceProcess) -> ! {
    let (phase_tx, phase_rx) = watch::channel(Phase::Waiting);
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.trim() == "go" => {
                    phase_tx.send_if_modified(|phase| {
                        let waiting = *phase == Phase::Waiting;
                        if waiting {
                            *phase = Phase::Go;
                        }
                        waiting
                    });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    phase_tx.send_replace(Phase::Stop);
                    return;
                }
            }
        }
    });
    let setup = Setup {
        service: options.service,
        seed: options.seed,
        faults: options.faults,
        bus: BusChoice::Redis(options.redis_url),
        export: options.export,
        ares_addr: options.ares_addr,
    };
    let code = drive(setup, Reporter::Stdout, phase_rx).await;
    println!("{}", report_line(&Report::Exited(code)));
    std::process::exit(code)
}

pub(crate) fn report_line(report: &Report) -> String {
    match report {
        Report::Ready => format!("{PREFIX} ready"),
        Report::AresAt(addr) => format!("{PREFIX} ares-at {addr}"),
        Report::Trace(label, id) => format!("{PREFIX} trace {} {id}", label.as_str()),
        Report::Exited(code) => format!("{PREFIX} exit {code}"),
        Report::OsStatus(status) => format!("{PREFIX} os-status {status}"),
        // One line, whatever the message holds.
        Report::Failed(message) => format!("{PREFIX} failed {}", message.replace('\n', " ")),
    }
}

pub(crate) fn parse_report_line(line: &str) -> Option<Report> {
    let rest = line.strip_prefix(PREFIX)?.strip_prefix(' ')?;
    let (verb, argument) = rest.split_once(' ').unwrap_or((rest, ""));
    match verb {
        "ready" => Some(Report::Ready),
        "ares-at" => argument.parse().ok().map(Report::AresAt),
        "trace" => {
            let (label, id) = argument.split_once(' ')?;
            Some(Report::Trace(TraceLabel::parse(label)?, id.parse().ok()?))
        }
        "exit" => argument.parse().ok().map(Report::Exited),
        "os-status" => argument.parse().ok().map(Report::OsStatus),
        "failed" => Some(Report::Failed(argument.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_round_trip() {
        let reports = [
            Report::Ready,
            Report::AresAt("127.0.0.1:40123".parse().unwrap()),
            Report::Trace(
                TraceLabel::InterceptExecution,
                "0190c5a8e7b77c3a9d2f4e1b6a8c0d12".parse().unwrap(),
            ),
            Report::Exited(666),
            Report::Failed("redis at redis://x: refused".into()),
        ];
        for report in reports {
            assert_eq!(parse_report_line(&report_line(&report)), Some(report));
        }
        assert_eq!(parse_report_line("hello"), None);
        assert_eq!(parse_report_line("clew-demo trace nonsense 12"), None);
    }
}
