//! The unit's own endpoint in a hook's relation, which names its hook files.
//!
//! While the relation is registered its endpoints say it (the one the
//! unit's app and proc type match), and it is remembered in the unit's local
//! state; once the relation is removed (its `departed` and `broken` hooks)
//! the remembered one is used, or failing that the relation as it was when
//! the unit entered it (the create revision of its relation state).
//! Invariant: an endpoint always comes from the relation document the unit
//! was (or is) in, never from a guess.

use visor_controllers::{Relation, RelationState};

use super::config::UnitContext;
use crate::agent::StateDirs;
use crate::registry::{PendingHook, Versioned, Visor};
use crate::telemetry::Chain;

/// The name of `unit`'s endpoint in the relation of `pending`; why not,
/// as the hook's failure, if it cannot be known.
pub async fn endpoint_of(
    visor: &Visor,
    dirs: &StateDirs,
    pending: &PendingHook,
    unit: &UnitContext,
) -> Result<String, String> {
    let relation_id = pending.hook.value.hook.relation_id.as_str();
    let remember = |endpoint: String| {
        dirs.remember_endpoint(relation_id, &endpoint)
            .map(|()| endpoint)
            .map_err(|error| format!("remembering its endpoint: {}", Chain(&error)))
    };
    if let Some(relation) = &pending.relation {
        return remember(side(&relation.value, unit)?);
    }
    match dirs.endpoint(relation_id) {
        Ok(Some(endpoint)) => return Ok(endpoint),
        Ok(None) => {}
        Err(error) => {
            return Err(format!(
                "reading its remembered endpoint: {}",
                Chain(&error)
            ));
        }
    }
    let entered = pending
        .state
        .as_ref()
        .map(|state: &Versioned<RelationState>| state.create_revision);
    let unknown = |why: String| {
        format!(
            "relation {relation_id} is removed and unit {}'s endpoint in it is unknown: {why}",
            unit.unit
        )
    };
    let Some(entered) = entered else {
        return Err(unknown("it has no relation state to date it by".to_owned()));
    };
    match visor.relation_at(relation_id, entered).await {
        Ok(Some(relation)) => remember(side(&relation.value, unit)?),
        Ok(None) => Err(unknown(format!(
            "the relation did not exist at revision {entered}, when the unit entered it"
        ))),
        Err(error) => Err(unknown(format!(
            "reading the relation as of revision {entered}: {error}"
        ))),
    }
}

/// The name of the endpoint of `relation` that `unit` is on.
fn side(relation: &Relation, unit: &UnitContext) -> Result<String, String> {
    relation
        .side_of(&unit.app, &unit.proc)
        .map(|side| relation.endpoints[side].name.clone())
        .ok_or_else(|| {
            format!(
                "unit {} (app {}, proc {}) is on no endpoint of relation {}",
                unit.unit, unit.app, unit.proc, relation.id
            )
        })
}
