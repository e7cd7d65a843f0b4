//! Proc types and revisions: the two halves of "what to run" for an app.
//! Both are objects named within an app, registered only while the app exists.

use visor_controllers::{Name, ProcType, Revision, Scale};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{ObjectRef, Result};
use crate::registry::keys::Keys;
use crate::registry::store::{Cascade, Codec, Expected, Listing, Requires, Versioned};

/// A kind of object named within an app (`<type>/<app>/<name>`).
struct AppChild {
    kind: Kind,
    /// The name's field, for validation errors.
    field: &'static str,
    key: fn(&Keys, &Name, &Name) -> String,
    prefix: fn(&Keys, &Name) -> String,
}

const PROC: AppChild = AppChild {
    kind: Kind::Proc,
    field: "proc",
    key: Keys::proc,
    prefix: Keys::procs,
};
const REV: AppChild = AppChild {
    kind: Kind::Rev,
    field: "rev",
    key: Keys::rev,
    prefix: Keys::revs,
};

impl Visor {
    /// Validates the names and returns them with the object's ref and key.
    fn child(
        &self,
        child: &AppChild,
        app: &str,
        item: &str,
    ) -> Result<(Name, Name, ObjectRef, String)> {
        let (app, item) = (name("app", app)?, name(child.field, item)?);
        let object = ObjectRef::new(child.kind, &[app.as_str(), item.as_str()]);
        let key = (child.key)(self.keys(), &app, &item);
        Ok((app, item, object, key))
    }

    async fn register_child<T: Codec>(
        &self,
        child: &AppChild,
        app: &str,
        item: &str,
        spec: T,
    ) -> Result<Versioned<T>> {
        let (app, _, object, key) = self.child(child, app, item)?;
        let requires = [Requires {
            key: self.keys().app(&app),
            object: ObjectRef::new(Kind::App, &[app.as_str()]),
        }];
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

    async fn get_child<T: Codec>(
        &self,
        child: &AppChild,
        app: &str,
        item: &str,
    ) -> Result<Versioned<T>> {
        let (_, _, object, key) = self.child(child, app, item)?;
        self.registry.get_object(object, &key).await
    }

    async fn list_children<T: Codec>(&self, child: &AppChild, app: &str) -> Result<Listing<T>> {
        let app = name("app", app)?;
        self.registry
            .list_objects(child.kind, &(child.prefix)(self.keys(), &app))
            .await
    }

    /// Registers proc type `proc` of `app`; the app must exist.
    pub async fn register_proc(
        &self,
        app: &str,
        proc: &str,
        spec: ProcType,
    ) -> Result<Versioned<ProcType>> {
        self.register_child(&PROC, app, proc, spec).await
    }

    /// Reads proc type `proc` of `app`.
    pub async fn proc(&self, app: &str, proc: &str) -> Result<Versioned<ProcType>> {
        self.get_child(&PROC, app, proc).await
    }

    /// Lists the proc types of `app`, in name order.
    pub async fn procs(&self, app: &str) -> Result<Listing<ProcType>> {
        self.list_children(&PROC, app).await
    }

    /// Removes proc type `proc` of `app`, and the scale factors that name it.
    pub async fn unregister_proc(&self, app: &str, proc: &str) -> Result<i64> {
        let (app, proc, object, key) = self.child(&PROC, app, proc)?;
        let scales = self
            .registry
            .list_objects::<Scale>(Kind::Scale, &self.keys().scales(Some(&app)))
            .await?;
        // Scale keys are per revision, so the proc's factors are found by listing
        // and deleted key by key in the same transaction as the proc.
        let names_proc = |key: &String| {
            self.keys()
                .parse(key)
                .group()
                .is_some_and(|g| g.proc == proc)
        };
        let cascade: Vec<Cascade> = scales
            .items
            .iter()
            .map(|s| s.key.clone())
            .chain(scales.skipped.iter().map(|m| m.key.clone()))
            .filter(names_proc)
            .map(Cascade::Key)
            .collect();
        self.registry
            .delete_object(object, &key, None, &cascade)
            .await
    }

    /// Registers revision `rev` of `app`; the app must exist.
    pub async fn register_rev(
        &self,
        app: &str,
        rev: &str,
        spec: Revision,
    ) -> Result<Versioned<Revision>> {
        self.register_child(&REV, app, rev, spec).await
    }

    /// Reads revision `rev` of `app`.
    pub async fn rev(&self, app: &str, rev: &str) -> Result<Versioned<Revision>> {
        self.get_child(&REV, app, rev).await
    }

    /// Lists the revisions of `app`, in name order.
    pub async fn revs(&self, app: &str) -> Result<Listing<Revision>> {
        self.list_children(&REV, app).await
    }

    /// Removes revision `rev` of `app`, with its scale factors.
    pub async fn unregister_rev(&self, app: &str, rev: &str) -> Result<i64> {
        let (app, rev, object, key) = self.child(&REV, app, rev)?;
        let cascade = [Cascade::Prefix(self.keys().rev_scales(&app, &rev))];
        self.registry
            .delete_object(object, &key, None, &cascade)
            .await
    }
}
