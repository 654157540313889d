//! `clew agent`: the per-host daemon that APM language agents and clew's SDK send
//! their spans to.
//!
//! This crate owns:
//! - the APM core-agent wire protocol as Scout's public Python and Node agents speak it
//!   ([`protocol`], [`frame`]): length-prefixed JSON frames, one reply per frame, a
//!   `BatchCommand` answered once;
//! - the mapping of its requests, spans and tags onto clew's model ([`assembly`]): a
//!   request is a trace rooted at a span for the request, and a `traceparent` tag joins
//!   an existing distributed trace; clew's extension, the span batch, carries whole spans
//!   (ids, kind, status, events, links) for SDKs that have them ([`span_batch_commands`]);
//! - the listeners (unix socket and TCP, many clients, state isolated per connection),
//!   the bounded queue in front of a [`SpanSink`], and draining on stop ([`Agent`]);
//! - the daemon's life ([`daemon`]): one agent per socket (a lock plus a live probe),
//!   real daemonizing with a readiness report, stale socket and pid files replaced,
//!   `stop` and `status`; and the `core-agent start …` command line ([`compat`]);
//! - the standalone sink, OTLP/HTTP to a collector through a bounded on-disk spool
//!   ([`OtlpForwarder`]), and the client ([`AgentClient`]) that clew's SDK and
//!   `clew agent send` use.
//!
//! What a request that never finished becomes: its spans are kept, the open ones end at
//! the last instant the agent heard of the request, carry `clew.unfinished = true` and an
//! ERROR status, go to the sink, and a [`LifecycleHook`] is told so the trace can be
//! completed as orphaned.
//!
//! It must never import the store, query, server or CLI crates: inside `clew serve` the
//! server hands it a sink that feeds the ingest pipeline, so data flows down and nothing
//! here reaches back up. Its clew dependencies are `clew-model`, `clew-propagation`
//! (to read `traceparent`) and `clew-otlp` (to encode for the collector).

mod address;
pub mod assembly;
mod client;
pub mod compat;
pub mod daemon;
mod forward;
pub mod frame;
pub mod protocol;
mod server;
mod sink;
mod span_batch;
mod timestamp;

pub use address::{AddressError, AgentAddress, ProbeResult};
pub use assembly::{AbandonReason, AssembledTrace, Session, SessionLimits};
pub use client::{AgentClient, ClientError, RequestCommands, send_messages};
pub use daemon::{
    AgentLock, AgentStatus, DaemonError, DaemonPaths, DaemonReport, Forked, LockOutcome, Readiness,
    StartOptions, StartOutcome, StopOutcome, agent_status, daemonize, start_agent, stop_agent,
    termination,
};
pub use forward::{ForwardError, ForwarderConfig, OtlpForwarder, SpoolStats};
pub use protocol::{Command, Reply};
pub use server::{
    Agent, AgentConfig, AgentError, AgentStats, DEFAULT_SOCKET_NAME, DEFAULT_TCP_ADDR, DrainReport,
    run_agent,
};
pub use sink::{AbandonedTrace, LifecycleHook, MemorySink, SinkError, SpanSink};
pub use span_batch::{attribute_to_json, register_resource, span_batch_commands};
pub use timestamp::{Timestamp, TimestampError};
