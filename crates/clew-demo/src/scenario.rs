//! Starting the six services, following the run, and stopping what is left.
//!
//! Order matters once: ares starts first, because fpv-ops and the striker need its
//! address. Then every service subscribes and reports ready before fpv-ops is told to
//! go, since pub/sub delivers only to those subscribed at the moment of publishing.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use clew_model::TraceId;
use clew_sdk::InProcBus;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::process::parse_report_line;
use crate::services::{BusChoice, Phase, Reporter, Setup, drive};
use crate::{DemoError, Export, Fault, Report, Service, TraceLabel};

/// How to start a service as a process: `program args… SERVICE --seed …`.
#[derive(Debug, Clone)]
pub struct ProcessLauncher {
    pub program: PathBuf,
    /// Put before the service's own arguments (for clew: `demo service`).
    pub args: Vec<OsString>,
}

#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// Redis pub/sub instead of the in-process bus.
    pub redis_url: Option<String>,
    /// Services as OS processes instead of tasks (needs `redis_url`).
    pub processes: Option<ProcessLauncher>,
    pub export: Export,
}

/// The trace ids the services reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    pub lock_request: TraceId,
    pub intercept_execution: TraceId,
    pub flight: TraceId,
}

/// How a service ended: 666 for a destroyed drone, 0 for one told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceExit {
    pub service: Service,
    pub code: i32,
    /// The status the OS reported, for a process (`None` for a task).
    pub os_status: Option<i32>,
}

enum Running {
    Tasks {
        phase: watch::Sender<Phase>,
        tasks: Vec<JoinHandle<()>>,
    },
    Processes {
        launcher: ProcessLauncher,
        stdins: BTreeMap<Service, ChildStdin>,
        watchers: Vec<JoinHandle<()>>,
    },
}

/// A running scenario.
pub struct Scenario {
    config: ScenarioConfig,
    shared_bus: Option<BusChoice>,
    reports_tx: mpsc::UnboundedSender<(Service, Report)>,
    reports: mpsc::UnboundedReceiver<(Service, Report)>,
    running: Running,
    ready: BTreeSet<Service>,
    ares_addr: Option<SocketAddr>,
    traces: BTreeMap<TraceLabel, TraceId>,
    exits: BTreeMap<Service, ServiceExit>,
    os_status: BTreeMap<Service, i32>,
}

