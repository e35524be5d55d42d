//! Experiment files: the YAML model, strict validation with file:line:column diagnostics,
//! `${var}` interpolation and environments (`firedrill.yaml`).

pub mod de;
pub mod diag;
pub mod model;
pub mod node;

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use model::*;
