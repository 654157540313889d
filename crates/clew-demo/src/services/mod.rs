//! The six services and what they share: a tracer provider of their own, the bus, the
//! seeded world, and a line to whoever started them.
//!
//! A service is an async function from its [`Ctx`] to how it ended. The same function
//! runs as a task (in-process bus or Redis) or as the body of an OS process (Redis);
//! only [`Reporter`] and the [`Phase`] feed differ.

mod ares;
mod drone_cmd;
mod fpv_ops;
mod orlan;
mod striker;
mod tower_sidecar;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clew_sdk::messaging::{self, Message, MessagingError, Subscription};
use clew_sdk::{
    AgentExporter, BatchConfig, BatchProcessor, Bus, Envelope, OtlpGrpcExporter, OtlpHttpExporter,
    RedisBus, StatusCode, Tracer, TracerProvider,
};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::world::World;
use crate::{DESTROYED_EXIT_CODE, DemoError, Export, ExportProtocol, Fault, Report, Service};

/// Where a run is: services wait for `Go` (only fpv-ops does, to start the story) and
/// finish on `Stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Waiting,
    Go,
    Stop,
}

/// How the service reaches whoever started it.
#[derive(Clone)]
pub(crate) enum Reporter {
    Channel(mpsc::UnboundedSender<(Service, Report)>),
    /// One line per report on stdout, read by the parent process.
    Stdout,
}

impl Reporter {
    pub(crate) fn report(&self, service: Service, report: Report) {
        match self {
            Reporter::Channel(tx) => {
                let _ = tx.send((service, report));
            }
            Reporter::Stdout => println!("{}", crate::process::report_line(&report)),
        }
    }
}

/// The bus a service uses: the scenario's shared in-process bus, or its own Redis
/// connection (as separate applications would have).
#[derive(Clone)]
pub(crate) enum BusChoice {
    Shared(Arc<dyn Bus>),
    Redis(String),
}

/// Everything a service needs to start.
#[derive(Clone)]
pub(crate) struct Setup {
    pub service: Service,
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub bus: BusChoice,
    pub export: Export,
    pub ares_addr: Option<SocketAddr>,
}

pub(crate) struct Ctx {
    pub service: Service,
    pub tracer: Tracer,
    pub bus: Arc<dyn Bus>,
    pub world: World,
    pub faults: Vec<Fault>,
    pub ares_addr: Option<SocketAddr>,
    reporter: Reporter,
    phase: watch::Receiver<Phase>,
}

/// How a service's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Stopped,
    Destroyed,
}

impl Ending {
    fn exit_code(self) -> i32 {
        match self {
            Ending::Stopped => 0,
            Ending::Destroyed => DESTROYED_EXIT_CODE,
        }
    }
}

impl Ctx {
    pub(crate) fn report(&self, report: Report) {
        self.reporter.report(self.service, report);
    }

    pub(crate) fn has_fault(&self, fault: Fault) -> bool {
        self.faults.contains(&fault)
    }

    pub(crate) fn ares_addr(&self) -> Result<SocketAddr, DemoError> {
        self.ares_addr.ok_or(DemoError::NoAresAddress {
            service: self.service,
        })
    }

    pub(crate) async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, DemoError> {
        self.bus
            .subscribe(channels)
            .await
            .map_err(|source| DemoError::Bus {
                service: self.service,
                source,
            })
    }

    /// Waits for the go-ahead; `false` when told to stop first.
    pub(crate) async fn go_ahead(&self) -> bool {
        let mut phase = self.phase.clone();
        matches!(
            phase.wait_for(|p| *p != Phase::Waiting).await.map(|p| *p),
            Ok(Phase::Go)
        )
    }

    /// Resolves once the service is told to stop (or whoever started it is gone).
    pub(crate) async fn stop_requested(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| *p == Phase::Stop).await;
    }

    /// The next message, or `None` when told to stop or the bus closed.
    pub(crate) async fn next_message(&self, subscription: &mut Subscription) -> Option<Message> {
        tokio::select! {
            message = subscription.recv() => message,
            () = self.stop_requested() => None,
        }
    }

    pub(crate) fn messaging_error(&self, error: MessagingError) -> DemoError {
        DemoError::ServiceFailed {
            service: self.service,
            message: error.to_string(),
        }
    }
}

