//! Tickets: start/stop work addressed to one host, processed in registry
//! (creation) order. A ticket is claimed before it is executed and deleted when
//! done, so an agent that crashes mid-ticket finds its own claim again.

use chrono::Utc;
use uuid::Uuid;
use visor_controllers::{Name, Ticket};

use super::{Visor, name};
use crate::registry::error::{Error, ObjectRef, Result};
use crate::registry::store::{Expected, Listing, Versioned};
use crate::registry::{KeyPath, Kind};

impl Visor {
    /// Queues `ticket` for `host` under a fresh id.
    pub async fn create_ticket(&self, host: &str, ticket: Ticket) -> Result<Versioned<Ticket>> {
        let host = name("host", host)?;
        let id = name("ticket", &Uuid::now_v7().to_string())?;
        let object = ObjectRef::new(Kind::Ticket, &[host.as_str(), id.as_str()]);
        self.registry
            .write_object(
                object,
                &self.keys().ticket(&host, &id),
                ticket,
                Expected::Absent { lease: None },
                &[],
            )
            .await
    }

    /// Reads ticket `id` addressed to `host`.
    pub async fn ticket(&self, host: &str, id: &str) -> Result<Versioned<Ticket>> {
        let (host, id) = (name("host", host)?, name("ticket", id)?);
        let object = ObjectRef::new(Kind::Ticket, &[host.as_str(), id.as_str()]);
        self.registry
            .get_object(object, &self.keys().ticket(&host, &id))
            .await
    }

    /// Lists the tickets of `host` (or of every host), in registry order: by the
    /// revision that created them.
    pub async fn tickets(&self, host: Option<&str>) -> Result<Listing<Ticket>> {
        let host = host.map(|h| name("host", h)).transpose()?;
        let mut listing: Listing<Ticket> = self
            .registry
            .list_objects(Kind::Ticket, &self.keys().tickets(host.as_ref()))
            .await?;
        listing.items.sort_by_key(|t| t.create_revision);
        Ok(listing)
    }

    /// Claims ticket `id` of `host` for `claimant`, which must be that host.
    ///
    /// Exactly one of several racing claims wins: the others get `Conflict`
    /// (lost the compare-and-set) or `TicketClaimed` (read the winner's claim).
    pub async fn claim_ticket(
        &self,
        host: &str,
        id: &str,
        claimant: &str,
    ) -> Result<Versioned<Ticket>> {
        let current = self.ticket(host, id).await?;
        self.claim_ticket_from(&current, claimant).await
    }

    /// Claims the ticket read as `current` for `claimant`: the same write as
    /// [`claim_ticket`](Self::claim_ticket), for a caller that holds a
    /// recent copy (a copy changed since is a `Conflict`).
    pub async fn claim_ticket_from(
        &self,
        current: &Versioned<Ticket>,
        claimant: &str,
    ) -> Result<Versioned<Ticket>> {
        let claimant = name("host", claimant)?;
        let (host, id) = self.ticket_parts(current)?;
        let object = ObjectRef::new(Kind::Ticket, &[host.as_str(), id.as_str()]);
        let label = object.name.clone();
        if claimant != host {
            return Err(Error::NotAddressee {
                ticket: label,
                addressee: host.to_string(),
                claimant: claimant.to_string(),
            });
        }
        if let Some(by) = &current.value.claimed_by {
            return Err(Error::TicketClaimed {
                ticket: label,
                by: by.to_string(),
            });
        }
        let mut claimed = current.value.clone();
        claimed.claimed_by = Some(claimant);
        claimed.claimed_at = Some(Utc::now());
        self.registry.update_object(object, current, claimed).await
    }

    /// Completes a ticket `claimant` holds: deletes it, if it is still as read.
    pub async fn complete_ticket(&self, ticket: &Versioned<Ticket>, claimant: &str) -> Result<i64> {
        let claimant = name("host", claimant)?;
        let object = self.ticket_ref(ticket)?;
        if ticket.value.claimed_by.as_ref() != Some(&claimant) {
            let by = ticket
                .value
                .claimed_by
                .as_ref()
                .map_or("nobody".to_owned(), Name::to_string);
            return Err(Error::TicketClaimed {
                ticket: object.name,
                by,
            });
        }
        self.registry
            .delete_object(object, &ticket.key, Some(ticket.mod_revision), &[])
            .await
    }

    /// Removes a ticket nobody will carry out (its host is gone), if it is
    /// still as read: the controller's clean-up, not an agent's completion.
    pub async fn remove_ticket(&self, ticket: &Versioned<Ticket>) -> Result<i64> {
        let object = self.ticket_ref(ticket)?;
        self.registry
            .delete_object(object, &ticket.key, Some(ticket.mod_revision), &[])
            .await
    }

    /// The ticket a read ticket's key names, as `<host>/<id>`.
    fn ticket_ref(&self, ticket: &Versioned<Ticket>) -> Result<ObjectRef> {
        let (host, id) = self.ticket_parts(ticket)?;
        Ok(ObjectRef::new(Kind::Ticket, &[host.as_str(), id.as_str()]))
    }

    /// The addressee and id a ticket's key names.
    fn ticket_parts(&self, ticket: &Versioned<Ticket>) -> Result<(Name, Name)> {
        match self.keys().parse(&ticket.key) {
            KeyPath::Ticket { host, ticket } => Ok((host, ticket)),
            _ => Err(Error::InvalidArgument {
                what: "ticket",
                reason: format!("{} is not a ticket key", ticket.key),
            }),
        }
    }
}
