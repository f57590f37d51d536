#![no_main]
//! See `robokud::checks::envelope` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::envelope::check(data));
