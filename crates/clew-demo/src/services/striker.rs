//! striker: the interceptor drone. fpv-ops locks it, drone-cmd sends it after orlan; it
//! flies the pursuit, then both tells fpv-ops it is in position (path A) and prays to
//! ares itself (path B). Its death notice ends it: it records `drone_destroyed`, lands
//! its flight span, flushes and exits with 666.

use std::time::Duration;

use clew_sdk::messaging::{self, Message};
use clew_sdk::{FutureExt, Span, kv};

use super::fpv_ops::pray;
use super::{Ctx, Ending, destroyed_event};
use crate::messages::{
    DEATH_KNELL_CHANNEL, DRONE_COMMAND_CHANNEL, DeathNotice, InterceptCommands,
    LOCK_RESPONSE_CHANNEL, LockAck, LockRequest, Prayer, STRIKER, STRIKER_CONTROL_CHANNEL,
};
use crate::world::INTERCEPT_CUTOFF_KM;
use crate::{DemoError, Report, TraceLabel};

/// Real time per simulated pursuit step: the seed's minutes of flight become about a
/// second.
const TICK: Duration = Duration::from_millis(40);

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    // The main flight loop's span, open for the drone's whole life: the intercept
    // "continues" it (a link), as the seed's step 6 says.
    let mut flight = ctx
        .tracer
        .span("flight_mission")
        .root()
        .attribute("drone", STRIKER)
        .start();
    ctx.report(Report::Trace(TraceLabel::Flight, flight.trace_id()));
    let mut inbox = ctx
        .subscribe(&[
            STRIKER_CONTROL_CHANNEL,
            DRONE_COMMAND_CHANNEL,
            DEATH_KNELL_CHANNEL,
        ])
        .await?;
    ctx.report(Report::Ready);
    // One message at a time, like a flight controller's loop: a death notice that
    // arrives mid-intercept waits until the intercept's spans have ended.
    while let Some(message) = ctx.next_message(&mut inbox).await {
        match message.channel.as_str() {
            STRIKER_CONTROL_CHANNEL => on_lock_request(ctx, &message),
            DRONE_COMMAND_CHANNEL => on_drone_command(ctx, &message, &flight).await,
            DEATH_KNELL_CHANNEL if on_death_notice(ctx, &message) => {
                flight.add_event("flight_ended", [kv("alive", false)]);
                flight.end();
                return Ok(Ending::Destroyed);
            }
            _ => {}
        }
    }
    flight.add_event("flight_ended", [kv("alive", true)]);
    flight.end();
    Ok(Ending::Stopped)
}

fn on_lock_request(ctx: &Ctx, message: &Message) {
    let Ok(request) = message.payload::<LockRequest>() else {
        return;
    };
    let mut consume = messaging::consume(ctx.tracer, message)
        .name("consume_striker_control_channel")
        .start();
    // Locked by fpv-ops: from now on it waits for drone-cmd's intercept command.
    consume.add_event(
        "lock_request_received",
        [
            kv("interceptor", request.interceptor),
            kv("target", request.target),
            kv("ops_team", request.ops_team),
        ],
    );
}

async fn on_drone_command(ctx: &Ctx, message: &Message, flight: &Span) {
    let Ok(commands) = message.payload::<InterceptCommands>() else {
        return;
    };
    let Some(command) = commands
        .commands
        .into_iter()
        .find(|c| c.interceptor == STRIKER)
    else {
        return;
    };
    let mut consume = messaging::consume(ctx.tracer, message)
        .name("consume_drone_command")
        .attribute("target", command.target.clone())
        .attribute("heading", command.heading_deg)
        .attribute("distance_km", command.distance_km)
        .start();
    let mut execute = ctx
        .tracer
        .span("execute_intercept")
        .parent(consume.span_context())
        .link_with_attributes(flight.span_context(), [kv("relation", "continues")])
        .attribute("target", command.target.clone())
        .start();

    // Full speed ahead: the pursuit is computed from the seed, the sleeps only pace it.
    let pursuit = ctx.world.fly();
    execute.set_attribute("pursuit.ticks", i64::from(pursuit.ticks));
    for _ in 0..pursuit.ticks {
        tokio::time::sleep(TICK).await;
    }
    execute.add_event(
        "reached_intercept_distance",
        [
            kv("distance_km", pursuit.final_distance_km),
            kv("cutoff_km", INTERCEPT_CUTOFF_KM),
            kv("mode", "boogie"),
        ],
    );

    // Both paths start at the same moment, as in the seed: whichever finishes first,
    // their spans overlap.
    let ack = ctx
        .tracer
        .span("send_lock_ack")
        .parent(execute.span_context())
        .start();
    let authorization = ctx
        .tracer
        .span("request_strike_authorization")
        .parent(execute.span_context())
        .attribute("target", command.target.clone())
        .start();
    let target = command.target.clone();
    let path_a = async {
        let body = LockAck {
            interceptor: STRIKER.into(),
            target: target.clone(),
            status: "loiter-and-await-fpv-ops".into(),
        };
        let published = messaging::publish(ctx.tracer, &*ctx.bus, LOCK_RESPONSE_CHANNEL, &body)
            .name("publish_lock_ack")
            .attribute("status", body.status.clone())
            .send()
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, "striker: the lock acknowledgement was not sent");
        }
    }
    .in_span(ack);
    let path_b = async {
        let prayer = Prayer {
            sender: STRIKER.into(),
            striker_id: None,
            target: target.clone(),
            text: format!("In position, ready to strike {target}"),
            striker_position: Some(pursuit.striker_end.into()),
            target_position: Some(pursuit.orlan_end.into()),
        };
        pray(ctx, 2, &prayer).await;
    }
    .in_span(authorization);
    tokio::join!(path_a, path_b);
    execute.end();
    consume.end();
}

/// Records the death when the notice is for the striker; `true` if it was.
fn on_death_notice(ctx: &Ctx, message: &Message) -> bool {
    // Every drone hears every notice; the seed's trace shows only the recipient's
    // consumer, so a notice for someone else is dropped before any span starts.
    let Ok(notice) = message.payload::<DeathNotice>() else {
        return false;
    };
    if notice.recipient != STRIKER {
        return false;
    }
    let mut consume = messaging::consume(ctx.tracer, message)
        .name("consume_death-knell")
        .attribute("recipient", notice.recipient)
        .start();
    destroyed_event(&mut consume);
    consume.end();
    true
}
