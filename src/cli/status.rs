//! `visor status`: desired against active per (app, rev, proc), unplaceable
//! work, live hosts and the current leader.

use super::output::{Output, Row};
use crate::controller::{self, GroupStatus};
use crate::registry::{Error, Visor};

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

pub async fn run(visor: &Visor, out: &Output) -> Result<(), Error> {
    let status = controller::status(visor).await?;
    if out.is_json() {
        out.json(&status);
        return Ok(());
    }
    out.list(&status.groups);
    println!();
    println!("hosts alive: {}", status.hosts_alive);
    println!("leader: {}", status.leader.as_deref().unwrap_or("none"));
    Ok(())
}
