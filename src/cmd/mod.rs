//! The back half's commands, each a short composition of its stages: [`report`] (re-render,
//! rebuild, merge run folders), [`compare`] (the gate), [`baseline`] (`baseline save`),
//! [`schemas`]; and [`Failure`], every error that ends a command, whose exit code is decided
//! in one place ([`Failure::exit`]).

pub mod baseline;
pub mod compare;
mod failure;
pub use failure::Failure;
pub mod report;
pub mod schemas;
