//! drone-cmd: command and control. It notes which interceptors fpv-ops has locked,
//! periodically calculates intercept commands (each calculation a new trace, not linked
//! to the lock request), and records where each drone died.

use std::time::Duration;

use clew_sdk::messaging::{self, Message};
use clew_sdk::{FutureExt, kv};

use super::{Ctx, Ending};
use crate::messages::{
    DEATH_KNELL_CHANNEL, DRONE_COMMAND_CHANNEL, DeathNotice, InterceptCommand, InterceptCommands,
    LockRequest, STRIKER_CONTROL_CHANNEL,
};
use crate::{DemoError, Report, TraceLabel};

/// The seed calculates every 5 s; the demo cannot wait that long.
const CALCULATION_INTERVAL: Duration = Duration::from_millis(250);

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    let mut inbox = ctx
        .subscribe(&[STRIKER_CONTROL_CHANNEL, DEATH_KNELL_CHANNEL])
        .await?;
    ctx.report(Report::Ready);
    let mut locked: Option<LockRequest> = None;
    let mut commanded = false;
    let mut calculation = tokio::time::interval(CALCULATION_INTERVAL);
    loop {
        tokio::select! {
            message = ctx.next_message(&mut inbox) => {
                let Some(message) = message else { break };
                match message.channel.as_str() {
                    STRIKER_CONTROL_CHANNEL => {
                        if let Some(request) = on_lock_request(ctx, &message) {
                            locked = Some(request);
                        }
                    }
                    DEATH_KNELL_CHANNEL => on_death_notice(ctx, &message),
                    _ => {}
                }
            }
            _ = calculation.tick() => {
                // Only a calculation with something to command is worth a trace; the
                // interceptor it commanded is engaged after that.
                if let Some(request) = locked.as_ref().filter(|_| !commanded) {
                    calculate_intercept_commands(ctx, request).await?;
                    commanded = true;
                }
            }
        }
    }
    Ok(Ending::Stopped)
}

fn on_lock_request(ctx: &Ctx, message: &Message) -> Option<LockRequest> {
    let request = message.payload::<LockRequest>().ok()?;
    let mut consume = messaging::consume(ctx.tracer, message)
        .name("consume_striker_control_channel")
        .start();
    // fpv-ops flies this interceptor now: no conflicting commands from here.
    consume.add_event(
        "interceptor_locked",
        [
            kv("interceptor", request.interceptor.clone()),
            kv("ops_team", request.ops_service.clone()),
            kv("target", request.target.clone()),
        ],
    );
    Some(request)
}

async fn calculate_intercept_commands(ctx: &Ctx, lock: &LockRequest) -> Result<(), DemoError> {
    let calculation = ctx
        .tracer
        .span("calculate_intercept_commands")
        .root()
        .attribute("interval_ms", CALCULATION_INTERVAL.as_millis() as i64)
        .attribute("locked_interceptors", lock.interceptor.clone())
        .start();
    ctx.report(Report::Trace(
        TraceLabel::InterceptExecution,
        calculation.trace_id(),
    ));
    let course = ctx.world.intercept_course();
    let commands = InterceptCommands {
        commands: vec![InterceptCommand {
            interceptor: lock.interceptor.clone(),
            target: lock.target.clone(),
            heading_deg: course.heading_deg,
            distance_km: course.distance_km,
            target_position: course.target.into(),
        }],
    };
    async {
        messaging::publish(ctx.tracer, &*ctx.bus, DRONE_COMMAND_CHANNEL, &commands)
            .name("publish_intercept_commands")
            .attribute("commands", commands.commands.len())
            .send()
            .await
            .map_err(|error| ctx.messaging_error(error))
    }
    .in_span(calculation)
    .await?;
    Ok(())
}

fn on_death_notice(ctx: &Ctx, message: &Message) {
    let Ok(notice) = message.payload::<DeathNotice>() else {
        return;
    };
    let mut consume = messaging::consume(ctx.tracer, message)
        .name("consume_death-knell")
        .attribute("recipient", notice.recipient.clone())
        .start();
    consume.add_event(
        "death_metrics_recorded",
        [
            kv("drone", notice.recipient),
            kv("latitude", notice.position.latitude),
            kv("longitude", notice.position.longitude),
        ],
    );
}
