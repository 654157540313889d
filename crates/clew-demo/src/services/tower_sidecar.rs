//! tower-sidecar: watches every channel. Each message it sees becomes a `tower_receive_…`
//! CONSUMER (a child of the message's producer, beside the real consumers) with a
//! `tower_forward_…` PRODUCER under it standing for the broadcast to all subscribers.
//! It forwards nothing for real: the bus already delivers to everyone, and a second
//! copy would reach every consumer twice.

use clew_sdk::messaging::{self, Operation};

use super::{Ctx, Ending};
use crate::DemoError;
use crate::messages::{ALL_CHANNELS, LOCK_RESPONSE_CHANNEL};

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    let mut everything = ctx.subscribe(&ALL_CHANNELS).await?;
    ctx.report(crate::Report::Ready);
    while let Some(message) = ctx.next_message(&mut everything).await {
        let what = short_name(&message.channel);
        let mut receive = messaging::consume_as(ctx.tracer, &message, Operation::Receive)
            .name(format!("tower_receive_{what}"))
            .start();
        messaging::producer(ctx.tracer, message.system, &message.channel)
            .name(format!("tower_forward_{what}"))
            .parent(receive.span_context())
            .start()
            .end();
        receive.end();
    }
    Ok(Ending::Stopped)
}

/// The seed names the lock response's pair after the message, not the channel.
fn short_name(channel: &str) -> &str {
    if channel == LOCK_RESPONSE_CHANNEL {
        "lock_response"
    } else {
        channel
    }
}
