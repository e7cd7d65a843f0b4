//! `visor provider list` and `visor provider call`, as the built binary.
