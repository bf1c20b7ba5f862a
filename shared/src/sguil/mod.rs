//! The sguild agent protocol (ARCHITECTURE.md, "Sguil's agent protocol").
//!
//! - [`tcl`]: Tcl list elements, both ways (every line on the wire is a Tcl list);
//! - [`wire`]: the lines themselves: [`wire::SguilEvent`] (a GenericEvent that sguild
//!   will store and answer, by construction) and [`wire::ServerLine`] (what sguild says).
//!
//! The connection, TLS and the client that keeps a window of events in flight build on
//! these.

pub mod barnyard;
pub mod client;
pub mod conn;
pub mod settings;
pub mod tcl;
pub mod wire;
