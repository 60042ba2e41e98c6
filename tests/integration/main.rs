//! End-to-end tests of the `netdissect` command.

mod common;
mod dataset;
mod demo;
mod fixture;
mod oracle;
mod run;
