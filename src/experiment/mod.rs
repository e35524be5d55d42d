//! Experiment files: the YAML model, strict validation with file:line:column diagnostics,
//! `${var}` interpolation and environments (`firedrill.yaml`).

pub mod model;

pub use model::*;
