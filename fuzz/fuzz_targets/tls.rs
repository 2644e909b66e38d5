#![no_main]
//! See `telestrip_testkit::fuzzing::tls_hello`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::tls_hello(data));
