//! A relation hook as the agent runs it: which file of the revision, with
//! which environment, and which units `relation-list` shows during it.
//!
//! The hook file is `hooks/<endpoint>-relation-<kind>`, after Juju's
//! `<relation-name>-relation-<kind>`, where `<endpoint>` is the name of the
//! unit's own endpoint in the relation (`web`, `db:sql`) with each `:`
//! written as `-` (`db-sql-relation-joined`). Invariants: a hook name is one
//! path component that does not start with `.`, so it always names a file
//! inside `hooks/`; the environment's Visor variables always win over an
//! app variable of the same name, so a hook can trust them.

use std::collections::BTreeMap;

use crate::hooks::{HookError, HookInfo, HookKind, State};

/// The directory of a revision that holds its hooks.
pub const HOOKS_DIR: &str = "hooks";

/// The `PATH` of a process whose app sets none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The unit running the hook (an instance id).
pub const ENV_UNIT: &str = "VISOR_UNIT";
/// The unit's endpoint in the relation, as the relation names it (`db:sql`).
pub const ENV_RELATION: &str = "VISOR_RELATION";
/// The relation's id.
pub const ENV_RELATION_ID: &str = "VISOR_RELATION_ID";
/// The remote unit the hook is about; empty for `broken`.
pub const ENV_REMOTE_UNIT: &str = "VISOR_REMOTE_UNIT";
/// The hook's name, e.g. `web-relation-joined`.
pub const ENV_HOOK: &str = "VISOR_HOOK";
/// The agent's socket the hook tools talk to.
pub const ENV_AGENT_SOCKET: &str = "VISOR_AGENT_SOCKET";
/// The hook's context at the agent, which the hook tools present.
pub const ENV_CONTEXT_ID: &str = "VISOR_CONTEXT_ID";
/// The search path (the tools' directory first).
pub const ENV_PATH: &str = "PATH";

/// An endpoint name that cannot become part of a hook file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("endpoint name {name:?} cannot name a hook file: {reason}")]
pub struct InvalidEndpointName {
    /// The endpoint's name, as the relation gives it.
    pub name: String,
    /// The rule it breaks.
    pub reason: &'static str,
}

