//! One instance this host runs, from its start to its end: a task of its own
//! (a *slot*) that starts the process through the provider tasks, checks its
//! readiness, reports it running, registers its endpoint, watches it, restarts
//! it in place within the restart budget, and stops it when told.
//!
//! Invariants: every step is recorded in the journal before it is taken
//! (the invocation id before the process is spawned, `stopping` before it is
//! stopped), so a restarted agent resumes a slot where it was; commands are
//! taken in the order they were sent; an endpoint is deregistered cleanly
//! before a stop, and ends as a death (its lease revoked) when the process
//! dies on its own.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use visor_controllers::{
    ExitCause, ExitVerdict, Instance, InstanceState, Name, ProcType, RestartBudget, judge_exit,
};

use super::context::{Context, Moved};
use super::journal::{Record, Step};
use super::metrics::{InstancePhase, Outcome};
use super::readiness::wait_ready;
use super::relation_hooks::UnitContext;
use super::spec::{self, Launch};
use crate::discovery::{self, Registration};
use crate::provider::exec::instance::InstanceStatus;
use crate::provider::exec::{Exit, State};
use crate::registry::{Backoff, Versioned};
use crate::telemetry::Chain;

/// How long one `instance.wait` lasts before it is asked again.
const WAIT_SLICE: Duration = Duration::from_secs(25);
/// How long the agent waits before asking a provider that failed again.
const PROVIDER_RETRY: Duration = Duration::from_secs(1);

/// Why a slot stops its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop ticket.
    Ticket,
    /// The host is leaving.
    Drain,
    /// The registry says the instance is no longer this host's (lost,
    /// ended, or gone): nothing is written.
    Replaced,
    /// The host lost the registry for longer than the disconnect window:
    /// nothing can be written.
    Disconnected,
}

impl StopReason {
    fn writes_registry(self) -> bool {
        matches!(self, Self::Ticket | Self::Drain)
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Ticket => "stopped",
            Self::Drain => "stopped: its host drained",
            Self::Replaced => "stopped: the registry no longer has it on this host",
            Self::Disconnected => "stopped: its host lost the registry",
        }
    }
}

/// Where a slot is, for whoever waits on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Starting its process.
    Starting,
    /// Its process runs (and passed its readiness check).
    Running,
    /// The slot ended: the instance exited, failed or was stopped.
    Ended(String),
}

enum Command {
    Stop {
        reason: StopReason,
        done: oneshot::Sender<()>,
    },
}

/// A handle on a slot: send it commands, watch its phase.
#[derive(Debug, Clone)]
pub struct SlotHandle {
    commands: mpsc::UnboundedSender<Command>,
    phase: watch::Receiver<Phase>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stop { reason, .. } => write!(f, "Stop({reason:?})"),
        }
    }
}

impl SlotHandle {
    /// Waits until the slot is past starting; its phase then.
    pub async fn started(&self) -> Phase {
        let mut phase = self.phase.clone();
        match phase.wait_for(|p| *p != Phase::Starting).await {
            Ok(p) => p.clone(),
            Err(_) => Phase::Ended("the slot ended".into()),
        }
    }

    /// Stops the slot's process and waits until it is stopped (or the slot
    /// ended on its own).
    pub async fn stop(&self, reason: StopReason) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop { reason, done }).is_ok() {
            let _ = stopped.await;
        }
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| matches!(p, Phase::Ended(_))).await;
    }
}

/// The claim of a pending instance, made while its start goes on: the
/// instance as moved to `claimed`, or why it was not.
pub type Claim = JoinHandle<Result<(Moved, Option<Versioned<Instance>>), crate::Error>>;

/// How a slot begins.
#[derive(Debug)]
pub enum Begin {
    /// An instance not started yet, as last read or written, with what its
    /// start reads from the registry (or why that read failed), and its
    /// claim if that is still out (else it is claimed already).
    Fresh {
        instance: Versioned<Instance>,
        inputs: Box<Result<spec::Inputs, String>>,
        claim: Option<Claim>,
    },
    /// An instance this agent recorded before it restarted.
    Resume(Record),
}

