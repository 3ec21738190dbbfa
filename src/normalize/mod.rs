//! Source records → [`crate::document::Document`]s in the one document shape
//! of DESIGN.md. Each normalizer also owns the index mapping of what it writes.

pub mod audit;
pub mod container;
pub mod ecs;
pub mod journald;
pub mod secrets;
