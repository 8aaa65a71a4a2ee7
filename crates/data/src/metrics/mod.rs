//! Metrics (to be written).