/// Starts a slot for instance `id` and registers it in the context.
pub fn spawn(ctx: &Arc<Context>, id: Name, begin: Begin) -> SlotHandle {
    let (commands, receiver) = mpsc::unbounded_channel();
    let (phase_tx, phase) = watch::channel(Phase::Starting);
    let handle = SlotHandle { commands, phase };
    ctx.lock_slots().insert(id.clone(), handle.clone());
    ctx.set_phase(&id, Some(InstancePhase::Starting));
    let slot = Slot {
        ctx: Arc::clone(ctx),
        id,
        record: None,
        proc: None,
        endpoint: None,
        known: None,
        claim: None,
        backoff: ctx.config.restart_backoff().start(),
        commands: receiver,
        phase: phase_tx,
    };
    tokio::spawn(slot.run(begin));
    handle
}

struct Slot {
    ctx: Arc<Context>,
    id: Name,
    /// The journal record of the current invocation, once there is one.
    record: Option<Record>,
    /// The proc type it was last started from.
    proc: Option<ProcType>,
    endpoint: Option<Registration>,
    /// The instance as this slot last read or wrote it, for the next write.
    known: Option<Versioned<Instance>>,
    /// The claim made beside the first start, until it is in.
    claim: Option<Claim>,
    backoff: Backoff,
    commands: mpsc::UnboundedReceiver<Command>,
    phase: watch::Sender<Phase>,
}

/// How the slot's process ended, or that it was told to stop.
enum Ended {
    Exit(ExitCause),
    Stop(StopReason, Option<oneshot::Sender<()>>),
    /// The agent is shutting down without a drain: the process keeps
    /// running and a restarted agent re-attaches to it.
    Detach,
}

impl Slot {
    async fn run(mut self, begin: Begin) {
        let outcome = self.drive(begin).await;
        // Unregistered before the phase says ended, so that whoever waits
        // on the end finds no slot for the instance.
        self.ctx.lock_slots().remove(&self.id);
        self.ctx.set_phase(&self.id, None);
        self.ctx.unit_gone(&self.id);
        if outcome != "detached" {
            self.ctx.ports.release(&self.id);
        }
        self.phase.send_replace(Phase::Ended(outcome));
    }

    /// Runs the slot to its end; what ended it.
    async fn drive(&mut self, begin: Begin) -> String {
        let first = match begin {
            Begin::Fresh {
                instance,
                inputs,
                claim,
            } => {
                let spec = instance.value.clone();
                self.known = Some(instance);
                self.claim = claim;
                self.launch(&spec, new_invocation(), Some(*inputs)).await
            }
            Begin::Resume(record) => self.resume(record).await,
        };
        let mut ended = match first {
            Ok(ended) => ended,
            Err(reason) => {
                self.ctx.metrics.started(Outcome::Failed);
                return self.fail(reason).await;
            }
        };
        loop {
            let ran = self.running_for();
            match ended {
                Ended::Detach => return "detached".into(),
                Ended::Stop(reason, done) => {
                    let outcome = self.stop(reason).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return outcome;
                }
                Ended::Exit(cause) => match self.judge(cause) {
                    ExitVerdict::Failed(reason) => return self.fail(reason).await,
                    ExitVerdict::Exited(reason) => return self.exit(reason).await,
                    ExitVerdict::Restart => {
                        ended = match self.restart(cause, ran).await {
                            Ok(ended) => ended,
                            Err(reason) => {
                                self.ctx.metrics.started(Outcome::Failed);
                                return self.fail(reason).await;
                            }
                        }
                    }
                },
            }
        }
    }

