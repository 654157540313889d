use std::time::Duration;

/// Why a registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Redis could not be reached, dropped the connection, or is still loading. Transient:
    /// callers may carry on without the registry and retry later.
    #[error(
        "Redis at {endpoint} is unavailable ({source}); the registry retries on the next call, \
         check that the server is running and reachable"
    )]
    Unavailable {
        endpoint: String,
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer within the configured operation timeout. Transient.
    #[error("Redis at {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// The sweep presented a fencing token that is no longer the current one: another
    /// watchdog has taken over the lease since.
    #[error(
        "sweep refused: fencing token {presented} is stale (current: {current}); \
         another watchdog holds the lease"
    )]
    Fenced { presented: u64, current: String },
    /// Caller metadata tried to use one of the registry's own hash fields.
    #[error(
        "metadata field {0:?} is reserved by the registry (state, created_at, finished_at, orphaned_at, error)"
    )]
    ReservedField(String),
    /// An entry exists but cannot be read as a lifecycle entry (written by something else).
    #[error("registry entry {key} is not readable: {detail}")]
    Corrupt { key: String, detail: String },
    /// The embedded registry's file cannot be read or written.
    #[error("lifecycle registry file {path}: {detail}")]
    Journal { path: String, detail: String },
    /// The configuration cannot work (e.g. a cluster prefix without a hash tag).
    #[error("registry configuration: {0}")]
    Config(String),
    /// Any other error Redis answered with (a bug, or keys of the wrong type under the prefix).
    #[error("Redis at {endpoint} answered with an error: {source}")]
    Redis {
        endpoint: String,
        #[source]
        source: redis::RedisError,
    },
}

impl RegistryError {
    /// Whether retrying later can help (the watchdog backs off and retries on these).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Unavailable { .. } | RegistryError::Timeout { .. }
        )
    }

    pub(crate) fn from_redis(endpoint: &str, source: redis::RedisError) -> RegistryError {
        use redis::RetryMethod;
        let transient = source.is_io_error()
            || source.is_connection_refusal()
            || source.is_connection_dropped()
            || source.is_timeout()
            || source.kind() == redis::ErrorKind::ClusterConnectionNotFound
            || !matches!(source.retry_method(), RetryMethod::NoRetry);
        let endpoint = endpoint.to_string();
        if transient {
            RegistryError::Unavailable { endpoint, source }
        } else {
            RegistryError::Redis { endpoint, source }
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
