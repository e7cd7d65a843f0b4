//! The ports this host's instances listen on: each instance gets its proc
//! type's fixed port or the lowest free one of the agent's range, and the
//! agent remembers which instance holds which port until it lets it go.
//!
//! Invariant: no port is held by two instances; a range port found in use
//! by another program on the machine (it cannot be bound) is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use visor_controllers::{Name, PortError, PortRange, choose_port};

/// The ports held by this host's instances.
#[derive(Debug)]
pub struct Ports {
    range: PortRange,
    held: Mutex<BTreeMap<u16, Name>>,
}

impl Ports {
    /// No port held yet, handing out `range`.
    pub fn new(range: PortRange) -> Self {
        Self {
            range,
            held: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records that `instance` holds `port` (an instance found running).
    pub fn hold(&self, instance: &Name, port: u16) {
        self.lock().insert(port, instance.clone());
    }

    /// A port for `instance`: the one it holds already, else `fixed` if
    /// free, else the lowest free one of the range.
    pub fn take(&self, instance: &Name, fixed: Option<u16>) -> Result<u16, PortError> {
        let mut held = self.lock();
        if let Some((port, _)) = held.iter().find(|(_, holder)| *holder == instance) {
            return Ok(*port);
        }
        let mut unusable = BTreeSet::new();
        loop {
            let port = choose_port(
                self.range,
                fixed,
                |port| held.get(&port).map(Name::as_str),
                &unusable,
            )?;
            // A fixed port is the proc type's to answer for; a range port
            // must be free on the machine, or the next one is tried.
            if fixed.is_some() || is_free(port) {
                held.insert(port, instance.clone());
                return Ok(port);
            }
            unusable.insert(port);
        }
    }

    /// Lets `instance`'s port go.
    pub fn release(&self, instance: &Name) {
        self.lock().retain(|_, holder| holder != instance);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, Name>> {
        // Poisoned only by a panic inside these few lines, which leave the map whole.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether nothing listens on `port` on any address.
fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::parse("instance", text).expect("a name")
    }

    #[test]
    fn ports_are_held_once_and_a_busy_one_is_skipped() {
        let busy = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("a busy port");
        let port = busy.local_addr().expect("its address").port();
        let ports = Ports::new(PortRange::new(port, port.saturating_add(1)).expect("a range"));
        let a = ports.take(&name("a"), None).expect("a port for a");
        assert_ne!(a, port, "the port in use elsewhere is skipped");
        assert_eq!(ports.take(&name("a"), None), Ok(a), "a keeps its port");
        assert!(matches!(
            ports.take(&name("b"), None),
            Err(PortError::Exhausted { .. })
        ));
        assert!(matches!(
            ports.take(&name("b"), Some(a)),
            Err(PortError::Taken { .. })
        ));
        ports.release(&name("a"));
        assert_eq!(ports.take(&name("b"), Some(a)), Ok(a));
    }
}
