//! `clew bench`: load generators that measure a whole running system.
//!
//! Benchmarks, not tests: nothing here asserts a speed. Each figure is printed with the
//! conditions it was measured under, and `compare` measures clew's peer in the same run.
//! BENCHMARKS.md at the repository root keeps the latest figures and the commands.

mod agent;
mod compare;
mod ingest;
mod query;
mod stats;
mod workload;

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Send pre-built OTLP batches at full speed over several connections; report spans
    /// acknowledged per second, request latency and errors. With `--total-spans`, fills a
    /// server for `bench query`.
    Ingest(ingest::IngestArgs),
    /// Start `clew serve` and rotel (blackhole exporter) in turn, send both the same load,
    /// and print a comparison with bytes stored per span and the machine it ran on.
    Compare(compare::CompareArgs),
    /// Measure trace-by-id and search latency of a running server that holds data.
    Query(query::QueryArgs),
    /// Send requests over the agent protocol, one `BatchCommand` per request from many
    /// clients; report spans per second and the round-trip latency of each batch.
    Agent(agent::AgentArgs),
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::command(args).await,
        BenchCommand::Compare(args) => compare::command(args).await,
        BenchCommand::Query(args) => query::command(args).await,
        BenchCommand::Agent(args) => agent::command(args).await,
    }
}
