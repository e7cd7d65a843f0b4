//! The instance life cycle: which state changes are legal, and who may make them.
//!
//! `pending → claimed → running → stopping → exited`, plus `failed` and `lost`.
//! Hosts move their own instances; only the controller marks an instance `lost`
//! (its host is gone, so nobody else could). Terminal states never change.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::model::{Instance, InstanceState};
use crate::name::Name;

/// Who asks for a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A host agent, by host name.
    Host(Name),
    /// The (leading) controller.
    Controller,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host(host) => write!(f, "host {host}"),
            Self::Controller => f.write_str("the controller"),
        }
    }
}

/// A refused state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No actor may ever move an instance between these two states.
    #[error("illegal instance transition from {from} to {to}")]
    Illegal {
        /// The instance's current state.
        from: InstanceState,
        /// The requested state.
        to: InstanceState,
    },
    /// The transition is legal, but not for this actor.
    #[error("{actor} may not move an instance from {from} to {to}: {why}")]
    NotPermitted {
        /// Who asked.
        actor: String,
        /// The instance's current state.
        from: InstanceState,
        /// The requested state.
        to: InstanceState,
        /// Who may, instead.
        why: String,
    },
    /// A restart in place counted on an instance that is not its host's
    /// claimed or running one.
    #[error("{host} may not count a restart of a {state} instance: {why}")]
    NotRestartable {
        /// The host that asked.
        host: Name,
        /// The instance's state.
        state: InstanceState,
        /// Why not.
        why: String,
    },
}

/// Who may make a legal transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mover {
    /// The host the instance is assigned to; any host while it has none.
    Owner,
    /// Only the controller.
    Controller,
}

/// The transition table: `None` where the pair is illegal.
fn mover(from: InstanceState, to: InstanceState) -> Option<Mover> {
    use InstanceState::*;
    match (from, to) {
        (Pending, Claimed) | (Pending, Stopping) => Some(Mover::Owner),
        (Claimed, Running) | (Claimed, Stopping) | (Claimed, Failed) => Some(Mover::Owner),
        (Running, Stopping) | (Running, Exited) | (Running, Failed) => Some(Mover::Owner),
        (Stopping, Exited) | (Stopping, Failed) => Some(Mover::Owner),
        (Pending | Claimed | Running | Stopping, Lost) => Some(Mover::Controller),
        _ => None,
    }
}

/// Checks that `actor` may move `instance` to `to`.
pub fn check(instance: &Instance, to: InstanceState, actor: &Actor) -> Result<(), TransitionError> {
    let from = instance.state;
    let refuse = |why: String| TransitionError::NotPermitted {
        actor: actor.to_string(),
        from,
        to,
        why,
    };
    match (mover(from, to), actor) {
        (None, _) => Err(TransitionError::Illegal { from, to }),
        (Some(Mover::Controller), Actor::Controller) => Ok(()),
        (Some(Mover::Controller), Actor::Host(_)) => {
            Err(refuse("only the controller marks an instance lost".into()))
        }
        (Some(Mover::Owner), Actor::Controller) => {
            Err(refuse("only the host that owns the instance may".into()))
        }
        (Some(Mover::Owner), Actor::Host(host)) => match &instance.host {
            Some(owner) if owner != host => {
                Err(refuse(format!("the instance belongs to host {owner}")))
            }
            None if to != InstanceState::Claimed => Err(refuse(
                "the instance has no host yet; it must be claimed first".into(),
            )),
            _ => Ok(()),
        },
    }
}

