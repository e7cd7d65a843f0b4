//! The typed Visor API: every registry object, with its rules, over
//! [`Registry`]'s versioned reads and compare-and-set writes.
//!
//! Names arrive as `&str` and are validated here, so a bad name is refused with
//! an error naming the field before anything is sent to the registry.

mod apps;
mod emit;
mod hooks;
mod hosts;
mod instances;
mod notifications;
mod procs;
mod relations;
mod rollouts;
mod scale;
mod services;
mod specs;
mod tickets;

use visor_controllers::{Name, SchemaVersion};

use super::client::Registry;
use super::config::RegistryConfig;
use super::error::{Error, ObjectRef, Result};
use super::keys::Keys;
use super::keys::Kind;
use super::store::Expected;

pub use hooks::PendingHook;
pub use hosts::HostRegistration;
pub use instances::InstanceFilter;
pub use notifications::{Forgotten, NotificationStream, Posting, PostingSubject};
pub use relations::EndpointSpec;
pub use scale::{FactorAsRead, ScaleFactor};
pub use specs::{AppState, Applied};

/// The Visor API: a connected registry with the layout's rules applied.
#[derive(Debug, Clone)]
pub struct Visor {
    registry: Registry,
}

impl Visor {
    /// Connects to the registry and checks (or, on a fresh registry, writes) the schema version.
    pub async fn connect(config: &RegistryConfig) -> Result<Self> {
        let visor = Self {
            registry: Registry::connect(config).await?,
        };
        visor.check_schema().await?;
        Ok(visor)
    }

    /// The same API whose every write also requires `fence` (a leader's writes):
    /// once the fence is broken, writes fail with `Deposed` and write nothing.
    #[must_use]
    pub fn fenced(&self, fence: super::fence::Fence) -> Self {
        Self {
            registry: self.registry.fenced(fence),
        }
    }

    /// The underlying registry connection.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn keys(&self) -> &Keys {
        self.registry.keys()
    }

    /// Refuses a registry written with a newer layout; initializes an empty one.
    pub async fn check_schema(&self) -> Result<SchemaVersion> {
        let key = self.keys().schema();
        let object = || ObjectRef::new(Kind::Schema, &["version"]);
        let found = match self
            .registry
            .find_object::<SchemaVersion>(Kind::Schema, &key)
            .await?
        {
            (Some(found), _) => found.value,
            (None, _) => {
                let created = self
                    .registry
                    .write_object(
                        object(),
                        &key,
                        SchemaVersion::CURRENT,
                        Expected::Absent { lease: None },
                        &[],
                    )
                    .await;
                match created {
                    Ok(created) => created.value,
                    // Another client initialized it first: read what it wrote.
                    Err(Error::AlreadyExists(_)) => {
                        self.registry
                            .get_object::<SchemaVersion>(object(), &key)
                            .await?
                            .value
                    }
                    Err(error) => return Err(error),
                }
            }
        };
        if found.version > SchemaVersion::CURRENT.version {
            return Err(Error::SchemaTooNew {
                found: found.version,
                supported: SchemaVersion::CURRENT.version,
            });
        }
        Ok(found)
    }
}

/// Validates `value` as the name of `field`.
fn name(field: &'static str, value: &str) -> Result<Name> {
    Ok(Name::parse(field, value)?)
}
