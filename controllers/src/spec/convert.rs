//! Between a spec and the registry's objects: the spec an app's objects make
//! (`visor get app -o yaml`), and the objects a spec's parts become.
//!
//! Reading back what a spec wrote gives the spec with every default the
//! objects fill in made explicit (a readiness timeout of 30, `[http]`
//! schemes): [`AppSpec::normalized`] does the same to a spec read from a
//! file, so that what it says and what the registry holds compare equal
//! whenever they mean the same.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{
    AppSpec, CheckKind, LimitsSpec, ProcServiceSpec, ProcSpec, ReadinessSpec, RevisionSpec,
    RolloutSpec, ServiceSpec, parse_endpoint,
};
use crate::model::{
    App, Deployment, Limits, ProcService, ProcType, Readiness, ReadinessCheck, Revision, Rollout,
};
use crate::name::{EnvKey, Name};
use crate::relation::{Endpoint, InvalidRelation, Relation};
use crate::service::ServiceDef;

/// An app's objects as the registry holds them: what [`AppSpec::from_parts`]
/// turns into a spec.
#[derive(Debug, Clone)]
pub struct AppParts {
    /// The app.
    pub app: App,
    /// Its env.
    pub env: BTreeMap<EnvKey, String>,
    /// Its proc types.
    pub procs: BTreeMap<Name, ProcType>,
    /// Its revisions.
    pub revisions: BTreeMap<Name, Revision>,
    /// Its deployment, if it has one.
    pub deployment: Option<Deployment>,
    /// The services whose app it is.
    pub services: BTreeMap<Name, ServiceDef>,
    /// The relations with an endpoint of it.
    pub relations: Vec<Relation>,
}

impl AppSpec {
    /// The spec of app `name` made of its objects.
    pub fn from_parts(name: Name, parts: &AppParts) -> Self {
        let deployment = parts.deployment.as_ref();
        Self {
            name,
            repo_url: parts.app.repo_url.clone(),
            stack: parts.app.stack.clone(),
            deploy_type: parts.app.deploy_type.clone(),
            env: parts.env.clone(),
            procs: parts
                .procs
                .iter()
                .map(|(name, proc)| (name.clone(), ProcSpec::from_model(proc)))
                .collect(),
            revisions: parts
                .revisions
                .iter()
                .map(|(name, rev)| {
                    let archive_url = rev.archive_url.clone();
                    (name.clone(), RevisionSpec { archive_url })
                })
                .collect(),
            current: deployment.map(|d| d.revision.clone()),
            scale: deployment.map(|d| d.scale.clone()).unwrap_or_default(),
            rollout: deployment.map(|d| d.rollout.into()).unwrap_or_default(),
            services: parts
                .services
                .iter()
                .map(|(name, service)| (name.clone(), ServiceSpec::from_model(service)))
                .collect(),
            relations: parts
                .relations
                .iter()
                .map(|relation| {
                    let endpoints = relation.endpoints.iter().map(|e| e.to_string()).collect();
                    (relation.id.clone(), endpoints)
                })
                .collect(),
        }
    }

    /// The spec as the registry would give it back once written: every
    /// default made explicit as the objects hold it.
    pub fn normalized(&self) -> Self {
        let mut spec = self.clone();
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        for proc in spec.procs.values_mut() {
            *proc = ProcSpec::from_model(&proc.to_model(epoch));
        }
        for service in spec.services.values_mut() {
            *service = ServiceSpec::from_model(&service.to_model(&self.name, epoch));
        }
        spec
    }

    /// The app object.
    pub fn app(&self, created_at: DateTime<Utc>) -> App {
        App {
            repo_url: self.repo_url.clone(),
            stack: self.stack.clone(),
            deploy_type: self.deploy_type.clone(),
            created_at,
        }
    }

    /// The deployment object, if the spec names a current revision.
    pub fn deployment(&self, created_at: DateTime<Utc>) -> Option<Deployment> {
        Some(Deployment {
            revision: self.current.clone()?,
            scale: self.scale.clone(),
            rollout: self.rollout.into(),
            created_at,
        })
    }

