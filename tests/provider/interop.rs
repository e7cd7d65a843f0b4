//! Peers in Python from `docs/providers.md`.
