//! `--wait` for `visor apply` and `visor scale`: after writing, wait until
//! the registry shows what was asked for running (a deployed app: its
//! rollout complete), with progress on stderr, a bar on a terminal and
//! plain lines otherwise, so that stdout stays the command's own output.
//!
//! What counts as there is [`judge_wait`]'s (pure, in `controllers/`); this
//! reads the registry for it after every change until it says done or
//! failed, or the timeout passes, and then names what is still missing.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;
use visor_controllers::{Name, RolloutStatus, WaitGoal, WaitProgress, WaitVerdict, judge_wait};

use super::CliError;
use super::args;
use super::follow::{Change, Changes};
use crate::controller;
use crate::registry::{Error, Visor};

/// `--wait` and `--timeout`, as `visor apply` and `visor scale` take them.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// After writing, wait until what was asked for runs (a deployed app:
    /// until its rollout is complete), with progress on stderr.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits before it fails, naming what is missing
    /// (`90s`, `5m`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        value_parser = args::whole_seconds,
        requires = "wait"
    )]
    pub timeout: u32,
}

impl WaitArgs {
    /// Waits for `goals` if `--wait` was given.
    pub async fn wait_for(&self, visor: &Visor, goals: &[WaitGoal]) -> Result<(), CliError> {
        if !self.wait {
            return Ok(());
        }
        wait(visor, goals, Duration::from_secs(self.timeout.into())).await
    }
}

/// Waits until `goals` are met, they cannot be, or `timeout` passes.
async fn wait(visor: &Visor, goals: &[WaitGoal], timeout: Duration) -> Result<(), CliError> {
    let deadline = Instant::now() + timeout;
    let mut report = Report::new();
    let (mut progress, read_at) = look(visor, goals).await?;
    let mut changes = Changes::after(visor, read_at).await?;
    loop {
        match progress.verdict {
            WaitVerdict::Done => {
                report.finish(&progress);
                return Ok(());
            }
            WaitVerdict::Failed(why) => {
                report.abandon();
                return Err(CliError::WaitFailed { why });
            }
            WaitVerdict::Waiting => report.show(&progress),
        }
        let missing = progress.missing.join("; ");
        match changes.next(Some(deadline)).await? {
            Change::Changed => {}
            Change::Stopped => {
                report.abandon();
                return Err(CliError::WaitStopped { missing });
            }
            Change::TimedOut => {
                report.abandon();
                return Err(CliError::WaitTimedOut {
                    waited: humantime::format_duration(timeout).to_string(),
                    missing,
                });
            }
        }
        progress = look(visor, goals).await?.0;
    }
}

/// Judges `goals` against the registry as it stands; returns the revision
/// the reads began at.
async fn look(visor: &Visor, goals: &[WaitGoal]) -> Result<(WaitProgress, i64), CliError> {
    let status = controller::status(visor).await?;
    let mut rollouts: BTreeMap<Name, RolloutStatus> = BTreeMap::new();
    for goal in goals {
        if let WaitGoal::App {
            app,
            current: Some(_),
        } = goal
        {
            match visor.rollout_status(app.as_str()).await {
                Ok(rollout) => drop(rollouts.insert(app.clone(), rollout.value)),
                // No rollout yet: the wait says what it waits for.
                Err(Error::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    Ok((judge_wait(goals, &status.groups, &rollouts), status.read_at))
}

/// Progress on stderr: a bar on a terminal, otherwise a line per change.
enum Report {
    Bar(ProgressBar),
    Lines { last: Option<String> },
}

impl Report {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines { last: None };
        }
        let bar = ProgressBar::new(0);
        // The template is a constant: a failure to parse it is a bug caught by any run.
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} running  {wide_msg}",
        )
        .expect("invariant: the progress template is valid")
        .progress_chars("=> ");
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn show(&mut self, progress: &WaitProgress) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(progress.desired.into());
                bar.set_position(progress.running.into());
                bar.set_message(progress.missing.join("; "));
            }
            Self::Lines { last } => {
                let line = summary(progress);
                if last.as_ref() != Some(&line) {
                    stderr_line(&line);
                    *last = Some(line);
                }
            }
        }
    }

    fn finish(&mut self, progress: &WaitProgress) {
        let line = format!("done: {}/{} running", progress.running, progress.desired);
        self.abandon();
        stderr_line(&line);
    }

    /// Clears the bar: what follows (the error, naming what is missing, or
    /// the done line) takes its place.
    fn abandon(&mut self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// One line of plain progress, e.g. `waiting: 3/10 running; web v2/http: 3 of 10 running`.
fn summary(progress: &WaitProgress) -> String {
    let mut line = format!("waiting: {}/{} running", progress.running, progress.desired);
    for missing in &progress.missing {
        line += "; ";
        line += missing;
    }
    line
}

fn stderr_line(line: &str) {
    // Progress is a courtesy: a closed stderr must not fail the command.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
