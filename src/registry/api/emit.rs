//! What the controller emits: start and stop work for hosts, written in
//! batched transactions so that a large scale change goes at etcd's speed.
//!
//! Invariant: an instance and its start ticket are created in the same
//! transaction — a host never finds one without the other.

use chrono::Utc;
use uuid::Uuid;
use visor_controllers::{Instance, Name, Stop, Ticket, TicketOp};

use super::{Visor, name};
use crate::registry::Kind;
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Encode, Expected, Write};

/// Operations per transaction etcd allows by default (`--max-txn-ops`).
const MAX_TXN_OPS: usize = 128;
/// Starts per transaction: two puts each, leaving room for the fence.
const STARTS_PER_TXN: usize = (MAX_TXN_OPS - 2) / 2;
/// Stop tickets per transaction, leaving room for the fence.
const STOPS_PER_TXN: usize = MAX_TXN_OPS - 2;

/// A document of either kind the controller writes.
enum Emitted {
    Instance(Instance),
    Ticket(Ticket),
}

impl Encode for Emitted {
    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Instance(instance) => instance.encode(),
            Self::Ticket(ticket) => ticket.encode(),
        }
    }
}

impl Visor {
    fn ticket_write(&self, host: &Name, ticket: Ticket) -> Result<Write<Emitted>> {
        let id = name("ticket", &Uuid::now_v7().to_string())?;
        Ok(Write {
            object: ObjectRef::new(Kind::Ticket, &[host.as_str(), id.as_str()]),
            key: self.keys().ticket(host, &id),
            value: Emitted::Ticket(ticket),
            expected: Expected::Absent { lease: None },
        })
    }

    /// Creates each pending instance (which must name its host) with its start
    /// ticket, in as few transactions as etcd allows, one after another.
    ///
    /// After each transaction commits, `committed` is told the ids it created
    /// and its revision: when a later one fails, the caller still knows what
    /// was written (to wait for it, and to count it).
    pub async fn emit_starts(
        &self,
        instances: Vec<Instance>,
        mut committed: impl FnMut(&[String], i64),
    ) -> Result<()> {
        let mut batch = Vec::new();
        let mut batch_ids = Vec::new();
        let mut instances = instances.into_iter().peekable();
        while let Some(instance) = instances.next() {
            let host = instance
                .host
                .clone()
                .ok_or_else(|| Error::InvalidArgument {
                    what: "start",
                    reason: "an emitted instance must be assigned to a host".into(),
                })?;
            let id = name("instance", &Uuid::now_v7().to_string())?;
            let ticket = Ticket {
                op: TicketOp::Start,
                instance: id.clone(),
                app: instance.app.clone(),
                rev: instance.rev.clone(),
                proc: instance.proc.clone(),
                created_at: Utc::now(),
                claimed_by: None,
                claimed_at: None,
            };
            batch.push(Write {
                object: ObjectRef::new(Kind::Instance, &[id.as_str()]),
                key: self.keys().instance(&id),
                value: Emitted::Instance(instance),
                expected: Expected::Absent { lease: None },
            });
            batch.push(self.ticket_write(&host, ticket)?);
            batch_ids.push(id.to_string());
            if batch.len() >= STARTS_PER_TXN * 2 || instances.peek().is_none() {
                let written = self
                    .registry
                    .write_objects(std::mem::take(&mut batch), &[])
                    .await?;
                if let Some(last) = written.last() {
                    committed(&batch_ids, last.revision);
                }
                batch_ids.clear();
            }
        }
        Ok(())
    }

    /// Queues a stop ticket for each planned stop on the host it is
    /// addressed to, batched. Returns the revision of the last transaction
    /// (0 if there was nothing to do).
    pub async fn emit_stops(&self, stops: &[Stop]) -> Result<i64> {
        let mut revision = 0;
        for chunk in stops.chunks(STOPS_PER_TXN) {
            let writes = chunk
                .iter()
                .map(|stop| {
                    let ticket = Ticket {
                        op: TicketOp::Stop,
                        instance: stop.instance.clone(),
                        app: stop.group.app.clone(),
                        rev: stop.group.rev.clone(),
                        proc: stop.group.proc.clone(),
                        created_at: Utc::now(),
                        claimed_by: None,
                        claimed_at: None,
                    };
                    self.ticket_write(&stop.host, ticket)
                })
                .collect::<Result<Vec<_>>>()?;
            let written = self.registry.write_objects(writes, &[]).await?;
            revision = written.last().map_or(revision, |w| w.revision);
        }
        Ok(revision)
    }
}
