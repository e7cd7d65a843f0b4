//! Apps and their environment variables.

use visor_controllers::{App, EnvKey, first_repeat};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Cascade, Delete, Expected, Listing, Requires, Versioned, Write};

impl Visor {
    /// Registers app `app`; `AlreadyExists` if it is registered.
    pub async fn register_app(&self, app: &str, spec: App) -> Result<Versioned<App>> {
        let app = name("app", app)?;
        let object = ObjectRef::new(Kind::App, &[app.as_str()]);
        self.registry
            .write_object(
                object,
                &self.keys().app(&app),
                spec,
                Expected::Absent { lease: None },
                &[],
            )
            .await
    }

    /// Reads app `app`.
    pub async fn app(&self, app: &str) -> Result<Versioned<App>> {
        let app = name("app", app)?;
        let object = ObjectRef::new(Kind::App, &[app.as_str()]);
        self.registry
            .get_object(object, &self.keys().app(&app))
            .await
    }

    /// Lists every app, in name order.
    pub async fn apps(&self) -> Result<Listing<App>> {
        self.registry
            .list_objects(Kind::App, &self.keys().apps())
            .await
    }

    /// Replaces an app read earlier; `Conflict` if it changed since.
    pub async fn update_app(&self, previous: &Versioned<App>, spec: App) -> Result<Versioned<App>> {
        let object = ObjectRef::new(Kind::App, &[previous.name()]);
        self.registry.update_object(object, previous, spec).await
    }

    /// Removes app `app` with its env vars, proc types, revisions, scale
    /// factors, deployment and rollout status, in one transaction. Its instances are left to the controller,
    /// which scales them to zero.
    pub async fn unregister_app(&self, app: &str) -> Result<i64> {
        let app = name("app", app)?;
        let keys = self.keys();
        let cascade = [
            Cascade::Prefix(keys.envs(&app)),
            Cascade::Prefix(keys.procs(&app)),
            Cascade::Prefix(keys.revs(&app)),
            Cascade::Prefix(keys.scales(Some(&app))),
            Cascade::Key(keys.deployment(&app)),
            Cascade::Key(keys.rollout(&app)),
        ];
        let object = ObjectRef::new(Kind::App, &[app.as_str()]);
        self.registry
            .delete_object(object, &keys.app(&app), None, &cascade)
            .await
    }

    /// Sets env var `key` of `app` to `value` (creating or replacing it); the app must exist.
    pub async fn set_env(&self, app: &str, key: &str, value: &str) -> Result<Versioned<String>> {
        let mut written = self.set_envs(app, &[(key, value)]).await?;
        Ok(written.remove(0))
    }

    /// Sets several env vars of `app` at once: all or none. Every name is
    /// validated before anything is sent; the app must exist.
    pub async fn set_envs(
        &self,
        app: &str,
        vars: &[(&str, &str)],
    ) -> Result<Vec<Versioned<String>>> {
        let app = name("app", app)?;
        let keys = vars
            .iter()
            .map(|(key, _)| EnvKey::parse(key))
            .collect::<Result<Vec<_>, _>>()?;
        distinct_env_keys(&keys)?;
        let requires = [Requires {
            key: self.keys().app(&app),
            object: ObjectRef::new(Kind::App, &[app.as_str()]),
        }];
        // A set writes the value the caller chose, not an update of one it read:
        // each write compares against what is there now, so a racing set or
        // unset shows up as a conflict instead of being silently overwritten.
        let writes = keys.iter().zip(vars).map(|(key, (_, value))| {
            let env_key = self.keys().env(&app, key.as_str());
            let object = ObjectRef::new(Kind::Env, &[app.as_str(), key.as_str()]);
            async move {
                let expected = self.registry.expect_current(&env_key).await?;
                Ok::<_, crate::registry::Error>(Write {
                    object,
                    key: env_key,
                    value: (*value).to_owned(),
                    expected,
                })
            }
        });
        let writes = futures::future::try_join_all(writes).await?;
        self.registry.write_objects(writes, &requires).await
    }

    /// Reads env var `key` of `app`.
    pub async fn env(&self, app: &str, key: &str) -> Result<Versioned<String>> {
        let (app, key) = (name("app", app)?, EnvKey::parse(key)?);
        let object = ObjectRef::new(Kind::Env, &[app.as_str(), key.as_str()]);
        self.registry
            .get_object(object, &self.keys().env(&app, key.as_str()))
            .await
    }

    /// Lists the env vars of `app`, in key order.
    pub async fn envs(&self, app: &str) -> Result<Listing<String>> {
        let app = name("app", app)?;
        self.registry
            .list_objects(Kind::Env, &self.keys().envs(&app))
            .await
    }

    /// Removes env var `key` of `app`; `NotFound` if it is not set.
    pub async fn unset_env(&self, app: &str, key: &str) -> Result<i64> {
        self.unset_envs(app, &[key]).await
    }

    /// Removes several env vars of `app` at once: all or none (`NotFound`
    /// naming the first that is not set).
    pub async fn unset_envs(&self, app: &str, keys: &[&str]) -> Result<i64> {
        let app = name("app", app)?;
        let keys = keys
            .iter()
            .map(|key| EnvKey::parse(key))
            .collect::<Result<Vec<_>, _>>()?;
        distinct_env_keys(&keys)?;
        let targets = keys
            .iter()
            .map(|key| Delete {
                object: ObjectRef::new(Kind::Env, &[app.as_str(), key.as_str()]),
                key: self.keys().env(&app, key.as_str()),
                expected: None,
            })
            .collect();
        self.registry.delete_objects(targets, &[]).await
    }
}

/// Refuses a request that names one env var twice (etcd would refuse its transaction).
fn distinct_env_keys(keys: &[EnvKey]) -> Result<()> {
    match first_repeat(keys) {
        Some(key) => Err(Error::InvalidArgument {
            what: "env vars",
            reason: format!("{key} is given more than once"),
        }),
        None => Ok(()),
    }
}
