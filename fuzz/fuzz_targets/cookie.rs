//! Cookie values and `Cookie` header values, as the adapters parse them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    stored_session::__fuzz::cookie(data);
});
