//! Whole apps as specs: an app's objects read at one revision as the spec
//! they make (`visor get app`, `visor diff`), and a spec written back in one
//! transaction that compare-and-sets every object against that read
//! (`visor apply`), so a change made in between is a conflict that writes
//! nothing rather than a silent overwrite.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use visor_controllers::{
    App, AppParts, AppSpec, Change, Deployment, Name, ObjectId, ProcType, Relation, Revision,
    ServiceDef, diff,
};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, Result};
use crate::registry::keys::KeyPath;
use crate::registry::store::{Codec, Encode, Malformed, decode};

/// etcd's default bound on the operations of one transaction
/// (`--max-txn-ops`); the embedded registry has the same.
const MAX_TXN_OPS: usize = 128;

/// An app's objects as read at one revision.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The app.
    pub app: Name,
    /// The spec its objects make; `None` when the app does not exist.
    pub spec: Option<AppSpec>,
    /// The revision it was read at.
    pub revision: i64,
    /// Values that did not decode, reported and left alone.
    pub skipped: Vec<Malformed>,
    /// Each object's key, mod revision and creation time, as read.
    objects: BTreeMap<ObjectId, Stored>,
    /// The scale factor keys of the app, by the proc they name (removed
    /// with their proc).
    scale_keys: Vec<(Name, String)>,
}

#[derive(Debug, Clone)]
struct Stored {
    key: String,
    mod_revision: i64,
    created_at: Option<DateTime<Utc>>,
}

