//! payauth-harness: the library behind the `payauth` binary: dataset loading and validation,
//! replay through the engine's public API (as fast as it goes, or paced and measured: latency
//! from the intended send time, reports), output files, and the traffic generator.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules, so integration tests
//! and other tools can call them directly.

pub mod baseline;
pub mod bench;
pub mod binfmt;
pub mod compare;
pub mod convert;
pub mod csvout;
pub mod dataset;
pub mod durability_bench;
pub mod durable;
pub mod generate;
pub mod inspect;
pub mod journal_export;
pub mod measure;
pub mod output;
pub mod plots;
pub mod provenance;
mod records;
pub mod replay;
pub mod report;
pub mod rows;
pub mod sweep;
mod sweep_plots;
pub mod target;
mod timerslack;
pub mod traffic;
pub mod traffic_cli;
pub mod usl;
