//! Decrypted session payloads decoded as `load` decodes them, then read with typed gets.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stored_session::__fuzz::payload(data);
});