impl AppState {
    /// What applying `desired` would change, object by object (with
    /// `prune`, also removing what it no longer names).
    pub fn changes(&self, desired: &AppSpec, prune: bool) -> Vec<Change> {
        let current = self.spec.as_ref().map(AppSpec::objects).unwrap_or_default();
        diff(&current, &desired.normalized().objects(), prune)
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The changes written (none: the registry already held the spec).
    pub changes: Vec<Change>,
    /// The revision they were written at; `None` when nothing was written.
    pub revision: Option<i64>,
}

impl Visor {
    /// Reads app `app`'s objects (the app, its env, procs, revisions and
    /// deployment, the services it serves and the relations it is in) at
    /// one revision, in one round trip.
    pub async fn app_state(&self, app: &str) -> Result<AppState> {
        let app = name("app", app)?;
        let keys = self.keys();
        let prefix = || Some(GetOptions::new().with_prefix());
        let reads = vec![
            TxnOp::get(keys.app(&app), None),
            TxnOp::get(keys.envs(&app), prefix()),
            TxnOp::get(keys.procs(&app), prefix()),
            TxnOp::get(keys.revs(&app), prefix()),
            TxnOp::get(keys.deployment(&app), None),
            TxnOp::get(keys.kind_prefix(Kind::Service), prefix()),
            TxnOp::get(keys.kind_prefix(Kind::Relation), prefix()),
            TxnOp::get(
                keys.scales(Some(&app)),
                prefix().map(GetOptions::with_keys_only),
            ),
        ];
        let mut kv = self.registry.kv_client();
        let response = self
            .registry
            .call("get", kv.txn(Txn::new().and_then(reads)))
            .await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let found: Vec<Vec<KeyValue>> = response
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().to_vec(),
                _ => Vec::new(),
            })
            .collect();
        let mut reader = Reader {
            visor: self,
            app: &app,
            revision,
            objects: BTreeMap::new(),
            skipped: Vec::new(),
        };
        let part = |i: usize| found.get(i).map(Vec::as_slice).unwrap_or_default();
        let app_object: Option<App> = reader.read(Kind::App, part(0)).into_values().next();
        let env: BTreeMap<ObjectId, String> = reader.read(Kind::Env, part(1));
        let procs: BTreeMap<ObjectId, ProcType> = reader.read(Kind::Proc, part(2));
        let revisions: BTreeMap<ObjectId, Revision> = reader.read(Kind::Rev, part(3));
        let deployment: Option<Deployment> =
            reader.read(Kind::Deployment, part(4)).into_values().next();
        let services: BTreeMap<ObjectId, ServiceDef> = reader.read_where(
            Kind::Service,
            part(5),
            |path, service: &ServiceDef| match (path, &service.app) {
                (KeyPath::Service { service: name }, Some(of)) if *of == app => {
                    Some(ObjectId::Service(name))
                }
                _ => None,
            },
        );
        let relations: BTreeMap<ObjectId, Relation> =
            reader.read_where(Kind::Relation, part(6), |path, relation: &Relation| {
                let ours = relation.endpoints.iter().any(|e| e.app == app);
                match path {
                    KeyPath::Relation { relation: id } if ours => Some(ObjectId::Relation(id)),
                    _ => None,
                }
            });
        let scale_keys = part(7)
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let group = self.keys().parse(&key).group()?;
                Some((group.proc, key))
            })
            .collect();
        let spec = app_object.map(|app_object| {
            let parts = AppParts {
                app: app_object,
                env: env
                    .into_iter()
                    .filter_map(|(id, value)| match id {
                        ObjectId::Env(key) => Some((key, value)),
                        _ => None,
                    })
                    .collect(),
                procs: by_name(procs),
                revisions: by_name(revisions),
                deployment,
                services: by_name(services),
                relations: relations.into_values().collect(),
            };
            AppSpec::from_parts(app.clone(), &parts)
        });
        let Reader {
            objects, skipped, ..
        } = reader;
        Ok(AppState {
            app: app.clone(),
            spec,
            revision,
            skipped,
            objects,
            scale_keys,
        })
    }

    /// Writes what `desired` changes over `state` (see
    /// [`AppState::changes`]), all in one transaction, if every object is
    /// still as `state` read it; otherwise writes nothing and fails with
    /// [`Error::Conflict`]. Writes nothing at all when nothing changes.
    pub async fn apply_spec(
        &self,
        desired: &AppSpec,
        state: &AppState,
        prune: bool,
    ) -> Result<Applied> {
        if desired.name != state.app {
            return Err(Error::InvalidArgument {
                what: "spec",
                reason: format!("describes app {}, not {}", desired.name, state.app),
            });
        }
        let changes = state.changes(desired, prune);
        if changes.is_empty() {
            return Ok(Applied {
                changes,
                revision: None,
            });
        }
        let desired = desired.normalized();
        let now = Utc::now();
        let keys = self.keys();
        let app = &state.app;
        let mut compares: Vec<Compare> = state
            .objects
            .values()
            .map(|stored| {
                Compare::mod_revision(stored.key.as_str(), CompareOp::Equal, stored.mod_revision)
            })
            .collect();
        // Anything created under the app's own prefixes since the read.
        for prefix in [keys.envs(app), keys.procs(app), keys.revs(app)] {
            compares.push(
                Compare::mod_revision(prefix, CompareOp::Less, state.revision + 1).with_prefix(),
            );
        }
        let mut ops = Vec::new();
        for change in &changes {
            let id = change.object();
            let key = self.object_key(app, id);
            let created_at = state
                .objects
                .get(id)
                .and_then(|stored| stored.created_at)
                .unwrap_or(now);
            match change {
                Change::Create(..) | Change::Update(..) => {
                    if !state.objects.contains_key(id) {
                        compares.push(Compare::create_revision(key.as_str(), CompareOp::Equal, 0));
                    }
                    let value = encoded(&desired, id, created_at)?;
                    ops.push(TxnOp::put(key, value, None));
                }
                Change::Remove(..) => {
                    ops.extend(
                        self.removal(state, id)
                            .into_iter()
                            .map(|key| TxnOp::delete(key, None)),
                    );
                    ops.push(TxnOp::delete(key, None));
                }
            }
        }
        if compares.len() > MAX_TXN_OPS || ops.len() > MAX_TXN_OPS {
            return Err(Error::InvalidArgument {
                what: "spec",
                reason: format!(
                    "applying it takes {} compares and {} writes in one transaction, \
                     and a registry takes at most {MAX_TXN_OPS} of each",
                    compares.len(),
                    ops.len()
                ),
            });
        }
        match self.registry.write_if(compares, ops).await? {
            Some(revision) => Ok(Applied {
                changes,
                revision: Some(revision),
            }),
            None => Err(Error::Conflict {
                object: crate::registry::error::ObjectRef::new(Kind::App, &[app.as_str()]),
                expected: state.revision,
            }),
        }
    }

    /// The key object `id` of `app` lives under.
    fn object_key(&self, app: &Name, id: &ObjectId) -> String {
        let keys = self.keys();
        match id {
            ObjectId::App => keys.app(app),
            ObjectId::Env(key) => keys.env(app, key.as_str()),
            ObjectId::Proc(proc) => keys.proc(app, proc),
            ObjectId::Revision(rev) => keys.rev(app, rev),
            ObjectId::Deployment => keys.deployment(app),
            ObjectId::Service(service) => keys.service(service),
            ObjectId::Relation(id) => keys.relation(id),
        }
    }

    /// What else goes with object `id` when it is removed, as the
    /// one-object commands remove it: a proc's and a revision's scale
    /// factors, a service's status.
    fn removal(&self, state: &AppState, id: &ObjectId) -> Vec<String> {
        let keys = self.keys();
        match id {
            ObjectId::Proc(proc) => state
                .scale_keys
                .iter()
                .filter(|(named, _)| named == proc)
                .map(|(_, key)| key.clone())
                .collect(),
            ObjectId::Revision(rev) => {
                let prefix = keys.rev_scales(&state.app, rev);
                state
                    .scale_keys
                    .iter()
                    .filter(|(_, key)| key.starts_with(&prefix))
                    .map(|(_, key)| key.clone())
                    .collect()
            }
            ObjectId::Service(service) => vec![keys.service_status(service)],
            _ => Vec::new(),
        }
    }
}