/// Long enough for a cold Redis connection or process start on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Scenario {
    /// Starts every service and sets the story going; returns once fpv-ops has the
    /// go-ahead.
    pub async fn start(config: ScenarioConfig) -> Result<Scenario, DemoError> {
        if config.processes.is_some() && config.redis_url.is_none() {
            return Err(DemoError::ProcessesNeedRedis);
        }
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (shared_bus, running) = match &config.processes {
            Some(launcher) => (
                None,
                Running::Processes {
                    launcher: launcher.clone(),
                    stdins: BTreeMap::new(),
                    watchers: Vec::new(),
                },
            ),
            None => {
                let bus = match &config.redis_url {
                    Some(url) => BusChoice::Redis(url.clone()),
                    None => BusChoice::Shared(Arc::new(InProcBus::new())),
                };
                (
                    Some(bus),
                    Running::Tasks {
                        phase: watch::channel(Phase::Waiting).0,
                        tasks: Vec::new(),
                    },
                )
            }
        };
        let mut scenario = Scenario {
            config,
            shared_bus,
            reports_tx,
            reports,
            running,
            ready: BTreeSet::new(),
            ares_addr: None,
            traces: BTreeMap::new(),
            exits: BTreeMap::new(),
            os_status: BTreeMap::new(),
        };
        scenario.launch(Service::Ares)?;
        scenario
            .wait_until(START_TIMEOUT, "ares to listen", |s| {
                s.ares_addr.is_some() && s.ready.contains(&Service::Ares)
            })
            .await?;
        for service in [
            Service::TowerSidecar,
            Service::Striker,
            Service::DroneCmd,
            Service::Orlan,
            Service::FpvOps,
        ] {
            scenario.launch(service)?;
        }
        scenario
            .wait_until(START_TIMEOUT, "every service to subscribe", |s| {
                s.ready.len() == Service::ALL.len()
            })
            .await?;
        scenario.go().await;
        Ok(scenario)
    }

    /// The address ares listens on (or refuses on, with `ares-down`).
    pub fn ares_addr(&self) -> Option<SocketAddr> {
        self.ares_addr
    }

    /// Waits until the lock request and intercept execution traces have begun.
    pub async fn trace_ids(&mut self, within: Duration) -> Result<TraceIds, DemoError> {
        self.wait_until(within, "the two traces to begin", |s| {
            s.traces.contains_key(&TraceLabel::LockRequest)
                && s.traces.contains_key(&TraceLabel::InterceptExecution)
                && s.traces.contains_key(&TraceLabel::Flight)
        })
        .await?;
        Ok(TraceIds {
            lock_request: self.traces[&TraceLabel::LockRequest],
            intercept_execution: self.traces[&TraceLabel::InterceptExecution],
            flight: self.traces[&TraceLabel::Flight],
        })
    }

    /// Services that have ended so far.
    pub fn exits(&mut self) -> Vec<ServiceExit> {
        while let Ok((service, report)) = self.reports.try_recv() {
            let _ = self.absorb(service, report);
        }
        self.exits.values().copied().collect()
    }

    /// Tells every service still running to stop and waits until all have ended (each
    /// shuts its tracer provider down first, so their spans are exported); after
    /// `within`, what is left is killed. Returns how each ended.
    pub async fn stop(mut self, within: Duration) -> Result<Vec<ServiceExit>, DemoError> {
        match &mut self.running {
            Running::Tasks { phase, .. } => {
                phase.send_replace(Phase::Stop);
            }
            // End of stdin is a child's signal to stop.
            Running::Processes { stdins, .. } => stdins.clear(),
        }
        let all_ended = self
            .wait_until(within, "the services to stop", |s| {
                s.exits.len() == Service::ALL.len()
            })
            .await;
        if all_ended.is_err() {
            match &self.running {
                Running::Tasks { tasks, .. } => tasks.iter().for_each(JoinHandle::abort),
                // Dropping a watcher drops its child, which kills it.
                Running::Processes { watchers, .. } => watchers.iter().for_each(JoinHandle::abort),
            }
        }
        all_ended?;
        Ok(self.exits.values().copied().collect())
    }

    fn setup(&self, service: Service) -> Setup {
        Setup {
            service,
            seed: self.config.seed,
            faults: self.config.faults.clone(),
            bus: self.shared_bus.clone().unwrap_or_else(|| {
                BusChoice::Redis(self.config.redis_url.clone().unwrap_or_default())
            }),
            export: self.config.export.clone(),
            ares_addr: self.ares_addr,
        }
    }

    fn launch(&mut self, service: Service) -> Result<(), DemoError> {
        let setup = self.setup(service);
        let reports = self.reports_tx.clone();
        match &mut self.running {
            Running::Tasks { phase, tasks } => {
                let phase = phase.subscribe();
                tasks.push(tokio::spawn(async move {
                    let code = drive(setup, Reporter::Channel(reports.clone()), phase).await;
                    let _ = reports.send((service, Report::Exited(code)));
                }));
            }
            Running::Processes {
                launcher,
                stdins,
                watchers,
            } => {
                let mut command = Command::new(&launcher.program);
                command
                    .args(&launcher.args)
                    .arg(service.as_str())
                    .arg("--seed")
                    .arg(setup.seed.to_string())
                    .arg("--redis")
                    .arg(self.config.redis_url.clone().unwrap_or_default())
                    .arg("--export-endpoint")
                    .arg(&setup.export.endpoint)
                    .arg("--export")
                    .arg(setup.export.protocol.as_str());
                for fault in &setup.faults {
                    command.arg("--fault").arg(fault.as_str());
                }
                if let Some(addr) = setup.ares_addr {
                    command.arg("--ares-addr").arg(addr.to_string());
                }
                let mut child = command
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|source| DemoError::Spawn {
                        service,
                        program: launcher.program.display().to_string(),
                        source,
                    })?;
                if let Some(stdin) = child.stdin.take() {
                    stdins.insert(service, stdin);
                }
                let stdout = child.stdout.take().expect("stdout is piped");
                watchers.push(tokio::spawn(async move {
                    let mut lines = BufReader::new(stdout).lines();
                    let mut announced = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        match parse_report_line(&line) {
                            Some(Report::Exited(code)) => announced = Some(code),
                            Some(report) => {
                                let _ = reports.send((service, report));
                            }
                            None => eprintln!("{service}: {line}"),
                        }
                    }
                    let status = child.wait().await.ok().and_then(|s| s.code());
                    // A process status keeps only 8 bits (666 arrives as 154): trust the
                    // code the child announced when the status agrees with it.
                    let code = match (announced, status) {
                        (Some(code), Some(status)) if code & 0xff == status => code,
                        (_, Some(status)) => status,
                        (_, None) => -1,
                    };
                    let _ = reports.send((service, Report::OsStatus(status.unwrap_or(-1))));
                    let _ = reports.send((service, Report::Exited(code)));
                }));
            }
        }
        Ok(())
    }

    async fn go(&mut self) {
        match &mut self.running {
            Running::Tasks { phase, .. } => {
                phase.send_replace(Phase::Go);
            }
            Running::Processes { stdins, .. } => {
                if let Some(stdin) = stdins.get_mut(&Service::FpvOps) {
                    let _ = stdin.write_all(b"go\n").await;
                    let _ = stdin.flush().await;
                }
            }
        }
    }

    /// Takes reports in until `done` holds, a service fails, or `within` passes.
    async fn wait_until(
        &mut self,
        within: Duration,
        what: &str,
        done: impl Fn(&Scenario) -> bool,
    ) -> Result<(), DemoError> {
        let deadline = Instant::now() + within;
        while !done(self) {
            let next = tokio::time::timeout_at(deadline, self.reports.recv()).await;
            match next {
                Ok(Some((service, report))) => self.absorb(service, report)?,
                Ok(None) => unreachable!("the scenario holds a sender"),
                Err(_) => {
                    return Err(DemoError::Timeout {
                        what: what.to_string(),
                        seconds: within.as_secs(),
                    });
                }
            }
        }
        Ok(())
    }

    fn absorb(&mut self, service: Service, report: Report) -> Result<(), DemoError> {
        match report {
            Report::Ready => {
                self.ready.insert(service);
            }
            Report::AresAt(addr) => self.ares_addr = Some(addr),
            Report::Trace(label, id) => {
                self.traces.insert(label, id);
            }
            Report::OsStatus(status) => {
                self.os_status.insert(service, status);
            }
            Report::Exited(code) => {
                let exit = ServiceExit {
                    service,
                    code,
                    os_status: self.os_status.get(&service).copied(),
                };
                self.exits.insert(service, exit);
                if !self.ready.contains(&service) {
                    return Err(DemoError::ExitedEarly { service, code });
                }
            }
            Report::Failed(message) => return Err(DemoError::ServiceFailed { service, message }),
        }
        Ok(())
    }
}
