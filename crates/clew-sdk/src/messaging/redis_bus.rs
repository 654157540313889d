//! Redis pub/sub as a [`Bus`].

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::{Bus, BusError, Message, Subscription};

/// The `messaging.system` of [`RedisBus`].
pub const REDIS_SYSTEM: &str = "redis";

/// Redis `PUBLISH`/`SUBSCRIBE`. Publishing shares one reconnecting connection; each
/// subscription has its own connection, as Redis requires. Clones share the
/// publishing connection.
#[derive(Clone)]
pub struct RedisBus {
    url: String,
    client: redis::Client,
    publisher: ConnectionManager,
}

impl RedisBus {
    /// Connects to `url` (`redis://127.0.0.1:6379/`).
    pub async fn connect(url: &str) -> Result<RedisBus, BusError> {
        let error = |source| BusError::Redis {
            url: url.to_string(),
            source,
        };
        let client = redis::Client::open(url).map_err(error)?;
        // One plain attempt first: the reconnecting manager would retry with back-off
        // for seconds before admitting that nothing listens there.
        client
            .get_multiplexed_async_connection()
            .await
            .map_err(error)?;
        let publisher = ConnectionManager::new(client.clone())
            .await
            .map_err(error)?;
        Ok(RedisBus {
            url: url.to_string(),
            client,
            publisher,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, source: redis::RedisError) -> BusError {
        BusError::Redis {
            url: self.url.clone(),
            source,
        }
    }
}

#[async_trait::async_trait]
impl Bus for RedisBus {
    fn system(&self) -> &'static str {
        REDIS_SYSTEM
    }

    async fn publish_bytes(&self, channel: &str, bytes: Bytes) -> Result<usize, BusError> {
        let mut connection = self.publisher.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(bytes.as_ref())
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))
    }

    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, BusError> {
        let mut pubsub = self
            .client
            .get_async_pubsub()
            .await
            .map_err(|e| self.error(e))?;
        // Returns once Redis has confirmed every channel, so nothing published after
        // this is missed.
        pubsub
            .subscribe(channels)
            .await
            .map_err(|e| self.error(e))?;
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let mut stream = pubsub.into_on_message();
            while let Some(msg) = stream.next().await {
                let message = Message::new(
                    REDIS_SYSTEM,
                    msg.get_channel_name(),
                    Bytes::copy_from_slice(msg.get_payload_bytes()),
                );
                if tx.send(message).await.is_err() {
                    return;
                }
            }
        });
        Ok(Subscription::new(rx, vec![task]))
    }
}
