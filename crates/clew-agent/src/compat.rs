//! The command line of Scout's `core-agent` binary, so clew's agent can stand in for it.
//!
//! A language agent with launching enabled runs
//! `core-agent start --daemonize true --log-level info --tcp 127.0.0.1:6590`
//! (or `--socket PATH`, plus `--log-file`, `--config-file`) and expects exit status 0 once
//! the daemon runs, or [`EXIT_ALREADY_RUNNING`] when one was running already.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::address::AgentAddress;
use crate::daemon::DaemonPaths;
use crate::server::{AgentConfig, DEFAULT_TCP_ADDR};

/// What the language agents read as "a core-agent already runs".
pub const EXIT_ALREADY_RUNNING: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoreAgentStart {
    pub daemonize: bool,
    pub socket: Option<PathBuf>,
    pub tcp: Option<SocketAddr>,
    pub log_file: Option<PathBuf>,
    pub log_level: Option<String>,
    /// Scout's TOML settings file; accepted and ignored (its settings concern Scout's
    /// hosted service).
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} (usage: core-agent start [--daemonize true|false] [--socket PATH | --tcp HOST:PORT] [--log-file FILE] [--log-level LEVEL] [--config-file FILE])"
)]
pub struct CompatError(String);

impl CoreAgentStart {
    /// Parses the arguments after the program name, starting with the `start` verb.
    pub fn parse<I, S>(args: I) -> Result<CoreAgentStart, CompatError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut args = args.into_iter().map(Into::into);
        match args.next().as_deref() {
            Some("start") => {}
            Some(other) => {
                return Err(CompatError(format!(
                    "unsupported core-agent command {other:?}"
                )));
            }
            None => return Err(CompatError("missing the command".into())),
        }
        let mut parsed = CoreAgentStart::default();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
                None => (arg, None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| CompatError(format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "--daemonize" => {
                    parsed.daemonize = match value()?.as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        other => {
                            return Err(CompatError(format!(
                                "--daemonize takes true or false, not {other:?}"
                            )));
                        }
                    }
                }
                "--socket" | "--socket-path" => match value()?.parse::<AgentAddress>() {
                    Ok(AgentAddress::Unix(path)) => parsed.socket = Some(path),
                    Ok(AgentAddress::Tcp(addr)) => parsed.tcp = Some(addr),
                    Err(e) => return Err(CompatError(e.to_string())),
                },
                "--tcp" => {
                    let text = value()?;
                    let address = format!("tcp://{}", text.trim_start_matches("tcp://"));
                    match address.parse::<AgentAddress>() {
                        Ok(AgentAddress::Tcp(addr)) => parsed.tcp = Some(addr),
                        _ => return Err(CompatError(format!("--tcp {text:?} is not HOST:PORT"))),
                    }
                }
                "--log-file" => parsed.log_file = Some(PathBuf::from(value()?)),
                "--log-level" => parsed.log_level = Some(value()?),
                "--config-file" => parsed.config_file = Some(PathBuf::from(value()?)),
                other => return Err(CompatError(format!("unknown option {other:?}"))),
            }
        }
        Ok(parsed)
    }

    /// Listens exactly where the command line asks; TCP 127.0.0.1:6590 when it names
    /// nothing, as the core-agent did.
    pub fn agent_config(&self) -> AgentConfig {
        let tcp = match (&self.socket, self.tcp) {
            (None, None) => Some(DEFAULT_TCP_ADDR.into()),
            (_, tcp) => tcp,
        };
        AgentConfig {
            unix_socket: self.socket.clone(),
            tcp_addr: tcp,
            ..AgentConfig::default()
        }
    }

    pub fn daemon_paths(&self, data_dir: &Path) -> DaemonPaths {
        let mut paths = DaemonPaths::for_config(data_dir, &self.agent_config());
        if let Some(log_file) = &self.log_file {
            paths.log_file = log_file.clone();
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_agents_command_lines_parse() {
        let tcp = CoreAgentStart::parse([
            "start",
            "--daemonize",
            "true",
            "--log-level",
            "info",
            "--tcp",
            "127.0.0.1:6590",
        ])
        .unwrap();
        assert!(tcp.daemonize);
        assert_eq!(tcp.tcp, Some(([127, 0, 0, 1], 6590).into()));
        assert_eq!(tcp.agent_config().unix_socket, None);

        let socket = CoreAgentStart::parse([
            "start",
            "--daemonize",
            "true",
            "--log-level",
            "debug",
            "--log-file",
            "/tmp/ca.log",
            "--config-file",
            "/etc/scout.toml",
            "--socket",
            "/tmp/scout/core-agent.sock",
        ])
        .unwrap();
        assert_eq!(
            socket.socket.as_deref(),
            Some(Path::new("/tmp/scout/core-agent.sock"))
        );
        let config = socket.agent_config();
        assert_eq!(config.tcp_addr, None);
        let paths = socket.daemon_paths(Path::new("/data"));
        assert_eq!(paths.log_file, Path::new("/tmp/ca.log"));
        assert_eq!(
            paths.lock_file,
            Path::new("/tmp/scout/core-agent.sock.lock")
        );

        let defaults = CoreAgentStart::parse(["start", "--daemonize=false"]).unwrap();
        assert_eq!(
            defaults.agent_config().tcp_addr,
            Some(([127, 0, 0, 1], 6590).into())
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(CoreAgentStart::parse(["stop"]).is_err());
        assert!(CoreAgentStart::parse(["start", "--tcp"]).is_err());
        assert!(CoreAgentStart::parse(["start", "--daemonize", "maybe"]).is_err());
        assert!(CoreAgentStart::parse(["start", "--frobnicate", "1"]).is_err());
    }
}
