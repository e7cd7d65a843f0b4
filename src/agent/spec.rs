//! What an instance is started with, gathered from the registry at the
//! moment it starts: its proc type, its revision's unpacked artifact, its
//! app's env, and a port.
//!
//! Invariants: the environment is exactly the app's env vars plus
//! `VISOR_INSTANCE`, `VISOR_APP`, `VISOR_REV`, `VISOR_PROC`, `VISOR_HOST`
//! and `PORT` (Visor's own win over an app var of the same name), with
//! `PATH` defaulted when the app sets none; a relative program (`./bin/web`)
//! is the revision's, and the working directory is the unpacked revision.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::Utc;
use visor_controllers::{CommandLine, Instance, Name, ProcType};

use super::context::Context;
use super::journal::{Record, Step};
use crate::provider::exec::instance::StartArgs;
use crate::telemetry::Chain;

/// The `PATH` of an instance whose app sets none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Everything one invocation is started with.
#[derive(Debug, Clone)]
pub struct Launch {
    pub instance: Name,
    pub app: Name,
    pub rev: Name,
    pub proc_name: Name,
    pub proc: ProcType,
    pub port: Option<u16>,
    pub app_env: BTreeMap<String, String>,
    pub args: StartArgs,
}

impl Launch {
    /// The journal record of this invocation, carrying over what `previous`
    /// (the instance's last one) counted.
    pub fn record(&self, previous: Option<Record>) -> Record {
        let (restarts, restart_count, endpoint) = previous
            .map(|p| (p.restarts, p.restart_count, p.endpoint))
            .unwrap_or_default();
        Record {
            instance: self.instance.clone(),
            app: self.app.clone(),
            rev: self.rev.clone(),
            proc: self.proc_name.clone(),
            port: self.port,
            invocation: self.args.invocation.clone(),
            step: Step::Starting,
            restarts,
            restart_count,
            endpoint,
            updated_at: Utc::now(),
        }
    }
}

/// What a start reads from the registry: the instance's proc type, its
/// revision's archive, and its app's env, as they are when it starts.
#[derive(Debug, Clone)]
pub struct Inputs {
    proc: ProcType,
    archive_url: String,
    app_env: BTreeMap<String, String>,
}

/// Reads the [`Inputs`] of a start of proc `proc_name` of `app`'s revision
/// `rev` (at once, in parallel); the reason they cannot be read, for the
/// instance's `reason`.
pub async fn read_inputs(
    ctx: &Context,
    app: &Name,
    rev: &Name,
    proc_name: &Name,
) -> Result<Inputs, String> {
    let visor = &ctx.visor;
    let read = |what: &str, error: crate::Error| format!("cannot read {what}: {}", Chain(&error));
    let (proc, revision, envs) = tokio::join!(
        visor.proc(app.as_str(), proc_name.as_str()),
        visor.rev(app.as_str(), rev.as_str()),
        visor.envs(app.as_str()),
    );
    let proc = proc
        .map_err(|e| read(&format!("proc type {app}/{proc_name}"), e))?
        .value;
    let revision = revision
        .map_err(|e| read(&format!("revision {app}/{rev}"), e))?
        .value;
    let envs = envs.map_err(|e| read(&format!("the env of {app}"), e))?;
    let app_env = envs
        .items
        .into_iter()
        .map(|env| (env.name().to_owned(), env.value))
        .collect();
    Ok(Inputs {
        proc,
        archive_url: revision.archive_url,
        app_env,
    })
}

/// Gathers what invocation `invocation` of instance `id` starts with, from
/// `inputs` (read now when not given); the reason it cannot start, for the
/// instance's `reason`.
pub async fn prepare(
    ctx: &Context,
    id: &Name,
    instance: &Instance,
    invocation: String,
    inputs: Option<Inputs>,
) -> Result<Launch, String> {
    let (app, rev, proc_name) = (&instance.app, &instance.rev, &instance.proc);
    let Inputs {
        proc,
        archive_url,
        app_env,
    } = match inputs {
        Some(inputs) => inputs,
        None => read_inputs(ctx, app, rev, proc_name).await?,
    };
    let command = CommandLine::parse(&proc.command).map_err(|invalid| invalid.to_string())?;
    let port = ctx
        .ports
        .take(id, proc.port)
        .map_err(|error| error.to_string())?;
    let dir = ctx
        .artifact(app, rev, &archive_url)
        .await
        .map_err(|error| error.to_string())?;
    let env = environment(
        &app_env,
        [
            ("VISOR_INSTANCE", id.as_str()),
            ("VISOR_APP", app.as_str()),
            ("VISOR_REV", rev.as_str()),
            ("VISOR_PROC", proc_name.as_str()),
            ("VISOR_HOST", ctx.host.as_str()),
            ("PORT", &port.to_string()),
        ],
    );
    let args = StartArgs {
        instance: id.to_string(),
        invocation,
        command: program(&dir, &command.program),
        args: command.args,
        env,
        working_dir: Some(dir),
        kill_timeout: Some(std::time::Duration::from_secs(u64::from(
            proc.kill_timeout_secs(),
        ))),
        logs: None,
    };
    Ok(Launch {
        instance: id.clone(),
        app: app.clone(),
        rev: rev.clone(),
        proc_name: proc_name.clone(),
        proc,
        port: Some(port),
        app_env,
        args,
    })
}

/// The instance's environment: the app's vars, then Visor's over them.
fn environment<'a>(
    app_env: &BTreeMap<String, String>,
    visor: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<String, String> {
    let mut env = app_env.clone();
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.extend(visor.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
    env
}

/// The program to run: a relative path with a `/` is inside the revision.
fn program(revision: &Path, program: &str) -> String {
    let path = PathBuf::from(program);
    if path.is_relative() && program.contains('/') {
        revision.join(path).display().to_string()
    } else {
        program.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_programs_are_the_revisions_and_bare_names_are_looked_up() {
        let dir = Path::new("/data/artifacts/web/v1");
        assert_eq!(
            program(dir, "./bin/web"),
            "/data/artifacts/web/v1/./bin/web"
        );
        assert_eq!(program(dir, "bin/web"), "/data/artifacts/web/v1/bin/web");
        assert_eq!(program(dir, "/usr/bin/env"), "/usr/bin/env");
        assert_eq!(program(dir, "python3"), "python3");
    }

    #[test]
    fn visor_vars_win_and_path_is_defaulted() {
        let app = BTreeMap::from([
            ("PORT".to_owned(), "80".to_owned()),
            ("MODE".to_owned(), "prod".to_owned()),
        ]);
        let env = environment(&app, [("PORT", "20001"), ("VISOR_APP", "web")]);
        assert_eq!(env["PORT"], "20001");
        assert_eq!(env["MODE"], "prod");
        assert_eq!(env["PATH"], DEFAULT_PATH);
        let with_path = BTreeMap::from([("PATH".to_owned(), "/opt/bin".to_owned())]);
        assert_eq!(environment(&with_path, [])["PATH"], "/opt/bin");
    }
}
