//! orlan: the target drone. It flies until ares' death notice for it arrives, then
//! records its destruction, flushes its spans and exits with 666.

use clew_sdk::messaging;

use super::{Ctx, Ending, destroyed_event};
use crate::DemoError;
use crate::messages::{DEATH_KNELL_CHANNEL, DeathNotice, ORLAN};

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    let mut notices = ctx.subscribe(&[DEATH_KNELL_CHANNEL]).await?;
    ctx.report(crate::Report::Ready);
    while let Some(message) = ctx.next_message(&mut notices).await {
        // Every drone hears every notice; the seed's trace shows only the recipient's
        // consumer, so a notice for someone else is dropped before any span starts.
        let Ok(notice) = message.payload::<DeathNotice>() else {
            continue;
        };
        if notice.recipient != ORLAN {
            continue;
        }
        let mut consume = messaging::consume(ctx.tracer, &message)
            .name("consume_death-knell")
            .attribute("recipient", notice.recipient.clone())
            .start();
        destroyed_event(&mut consume);
        consume.end();
        return Ok(Ending::Destroyed);
    }
    Ok(Ending::Stopped)
}
