#![no_main]
//! See `robokud::checks::api_json` for the properties this target asserts.

libfuzzer_sys::fuzz_target!(|data: &[u8]| robokud::checks::api_json::check(data));