    /// Relation `id` of the spec, checked as every relation is.
    pub fn relation(
        &self,
        id: &Name,
        created_at: DateTime<Utc>,
    ) -> Option<Result<Relation, InvalidRelation>> {
        let endpoints = self.relations.get(id)?;
        let endpoints = endpoints
            .iter()
            .filter_map(|text| parse_endpoint(text).ok())
            .map(|(app, proc)| Endpoint::new(app, proc))
            .collect();
        Some(Relation::new(id.clone(), endpoints, created_at))
    }
}

impl ProcSpec {
    /// The spec of a proc type.
    pub fn from_model(proc: &ProcType) -> Self {
        Self {
            command: proc.command.clone(),
            port: proc.port,
            limits: LimitsSpec {
                memory_mb: proc.limits.memory_mb,
                cpu_shares: proc.limits.cpu_shares,
            },
            labels: proc.host_labels.clone(),
            kill_timeout_secs: proc.kill_timeout_secs,
            restart: proc.restart,
            readiness: proc.readiness.as_ref().map(|readiness| {
                let (check, path) = match &readiness.check {
                    ReadinessCheck::Tcp => (CheckKind::Tcp, None),
                    ReadinessCheck::Http { path } => (CheckKind::Http, Some(path.clone())),
                };
                ReadinessSpec {
                    check,
                    path,
                    timeout_secs: Some(readiness.timeout_secs),
                }
            }),
            service: proc.service.as_ref().map(|service| ProcServiceSpec {
                name: service.name.clone(),
                schemes: Some(service.schemes.clone()),
            }),
        }
    }

    /// The proc type object. Invariant: a checked spec's http check has a
    /// path ([`AppSpec::check`]); an unchecked one gets `/`.
    pub fn to_model(&self, created_at: DateTime<Utc>) -> ProcType {
        ProcType {
            command: self.command.clone(),
            port: self.port,
            limits: Limits {
                memory_mb: self.limits.memory_mb,
                cpu_shares: self.limits.cpu_shares,
            },
            host_labels: self.labels.clone(),
            kill_timeout_secs: self.kill_timeout_secs,
            restart: self.restart,
            readiness: self.readiness.as_ref().map(|readiness| Readiness {
                check: match readiness.check {
                    CheckKind::Tcp => ReadinessCheck::Tcp,
                    CheckKind::Http => ReadinessCheck::Http {
                        path: readiness.path.clone().unwrap_or_else(|| "/".into()),
                    },
                },
                timeout_secs: readiness
                    .timeout_secs
                    .unwrap_or(Readiness::DEFAULT_TIMEOUT_SECS),
            }),
            service: self.service.as_ref().map(|service| ProcService {
                name: service.name.clone(),
                schemes: service
                    .schemes
                    .clone()
                    .unwrap_or_else(ProcService::default_schemes),
            }),
            created_at,
        }
    }
}

impl RevisionSpec {
    /// The revision object.
    pub fn to_model(&self, created_at: DateTime<Utc>) -> Revision {
        Revision {
            archive_url: self.archive_url.clone(),
            created_at,
        }
    }
}

impl ServiceSpec {
    /// The spec of a service.
    pub fn from_model(service: &ServiceDef) -> Self {
        Self {
            critical: service.critical,
            public: service.public,
            min_endpoints: Some(service.min_endpoints),
            proc: service.proc.clone(),
        }
    }

    /// The service object, served by `app`.
    pub fn to_model(&self, app: &Name, created_at: DateTime<Utc>) -> ServiceDef {
        ServiceDef {
            critical: self.critical,
            public: self.public,
            min_endpoints: self.min_endpoints.unwrap_or(1),
            app: Some(app.clone()),
            proc: self.proc.clone(),
            created_at,
        }
    }
}

impl From<Rollout> for RolloutSpec {
    fn from(rollout: Rollout) -> Self {
        Self {
            max_surge: rollout.max_surge,
            max_unavailable: rollout.max_unavailable,
            deadline_secs: rollout.deadline_secs,
            on_failure: rollout.on_failure,
        }
    }
}

impl From<RolloutSpec> for Rollout {
    fn from(rollout: RolloutSpec) -> Self {
        Self {
            max_surge: rollout.max_surge,
            max_unavailable: rollout.max_unavailable,
            deadline_secs: rollout.deadline_secs,
            on_failure: rollout.on_failure,
        }
    }
}
