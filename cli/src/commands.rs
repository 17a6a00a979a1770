//! One module per verb, each a clap `Args` struct with an `execute` that returns the exit code.

pub(crate) mod build;
pub(crate) mod completions;
pub(crate) mod demo;
pub(crate) mod exec;
pub(crate) mod inspect;
pub(crate) mod map;
pub(crate) mod new;
pub(crate) mod run;
pub(crate) mod tasks;
