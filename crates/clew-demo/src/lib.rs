//! The drone-intercept scenario of the seed document, built on clew's SDK: clew's
//! built-in demo (`clew demo`) and its end-to-end test.
//!
//! Six services (fpv-ops, tower-sidecar, striker, drone-cmd, ares, orlan) talk over the
//! channels `striker_control_channel`, `drone_command`, `striker_lock_response_channel`
//! and `death-knell` (an in-process bus, or Redis pub/sub), and over TCP to ares on a
//! free loopback port. Every service has its own tracer provider exporting OTLP to a
//! collector, and together they produce the seed's two traces:
//!
//! * **lock request**: fpv-ops publishes `publish_lock_request_striker` (PRODUCER, the
//!   root); the sidecar's `tower_receive_…` CONSUMER and `tower_forward_…` PRODUCER
//!   pair, striker's and drone-cmd's `consume_striker_control_channel` CONSUMERs with
//!   the `lock_request_received` and `interceptor_locked` events;
//! * **intercept execution**: drone-cmd's `calculate_intercept_commands` root and
//!   `publish_intercept_commands`, striker's `consume_drone_command` and
//!   `execute_intercept` (the pursuit, then `reached_intercept_distance`), then path A
//!   (`send_lock_ack` → `publish_lock_ack` → fpv-ops' `consume_lock_response` →
//!   `request_strike_authorization` → `send_prayer_tcp` → ares' `receive_prayer`) and
//!   path B in parallel (striker's `request_strike_authorization` → `send_prayer_tcp`
//!   → `receive_prayer`), ares' `execute_judgment` (child of the striker's prayer,
//!   linked to fpv-ops') → `publish_death_notice` → `publish_death_striker` and
//!   `publish_death_orlan`, each fanned out to the sidecar, its recipient (whose
//!   `consume_death-knell` records `drone_destroyed`, after which the service flushes
//!   and exits with 666) and drone-cmd (`death_metrics_recorded`), and finally ares'
//!   `judgment_complete`.
//!
//! The seed's step 6, `flight_mission` "continues existing span", is the striker's
//! long-lived flight span: the root of a third, one-span trace that starts at take-off
//! and ends when the striker dies. `execute_intercept` links to it (`relation =
//! continues`) rather than being its child, since the seed makes `execute_intercept`
//! the child of `consume_drone_command`.
//!
//! # Counts
//! The seed says "Total Spans: 47", but its own numbered list has 43 entries: 34 spans
//! and 8 events in the two traces, plus `flight_mission`. This scenario records exactly
//! those 34 spans (5 + 29) and 8 events, and `flight_mission` in its own trace.
//!
//! # Conventions
//! Exits follow `clew-replay`'s conventions: `drone_destroyed` carries
//! `process.exit.code = 666` (an exit, not a fault). Faults (`--fault`): `ares-down`
//! (ares refuses connections: both `send_prayer_tcp` CLIENT spans record an `exception`
//! event and end with status ERROR; no judgment) and `lost-death-notice` (orlan's notice
//! goes to a misspelt channel nobody subscribes to: `publish_death_orlan` ends with
//! ERROR and `clew.demo.receivers = 0`; orlan never dies).
//!
//! # Determinism
//! Positions, headings, distances and the number of pursuit steps come from the seed
//! through SplitMix64 ([`world`]), so the same seed records the same attribute values;
//! ids and times are live. The pursuit takes a few dozen milliseconds per simulated
//! step, so a run lasts a second or two.
//!
//! It depends on `clew-sdk` and `clew-model`, like any instrumented application, and on
//! `clew-replay` only for the names of its faults,
//! and must never import the store, ingest, query, server or CLI crates: the collector
//! it exports to is whatever the caller points it at.

mod messages;
mod process;
mod scenario;
mod services;
pub mod world;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

pub use messages::{
    DEATH_KNELL_CHANNEL, DRONE_COMMAND_CHANNEL, LOCK_RESPONSE_CHANNEL,
    MISSPELT_DEATH_KNELL_CHANNEL, STRIKER_CONTROL_CHANNEL,
};
pub use process::{ServiceProcess, run_service_process};
pub use scenario::{ProcessLauncher, Scenario, ScenarioConfig, ServiceExit, TraceIds};

/// The seed used when none is given, so that `clew demo` tells the same story each time.
pub const DEFAULT_SEED: u64 = 1;

/// The exit code of a drone after its death notice, as in the seed (`sys.exit(666)`).
/// A process's exit status keeps only the low 8 bits: its parent sees 154.
pub const DESTROYED_EXIT_CODE: i32 = 666;

/// The six services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    FpvOps,
    TowerSidecar,
    Striker,
    DroneCmd,
    Ares,
    Orlan,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::FpvOps,
        Service::TowerSidecar,
        Service::Striker,
        Service::DroneCmd,
        Service::Ares,
        Service::Orlan,
    ];

    /// Its `service.name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::FpvOps => "fpv-ops",
            Service::TowerSidecar => "tower-sidecar",
            Service::Striker => "striker",
            Service::DroneCmd => "drone-cmd",
            Service::Ares => "ares",
            Service::Orlan => "orlan",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = DemoError;
    fn from_str(s: &str) -> Result<Service, DemoError> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| DemoError::UnknownService(s.to_string()))
    }
}

