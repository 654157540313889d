use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::protocol::{Command, Reply, VersionProbe};

/// Where an agent listens, written as the language agents write it: `tcp://host:port`
/// for TCP, anything else a unix socket path (`unix://` prefix optional).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AgentAddress {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

#[derive(Debug, thiserror::Error)]
#[error("invalid agent address {text:?}: {reason} (expected tcp://HOST:PORT or a socket path)")]
pub struct AddressError {
    text: String,
    reason: String,
}

impl FromStr for AgentAddress {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<AgentAddress, AddressError> {
        let fail = |reason: String| AddressError {
            text: text.to_string(),
            reason,
        };
        if let Some(host_port) = text.strip_prefix("tcp://") {
            let addr = host_port
                .to_socket_addrs()
                .map_err(|e| fail(e.to_string()))?
                .next()
                .ok_or_else(|| fail("the host name has no address".into()))?;
            return Ok(AgentAddress::Tcp(addr));
        }
        let path = text.strip_prefix("unix://").unwrap_or(text);
        if path.is_empty() {
            return Err(fail("empty path".into()));
        }
        Ok(AgentAddress::Unix(PathBuf::from(path)))
    }
}

impl fmt::Display for AgentAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentAddress::Unix(path) => write!(f, "{}", path.display()),
            AgentAddress::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// What a probe of an address found.
#[derive(Debug)]
pub enum ProbeResult {
    /// An agent answered `CoreAgentVersion`.
    Answering { version: String },
    /// Nothing listens there (connection refused, or no socket file).
    Absent,
    /// Something accepted the connection but did not answer like an agent in time.
    Silent(io::Error),
}

impl AgentAddress {
    /// Asks whatever listens at this address for its version, synchronously (usable
    /// before a runtime exists and from the daemon's start-up checks).
    pub fn probe(&self, timeout: Duration) -> ProbeResult {
        fn exchange(stream: &mut (impl Read + Write)) -> io::Result<String> {
            let request = Command::CoreAgentVersion(VersionProbe {})
                .to_json()
                .map_err(io::Error::other)?;
            let mut frame = (request.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&request);
            stream.write_all(&frame)?;
            let mut length = [0u8; 4];
            stream.read_exact(&mut length)?;
            let length = u32::from_be_bytes(length) as usize;
            if length > 1 << 20 {
                return Err(io::Error::other(
                    "reply frame too large for a version answer",
                ));
            }
            let mut body = vec![0u8; length];
            stream.read_exact(&mut body)?;
            match Reply::from_slice(&body).map_err(io::Error::other)? {
                Reply::Version { version } => Ok(version),
                other => Err(io::Error::other(format!("unexpected reply {other:?}"))),
            }
        }
        let absent = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            )
        };
        let result = match self {
            AgentAddress::Unix(path) => UnixStream::connect(path).and_then(|mut s| {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Ok(exchange(&mut s))
            }),
            AgentAddress::Tcp(addr) => {
                TcpStream::connect_timeout(addr, timeout).and_then(|mut s| {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    Ok(exchange(&mut s))
                })
            }
        };
        match result {
            Err(e) if absent(&e) => ProbeResult::Absent,
            Err(e) => ProbeResult::Silent(e),
            Ok(Ok(version)) => ProbeResult::Answering { version },
            Ok(Err(e)) => ProbeResult::Silent(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_the_agents_write_them() {
        assert_eq!(
            "tcp://127.0.0.1:6590".parse::<AgentAddress>().unwrap(),
            AgentAddress::Tcp(([127, 0, 0, 1], 6590).into())
        );
        assert_eq!(
            "/tmp/scout.sock".parse::<AgentAddress>().unwrap(),
            AgentAddress::Unix("/tmp/scout.sock".into())
        );
        assert_eq!(
            "unix:///tmp/a.sock".parse::<AgentAddress>().unwrap(),
            AgentAddress::Unix("/tmp/a.sock".into())
        );
        assert!("tcp://nowhere".parse::<AgentAddress>().is_err());
        assert!("".parse::<AgentAddress>().is_err());
    }
}
