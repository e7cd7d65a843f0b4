//! Service definitions (`/services/<svc>`) as objects of their own, and the
//! endpoint keys of a service as stored (`/endpoints/<svc>/<uuid>`), live
//! and tombstones alike.
//!
//! Discovery ([`crate::discovery`]) writes a definition as a side effect of
//! the first registration and reads only live endpoints; this is the
//! administrative side: define a service up front, remove its definition,
//! and look at every endpoint key. Invariant: a definition is only created
//! where none exists and only removed where one exists; endpoints are never
//! touched here (they belong to the processes that registered them, and are
//! bound to their leases).

use visor_controllers::{ServiceDef, ServiceEndpoint};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Cascade, Expected, Listing, Versioned};

impl Visor {
    /// Defines service `service`; `AlreadyExists` if it is defined.
    /// `min_endpoints` must be at least 1 (a critical service with a minimum
    /// of 0 could never be reported degraded).
    pub async fn register_service(
        &self,
        service: &str,
        definition: ServiceDef,
    ) -> Result<Versioned<ServiceDef>> {
        let service = name("service", service)?;
        if definition.min_endpoints == 0 {
            return Err(Error::InvalidArgument {
                what: "min_endpoints",
                reason: "must be at least 1".to_owned(),
            });
        }
        let object = ObjectRef::new(Kind::Service, &[service.as_str()]);
        self.registry
            .write_object(
                object,
                &self.keys().service(&service),
                definition,
                Expected::Absent { lease: None },
                &[],
            )
            .await
    }

    /// Reads the definition of `service`; `NotFound` if there is none (even
    /// if endpoints are registered under the name).
    pub async fn service(&self, service: &str) -> Result<Versioned<ServiceDef>> {
        let service = name("service", service)?;
        let object = ObjectRef::new(Kind::Service, &[service.as_str()]);
        self.registry
            .get_object(object, &self.keys().service(&service))
            .await
    }

    /// Lists every service definition, in name order.
    pub async fn services(&self) -> Result<Listing<ServiceDef>> {
        self.registry
            .list_objects(Kind::Service, &self.keys().kind_prefix(Kind::Service))
            .await
    }

    /// Removes the definition of `service` and, in the same transaction, the
    /// controller's degraded/restored status of it (a definition registered
    /// again starts afresh); `NotFound` if there is no definition. Its
    /// endpoints stay: they are lease-bound and leave when their processes
    /// stop or die.
    pub async fn unregister_service(&self, service: &str) -> Result<i64> {
        let service = name("service", service)?;
        let object = ObjectRef::new(Kind::Service, &[service.as_str()]);
        let status = Cascade::Key(self.keys().service_status(&service));
        self.registry
            .delete_object(object, &self.keys().service(&service), None, &[status])
            .await
    }

    /// Lists every endpoint key of `service` at one revision, in uuid order:
    /// live endpoints and the tombstones of clean stops alike
    /// ([`ServiceEndpoint::is_live`] tells them apart). Credentials are as
    /// stored: callers showing them to people must mask them.
    pub async fn service_endpoints(&self, service: &str) -> Result<Listing<ServiceEndpoint>> {
        let service = name("service", service)?;
        self.registry
            .list_objects(Kind::Endpoint, &self.keys().endpoints(&service))
            .await
    }
}
