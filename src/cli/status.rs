//! `visor status [-w]`: desired against active and running per (app, rev,
//! proc), unplaceable work, live hosts and the current leader; with `-w`,
//! again whenever it changes, until SIGINT or SIGTERM.

use clap::Args;

use super::CliError;
use super::follow::{Change, Changes};
use super::output::{Output, Row};
use visor_controllers::GroupProgress;

use crate::controller::{self, Status};
use crate::registry::Visor;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Follow it: print it again whenever it changes (a JSON object per
    /// line with `-o json`), until Ctrl-C.
    #[arg(short = 'w', long)]
    watch: bool,
}

impl Row for GroupProgress {
    const HEADERS: &'static [&'static str] = &[
        "app",
        "rev",
        "proc",
        "desired",
        "active",
        "running",
        "stopping",
        "unplaceable",
    ];
    fn cells(&self) -> Vec<String> {
        vec![
            self.key.app.to_string(),
            self.key.rev.to_string(),
            self.key.proc.to_string(),
            self.desired.to_string(),
            self.active.to_string(),
            self.running.to_string(),
            self.stopping.to_string(),
            self.unplaceable.to_string(),
        ]
    }
}

pub async fn run(visor: &Visor, args: StatusArgs, out: &Output) -> Result<(), CliError> {
    let mut status = controller::status(visor).await?;
    print(&status, out)?;
    if !args.watch {
        return Ok(());
    }
    let mut changes = Changes::after(visor, status.read_at).await?;
    while changes.next(None).await? == Change::Changed {
        let now = controller::status(visor).await?;
        // A change elsewhere in the registry (a hook, a setting) shows nothing new.
        if !same(&now, &status) {
            if !out.is_structured() {
                out.text("")?;
            }
            print(&now, out)?;
        }
        status = now;
    }
    Ok(())
}

/// Whether `a` and `b` print the same.
fn same(a: &Status, b: &Status) -> bool {
    (&a.groups, a.hosts_alive, &a.leader) == (&b.groups, b.hosts_alive, &b.leader)
}

fn print(status: &Status, out: &Output) -> Result<(), CliError> {
    if out.is_structured() {
        out.json(status)?;
        return Ok(());
    }
    out.list(&status.groups)?;
    out.text("")?;
    out.text(&format!("hosts alive: {}", status.hosts_alive))?;
    out.text(&format!(
        "leader: {}",
        status.leader.as_deref().unwrap_or("none")
    ))?;
    Ok(())
}
