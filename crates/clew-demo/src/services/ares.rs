//! ares: the god of war, listening for prayers on TCP. Once both prayers about a target
//! are in (fpv-ops' and the striker's), he judges, sacrifices both drones by publishing
//! their death notices, and records the judgment as complete.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clew_sdk::{FutureExt, SpanContext, kv, tcp};
use tokio::net::TcpListener;

use super::{Ctx, Ending, publish_expecting_receivers};
use crate::messages::{
    DEATH_KNELL_CHANNEL, DeathNotice, MISSPELT_DEATH_KNELL_CHANNEL, ORLAN, Position, Prayer,
    PrayerReply, STRIKER,
};
use crate::{DemoError, Fault, Report};

/// "The God of War deliberates": long enough to show in a trace.
const DELIBERATION: Duration = Duration::from_millis(30);

/// The prayers received so far, with the SERVER span each arrived in.
#[derive(Default)]
struct Altar {
    from_operators: Option<(Prayer, SpanContext)>,
    from_striker: Option<(Prayer, SpanContext)>,
    judged: bool,
}

pub(super) async fn run(ctx: &Ctx) -> Result<Ending, DemoError> {
    if ctx.has_fault(Fault::AresDown) {
        // An address where nothing listens: every prayer is refused.
        ctx.report(Report::AresAt(refusing_address()?));
        ctx.report(Report::Ready);
        ctx.stop_requested().await;
        return Ok(Ending::Stopped);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(DemoError::AresListen)?;
    ctx.report(Report::AresAt(
        listener.local_addr().map_err(DemoError::AresListen)?,
    ));
    let altar = Arc::new(Mutex::new(Altar::default()));
    let (judge_tx, mut judge_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tcp::serve(
        listener,
        ctx.tracer,
        "receive_prayer",
        move |mut request| {
            let altar = altar.clone();
            let judge_tx = judge_tx.clone();
            async move {
                let Ok(prayer) = serde_json::from_slice::<Prayer>(&request.frame.payload) else {
                    return reply("unintelligible");
                };
                request.span.set_attribute("sender", prayer.sender.clone());
                if let Some(striker) = &prayer.striker_id {
                    request.span.set_attribute("striker_id", striker.clone());
                }
                request.span.set_attribute("target", prayer.target.clone());
                let prayed_in = request.span.span_context().clone();
                let mut altar = altar.lock().unwrap_or_else(|e| e.into_inner());
                if prayer.sender == STRIKER {
                    altar.from_striker = Some((prayer, prayed_in));
                } else {
                    altar.from_operators = Some((prayer, prayed_in));
                }
                if let (Some(operators), Some(striker), false) =
                    (&altar.from_operators, &altar.from_striker, altar.judged)
                {
                    let _ = judge_tx.send((operators.clone(), striker.clone()));
                    altar.judged = true;
                }
                reply("queued for judgment")
            }
        },
    );
    ctx.report(Report::Ready);
    tokio::pin!(server);
    loop {
        tokio::select! {
            result = &mut server => {
                result.map_err(DemoError::AresListen)?;
                break;
            }
            prayers = judge_rx.recv() => {
                let Some((operators, striker)) = prayers else { break };
                judge(ctx, operators, striker).await?;
            }
            () = ctx.stop_requested() => break,
        }
    }
    Ok(Ending::Stopped)
}

fn reply(status: &str) -> Vec<u8> {
    serde_json::to_vec(&PrayerReply {
        status: status.into(),
    })
    .expect("a reply serializes")
}

/// Both drones die: the striker's prayer is what the judgment answers (its parent), the
/// operators' is linked.
async fn judge(
    ctx: &Ctx,
    (_, operators_span): (Prayer, SpanContext),
    (striker_prayer, striker_span): (Prayer, SpanContext),
) -> Result<(), DemoError> {
    tokio::time::sleep(DELIBERATION).await;
    let mut judgment = ctx
        .tracer
        .span("execute_judgment")
        .parent(&striker_span)
        .link(&operators_span)
        .attribute("prayers", 2i64)
        .attribute("decision", "SACRIFICE")
        .start();
    let unknown = Position {
        latitude: 0.0,
        longitude: 0.0,
    };
    let victims = [
        (
            STRIKER,
            "publish_death_striker",
            striker_prayer.striker_position.unwrap_or(unknown),
        ),
        (
            ORLAN,
            "publish_death_orlan",
            striker_prayer.target_position.unwrap_or(unknown),
        ),
    ];
    let notices = ctx
        .tracer
        .span("publish_death_notice")
        .parent(judgment.span_context())
        .attribute("targets", victims.len())
        .start();
    let fates = async {
        let mut fates = Vec::new();
        for (recipient, span_name, position) in victims {
            let channel = if recipient == ORLAN && ctx.has_fault(Fault::LostDeathNotice) {
                MISSPELT_DEATH_KNELL_CHANNEL
            } else {
                DEATH_KNELL_CHANNEL
            };
            let notice = DeathNotice {
                kind: "SACRIFICE".into(),
                recipient: recipient.into(),
                position,
            };
            let delivery = publish_expecting_receivers(
                ctx,
                channel,
                span_name,
                vec![kv("type", "SACRIFICE"), kv("recipient", recipient)],
                &notice,
            )
            .await?;
            fates.push((recipient, delivery.receivers > 0));
        }
        Ok::<_, DemoError>(fates)
    }
    .in_span(notices)
    .await?;
    let eliminated = fates.iter().filter(|(_, delivered)| *delivered).count();
    let mut summary = vec![kv("eliminated", eliminated)];
    for (recipient, delivered) in fates {
        let fate = if delivered {
            "destroyed"
        } else {
            "notice not delivered"
        };
        summary.push(kv(recipient, fate));
    }
    judgment.add_event("judgment_complete", summary);
    judgment.end();
    Ok(())
}

/// A loopback port that refuses connections: bound by the OS, then closed again.
fn refusing_address() -> Result<SocketAddr, DemoError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(DemoError::AresListen)?;
    listener.local_addr().map_err(DemoError::AresListen)
}
