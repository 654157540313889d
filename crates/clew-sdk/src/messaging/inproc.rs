//! A bus inside one process: a broadcast channel per channel name.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};

use super::{Bus, BusError, Message, Subscription};

/// The `messaging.system` of [`InProcBus`].
pub const INPROC_SYSTEM: &str = "inproc";

/// Publish/subscribe between tasks of one process, with Redis pub/sub's semantics:
/// every subscriber at the time of publishing gets the message; nobody else does. A
/// subscriber that falls more than `capacity` messages behind loses the oldest ones.
/// Clones share the same channels.
#[derive(Clone)]
pub struct InProcBus {
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<Bytes>>>>,
    capacity: usize,
}

impl Default for InProcBus {
    fn default() -> Self {
        InProcBus::with_capacity(1024)
    }
}

impl InProcBus {
    pub fn new() -> InProcBus {
        InProcBus::default()
    }

    pub fn with_capacity(capacity: usize) -> InProcBus {
        InProcBus {
            channels: Arc::default(),
            capacity: capacity.max(1),
        }
    }

    fn sender(&self, channel: &str, create: bool) -> Option<broadcast::Sender<Bytes>> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(channel) {
            return Some(sender.clone());
        }
        create.then(|| {
            let (sender, _) = broadcast::channel(self.capacity);
            channels.insert(channel.to_string(), sender.clone());
            sender
        })
    }
}

#[async_trait::async_trait]
impl Bus for InProcBus {
    fn system(&self) -> &'static str {
        INPROC_SYSTEM
    }

    async fn publish_bytes(&self, channel: &str, bytes: Bytes) -> Result<usize, BusError> {
        Ok(self
            .sender(channel, false)
            .and_then(|sender| sender.send(bytes).ok())
            .unwrap_or(0))
    }

    async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let mut tasks = Vec::with_capacity(channels.len());
        for channel in channels {
            // Subscribing here, not in the task, so that a message published right
            // after `subscribe` returns is delivered.
            let mut source = self.sender(channel, true).expect("created").subscribe();
            let tx = tx.clone();
            let channel = channel.to_string();
            tasks.push(tokio::spawn(async move {
                loop {
                    match source.recv().await {
                        Ok(bytes) => {
                            let message = Message::new(INPROC_SYSTEM, channel.clone(), bytes);
                            if tx.send(message).await.is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(lost)) => {
                            crate::suppress::warn(format_args!(
                                "clew-sdk: a subscriber of {channel:?} fell behind and lost {lost} messages"
                            ));
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        Ok(Subscription::new(rx, tasks))
    }
}
