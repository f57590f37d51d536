#![no_main]
//! See `robokud::checks::bundle` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::bundle::check(data));
