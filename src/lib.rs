//! Visor.