    /// Starts a new invocation of `instance` (from `inputs`, read now when
    /// not given); then supervises it.
    async fn launch(
        &mut self,
        instance: &Instance,
        invocation: String,
        inputs: Option<Result<spec::Inputs, String>>,
    ) -> Result<Ended, String> {
        let started = self.prepare_and_start(instance, invocation, inputs).await;
        // Nothing is written of the instance before the claim made beside
        // its start is in; refused, what was started is stopped unreported.
        if let Some(why) = self.settle_claim().await {
            tracing::info!(instance = %self.id, %why, "not starting");
            return Ok(Ended::Stop(StopReason::Replaced, None));
        }
        let (launch, status) = started?;
        self.supervise_started(launch, status).await
    }

    async fn prepare_and_start(
        &mut self,
        instance: &Instance,
        invocation: String,
        inputs: Option<Result<spec::Inputs, String>>,
    ) -> Result<(Launch, InstanceStatus), String> {
        let inputs = inputs.transpose()?;
        let launch = spec::prepare(&self.ctx, &self.id, instance, invocation, inputs).await?;
        let status = self.start(&launch).await?;
        Ok((launch, status))
    }

    /// Waits for the claim made beside the start, if one is out: `None`
    /// once the instance is this host's (its claimed copy kept for the next
    /// write), or why it is not.
    async fn settle_claim(&mut self) -> Option<String> {
        let claim = self.claim.take()?;
        match claim.await {
            Ok(Ok((Moved::Done, written))) => {
                self.known = written;
                None
            }
            Ok(Ok((Moved::Gone(why), _))) => Some(why),
            Ok(Err(error)) => Some(format!("cannot claim it: {}", Chain(&error))),
            Err(error) => Some(format!("its claim did not finish: {error}")),
        }
    }

    /// Starts `launch`'s invocation, recorded first.
    async fn start(&mut self, launch: &Launch) -> Result<InstanceStatus, String> {
        let mut record = launch.record(self.record.take());
        record.step = Step::Starting;
        self.write(&record)?;
        self.record = Some(record);
        self.proc = Some(launch.proc.clone());
        let status = self
            .ctx
            .tasks
            .start(&launch.args)
            .await
            .map_err(|error| error.to_string());
        match status {
            Ok(status) => {
                self.set_step(Step::Running)?;
                Ok(status)
            }
            Err(reason) => {
                self.forget();
                Err(reason)
            }
        }
    }

    /// After a start: the readiness check, `running` in the registry, the
    /// endpoint, the unit; then watches the process.
    async fn supervise_started(
        &mut self,
        launch: Launch,
        status: InstanceStatus,
    ) -> Result<Ended, String> {
        if status.state == State::Exited || status.state == State::Lost {
            return Ok(Ended::Exit(cause(&status)));
        }
        if let Some(readiness) = &launch.proc.readiness {
            let check = wait_ready(readiness, launch.port);
            tokio::select! {
                ready = check => {
                    if let Err(reason) = ready {
                        self.kill_current().await;
                        return Err(reason);
                    }
                }
                command = self.commands.recv() => return Ok(self.command_ended(command)),
            }
        }
        let known = self.known.take();
        match self
            .ctx
            .move_instance_from(&self.id, known, InstanceState::Running, launch.port, None)
            .await
        {
            Ok((Moved::Done, _)) => {}
            Ok((Moved::Gone(why), _)) => {
                tracing::info!(instance = %self.id, %why, "stopping an instance the registry no longer has here");
                return Ok(Ended::Stop(StopReason::Replaced, None));
            }
            Err(error) => {
                tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot report the instance running");
                return Ok(Ended::Detach);
            }
        }
        self.register_endpoint(&launch).await;
        self.ctx.unit_running(UnitContext {
            unit: self.id.clone(),
            app: launch.app.clone(),
            rev: launch.rev.clone(),
            proc: launch.proc_name.clone(),
            env: launch.app_env.clone(),
        });
        self.phase.send_replace(Phase::Running);
        self.ctx.set_phase(&self.id, Some(InstancePhase::Running));
        self.ctx.metrics.started(Outcome::Ok);
        Ok(self.watch().await)
    }

