//! Event files (seeded from the json fixtures): see common.rs.
#![no_main]

#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::event(data));
