#![no_main]
//! See `telestrip::fuzzing::tls_hello`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip::fuzzing::tls_hello(data));
