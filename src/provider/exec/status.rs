//! An instance's life as its supervisor records it, and what a caller makes
//! of that record: the one state machine of the exec provider.
//!
//! The supervisor (`visor shim`) writes a [`Status`] to the instance
//! directory at every change: `running` once the workload is spawned,
//! `stopping` when a stop begins, `exited` (with the exit) last. A caller
//! asks the supervisor first and reads the file only when no supervisor
//! answers, so [`observe`] decides from both.
//!
//! Invariants: a status only moves forward (`running → stopping → exited`,
//! or `running → exited`), never out of `exited`; and every answer is for
//! one invocation: an answer about another invocation than the caller's is a
//! refusal, never a status (PIDs are reused, invocation ids are not).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an instance's workload is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The workload runs.
    Running,
    /// A stop began: the workload was asked to terminate and may be killed.
    Stopping,
    /// The workload exited; its exit is recorded.
    Exited,
    /// The record says the workload runs but no supervisor answers for it
    /// (the supervisor was killed, or the host restarted): its fate is
    /// unknown. Never written to the file, only reported.
    Lost,
}

/// How a workload ended: an exit code, or the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exit {
    /// The exit code, when it exited by itself.
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// When the supervisor saw it end.
    pub exited_at: DateTime<Utc>,
}

/// What is known of one invocation of an instance: the status file's content
/// and every answer of the instance tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    /// The instance id.
    pub instance: String,
    /// The invocation id it was started with.
    pub invocation: String,
    /// Where it is.
    pub state: State,
    /// The workload's process id: backend detail, for people and tools; no
    /// decision is ever taken from it.
    pub pid: Option<u32>,
    /// When the workload was spawned.
    pub started_at: DateTime<Utc>,
    /// How it ended, once `exited`.
    pub exit: Option<Exit>,
}

/// A change of [`Status`] the supervisor records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A stop began.
    Stopping,
    /// The workload ended.
    Exited(Exit),
}

/// A change the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an instance cannot go from {from:?} to {to:?}")]
pub struct IllegalTransition {
    /// The state it was in.
    pub from: State,
    /// The state the event leads to.
    pub to: State,
}

impl Status {
    /// The status of a workload spawned at `started_at` as `pid`.
    pub fn running(instance: &str, invocation: &str, pid: u32, started_at: DateTime<Utc>) -> Self {
        Self {
            instance: instance.to_owned(),
            invocation: invocation.to_owned(),
            state: State::Running,
            pid: Some(pid),
            started_at,
            exit: None,
        }
    }

    /// The status after `event`. A second `Stopping` is no change (stop is
    /// idempotent); anything out of `exited`, or into a state not ahead of
    /// this one, is refused.
    pub fn apply(&self, event: Event) -> Result<Self, IllegalTransition> {
        let mut next = self.clone();
        match (self.state, event) {
            (State::Running | State::Stopping, Event::Stopping) => next.state = State::Stopping,
            (State::Running | State::Stopping, Event::Exited(exit)) => {
                next.state = State::Exited;
                next.exit = Some(exit);
            }
            (from, event) => {
                let to = match event {
                    Event::Stopping => State::Stopping,
                    Event::Exited(_) => State::Exited,
                };
                return Err(IllegalTransition { from, to });
            }
        }
        Ok(next)
    }

    /// Whether the workload may still be running (nothing more will change
    /// once it is `exited` or `lost`).
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Running | State::Stopping)
    }
}

/// What asking an instance's supervisor gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It answered with the status of the invocation asked about.
    Status(Status),
    /// It answers for another invocation of the instance than the caller's.
    OtherInvocation {
        /// That invocation.
        invocation: String,
        /// Whether its workload may still run: a supervisor answers for a
        /// moment after its workload exited.
        live: bool,
    },
    /// Nothing answered: no socket, a stale socket, or a supervisor that
    /// went away before answering.
    Gone,
}

/// What a caller knows of an instance after asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The invocation it asked about, as it is.
    Status(Status),
    /// The instance is (or last was) another invocation.
    Other {
        /// That invocation.
        invocation: String,
        /// Whether a supervisor answered that it may still run.
        live: bool,
    },
    /// Nothing was ever started for the instance (or its record is gone).
    Unknown,
}

