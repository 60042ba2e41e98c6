//! End-to-end tests of the `netdissect` command.

mod dataset;
mod demo;
mod fixture;
mod oracle;
mod run;
