//! Proc types and revisions: the two halves of "what to run" for an app.

use visor_controllers::{ProcType, Revision, Scale};

use super::{Visor, name};
use crate::registry::error::{Kind, ObjectRef, Result};
use crate::registry::keys::KeyPath;
use crate::registry::store::{Cascade, Expected, Listing, Requires, Versioned};

impl Visor {
    fn app_requirement(&self, app: &visor_controllers::Name) -> Requires {
        Requires {
            key: self.keys().app(app),
            object: ObjectRef::new(Kind::App, &[app.as_str()]),
        }
    }

    /// Registers proc type `proc` of `app`; the app must exist.
    pub async fn register_proc(
        &self,
        app: &str,
        proc: &str,
        spec: ProcType,
    ) -> Result<Versioned<ProcType>> {
        let (app, proc) = (name("app", app)?, name("proc", proc)?);
        let object = ObjectRef::new(Kind::Proc, &[app.as_str(), proc.as_str()]);
        let requires = [self.app_requirement(&app)];
        let key = self.keys().proc(&app, &proc);
        self.registry
            .write_object(
                object,
                &key,
                spec,
                Expected::Absent { lease: None },
                &requires,
            )
            .await
    }

    /// Reads proc type `proc` of `app`.
    pub async fn proc(&self, app: &str, proc: &str) -> Result<Versioned<ProcType>> {
        let (app, proc) = (name("app", app)?, name("proc", proc)?);
        let object = ObjectRef::new(Kind::Proc, &[app.as_str(), proc.as_str()]);
        self.registry
            .get_object(object, &self.keys().proc(&app, &proc))
            .await
    }

    /// Lists the proc types of `app`, in name order.
    pub async fn procs(&self, app: &str) -> Result<Listing<ProcType>> {
        let app = name("app", app)?;
        self.registry
            .list_objects(Kind::Proc, &self.keys().procs(&app))
            .await
    }

    /// Removes proc type `proc` of `app`, and the scale factors that name it.
    pub async fn unregister_proc(&self, app: &str, proc: &str) -> Result<i64> {
        let (app, proc) = (name("app", app)?, name("proc", proc)?);
        let object = ObjectRef::new(Kind::Proc, &[app.as_str(), proc.as_str()]);
        let scales = self
            .registry
            .list_objects::<Scale>(Kind::Scale, &self.keys().scales(Some(&app)))
            .await?;
        // Scale keys are per revision, so the proc's factors are found by listing
        // and deleted key by key in the same transaction as the proc.
        let names_proc = |key: &String| matches!(self.keys().parse(key), KeyPath::Scale { proc: p, .. } if p == proc.as_str());
        let cascade: Vec<Cascade> = scales
            .items
            .iter()
            .map(|s| s.key.clone())
            .chain(scales.skipped.iter().map(|m| m.key.clone()))
            .filter(names_proc)
            .map(Cascade::Key)
            .collect();
        self.registry
            .delete_object(object, &self.keys().proc(&app, &proc), None, &cascade)
            .await
    }

    /// Registers revision `rev` of `app`; the app must exist.
    pub async fn register_rev(
        &self,
        app: &str,
        rev: &str,
        spec: Revision,
    ) -> Result<Versioned<Revision>> {
        let (app, rev) = (name("app", app)?, name("rev", rev)?);
        let object = ObjectRef::new(Kind::Rev, &[app.as_str(), rev.as_str()]);
        let requires = [self.app_requirement(&app)];
        let key = self.keys().rev(&app, &rev);
        self.registry
            .write_object(
                object,
                &key,
                spec,
                Expected::Absent { lease: None },
                &requires,
            )
            .await
    }

    /// Reads revision `rev` of `app`.
    pub async fn rev(&self, app: &str, rev: &str) -> Result<Versioned<Revision>> {
        let (app, rev) = (name("app", app)?, name("rev", rev)?);
        let object = ObjectRef::new(Kind::Rev, &[app.as_str(), rev.as_str()]);
        self.registry
            .get_object(object, &self.keys().rev(&app, &rev))
            .await
    }

    /// Lists the revisions of `app`, in name order.
    pub async fn revs(&self, app: &str) -> Result<Listing<Revision>> {
        let app = name("app", app)?;
        self.registry
            .list_objects(Kind::Rev, &self.keys().revs(&app))
            .await
    }

    /// Removes revision `rev` of `app`, with its scale factors.
    pub async fn unregister_rev(&self, app: &str, rev: &str) -> Result<i64> {
        let (app, rev) = (name("app", app)?, name("rev", rev)?);
        let object = ObjectRef::new(Kind::Rev, &[app.as_str(), rev.as_str()]);
        let cascade = [Cascade::Prefix(self.keys().rev_scales(&app, &rev))];
        self.registry
            .delete_object(object, &self.keys().rev(&app, &rev), None, &cascade)
            .await
    }
}
