//! End-to-end tests of the `netdissect` command.

mod cluster;
mod common;
mod dataset;
mod demo;
mod explain;
mod explain_pages;
mod explain_shards;
mod fixture;
mod formulas;
mod generate;
mod html;
mod oracle;
mod rotate;
mod run;
mod train;
mod verify;
mod workflow;
