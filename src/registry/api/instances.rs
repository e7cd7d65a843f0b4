//! Instances and their life cycle. Every state change is the pure rule from
//! `visor_controllers` applied to the instance as read, written back with a
//! compare-and-set, so a change based on a stale read is refused.

use chrono::Utc;
use uuid::Uuid;
use visor_controllers::{Actor, Instance, InstanceState};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Expected, Listing, Versioned};

/// Which instances to list; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilter {
    /// Only instances of this app.
    pub app: Option<String>,
    /// Only instances of this revision.
    pub rev: Option<String>,
    /// Only instances of this proc type.
    pub proc: Option<String>,
    /// Only instances assigned to or claimed by this host.
    pub host: Option<String>,
}

impl InstanceFilter {
    fn matches(&self, instance: &Instance) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        field(&self.app, instance.app.as_str())
            && field(&self.rev, instance.rev.as_str())
            && field(&self.proc, instance.proc.as_str())
            && self
                .host
                .as_deref()
                .is_none_or(|w| instance.host.as_ref().is_some_and(|h| h.as_str() == w))
    }
}

/// A fresh instance id: a UUIDv7, so ids sort by creation time.
fn new_instance_id() -> String {
    Uuid::now_v7().to_string()
}

impl Visor {
    /// Creates a new instance under a fresh id (see [`Versioned::name`]).
    pub async fn create_instance(&self, instance: Instance) -> Result<Versioned<Instance>> {
        let id = name("instance", &new_instance_id())?;
        let object = ObjectRef::new(Kind::Instance, &[id.as_str()]);
        self.registry
            .write_object(
                object,
                &self.keys().instance(&id),
                instance,
                Expected::Absent { lease: None },
                &[],
            )
            .await
    }

    /// Reads instance `id`.
    pub async fn instance(&self, id: &str) -> Result<Versioned<Instance>> {
        let id = name("instance", id)?;
        let object = ObjectRef::new(Kind::Instance, &[id.as_str()]);
        self.registry
            .get_object(object, &self.keys().instance(&id))
            .await
    }

    /// Lists the instances that match `filter`, in id (so creation) order.
    pub async fn instances(&self, filter: &InstanceFilter) -> Result<Listing<Instance>> {
        // A malformed filter name could never match: refuse it rather than list nothing.
        for (field, value) in [
            ("app", &filter.app),
            ("rev", &filter.rev),
            ("proc", &filter.proc),
            ("host", &filter.host),
        ] {
            if let Some(value) = value {
                name(field, value)?;
            }
        }
        let mut listing: Listing<Instance> = self
            .registry
            .list_objects(Kind::Instance, &self.keys().instances())
            .await?;
        listing.items.retain(|i| filter.matches(&i.value));
        Ok(listing)
    }

    /// Moves instance `id` to `to` on behalf of `actor`, after `edit` fills in
    /// the details of the new state. Refused with `InvalidTransition` by the
    /// life-cycle rules, and with `Conflict` if the instance changed meanwhile.
    async fn transition(
        &self,
        id: &str,
        to: InstanceState,
        actor: &Actor,
        edit: impl FnOnce(&mut Instance),
    ) -> Result<Versioned<Instance>> {
        let current = self.instance(id).await?;
        self.transition_from(&current, to, actor, edit).await
    }

    /// Moves the instance read as `current` to `to` on behalf of `actor`,
    /// after `edit` fills in the details: the same write as the calls
    /// above, for a caller that holds a recent copy (a copy changed since
    /// is a `Conflict`, and nothing is written).
    pub async fn transition_from(
        &self,
        current: &Versioned<Instance>,
        to: InstanceState,
        actor: &Actor,
        edit: impl FnOnce(&mut Instance),
    ) -> Result<Versioned<Instance>> {
        let id = current.name();
        let mut next = current
            .value
            .transition(to, actor, Utc::now())
            .map_err(|reason| Error::transition(id, reason))?;
        edit(&mut next);
        let object = ObjectRef::new(Kind::Instance, &[id]);
        self.registry.update_object(object, current, next).await
    }

    /// `pending → claimed` by `host` (the assigned host, or any while unassigned).
    pub async fn claim_instance(&self, id: &str, host: &str) -> Result<Versioned<Instance>> {
        let actor = Actor::Host(name("host", host)?);
        self.transition(id, InstanceState::Claimed, &actor, |_| {})
            .await
    }

    /// `claimed → running`, listening on `port` if it has one.
    pub async fn start_instance(
        &self,
        id: &str,
        host: &str,
        port: Option<u16>,
    ) -> Result<Versioned<Instance>> {
        let actor = Actor::Host(name("host", host)?);
        self.transition(id, InstanceState::Running, &actor, |i| i.port = port)
            .await
    }

    /// `pending | claimed | running → stopping`, by the owning host.
    pub async fn stop_instance(&self, id: &str, host: &str) -> Result<Versioned<Instance>> {
        let actor = Actor::Host(name("host", host)?);
        self.transition(id, InstanceState::Stopping, &actor, |_| {})
            .await
    }

    /// `running | stopping → exited`, by the owning host.
    pub async fn exit_instance(
        &self,
        id: &str,
        host: &str,
        reason: Option<String>,
    ) -> Result<Versioned<Instance>> {
        let actor = Actor::Host(name("host", host)?);
        self.transition(id, InstanceState::Exited, &actor, |i| i.reason = reason)
            .await
    }

    /// `claimed | running | stopping → failed`, by the owning host.
    pub async fn fail_instance(
        &self,
        id: &str,
        host: &str,
        reason: String,
    ) -> Result<Versioned<Instance>> {
        let actor = Actor::Host(name("host", host)?);
        self.transition(id, InstanceState::Failed, &actor, |i| {
            i.reason = Some(reason)
        })
        .await
    }

    /// Counts a restart in place of instance `id` by its owner `host`
    /// (`restarts` + 1; the state stays `claimed` or `running`).
    pub async fn count_restart(&self, id: &str, host: &str) -> Result<Versioned<Instance>> {
        let host = name("host", host)?;
        let current = self.instance(id).await?;
        let next = current
            .value
            .restarted(&host, Utc::now())
            .map_err(|reason| Error::transition(id, reason))?;
        let object = ObjectRef::new(Kind::Instance, &[id]);
        self.registry.update_object(object, &current, next).await
    }

    /// Any non-terminal state `→ lost`, by the controller, when the host is gone.
    pub async fn lose_instance(&self, id: &str, reason: String) -> Result<Versioned<Instance>> {
        self.transition(id, InstanceState::Lost, &Actor::Controller, |i| {
            i.reason = Some(reason)
        })
        .await
    }

    /// Moves instance `id` to `to` as `actor`: the general form of the calls above.
    pub async fn transition_instance(
        &self,
        id: &str,
        to: InstanceState,
        actor: &Actor,
    ) -> Result<Versioned<Instance>> {
        self.transition(id, to, actor, |_| {}).await
    }

    /// Deletes instance `id` if it is still at the mod revision it was read at.
    pub async fn unregister_instance(&self, instance: &Versioned<Instance>) -> Result<i64> {
        let object = ObjectRef::new(Kind::Instance, &[instance.name()]);
        self.registry
            .delete_object(object, &instance.key, Some(instance.mod_revision), &[])
            .await
    }
}
