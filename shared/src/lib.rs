//! modsec2sguil: everything behind `modsec-collector` and `modsec-shipper`
//! (ARCHITECTURE.md at the repository's root has the map and the invariants).
//!
//! - [`index`]: the concurrent-mode index line ModSecurity pipes to the collector;
//! - [`auditlog`]: event files (native, JSON; ModSecurity 2.x, 1.9.x, libmodsecurity 3);
//! - [`escape`], [`time`] and [`hex`]: ModSecurity's escaping and timestamps, hex;
//! - [`config`]: the Sguil-style config file and the settings lookup;
//! - [`control`]: what a running program is told (stop, reload), from its signals;
//! - [`queue`]: the queue directory, the contract between the two programs: its names
//!   and every file format in it (journal, delivered log, reasons, positions, last run);
//! - [`safefs`]: opening files in directories another user writes;
//! - [`collect`]: the collector (its run loops, pipeline, worker, index file, spool,
//!   `--follow`);
//! - [`alert`]: the alert decision and the mapping to a Sguil event, with its detail;
//! - [`sguil`]: the sguild agent protocol (and the snort_agent path);
//! - [`ship`]: delivery, exactly once (the drain and daemon loops, windows, resends,
//!   lock, sinks);
//! - [`requeue`], [`status`] and [`show`]: the operator commands' logic;
//! - [`privilege`]: root-run shipper commands become the queue's owner first;
//! - [`logging`] and [`manual`]: log output; man pages and completions;
//! - [`exit`]: the programs' exit codes, stated once.
//!
//! Parsers take `&[u8]` (neither index lines nor event files are guaranteed UTF-8) and
//! never panic on any input.

pub mod alert;
pub mod auditlog;
pub mod collect;
pub mod config;
pub mod control;
pub mod escape;
pub mod exit;
pub mod hex;
pub mod index;
pub mod logging;
pub mod manual;
pub mod privilege;
pub mod queue;
pub mod requeue;
pub mod safefs;
pub mod sguil;
pub mod ship;
pub mod show;
pub mod state;
pub mod status;
#[cfg(test)]
mod testdata;
pub mod threshold;
pub mod time;
