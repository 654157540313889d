//! fpv-ops: the operators. They lock the striker onto orlan, and when the striker says
//! it is in position they pray to ares for the strike.

use clew_sdk::messaging::{self, Message};
use clew_sdk::{FutureExt, tcp};

use super::{Ctx, Ending};
use crate::messages::{
    LOCK_RESPONSE_CHANNEL, LockAck, LockRequest, OPS_TEAM, ORLAN, Prayer, STRIKER,
    STRIKER_CONTROL_CHANNEL,
};
use crate::{DemoError, Report, TraceLabel};

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    let mut responses = ctx.subscribe(&[LOCK_RESPONSE_CHANNEL]).await?;
    ctx.report(Report::Ready);
    if !ctx.go_ahead().await {
        return Ok(Ending::Stopped);
    }
    // The operator picked option 1 in the UI: take the striker over.
    let request = LockRequest {
        interceptor: STRIKER.into(),
        target: ORLAN.into(),
        ops_team: OPS_TEAM.into(),
        ops_service: ctx.service.as_str().into(),
    };
    let published = messaging::publish(ctx.tracer, &*ctx.bus, STRIKER_CONTROL_CHANNEL, &request)
        .name("publish_lock_request_striker")
        .attribute("ops_team", OPS_TEAM)
        .attribute("interceptor", STRIKER)
        .attribute("target", ORLAN)
        .root()
        .send()
        .await
        .map_err(|error| ctx.messaging_error(error))?;
    ctx.report(Report::Trace(
        TraceLabel::LockRequest,
        published.span_context.trace_id(),
    ));
    while let Some(message) = ctx.next_message(&mut responses).await {
        on_lock_response(ctx, &message).await;
    }
    Ok(Ending::Stopped)
}

async fn on_lock_response(ctx: &Ctx, message: &Message) {
    let Ok(ack) = message.payload::<LockAck>() else {
        tracing::warn!("fpv-ops: ignoring a lock response it cannot read");
        return;
    };
    let consume = messaging::consume(ctx.tracer, message)
        .name("consume_lock_response")
        .attribute("interceptor", ack.interceptor.clone())
        .attribute("status", ack.status.clone())
        .start();
    async {
        // The striker has reached its target: ask ares for the strike.
        let authorization = ctx
            .tracer
            .span("request_strike_authorization")
            .attribute("target", ack.target.clone())
            .start();
        async {
            let prayer = Prayer {
                sender: OPS_TEAM.into(),
                striker_id: Some(ack.interceptor.clone()),
                target: ack.target.clone(),
                text: format!("Authorize strike on {}", ack.target),
                striker_position: None,
                target_position: None,
            };
            pray(ctx, 1, &prayer).await;
        }
        .in_span(authorization)
        .await;
    }
    .in_span(consume)
    .await;
}

/// Sends a prayer to ares in a `send_prayer_tcp` CLIENT span. A refused prayer is
/// recorded on that span (exception event, status ERROR) and is not the sender's end.
pub(super) async fn pray(ctx: &Ctx, number: i64, prayer: &Prayer) {
    let addr = match ctx.ares_addr() {
        Ok(addr) => addr,
        Err(error) => {
            tracing::warn!(%error);
            return;
        }
    };
    let span = ctx
        .tracer
        .span("send_prayer_tcp")
        .attribute("prayer", prayer.text.clone())
        .attribute("prayer.number", number);
    let payload = serde_json::to_vec(prayer).expect("a prayer serializes");
    if let Err(error) = tcp::call(span, addr, payload).await {
        tracing::debug!(service = %ctx.service, %error, "ares did not hear the prayer");
    }
}