impl Instance {
    /// The instance after `actor` moves it to `to` at `now`, or why it may not.
    ///
    /// Claiming records the claiming host as the owner.
    pub fn transition(
        &self,
        to: InstanceState,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Instance, TransitionError> {
        check(self, to, actor)?;
        let mut next = self.clone();
        next.state = to;
        next.updated_at = Some(now);
        if let (InstanceState::Claimed, Actor::Host(host)) = (to, actor) {
            next.host = Some(host.clone());
        }
        Ok(next)
    }

    /// The instance after its owner `host` restarted its process in place at
    /// `now`: one more restart, the state unchanged (`claimed` or `running`).
    pub fn restarted(&self, host: &Name, now: DateTime<Utc>) -> Result<Instance, TransitionError> {
        let refuse = |why: String| TransitionError::NotRestartable {
            host: host.clone(),
            state: self.state,
            why,
        };
        if self.host.as_ref() != Some(host) {
            return Err(refuse("it is not this host's".into()));
        }
        if !matches!(self.state, InstanceState::Claimed | InstanceState::Running) {
            return Err(refuse("only a claimed or running instance restarts".into()));
        }
        let mut next = self.clone();
        next.restarts = next.restarts.saturating_add(1);
        next.updated_at = Some(now);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use InstanceState::*;

    fn name(s: &str) -> Name {
        Name::parse("test", s).expect("valid test name")
    }

    fn instance(state: InstanceState, host: Option<&str>) -> Instance {
        let mut i = Instance::pending(
            name("web"),
            name("v1"),
            name("http"),
            host.map(name),
            DateTime::UNIX_EPOCH,
        );
        i.state = state;
        i
    }

    /// The whole table: every (from, to) pair and who, if anyone, may do it.
    const LEGAL: &[(InstanceState, InstanceState, Mover)] = &[
        (Pending, Claimed, Mover::Owner),
        (Pending, Stopping, Mover::Owner),
        (Pending, Lost, Mover::Controller),
        (Claimed, Running, Mover::Owner),
        (Claimed, Stopping, Mover::Owner),
        (Claimed, Failed, Mover::Owner),
        (Claimed, Lost, Mover::Controller),
        (Running, Stopping, Mover::Owner),
        (Running, Exited, Mover::Owner),
        (Running, Failed, Mover::Owner),
        (Running, Lost, Mover::Controller),
        (Stopping, Exited, Mover::Owner),
        (Stopping, Failed, Mover::Owner),
        (Stopping, Lost, Mover::Controller),
    ];

    #[test]
    fn every_pair_is_legal_exactly_when_the_table_says_so() {
        for from in InstanceState::ALL {
            for to in InstanceState::ALL {
                let expected = LEGAL
                    .iter()
                    .find(|(f, t, _)| (*f, *t) == (from, to))
                    .map(|l| l.2);
                assert_eq!(mover(from, to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn owner_moves_and_others_are_refused() {
        let owner = Actor::Host(name("h1"));
        let stranger = Actor::Host(name("h2"));
        for &(from, to, who) in LEGAL {
            let i = instance(from, Some("h1"));
            match who {
                Mover::Owner => {
                    assert_eq!(check(&i, to, &owner), Ok(()), "{from} -> {to}");
                    assert!(
                        check(&i, to, &stranger).is_err(),
                        "{from} -> {to} by stranger"
                    );
                    assert!(
                        check(&i, to, &Actor::Controller).is_err(),
                        "{from} -> {to} by controller"
                    );
                }
                Mover::Controller => {
                    assert_eq!(check(&i, to, &Actor::Controller), Ok(()), "{from} -> {to}");
                    assert!(check(&i, to, &owner).is_err(), "{from} -> {to} by host");
                }
            }
        }
    }

    #[test]
    fn illegal_pairs_name_both_states() {
        let err = check(
            &instance(Exited, Some("h1")),
            Running,
            &Actor::Host(name("h1")),
        )
        .expect_err("terminal");
        assert_eq!(
            err.to_string(),
            "illegal instance transition from exited to running"
        );
    }

    #[test]
    fn unassigned_instance_is_claimed_by_any_host_who_then_owns_it() {
        let i = instance(Pending, None);
        assert!(check(&i, Stopping, &Actor::Host(name("h1"))).is_err());
        let claimed = i
            .transition(Claimed, &Actor::Host(name("h2")), DateTime::UNIX_EPOCH)
            .expect("claim");
        assert_eq!(claimed.host, Some(name("h2")));
        assert!(check(&claimed, Running, &Actor::Host(name("h1"))).is_err());
        assert!(check(&claimed, Running, &Actor::Host(name("h2"))).is_ok());
    }

    #[test]
    fn refusal_says_who_may() {
        let err = check(
            &instance(Running, Some("h1")),
            Stopping,
            &Actor::Host(name("h2")),
        )
        .expect_err("stranger");
        assert_eq!(
            err.to_string(),
            "host h2 may not move an instance from running to stopping: the instance belongs to host h1"
        );
    }

    #[test]
    fn only_the_owner_counts_restarts_of_a_claimed_or_running_instance() {
        let at = DateTime::from_timestamp(0, 0).expect("a time");
        let h1 = Name::parse("host", "h1").expect("a name");
        let h2 = Name::parse("host", "h2").expect("a name");
        let app = Name::parse("app", "web").expect("a name");
        let mut instance = Instance::pending(app.clone(), app.clone(), app, Some(h1.clone()), at);
        assert!(instance.restarted(&h1, at).is_err(), "pending");
        instance.state = Running;
        let next = instance.restarted(&h1, at).expect("the owner restarts it");
        assert_eq!((next.restarts, next.state), (1, Running));
        let refused = instance.restarted(&h2, at).expect_err("another host");
        assert_eq!(
            refused.to_string(),
            "h2 may not count a restart of a running instance: it is not this host's"
        );
        instance.state = Exited;
        assert!(instance.restarted(&h1, at).is_err(), "terminal");
    }
}
