//! `clew demo`: the embedded server plus the built-in drone scenario.

use anyhow::{Result, bail};
use clap::Args;

#[derive(Args)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs, _http_addr: Option<std::net::SocketAddr>) -> Result<()> {
    bail!("the drone scenario is not built yet")
}
