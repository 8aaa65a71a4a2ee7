//! Simulators (to be written).
