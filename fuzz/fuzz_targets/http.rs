#![no_main]
//! See `telestrip_testkit::fuzzing::http_request`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::http_request(data));
