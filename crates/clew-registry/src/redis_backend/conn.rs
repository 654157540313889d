use std::fmt;
use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::error::{RegistryError, Result};

/// A connection to one Redis server or to a Redis Cluster. Both reconnect by themselves
/// after the server comes back; cloning is cheap and clones share the connection.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisConn::Single(_) => f.write_str("RedisConn::Single"),
            RedisConn::Cluster(_) => f.write_str("RedisConn::Cluster"),
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where to connect, parsed from the `--redis` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://host:port[/db]` (any URL the redis crate accepts).
    Single(String),
    /// `redis+cluster://host:port,host:port,…`: seed nodes of a cluster.
    Cluster(Vec<String>),
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget> {
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(RegistryError::Config(format!(
                    "{url:?} names no cluster nodes; use redis+cluster://host:port,host:port"
                )));
            }
            Ok(RedisTarget::Cluster(nodes))
        } else if url.starts_with("redis://") || url.starts_with("unix://") {
            Ok(RedisTarget::Single(url.to_string()))
        } else {
            Err(RegistryError::Config(format!(
                "{url:?} is not a Redis URL; use redis://host:port or redis+cluster://host:port,host:port"
            )))
        }
    }

    /// A short name for messages (no credentials).
    pub fn endpoint(&self) -> String {
        fn strip(url: &str) -> &str {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            rest.rsplit_once('@').map_or(rest, |(_, host)| host)
        }
        match self {
            RedisTarget::Single(url) => strip(url).to_string(),
            RedisTarget::Cluster(nodes) => {
                let names: Vec<&str> = nodes.iter().map(|n| strip(n)).collect();
                format!("cluster {}", names.join(","))
            }
        }
    }

    /// Connects; with `lazy`, a single-server connection is made on first use instead,
    /// so a process can start while Redis is down (cluster connections are always eager).
    pub(crate) async fn connect(&self, op_timeout: Duration, lazy: bool) -> Result<RedisConn> {
        let endpoint = self.endpoint();
        let map = |e| RegistryError::from_redis(&endpoint, e);
        match self {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| {
                    RegistryError::Config(format!("invalid Redis URL {url:?}: {e}"))
                })?;
                // Few, short reconnect attempts: a caller waiting on a dead server should
                // get an error quickly; the next call starts a new attempt anyway.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(op_timeout))
                    .set_response_timeout(Some(op_timeout))
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let manager = if lazy {
                    ConnectionManager::new_lazy_with_config(client, config).map_err(map)?
                } else {
                    bounded(&endpoint, op_timeout * 2, async {
                        ConnectionManager::new_with_config(client, config).await
                    })
                    .await?
                };
                Ok(RedisConn::Single(manager))
            }
            RedisTarget::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .connection_timeout(op_timeout)
                    .response_timeout(op_timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| RegistryError::Config(format!("invalid cluster nodes: {e}")))?;
                let conn = bounded(&endpoint, op_timeout * 2, async {
                    client.get_async_connection().await
                })
                .await?;
                Ok(RedisConn::Cluster(conn))
            }
        }
    }
}

/// Runs one Redis request with a deadline and maps its error to the registry's.
pub(crate) async fn bounded<T>(
    endpoint: &str,
    timeout: Duration,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(RegistryError::from_redis(endpoint, e)),
        Err(_) => Err(RegistryError::Timeout {
            endpoint: endpoint.to_string(),
            timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_urls() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6390/0").unwrap(),
            RedisTarget::Single("redis://127.0.0.1:6390/0".into())
        );
        let cluster = RedisTarget::parse("redis+cluster://a:7000, b:7001,").unwrap();
        assert_eq!(
            cluster,
            RedisTarget::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(cluster.endpoint(), "cluster a:7000,b:7001");
        assert_eq!(
            RedisTarget::parse("redis://user:secret@h:1")
                .unwrap()
                .endpoint(),
            "h:1"
        );
        assert!(RedisTarget::parse("http://x").is_err());
        assert!(RedisTarget::parse("redis+cluster://").is_err());
    }
}
