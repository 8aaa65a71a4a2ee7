//! (crate docs: owned by the readers helper; to be written)
#![deny(missing_docs)]

pub mod record;

// Owned by the simulators/metrics helper.
pub mod metrics;
pub mod sim;
