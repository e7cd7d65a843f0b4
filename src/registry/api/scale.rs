//! Revision scale factors: how many instances of (app, rev, proc) should run.

use visor_controllers::{Scale, first_repeat};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::keys::KeyPath;
use crate::registry::store::{Expected, Listing, Requires, Versioned, Write};

/// One scale factor with the names its key carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleFactor {
    /// App name.
    pub app: String,
    /// Revision name.
    pub rev: String,
    /// Proc type name.
    pub proc: String,
    /// Desired instance count.
    pub replicas: u32,
}

/// A scale factor to set as a decision read it: the factor of (`rev`,
/// `proc`) of an app, to `replicas`, if its key is still at `expected` (its
/// mod revision, `None` for absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorAsRead {
    /// Revision name.
    pub rev: visor_controllers::Name,
    /// Proc type name.
    pub proc: visor_controllers::Name,
    /// The factor to set.
    pub replicas: u32,
    /// Its key's mod revision as read; `None` if it was absent.
    pub expected: Option<i64>,
}

impl Visor {
    /// Sets the scale factor of (`app`, `rev`, `proc`) to `replicas`.
    pub async fn set_scale(
        &self,
        app: &str,
        rev: &str,
        proc: &str,
        replicas: u32,
    ) -> Result<Versioned<Scale>> {
        let mut written = self.set_scales(app, rev, &[(proc, replicas)]).await?;
        Ok(written.remove(0))
    }

    /// Sets the scale factors of several proc types of (`app`, `rev`) at once:
    /// all or none.
    ///
    /// The app, the revision and every proc type must exist, checked in the
    /// same transaction as the writes. Each write compares against the factor
    /// as read just before, so two racing setters cannot both believe they won.
    pub async fn set_scales(
        &self,
        app: &str,
        rev: &str,
        factors: &[(&str, u32)],
    ) -> Result<Vec<Versioned<Scale>>> {
        let (app, rev) = (name("app", app)?, name("rev", rev)?);
        let procs = factors
            .iter()
            .map(|(proc, _)| name("proc", proc))
            .collect::<Result<Vec<_>>>()?;
        if let Some(proc) = first_repeat(&procs) {
            return Err(Error::InvalidArgument {
                what: "scale factors",
                reason: format!("proc {proc} is given more than once"),
            });
        }
        let keys = self.keys();
        let mut requires = vec![
            Requires {
                key: keys.app(&app),
                object: ObjectRef::new(Kind::App, &[app.as_str()]),
            },
            Requires {
                key: keys.rev(&app, &rev),
                object: ObjectRef::new(Kind::Rev, &[app.as_str(), rev.as_str()]),
            },
        ];
        requires.extend(procs.iter().map(|proc| Requires {
            key: keys.proc(&app, proc),
            object: ObjectRef::new(Kind::Proc, &[app.as_str(), proc.as_str()]),
        }));
        let writes = procs.iter().zip(factors).map(|(proc, (_, replicas))| {
            let key = keys.scale(&app, &rev, proc);
            let object = ObjectRef::new(Kind::Scale, &[app.as_str(), rev.as_str(), proc.as_str()]);
            async move {
                // Compare against whatever is stored now, even a malformed value, which this overwrites.
                let expected = self.registry.expect_current(&key).await?;
                Ok::<_, crate::registry::Error>(Write {
                    object,
                    key,
                    value: Scale {
                        replicas: *replicas,
                    },
                    expected,
                })
            }
        });
        let writes = futures::future::try_join_all(writes).await?;
        self.registry.write_objects(writes, &requires).await
    }

    /// Sets scale factors of `app`, each only if its key is still as read,
    /// and if the app, each revision and each proc type exist: all or none,
    /// in one transaction. For a decision made from a read (the rollout
    /// loop's), which a change since must void.
    pub async fn set_scales_as_read(
        &self,
        app: &visor_controllers::Name,
        factors: &[FactorAsRead],
    ) -> Result<i64> {
        let keys = self.keys();
        let mut requires = vec![Requires {
            key: keys.app(app),
            object: ObjectRef::new(Kind::App, &[app.as_str()]),
        }];
        let mut writes = Vec::new();
        for FactorAsRead {
            rev,
            proc,
            replicas,
            expected,
        } in factors
        {
            requires.push(Requires {
                key: keys.rev(app, rev),
                object: ObjectRef::new(Kind::Rev, &[app.as_str(), rev.as_str()]),
            });
            requires.push(Requires {
                key: keys.proc(app, proc),
                object: ObjectRef::new(Kind::Proc, &[app.as_str(), proc.as_str()]),
            });
            writes.push(Write {
                object: ObjectRef::new(Kind::Scale, &[app.as_str(), rev.as_str(), proc.as_str()]),
                key: keys.scale(app, rev, proc),
                value: Scale {
                    replicas: *replicas,
                },
                expected: Expected::Current(*expected),
            });
        }
        // A revision or proc type named by several factors is required once.
        requires.sort_by(|a, b| a.key.cmp(&b.key));
        requires.dedup_by(|a, b| a.key == b.key);
        let written = self.registry.write_objects(writes, &requires).await?;
        Ok(written.first().map_or(0, |w| w.mod_revision))
    }

    /// Reads the scale factor of (`app`, `rev`, `proc`); `NotFound` if never set.
    pub async fn scale(&self, app: &str, rev: &str, proc: &str) -> Result<Versioned<Scale>> {
        let (app, rev, proc) = (name("app", app)?, name("rev", rev)?, name("proc", proc)?);
        let object = ObjectRef::new(Kind::Scale, &[app.as_str(), rev.as_str(), proc.as_str()]);
        self.registry
            .get_object(object, &self.keys().scale(&app, &rev, &proc))
            .await
    }

    /// Lists the scale factors of `app`, or of every app, in key order.
    pub async fn scales(&self, app: Option<&str>) -> Result<Listing<ScaleFactor>> {
        let app = app.map(|a| name("app", a)).transpose()?;
        let listing: Listing<Scale> = self
            .registry
            .list_objects(Kind::Scale, &self.keys().scales(app.as_ref()))
            .await?;
        Ok(
            listing.map_values(Kind::Scale, |key, scale| match self.keys().parse(key) {
                KeyPath::Scale { group } => Ok(ScaleFactor {
                    app: group.app.into(),
                    rev: group.rev.into(),
                    proc: group.proc.into(),
                    replicas: scale.replicas,
                }),
                _ => Err("not a scale factor key (expected scale/<app>/<rev>/<proc>)".to_owned()),
            }),
        )
    }
}