/// Runs one service to its end, then shuts its tracer provider down, which exports
/// every span that ended: the caller may exit the process right after. Returns the
/// exit code.
pub(crate) async fn drive(setup: Setup, reporter: Reporter, phase: watch::Receiver<Phase>) -> i32 {
    let service = setup.service;
    let provider = match provider(&setup.export) {
        Ok(provider) => provider,
        Err(error) => {
            reporter.report(service, Report::Failed(error.to_string()));
            return 1;
        }
    };
    let tracer = provider.tracer(service.as_str());
    let outcome = async {
        let bus: Arc<dyn Bus> = match setup.bus {
            BusChoice::Shared(bus) => bus,
            BusChoice::Redis(url) => Arc::new(
                RedisBus::connect(&url)
                    .await
                    .map_err(|source| DemoError::Bus { service, source })?,
            ),
        };
        let ctx = Ctx {
            service,
            tracer,
            bus,
            world: World::from_seed(setup.seed),
            faults: setup.faults,
            ares_addr: setup.ares_addr,
            reporter: reporter.clone(),
            phase,
        };
        match service {
            Service::FpvOps => fpv_ops::run(&ctx).await,
            Service::TowerSidecar => tower_sidecar::run(&ctx).await,
            Service::Striker => striker::run(&ctx).await,
            Service::DroneCmd => drone_cmd::run(&ctx).await,
            Service::Ares => ares::run(&ctx).await,
            Service::Orlan => orlan::run(&ctx).await,
        }
    }
    .await;
    if let Err(error) = provider.shutdown_async().await {
        tracing::warn!(%service, %error, "spans may be lost: the exporter did not shut down cleanly");
    }
    match outcome {
        Ok(ending) => ending.exit_code(),
        Err(error) => {
            reporter.report(service, Report::Failed(error.to_string()));
            1
        }
    }
}

/// How long ended spans wait before they are exported: short, so the caller sees the
/// story arrive while the services still run.
const EXPORT_DELAY: Duration = Duration::from_millis(100);

fn provider(export: &Export) -> Result<TracerProvider, DemoError> {
    let by_size = BatchConfig {
        scheduled_delay: EXPORT_DELAY,
        ..BatchConfig::default()
    };
    let processor = match export.protocol {
        ExportProtocol::Grpc => {
            BatchProcessor::new(OtlpGrpcExporter::new(&export.endpoint), by_size)
        }
        ExportProtocol::Http => {
            BatchProcessor::new(OtlpHttpExporter::new(&export.endpoint), by_size)
        }
        ExportProtocol::Agent => BatchProcessor::new(
            AgentExporter::new(&export.endpoint).map_err(|e| DemoError::Export(e.to_string()))?,
            BatchConfig {
                scheduled_delay: EXPORT_DELAY,
                ..AgentExporter::batch_config()
            },
        ),
    };
    Ok(TracerProvider::builder()
        .with_processor(processor)
        .with_scope("clew-demo", env!("CARGO_PKG_VERSION"))
        .build())
}

/// What a publish that checks its receivers learned.
pub(crate) struct Delivery {
    pub receivers: usize,
}

/// Publishes `body` in a PRODUCER span named `name` (a child of the current context)
/// and ends the span with status ERROR when nobody received the message.
///
/// `messaging::publish` ends its span before the caller learns the receiver count, so
/// a publisher that treats "nobody listened" as a failure builds the span itself.
pub(crate) async fn publish_expecting_receivers<T: Serialize>(
    ctx: &Ctx,
    channel: &str,
    name: &'static str,
    attributes: Vec<clew_sdk::Attribute>,
    body: &T,
) -> Result<Delivery, DemoError> {
    use clew_sdk::messaging::semconv::{MESSAGING_MESSAGE_BODY_SIZE, MESSAGING_MESSAGE_ID};
    let envelope_error = |error| ctx.messaging_error(MessagingError::Envelope(error));
    let mut envelope = Envelope::new(body).map_err(envelope_error)?;
    let message_id = random_message_id();
    let mut span = messaging::producer(ctx.tracer, ctx.bus.system(), channel)
        .name(name)
        .attributes(attributes)
        .attribute(MESSAGING_MESSAGE_ID, message_id.clone())
        .attribute(MESSAGING_MESSAGE_BODY_SIZE, envelope.payload_json().len())
        .start();
    envelope.inject(&span.context());
    envelope.message_id = Some(message_id);
    let published = ctx
        .bus
        .publish_bytes(channel, envelope.to_vec().into())
        .await;
    let receivers = match published {
        Ok(receivers) => receivers,
        Err(error) => {
            span.record_error(&error);
            return Err(ctx.messaging_error(MessagingError::Bus(error)));
        }
    };
    if receivers == 0 {
        span.set_attribute("clew.demo.receivers", 0i64);
        span.set_status(
            StatusCode::Error,
            format!("no subscriber on {channel}: the message is lost"),
        );
    }
    span.end();
    Ok(Delivery { receivers })
}

fn random_message_id() -> String {
    format!("{:016x}", rand_u64())
}

/// Message ids only need to be unique, not seeded: the time and a counter will do
/// without pulling in a random number crate.
fn rand_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut mix = crate::world::SplitMix64::new(
        clew_sdk::now_unix_nanos()
            ^ (u64::from(std::process::id()) << 32)
            ^ COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    mix.next_u64()
}

/// The seed's `drone_destroyed`, marked as a process exit the way `clew-replay` reads
/// one (`process.exit.code`) and not as a fault: this exit is the story working.
pub(crate) fn destroyed_event(span: &mut clew_sdk::Span) {
    span.add_event(
        "drone_destroyed",
        [
            clew_sdk::kv("alive", false),
            clew_sdk::kv("process.exit.code", i64::from(DESTROYED_EXIT_CODE)),
        ],
    );
}