/// Decides what a caller presenting `invocation` knows, from the
/// supervisor's `answer` and the status `file` (read after asking). A
/// supervisor's answer wins; without one, the file's `running` or
/// `stopping` means the supervisor died without recording an exit: `lost`.
pub fn observe(invocation: &str, answer: Answer, file: Option<Status>) -> Observed {
    match answer {
        Answer::Status(status) => Observed::Status(status),
        Answer::OtherInvocation { invocation, live } => Observed::Other { invocation, live },
        Answer::Gone => match file {
            None => Observed::Unknown,
            // Without a supervisor, nothing of it runs under Visor any more.
            Some(status) if status.invocation != invocation => Observed::Other {
                invocation: status.invocation,
                live: false,
            },
            Some(mut status) => {
                if status.is_live() {
                    status.state = State::Lost;
                }
                Observed::Status(status)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("a valid timestamp")
    }

    fn exit(code: i32) -> Exit {
        Exit {
            code: Some(code),
            signal: None,
            exited_at: at(20),
        }
    }

    fn status(invocation: &str, state: State) -> Status {
        let mut status = Status::running("i-1", invocation, 42, at(10));
        status.state = state;
        if state == State::Exited {
            status.exit = Some(exit(3));
        }
        status
    }

    #[test]
    fn transitions() {
        use State::*;
        let table = [
            (Running, Event::Stopping, Ok(Stopping)),
            (Running, Event::Exited(exit(0)), Ok(Exited)),
            (Stopping, Event::Stopping, Ok(Stopping)),
            (Stopping, Event::Exited(exit(0)), Ok(Exited)),
            (Exited, Event::Stopping, Err((Exited, Stopping))),
            (Exited, Event::Exited(exit(0)), Err((Exited, Exited))),
            (Lost, Event::Stopping, Err((Lost, Stopping))),
            (Lost, Event::Exited(exit(0)), Err((Lost, Exited))),
        ];
        for (from, event, want) in table {
            let got = status("a", from)
                .apply(event)
                .map(|s| s.state)
                .map_err(|e| (e.from, e.to));
            assert_eq!(got, want, "{from:?} on {event:?}");
        }
    }

    #[test]
    fn an_exit_is_recorded_with_the_transition() {
        let exited = status("a", State::Stopping)
            .apply(Event::Exited(exit(7)))
            .expect("stopping may exit");
        assert_eq!(exited.exit, Some(exit(7)));
        assert_eq!((exited.pid, exited.started_at), (Some(42), at(10)));
        assert!(!exited.is_live());
    }

    #[test]
    fn observation_table() {
        use State::*;
        let cases = [
            // The supervisor's answer wins over the file.
            (
                Answer::Status(status("a", Running)),
                Some(status("a", Exited)),
                Observed::Status(status("a", Running)),
            ),
            (
                Answer::OtherInvocation {
                    invocation: "b".into(),
                    live: true,
                },
                None,
                Observed::Other {
                    invocation: "b".into(),
                    live: true,
                },
            ),
            // A supervisor answering after its workload exited.
            (
                Answer::OtherInvocation {
                    invocation: "b".into(),
                    live: false,
                },
                Some(status("b", Exited)),
                Observed::Other {
                    invocation: "b".into(),
                    live: false,
                },
            ),
            // Without a supervisor: the file decides.
            (Answer::Gone, None, Observed::Unknown),
            (
                Answer::Gone,
                Some(status("a", Exited)),
                Observed::Status(status("a", Exited)),
            ),
            (
                Answer::Gone,
                Some(status("a", Running)),
                Observed::Status(status("a", Lost)),
            ),
            (
                Answer::Gone,
                Some(status("a", Stopping)),
                Observed::Status(status("a", Lost)),
            ),
            (
                Answer::Gone,
                Some(status("b", Running)),
                Observed::Other {
                    invocation: "b".into(),
                    live: false,
                },
            ),
        ];
        for (answer, file, want) in cases {
            let what = format!("{answer:?} with {file:?}");
            assert_eq!(observe("a", answer, file), want, "{what}");
        }
    }

    #[test]
    fn status_documents_round_trip_and_refuse_unknown_fields() {
        let exited = status("a", State::Exited);
        let text = serde_json::to_string(&exited).expect("serializes");
        assert_eq!(serde_json::from_str::<Status>(&text).ok(), Some(exited));
        let mut value = serde_json::to_value(status("a", State::Running)).expect("serializes");
        value["extra"] = 1.into();
        assert!(serde_json::from_value::<Status>(value).is_err());
    }
}