/// The file name of `kind`'s hook for the endpoint named `endpoint`:
/// `<endpoint>-relation-<kind>`, each `:` of the endpoint written as `-`.
///
/// Visor names endpoints `app` or `app:proc`; a relation written around it
/// may name them otherwise, so anything but ASCII letters, digits, `-`, `_`,
/// `.` and `:` is refused, as is a name that is empty or starts with `.`.
pub fn hook_name(endpoint: &str, kind: HookKind) -> Result<String, InvalidEndpointName> {
    let invalid = |reason| InvalidEndpointName {
        name: endpoint.to_owned(),
        reason,
    };
    if endpoint.is_empty() {
        return Err(invalid("it is empty"));
    }
    if endpoint.starts_with('.') {
        return Err(invalid("it starts with '.'"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
    if !endpoint.chars().all(allowed) {
        return Err(invalid(
            "it may hold only ASCII letters, digits, '-', '_', '.' and ':'",
        ));
    }
    Ok(format!("{}-relation-{kind}", endpoint.replace(':', "-")))
}

/// What a hook's environment is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookEnvSpec<'a> {
    /// The unit running it.
    pub unit: &'a str,
    /// The hook.
    pub hook: &'a HookInfo,
    /// The unit's endpoint in the relation, as the relation names it.
    pub endpoint: &'a str,
    /// The hook's file name ([`hook_name`]).
    pub hook_name: &'a str,
    /// The app's environment variables.
    pub app_env: &'a BTreeMap<String, String>,
    /// The directory holding the `visor` executable (the hook tools).
    pub tools_dir: &'a str,
    /// The agent's hook tools socket.
    pub tools_socket: &'a str,
    /// The hook's context id at the agent.
    pub context_id: &'a str,
}

/// A hook's whole environment: the app's variables, then the Visor
/// variables over them, and a `PATH` of the tools' directory followed by
/// the app's `PATH` (or [`DEFAULT_PATH`] if it sets none, or an empty one).
pub fn hook_env(spec: &HookEnvSpec<'_>) -> BTreeMap<String, String> {
    let mut env = spec.app_env.clone();
    let app_path = spec
        .app_env
        .get(ENV_PATH)
        .filter(|path| !path.is_empty())
        .map_or(DEFAULT_PATH, String::as_str);
    let hook = spec.hook;
    let visor = [
        (ENV_UNIT, spec.unit),
        (ENV_RELATION, spec.endpoint),
        (ENV_RELATION_ID, hook.relation_id.as_str()),
        (ENV_REMOTE_UNIT, hook.remote_unit.as_deref().unwrap_or("")),
        (ENV_HOOK, spec.hook_name),
        (ENV_AGENT_SOCKET, spec.tools_socket),
        (ENV_CONTEXT_ID, spec.context_id),
    ];
    env.extend(visor.map(|(key, value)| (key.to_owned(), value.to_owned())));
    env.insert(
        ENV_PATH.to_owned(),
        format!("{}:{app_path}", spec.tools_dir),
    );
    env
}

/// The units `relation-list` shows while `hook` runs: the members of the
/// unit's acknowledged `state` once `hook` took effect (a joining unit is
/// in, a departing one is out, none after `broken`), in name order.
pub fn members_after(state: &State, hook: &HookInfo) -> Result<Vec<String>, HookError> {
    let mut after = state.clone();
    after.apply(hook)?;
    Ok(after.members.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hook_names_follow_juju_with_colons_as_dashes() {
        let table = [
            ("web", HookKind::Joined, "web-relation-joined"),
            ("db:sql", HookKind::Changed, "db-sql-relation-changed"),
            ("db-peers", HookKind::Departed, "db-peers-relation-departed"),
            ("Db_1.x", HookKind::Broken, "Db_1.x-relation-broken"),
        ];
        for (endpoint, kind, expected) in table {
            assert_eq!(hook_name(endpoint, kind).as_deref(), Ok(expected));
        }
    }

    #[test]
    fn endpoint_names_that_could_leave_the_hooks_directory_are_refused() {
        for endpoint in ["", ".hidden", "..", "a/b", "../x", "a b", "é", "a\0"] {
            let error = hook_name(endpoint, HookKind::Joined).expect_err(endpoint);
            assert_eq!(error.name, endpoint);
            assert!(
                error.to_string().contains("cannot name a hook file"),
                "{error}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_hook_name_is_one_file_name_inside_hooks(endpoint in "[a-z0-9][a-z0-9:._-]{0,40}") {
            for kind in HookKind::ALL {
                let name = hook_name(&endpoint, kind).expect("an allowed endpoint");
                prop_assert!(!name.contains('/') && !name.contains(':') && !name.starts_with('.'));
                prop_assert!(name.ends_with(&format!("-relation-{kind}")), "{}", name);
            }
        }
    }

    fn app_env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn env_of(hook: &HookInfo, app: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        hook_env(&HookEnvSpec {
            unit: "web-0",
            hook,
            endpoint: "db:sql",
            hook_name: "db-sql-relation-joined",
            app_env: app,
            tools_dir: "/opt/visor/bin",
            tools_socket: "/var/lib/visor/hooks.sock",
            context_id: "c1",
        })
    }

    #[test]
    fn the_env_is_the_apps_with_the_hooks_variables_over_it() {
        let hook = HookInfo::joined("r1", "db-1", 7);
        let app = app_env(&[
            ("MODE", "prod"),
            ("VISOR_UNIT", "spoofed"),
            ("PATH", "/app/bin"),
        ]);
        let env = env_of(&hook, &app);
        let expected = app_env(&[
            ("MODE", "prod"),
            ("PATH", "/opt/visor/bin:/app/bin"),
            ("VISOR_UNIT", "web-0"),
            ("VISOR_RELATION", "db:sql"),
            ("VISOR_RELATION_ID", "r1"),
            ("VISOR_REMOTE_UNIT", "db-1"),
            ("VISOR_HOOK", "db-sql-relation-joined"),
            ("VISOR_AGENT_SOCKET", "/var/lib/visor/hooks.sock"),
            ("VISOR_CONTEXT_ID", "c1"),
        ]);
        assert_eq!(env, expected);
    }

    #[test]
    fn without_an_app_path_the_default_follows_the_tools() {
        for app in [app_env(&[]), app_env(&[("PATH", "")])] {
            let env = env_of(&HookInfo::broken("r1"), &app);
            assert_eq!(env["PATH"], format!("/opt/visor/bin:{DEFAULT_PATH}"));
            assert_eq!(env["VISOR_REMOTE_UNIT"], "", "broken is about no unit");
        }
    }

    #[test]
    fn relation_list_shows_the_members_once_the_hook_took_effect() {
        let mut state = State::new("r1");
        let joined = HookInfo::joined("r1", "b", 1);
        assert_eq!(members_after(&state, &joined), Ok(vec!["b".to_owned()]));
        state.apply(&joined).expect("valid");
        let changed = HookInfo::changed("r1", "b", 2);
        assert_eq!(members_after(&state, &changed), Ok(vec!["b".to_owned()]));
        state.apply(&changed).expect("valid");
        state.apply(&HookInfo::joined("r1", "a", 3)).expect("valid");
        state
            .apply(&HookInfo::changed("r1", "a", 3))
            .expect("valid");
        let departed = HookInfo::departed("r1", "b", 2);
        assert_eq!(members_after(&state, &departed), Ok(vec!["a".to_owned()]));
        assert!(
            members_after(&state, &HookInfo::broken("r1")).is_err(),
            "broken only once everyone departed"
        );
        state.apply(&departed).expect("valid");
        state
            .apply(&HookInfo::departed("r1", "a", 3))
            .expect("valid");
        assert_eq!(members_after(&state, &HookInfo::broken("r1")), Ok(vec![]));
    }
}
