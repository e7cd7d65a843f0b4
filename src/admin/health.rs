//! What `/healthz` and `/readyz` say, as the command keeps it current.
//!
//! `/healthz` is 200 for as long as the process serves HTTP, from start-up
//! on, whether or not the registry can be reached: the process retries the
//! registry itself, and restarting it (what a failed liveness probe does)
//! would not bring an unreachable registry back. Its body says what the
//! process sees, for a human or a script; `/metrics` carries the same as
//! gauges to alert on.

/// What `/healthz` reports besides "ok", as the command keeps it current.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    /// The last attempt to use the registry succeeded.
    pub registry_reachable: bool,
    /// This process leads its election (a controller; an agent never does).
    pub leading: bool,
}

/// Which command serves the endpoints: what its readiness means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Ready while it leads with synced caches; `/healthz` says whether it leads.
    Controller,
    /// Ready once its host is registered; `/healthz` says whether it is.
    Agent,
}

/// The body of `/healthz`: `ok`, then one `name: value` line per fact.
pub(super) fn body(role: Role, health: Health, ready: bool) -> String {
    let registry = match health.registry_reachable {
        true => "reachable",
        false => "unreachable",
    };
    let yes_no = |fact| match fact {
        true => "yes",
        false => "no",
    };
    match role {
        Role::Controller => format!(
            "ok\nregistry: {registry}\nleader: {}\n",
            yes_no(health.leading)
        ),
        Role::Agent => format!("ok\nregistry: {registry}\nregistered: {}\n", yes_no(ready)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_body_names_each_fact() {
        let reachable = Health {
            registry_reachable: true,
            leading: true,
        };
        let cases = [
            (
                Role::Controller,
                Health::default(),
                false,
                "ok\nregistry: unreachable\nleader: no\n",
            ),
            (
                Role::Controller,
                reachable,
                true,
                "ok\nregistry: reachable\nleader: yes\n",
            ),
            (
                Role::Agent,
                Health::default(),
                false,
                "ok\nregistry: unreachable\nregistered: no\n",
            ),
            (
                Role::Agent,
                reachable,
                true,
                "ok\nregistry: reachable\nregistered: yes\n",
            ),
        ];
        for (role, health, ready, want) in cases {
            assert_eq!(
                body(role, health, ready),
                want,
                "{role:?} {health:?} {ready}"
            );
        }
    }
}
