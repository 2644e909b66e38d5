#![no_main]
//! See `telestrip::fuzzing::http_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::http_request(data));
