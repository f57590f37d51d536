#![no_main]
//! See `robokud::checks::text` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::text::procfile(data));