/// Something that goes wrong on purpose, for `clew replay` to find. The fault names are
/// replay's, so `clew demo --fault X` and `clew replay verify --fault X` mean one thing.
pub use clew_replay::flows::Fault;

/// Which of the two traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TraceLabel {
    LockRequest,
    InterceptExecution,
    /// The striker's `flight_mission`, which `execute_intercept` links to.
    Flight,
}

impl TraceLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceLabel::LockRequest => "lock_request",
            TraceLabel::InterceptExecution => "intercept_execution",
            TraceLabel::Flight => "flight",
        }
    }

    fn parse(s: &str) -> Option<TraceLabel> {
        [
            TraceLabel::LockRequest,
            TraceLabel::InterceptExecution,
            TraceLabel::Flight,
        ]
        .into_iter()
        .find(|label| label.as_str() == s)
    }
}

/// How spans leave the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportProtocol {
    /// OTLP/gRPC, in batches cut by size and time.
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, in batches cut by size and time.
    Http,
    /// The agent wire protocol (a unix socket or `tcp://`): one `BatchCommand` per
    /// message handler, as APM agents send to their per-host daemon.
    Agent,
}

impl ExportProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportProtocol::Grpc => "grpc",
            ExportProtocol::Http => "http",
            ExportProtocol::Agent => "agent",
        }
    }
}

impl FromStr for ExportProtocol {
    type Err = DemoError;
    fn from_str(s: &str) -> Result<ExportProtocol, DemoError> {
        match s {
            "grpc" => Ok(ExportProtocol::Grpc),
            "http" => Ok(ExportProtocol::Http),
            "agent" => Ok(ExportProtocol::Agent),
            other => Err(DemoError::UnknownProtocol(other.to_string())),
        }
    }
}

/// Where the services export to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `http://127.0.0.1:4317` for gRPC, `http://127.0.0.1:4318` for HTTP, the agent's
    /// unix socket path or `tcp://127.0.0.1:6590` for the agent protocol.
    pub endpoint: String,
    pub protocol: ExportProtocol,
}

/// How many spans each trace has when everything arrived: what a caller waits for.
pub fn expected_span_counts(faults: &[Fault]) -> [(TraceLabel, usize); 2] {
    // The lock request trace: the root, the sidecar's pair, two consumers.
    let lock_request = 5;
    let intercept = if faults.contains(&Fault::AresDown) {
        // calculate, publish, sidecar pair, consume, execute, send_lock_ack,
        // publish_lock_ack, sidecar pair, consume_lock_response, and both paths'
        // request_strike_authorization + send_prayer_tcp; no receive_prayer.
        15
    } else {
        // The above, both receive_prayer, execute_judgment, publish_death_notice, and
        // per death notice the PRODUCER, the sidecar's pair and two consumers.
        let delivered = if faults.contains(&Fault::LostDeathNotice) {
            1
        } else {
            2
        };
        15 + 2 + 2 + 2 + delivered * 4
    };
    [
        (TraceLabel::LockRequest, lock_request),
        (TraceLabel::InterceptExecution, intercept),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "unknown service {0:?}; expected fpv-ops, tower-sidecar, striker, drone-cmd, ares or orlan"
    )]
    UnknownService(String),
    #[error("unknown export protocol {0:?}; expected grpc, http or agent")]
    UnknownProtocol(String),
    #[error("cannot export the spans: {0}")]
    Export(String),
    #[error(
        "--processes runs each service as its own OS process, and the in-process bus cannot cross processes: give it a Redis with --redis redis://127.0.0.1:6379"
    )]
    ProcessesNeedRedis,
    #[error("cannot reach the message bus (is Redis running there?): {source}")]
    Bus {
        service: Service,
        #[source]
        source: clew_sdk::messaging::BusError,
    },
    #[error("ares cannot listen for prayers on 127.0.0.1: {0}")]
    AresListen(#[source] std::io::Error),
    #[error("{service} needs the address of ares")]
    NoAresAddress { service: Service },
    #[error("cannot start the {service} process ({program}): {source}")]
    Spawn {
        service: Service,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{service} failed: {message}")]
    ServiceFailed { service: Service, message: String },
    #[error("{service} exited with code {code} before it was ready (its error is above)")]
    ExitedEarly { service: Service, code: i32 },
    #[error("gave up after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
}

/// What a service tells whoever started it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Report {
    /// Subscribed (and, for ares, listening): messages sent from now on reach it.
    Ready,
    AresAt(SocketAddr),
    Trace(TraceLabel, clew_model::TraceId),
    Exited(i32),
    /// A process's exit status as the OS reported it (sent just before `Exited`).
    OsStatus(i32),
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for service in Service::ALL {
            assert_eq!(service.as_str().parse::<Service>().unwrap(), service);
        }
        for fault in Fault::ALL {
            assert_eq!(fault.as_str().parse::<Fault>().unwrap(), fault);
        }
        assert!("zeus".parse::<Service>().is_err());
        assert!("ares-up".parse::<Fault>().is_err());
    }

    #[test]
    fn the_full_story_has_the_seeds_34_spans() {
        let [(_, lock), (_, intercept)] = expected_span_counts(&[]);
        assert_eq!((lock, intercept), (5, 29));
        assert_eq!(expected_span_counts(&[Fault::LostDeathNotice])[1].1, 25);
        assert_eq!(expected_span_counts(&[Fault::AresDown])[1].1, 15);
    }
}
