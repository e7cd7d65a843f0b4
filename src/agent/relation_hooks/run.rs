//! Running one hook file through the `hook.run` provider task, and what its
//! result means for the hook.
//!
//! Invariant: every way a run can end maps to one [`Ran`]: a success (the
//! hook exited 0, or the revision has no such hook, which Juju counts a
//! success) or a failure with its reason — never an error that is lost.

use std::collections::BTreeMap;
use std::time::Duration;

use visor_controllers::HOOKS_DIR;

use crate::provider::exec::hook::{HookArgs, HookEnv, HookRun, InsidePath, Output};
use crate::provider::{Caller, Ending};
use crate::telemetry::Chain;

use super::config::UnitContext;
use super::metrics::HookResult;

/// How much longer than the hook's own timeout its call waits: the provider
/// reports a hook that ran past its timeout, with its output, only after
/// killing its group and reading its output to the end.
const CALL_MARGIN: Duration = Duration::from_secs(5);
/// How many bytes of a failed hook's stderr (or stdout) go into its reason.
const OUTPUT_IN_REASON: usize = 512;

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ran {
    /// It exited 0.
    Succeeded,
    /// The revision has no such hook.
    Missing,
    /// It failed (`result` says how) for `reason`.
    Failed {
        /// `failed` or `timed_out`.
        result: HookResult,
        /// Why, for the failure record.
        reason: String,
    },
}

impl Ran {
    /// A failure for `reason`.
    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed {
            result: HookResult::Failed,
            reason: reason.into(),
        }
    }
}

/// Runs `hooks/<hook_name>` of `unit`'s revision with exactly `env`, for up
/// to `timeout`.
pub async fn run_hook(
    caller: &Caller,
    unit: &UnitContext,
    hook_name: &str,
    env: BTreeMap<String, String>,
    timeout: Duration,
) -> Ran {
    let path = format!("{HOOKS_DIR}/{hook_name}");
    let hook = match InsidePath::parse(&path) {
        Ok(hook) => hook,
        Err(invalid) => return Ran::failed(invalid.to_string()),
    };
    let env = match HookEnv::try_from(env) {
        Ok(env) => env,
        Err(invalid) => return Ran::failed(format!("its environment: {invalid}")),
    };
    let args = HookArgs {
        app: unit.app.clone(),
        revision: unit.rev.clone(),
        hook,
        env,
        working_dir: None,
        timeout: Some(timeout),
    };
    let args = match serde_json::to_value(&args) {
        Ok(args) => args,
        Err(error) => return Ran::failed(format!("encoding hook.run's arguments: {error}")),
    };
    let reply = match caller
        .call_with_timeout("hook.run", args, timeout + CALL_MARGIN)
        .await
    {
        Ok(reply) => reply,
        Err(error) => return Ran::failed(format!("calling hook.run: {}", Chain(&error))),
    };
    let provider = &reply.provider;
    if reply.ending == Ending::TimedOut {
        return Ran::Failed {
            result: HookResult::TimedOut,
            reason: format!(
                "provider {provider} did not answer hook.run within {:?}",
                timeout + CALL_MARGIN
            ),
        };
    }
    let result = match reply.response.into_result() {
        Ok(result) => result,
        Err(error) => {
            return Ran::failed(format!("hook.run failed at provider {provider}: {error}"));
        }
    };
    match serde_json::from_value::<HookRun>(result) {
        Ok(run) => judge(run, timeout),
        Err(error) => Ran::failed(format!(
            "provider {provider} answered hook.run with an unreadable result: {error}"
        )),
    }
}

/// What a hook's result means.
fn judge(run: HookRun, timeout: Duration) -> Ran {
    match run {
        HookRun::Missing => Ran::Missing,
        HookRun::Exited { code: 0, .. } => Ran::Succeeded,
        HookRun::Exited {
            code,
            stdout,
            stderr,
        } => Ran::failed(with_output(
            format!("exited with code {code}"),
            &stdout,
            &stderr,
        )),
        HookRun::Signaled {
            signal,
            stdout,
            stderr,
        } => Ran::failed(with_output(
            format!("killed by signal {signal}"),
            &stdout,
            &stderr,
        )),
        HookRun::TimedOut { stdout, stderr } => Ran::Failed {
            result: HookResult::TimedOut,
            reason: with_output(
                format!("ran past its timeout of {timeout:?}"),
                &stdout,
                &stderr,
            ),
        },
    }
}

/// `what`, followed by the end of what the hook wrote on stderr (or, if
/// nothing, on stdout).
fn with_output(what: String, stdout: &Output, stderr: &Output) -> String {
    let output = [stderr, stdout]
        .into_iter()
        .map(|output| output.tail.trim_end())
        .find(|tail| !tail.is_empty());
    let Some(output) = output else {
        return what;
    };
    let mut start = output.len().saturating_sub(OUTPUT_IN_REASON);
    while !output.is_char_boundary(start) {
        start += 1;
    }
    format!("{what}: {}", &output[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(tail: &str) -> Output {
        Output {
            tail: tail.to_owned(),
            dropped_bytes: 0,
        }
    }

    #[test]
    fn every_result_is_a_success_or_a_failure_with_its_reason() {
        let timeout = Duration::from_secs(5);
        let table = [
            (HookRun::Missing, Ran::Missing),
            (
                HookRun::Exited {
                    code: 0,
                    stdout: output("fine\n"),
                    stderr: output(""),
                },
                Ran::Succeeded,
            ),
            (
                HookRun::Exited {
                    code: 3,
                    stdout: output("out\n"),
                    stderr: output("no database\n"),
                },
                Ran::failed("exited with code 3: no database"),
            ),
            (
                HookRun::Signaled {
                    signal: 9,
                    stdout: output("last words\n"),
                    stderr: output(""),
                },
                Ran::failed("killed by signal 9: last words"),
            ),
            (
                HookRun::TimedOut {
                    stdout: output(""),
                    stderr: output(""),
                },
                Ran::Failed {
                    result: HookResult::TimedOut,
                    reason: "ran past its timeout of 5s".to_owned(),
                },
            ),
        ];
        for (run, expected) in table {
            assert_eq!(judge(run.clone(), timeout), expected, "{run:?}");
        }
    }

    #[test]
    fn a_reason_keeps_only_the_end_of_long_output() {
        let long = format!("{}é{}", "x".repeat(600), "y".repeat(OUTPUT_IN_REASON - 1));
        let reason = with_output("exited".to_owned(), &output(""), &output(&long));
        assert!(
            reason.len() <= "exited: ".len() + OUTPUT_IN_REASON,
            "{}",
            reason.len()
        );
        assert!(reason.ends_with('y'));
    }
}
