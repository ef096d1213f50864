//! The back half's commands, each a short composition of its stages: [`report`] (re-render,
//! rebuild, merge run folders), [`compare`] (the gate), [`baseline`] (`baseline save`), and
//! [`judge`], which `run` and `report` share: the gate against the scenario's baseline, folded
//! into the one verdict.

pub mod baseline;
pub mod compare;
pub mod judge;
pub mod report;
pub mod schemas;
