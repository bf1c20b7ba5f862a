//! modsec2sguil: everything behind `modsec-collector` and `modsec-shipper`.
//!
//! - [`index`]: the concurrent-mode index line ModSecurity pipes to the collector;
//! - [`auditlog`]: event files (native, JSON; ModSecurity 2.x, 1.9.x, libmodsecurity 3);
//! - [`escape`] and [`time`]: ModSecurity's escaping and timestamps.
//!
//! Parsers take `&[u8]` (neither index lines nor event files are guaranteed UTF-8) and
//! never panic on any input.

pub mod alert;
pub mod auditlog;
pub mod collect;
pub mod config;
pub mod escape;
pub mod hex;
pub mod index;
pub mod logging;
pub mod manual;
pub mod queue;
pub mod requeue;
pub mod safefs;
pub mod sguil;
pub mod ship;
pub mod status;
#[cfg(test)]
mod testdata;
pub mod time;
