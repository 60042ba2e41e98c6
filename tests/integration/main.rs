//! End-to-end tests of the `netdissect` command.

mod dataset;
mod fixture;
mod run;
