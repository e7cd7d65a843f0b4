//! `visor status`: desired against active per (app, rev, proc), unplaceable
//! work, live hosts and the current leader.

use super::CliError;
use super::output::{Output, Row};
use crate::controller::{self, GroupStatus};
use crate::registry::Visor;

impl Row for GroupStatus {
    const HEADERS: &'static [&'static str] =
        &["app", "rev", "proc", "desired", "active", "unplaceable"];
    fn cells(&self) -> Vec<String> {
        vec![
            self.app.clone(),
            self.rev.clone(),
            self.proc.clone(),
            self.desired.to_string(),
            self.active.to_string(),
            self.unplaceable.to_string(),
        ]
    }
}

pub async fn run(visor: &Visor, out: &Output) -> Result<(), CliError> {
    let status = controller::status(visor).await?;
    if out.is_structured() {
        out.json(&status)?;
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