/// Objects by their names (those of procs, revisions, services).
fn by_name<T>(objects: BTreeMap<ObjectId, T>) -> BTreeMap<Name, T> {
    objects
        .into_iter()
        .filter_map(|(id, value)| Some((id.name()?.clone(), value)))
        .collect()
}

/// Object `id` of `spec` as stored, created at `created_at`.
fn encoded(spec: &AppSpec, id: &ObjectId, created_at: DateTime<Utc>) -> Result<Vec<u8>> {
    let missing = || Error::InvalidArgument {
        what: "spec",
        reason: format!("names no {id}"),
    };
    Ok(match id {
        ObjectId::App => spec.app(created_at).encode(),
        ObjectId::Env(key) => spec.env.get(key).ok_or_else(missing)?.encode(),
        ObjectId::Proc(proc) => spec
            .procs
            .get(proc)
            .ok_or_else(missing)?
            .to_model(created_at)
            .encode(),
        ObjectId::Revision(rev) => spec
            .revisions
            .get(rev)
            .ok_or_else(missing)?
            .to_model(created_at)
            .encode(),
        ObjectId::Deployment => spec.deployment(created_at).ok_or_else(missing)?.encode(),
        ObjectId::Service(service) => spec
            .services
            .get(service)
            .ok_or_else(missing)?
            .to_model(&spec.name, created_at)
            .encode(),
        ObjectId::Relation(id) => spec
            .relation(id, created_at)
            .ok_or_else(missing)?
            .map_err(|error| Error::InvalidArgument {
                what: "relation",
                reason: error.to_string(),
            })?
            .encode(),
    })
}

/// Decodes what an app's reads found, remembering each object's version.
struct Reader<'a> {
    visor: &'a Visor,
    app: &'a Name,
    revision: i64,
    objects: BTreeMap<ObjectId, Stored>,
    skipped: Vec<Malformed>,
}

impl Reader<'_> {
    /// The objects of this app among `kvs` (keys of its own: the app, its
    /// env, procs, revisions, deployment), decoded. A malformed one is
    /// reported and skipped, but its version is kept: an apply replaces it
    /// only if it is still what was read.
    fn read<T: Codec + HasCreatedAt>(
        &mut self,
        kind: Kind,
        kvs: &[KeyValue],
    ) -> BTreeMap<ObjectId, T> {
        let app = self.app.clone();
        self.read_where(kind, kvs, |path, _| own_object(path, &app))
    }

    /// The objects among `kvs` that `id_of` names, seeing each decoded (to
    /// tell whether a service or a relation is this app's).
    fn read_where<T: Codec + HasCreatedAt>(
        &mut self,
        kind: Kind,
        kvs: &[KeyValue],
        id_of: impl Fn(KeyPath, &T) -> Option<ObjectId>,
    ) -> BTreeMap<ObjectId, T> {
        let mut objects = BTreeMap::new();
        for kv in kvs {
            let versioned = match decode::<T>(kind, kv, self.revision) {
                Ok(versioned) => versioned,
                Err(malformed) => {
                    tracing::warn!(%malformed, app = %self.app, "reading the app's spec");
                    if let Some(id) = own_object(self.visor.keys().parse(&malformed.key), self.app)
                    {
                        let stored = Stored {
                            key: malformed.key.clone(),
                            mod_revision: kv.mod_revision(),
                            created_at: None,
                        };
                        self.objects.insert(id, stored);
                    }
                    self.skipped.push(malformed);
                    continue;
                }
            };
            let path = self.visor.keys().parse(&versioned.key);
            let Some(id) = id_of(path, &versioned.value) else {
                continue;
            };
            self.objects.insert(
                id.clone(),
                Stored {
                    key: versioned.key,
                    mod_revision: versioned.mod_revision,
                    created_at: versioned.value.created_at(),
                },
            );
            objects.insert(id, versioned.value);
        }
        objects
    }
}

/// The object of `app` a key of its own holds.
fn own_object(path: KeyPath, app: &Name) -> Option<ObjectId> {
    let (of, id) = match path {
        KeyPath::App { app: of } => (of, ObjectId::App),
        KeyPath::Env { app: of, key } => (of, ObjectId::Env(key)),
        KeyPath::Proc { app: of, proc } => (of, ObjectId::Proc(proc)),
        KeyPath::Rev { app: of, rev } => (of, ObjectId::Revision(rev)),
        KeyPath::Deployment { app: of } => (of, ObjectId::Deployment),
        _ => return None,
    };
    (of == *app).then_some(id)
}

/// When an object was created, for those that say.
trait HasCreatedAt {
    fn created_at(&self) -> Option<DateTime<Utc>>;
}

impl HasCreatedAt for String {
    fn created_at(&self) -> Option<DateTime<Utc>> {
        None
    }
}

macro_rules! created_at {
    ($($ty:ty),*) => {
        $(impl HasCreatedAt for $ty {
            fn created_at(&self) -> Option<DateTime<Utc>> {
                Some(self.created_at)
            }
        })*
    };
}

created_at!(App, ProcType, Revision, Deployment, ServiceDef, Relation);
