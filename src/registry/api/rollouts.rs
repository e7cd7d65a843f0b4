//! Rollout statuses: where each app's rollout stands, kept by the
//! controller's rollout loop (`/rollouts/<app>`) and read by `visor rollout
//! status`.

use visor_controllers::{Name, RolloutStatus};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{ObjectRef, Result};
use crate::registry::store::{Expected, Versioned};

impl Visor {
    /// Reads app `app`'s rollout status; `NotFound` if it never had a rollout.
    pub async fn rollout_status(&self, app: &str) -> Result<Versioned<RolloutStatus>> {
        let app = name("app", app)?;
        self.registry
            .get_object(rollout_ref(&app), &self.keys().rollout(&app))
            .await
    }

    /// Writes app `app`'s rollout status if it is still as read
    /// (`expected`: its mod revision, `None` for absent); the app must exist.
    pub async fn write_rollout_status(
        &self,
        app: &Name,
        status: RolloutStatus,
        expected: Option<i64>,
    ) -> Result<Versioned<RolloutStatus>> {
        let requires = [crate::registry::store::Requires {
            key: self.keys().app(app),
            object: ObjectRef::new(Kind::App, &[app.as_str()]),
        }];
        self.registry
            .write_object(
                rollout_ref(app),
                &self.keys().rollout(app),
                status,
                Expected::Current(expected),
                &requires,
            )
            .await
    }
}

fn rollout_ref(app: &Name) -> ObjectRef {
    ObjectRef::new(Kind::Rollout, &[app.as_str()])
}