    /// Takes a slot recorded before the agent restarted back.
    async fn resume(&mut self, record: Record) -> Result<Ended, String> {
        if let Some(port) = record.port {
            self.ctx.ports.hold(&self.id, port);
        }
        let step = record.step;
        let invocation = record.invocation.clone();
        self.record = Some(record);
        let attached = self.ctx.tasks.attach(self.id.as_str(), &invocation).await;
        let read = match self.ctx.visor.instance(self.id.as_str()).await {
            Ok(read) => read,
            Err(crate::Error::NotFound(_)) => {
                return Ok(Ended::Stop(StopReason::Replaced, None));
            }
            Err(error) => {
                tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot read the instance; keeping it as recorded");
                return Ok(self.watch().await);
            }
        };
        let instance = read.value.clone();
        if instance.state.is_terminal() || instance.host.as_ref() != Some(&self.ctx.host) {
            return Ok(Ended::Stop(StopReason::Replaced, None));
        }
        // Started beside its claim, and the agent stopped before the claim
        // was in: it is claimed now, before anything else is written.
        if instance.state == InstanceState::Pending {
            let claim = self
                .ctx
                .move_instance_from(&self.id, Some(read), InstanceState::Claimed, None, None)
                .await;
            match claim {
                Ok((Moved::Done, written)) => self.known = written,
                Ok((Moved::Gone(why), _)) => {
                    tracing::info!(instance = %self.id, %why, "not resuming");
                    return Ok(Ended::Stop(StopReason::Replaced, None));
                }
                Err(error) => {
                    tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot claim the instance");
                    return Ok(Ended::Stop(StopReason::Replaced, None));
                }
            }
        }
        match (step, attached) {
            (Step::Stopping, _) => Ok(Ended::Stop(StopReason::Ticket, None)),
            (_, Ok(status)) if status.state == State::Running => {
                tracing::info!(instance = %self.id, invocation, "re-attached");
                let launch =
                    spec::prepare(&self.ctx, &self.id, &instance, invocation, None).await?;
                self.proc = Some(launch.proc.clone());
                self.supervise_started(launch, status).await
            }
            (Step::Running, Ok(status)) => Ok(Ended::Exit(cause(&status))),
            (Step::Running, Err(error)) => {
                tracing::warn!(instance = %self.id, error = %error, "the recorded invocation is gone");
                Ok(Ended::Exit(ExitCause::Unknown))
            }
            // Recorded as starting: it may never have been spawned. Starting
            // the same invocation again is idempotent.
            (Step::Starting, _) => self.launch(&instance, invocation, None).await,
        }
    }

    /// Watches the running process until it ends or a command comes.
    async fn watch(&mut self) -> Ended {
        loop {
            let Some(record) = &self.record else {
                return Ended::Exit(ExitCause::Unknown);
            };
            let (id, invocation) = (record.instance.to_string(), record.invocation.clone());
            let tasks = self.ctx.tasks.clone();
            let waited = tasks.wait(&id, &invocation, WAIT_SLICE);
            tokio::select! {
                command = self.commands.recv() => return self.command_ended(command),
                () = self.ctx.shutdown.cancelled() => return Ended::Detach,
                status = waited => match status {
                    Ok(status) if matches!(status.state, State::Exited | State::Lost) => {
                        return Ended::Exit(cause(&status));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(instance = %self.id, error = %error, "cannot watch the instance; asking again");
                        tokio::select! {
                            () = tokio::time::sleep(PROVIDER_RETRY) => {}
                            () = self.ctx.shutdown.cancelled() => return Ended::Detach,
                        }
                    }
                }
            }
        }
    }

    fn command_ended(&self, command: Option<Command>) -> Ended {
        match command {
            Some(Command::Stop { reason, done }) => Ended::Stop(reason, Some(done)),
            None => Ended::Detach,
        }
    }

