#![no_main]
//! See `telestrip_testkit::fuzzing::dns_message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| telestrip_testkit::fuzzing::dns_message(data));
