#![no_main]
//! See `robokud::checks::archive` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::archive::check(data));
