use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

/// The resolved configuration of a clew process.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub otlp_grpc_addr: SocketAddr,
    pub otlp_http_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Spans older than this are deleted.
    pub retention: Duration,
    /// Spans accepted but not yet durable; beyond this clients are told to retry.
    pub max_queued_spans: usize,
    /// Largest OTLP request, gRPC message or HTTP body.
    pub max_request_bytes: usize,
    /// Redis for the lifecycle registry (`redis://…`, or `redis+cluster://h:p,h:p`);
    /// `None` keeps the registry in-process.
    pub redis_url: Option<String>,
    /// Prefix of the registry's Redis keys (in a cluster it must hold a hash tag: `{clew}:`).
    pub key_prefix: String,
    /// Traces not finished after this long are marked orphaned by the watchdog.
    pub orphan_threshold: Duration,
    /// Time between watchdog sweeps.
    pub sweep_interval: Duration,
    /// A trace counts as complete when its root span has ended and nothing more arrived
    /// for this long.
    pub trace_quiet_period: Duration,
    /// The agent wire protocol's unix socket; `None` puts it in the data directory.
    pub agent_socket: Option<PathBuf>,
    /// The agent wire protocol on TCP.
    pub agent_tcp_addr: SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: default_data_dir(),
            otlp_grpc_addr: ([127, 0, 0, 1], 4317).into(),
            otlp_http_addr: ([127, 0, 0, 1], 4318).into(),
            http_addr: ([127, 0, 0, 1], 16686).into(),
            retention: Duration::from_secs(7 * 24 * 3600),
            max_queued_spans: 200_000,
            max_request_bytes: 16 << 20,
            redis_url: None,
            key_prefix: "clew:".to_string(),
            orphan_threshold: Duration::from_secs(1800),
            sweep_interval: Duration::from_secs(300),
            trace_quiet_period: Duration::from_secs(5),
            agent_socket: None,
            agent_tcp_addr: ([127, 0, 0, 1], 6590).into(),
        }
    }
}

/// `$XDG_DATA_HOME/clew`, else `~/.local/share/clew`, else `./clew-data`.
fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("clew");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/clew"),
        None => PathBuf::from("clew-data"),
    }
}

/// Values given by environment or flags; `None` leaves the file's (or default) value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigOverrides {
    pub data_dir: Option<PathBuf>,
    pub otlp_grpc_addr: Option<SocketAddr>,
    pub otlp_http_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde_option")]
    pub retention: Option<Duration>,
    pub max_queued_spans: Option<usize>,
    pub max_request_bytes: Option<usize>,
    #[serde(rename = "redis")]
    pub redis_url: Option<String>,
    pub key_prefix: Option<String>,
    #[serde(default, with = "humantime_serde_option")]
    pub orphan_threshold: Option<Duration>,
    #[serde(default, with = "humantime_serde_option")]
    pub sweep_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde_option")]
    pub trace_quiet_period: Option<Duration>,
    pub agent_socket: Option<PathBuf>,
    pub agent_tcp_addr: Option<SocketAddr>,
}

mod humantime_serde_option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Config {
    /// Where the agent's unix socket is: configured, or `agent.sock` in the data directory.
    pub fn agent_socket_path(&self) -> PathBuf {
        self.agent_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join(clew_agent::DEFAULT_SOCKET_NAME))
    }

    /// Defaults, overridden by the TOML file (same keys as the flags, kebab-case), then
    /// by `overrides` (environment and flags, already merged by the caller).
    pub fn load(file: Option<&Path>, overrides: &ConfigOverrides) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let from_file: ConfigOverrides =
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.to_path_buf(),
                    source,
                })?;
            config.apply(&from_file);
        }
        config.apply(overrides);
        Ok(config)
    }

    fn apply(&mut self, o: &ConfigOverrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir = v.clone();
        }
        if let Some(v) = o.otlp_grpc_addr {
            self.otlp_grpc_addr = v;
        }
        if let Some(v) = o.otlp_http_addr {
            self.otlp_http_addr = v;
        }
        if let Some(v) = o.http_addr {
            self.http_addr = v;
        }
        if let Some(v) = o.retention {
            self.retention = v;
        }
        if let Some(v) = o.max_queued_spans {
            self.max_queued_spans = v;
        }
        if let Some(v) = o.max_request_bytes {
            self.max_request_bytes = v;
        }
        if let Some(v) = &o.redis_url {
            self.redis_url = Some(v.clone());
        }
        if let Some(v) = &o.key_prefix {
            self.key_prefix = v.clone();
        }
        if let Some(v) = o.orphan_threshold {
            self.orphan_threshold = v;
        }
        if let Some(v) = o.sweep_interval {
            self.sweep_interval = v;
        }
        if let Some(v) = o.trace_quiet_period {
            self.trace_quiet_period = v;
        }
        if let Some(v) = &o.agent_socket {
            self.agent_socket = Some(v.clone());
        }
        if let Some(v) = o.agent_tcp_addr {
            self.agent_tcp_addr = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("clew-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clew.toml");
        std::fs::write(
            &file,
            "data-dir = \"/var/lib/clew\"\nhttp-addr = \"127.0.0.1:9000\"\nretention = \"2days\"\n",
        )
        .unwrap();
        let overrides = ConfigOverrides {
            http_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Default::default()
        };
        let config = Config::load(Some(&file), &overrides).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/clew"));
        assert_eq!(config.http_addr, "127.0.0.1:9100".parse().unwrap());
        assert_eq!(config.retention, Duration::from_secs(2 * 24 * 3600));
        assert_eq!(config.otlp_grpc_addr, "127.0.0.1:4317".parse().unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = std::env::temp_dir().join(format!("clew-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clew.toml");
        std::fs::write(&file, "http_adr = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&file), &ConfigOverrides::default()).unwrap_err();
        assert!(err.to_string().contains("http_adr"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
