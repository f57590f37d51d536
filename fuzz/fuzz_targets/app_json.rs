#![no_main]
//! See `robokud::checks::app_json` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::app_json::check(data));