    fn judge(&self, cause: ExitCause) -> ExitVerdict {
        let restarts = self.record.as_ref().map_or(&[][..], |r| &r.restarts[..]);
        let policy = self.proc.as_ref().map(|p| p.restart).unwrap_or_default();
        let budget = RestartBudget {
            max_restarts: self.ctx.config.max_restarts,
            window: chrono::Duration::from_std(self.ctx.config.restart_window)
                .unwrap_or(chrono::Duration::MAX),
        };
        judge_exit(policy, cause, restarts, Utc::now(), budget)
    }

    /// Restarts the process in place after a backoff; what ended the new one.
    async fn restart(&mut self, cause: ExitCause, ran: Duration) -> Result<Ended, String> {
        tracing::info!(instance = %self.id, %cause, "restarting");
        self.ctx
            .set_phase(&self.id, Some(InstancePhase::Restarting));
        self.ctx.metrics.restarted();
        self.endpoint_died().await;
        self.ctx.unit_gone(&self.id);
        let window = self.ctx.config.restart_window;
        if let Some(record) = &mut self.record {
            let now = Utc::now();
            let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
            record.restarts.retain(|at| *at > since);
            record.restarts.push(now);
            record.restart_count = record.restart_count.saturating_add(1);
        }
        if let Some(record) = self.record.clone() {
            self.write(&record)?;
        }
        let (visor, id, host) = (&self.ctx.visor, self.id.as_str(), self.ctx.host.as_str());
        if let Err(error) = self
            .ctx
            .persist("restart count", || visor.count_restart(id, host))
            .await
        {
            tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot count the restart");
        }
        let delay = self.backoff.next_delay(ran);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            command = self.commands.recv() => return Ok(self.command_ended(command)),
        }
        let instance = self
            .ctx
            .visor
            .instance(self.id.as_str())
            .await
            .map_err(|error| Chain(&error).to_string())?;
        self.launch(&instance.value, new_invocation(), None).await
    }

    /// Stops the process as `reason` says.
    async fn stop(&mut self, reason: StopReason) -> String {
        self.ctx.set_phase(&self.id, Some(InstancePhase::Stopping));
        self.endpoint_stopped().await;
        let writes = reason.writes_registry();
        if writes {
            let _ = self.set_step(Step::Stopping);
            self.report(InstanceState::Stopping, None).await;
        }
        // Served until its process is gone: the relation hooks a stopping
        // unit is handed (departed, broken) run while it stops.
        self.kill_current().await;
        self.ctx.unit_gone(&self.id);
        if writes {
            self.report(InstanceState::Exited, Some(reason.reason().to_owned()))
                .await;
        }
        self.forget();
        reason.reason().to_owned()
    }

    /// The process exited as its proc type allows.
    async fn exit(&mut self, reason: String) -> String {
        self.endpoint_stopped().await;
        self.report(InstanceState::Exited, Some(reason.clone()))
            .await;
        self.forget();
        reason
    }

    /// The instance failed: it will not run here again.
    async fn fail(&mut self, reason: String) -> String {
        tracing::warn!(instance = %self.id, %reason, "instance failed");
        self.endpoint_died().await;
        self.report(InstanceState::Failed, Some(reason.clone()))
            .await;
        self.forget();
        reason
    }

    async fn report(&self, to: InstanceState, reason: Option<String>) {
        match self.ctx.move_instance(&self.id, to, None, reason).await {
            Ok(Moved::Done) => {}
            Ok(Moved::Gone(why)) => {
                tracing::info!(instance = %self.id, %why, state = %to, "not reported")
            }
            Err(error) => {
                tracing::warn!(instance = %self.id, error = %Chain(&error), state = %to, "cannot report the instance's state")
            }
        }
    }

    /// Stops the current invocation, if any, within the kill timeout.
    async fn kill_current(&self) {
        let Some(record) = &self.record else { return };
        let kill_timeout = self.proc.as_ref().map_or(
            ProcType::DEFAULT_KILL_TIMEOUT_SECS,
            ProcType::kill_timeout_secs,
        );
        let stopped = self
            .ctx
            .tasks
            .stop(
                record.instance.as_str(),
                &record.invocation,
                Duration::from_secs(u64::from(kill_timeout)),
            )
            .await;
        match stopped {
            Ok(_) => self.ctx.metrics.stopped(Outcome::Ok),
            Err(error) => {
                self.ctx.metrics.stopped(Outcome::Failed);
                tracing::warn!(instance = %self.id, error = %error, "cannot stop the instance");
            }
        }
    }

    async fn register_endpoint(&mut self, launch: &Launch) {
        let (Some(service), Some(port)) = (&launch.proc.service, launch.port) else {
            return;
        };
        let ports = service
            .schemes
            .iter()
            .map(|scheme| (scheme.clone(), port.to_string()))
            .collect();
        let request = discovery::RegisterRequest {
            hostname: self.ctx.config.addr.clone(),
            ports,
            host: Some(self.ctx.host.to_string()),
            instance: Some(self.id.to_string()),
            app: Some(launch.app.to_string()),
            proc: Some(launch.proc_name.to_string()),
            id: self.record.as_ref().and_then(|r| r.endpoint.clone()),
            ..discovery::RegisterRequest::default()
        };
        match discovery::register(&self.ctx.visor, service.name.as_str(), request).await {
            Ok(registration) => {
                let id = registration.id().to_owned();
                self.endpoint = Some(registration);
                if let Some(mut record) = self.record.clone()
                    && record.endpoint.as_deref() != Some(&id)
                {
                    record.endpoint = Some(id);
                    if self.write(&record).is_ok() {
                        self.record = Some(record);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(instance = %self.id, service = %service.name, error = %Chain(&error), "cannot register the endpoint")
            }
        }
    }

    /// The endpoint leaves cleanly (before a stop).
    async fn endpoint_stopped(&mut self) {
        if let Some(endpoint) = self.endpoint.take()
            && let Err(error) = endpoint.stop().await
        {
            tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot deregister the endpoint; it dies with its lease");
        }
        self.clear_endpoint();
    }

    /// The endpoint dies with its process.
    async fn endpoint_died(&mut self) {
        if let Some(endpoint) = self.endpoint.take()
            && let Err(error) = endpoint.abandon().await
        {
            tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot revoke the endpoint's lease; it expires on its own");
        }
        self.clear_endpoint();
    }

    fn clear_endpoint(&mut self) {
        if let Some(record) = &mut self.record {
            record.endpoint = None;
        }
    }

    fn set_step(&mut self, step: Step) -> Result<(), String> {
        let Some(mut record) = self.record.clone() else {
            return Ok(());
        };
        record.step = step;
        self.write(&record)?;
        self.record = Some(record);
        Ok(())
    }

    fn write(&self, record: &Record) -> Result<(), String> {
        let mut record = record.clone();
        record.updated_at = Utc::now();
        self.ctx
            .journal
            .write(&record)
            .map_err(|error| Chain(&error).to_string())
    }

    /// The journal no longer needs the instance.
    fn forget(&mut self) {
        if let Err(error) = self.ctx.journal.remove(&self.id) {
            tracing::warn!(instance = %self.id, error = %Chain(&error), "cannot remove the instance record");
        }
        self.record = None;
    }

    fn running_for(&self) -> Duration {
        self.record.as_ref().map_or(Duration::ZERO, |record| {
            (Utc::now() - record.updated_at)
                .to_std()
                .unwrap_or_default()
        })
    }
}

/// An invocation id: new for every run of an instance.
fn new_invocation() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How an ended invocation ended.
fn cause(status: &InstanceStatus) -> ExitCause {
    match status.exit {
        Some(Exit {
            signal: Some(signal),
            ..
        }) => ExitCause::Signal(signal),
        Some(Exit {
            code: Some(code), ..
        }) => ExitCause::Code(code),
        _ => ExitCause::Unknown,
    }
}
