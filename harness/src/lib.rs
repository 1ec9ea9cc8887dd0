//! payauth-harness: the library behind the `payauth` binary: dataset loading and validation,
//! replay through the engine's public API, output files, and the traffic generator.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules, so integration tests
//! and other tools can call them directly.

pub mod dataset;
pub mod generate;
pub mod output;
mod records;
pub mod replay;
