//! Captures every log line of the test process (level, target, text), for
//! tests that check what the store and the adapters log. Installed once per
//! test binary; tests filter by the ids they made, so parallel tests do not
//! see each other's lines.
#![allow(dead_code)]

use std::sync::{Mutex, OnceLock};

struct Capture;

static LINES: OnceLock<Mutex<Vec<(log::Level, String, String)>>> = OnceLock::new();

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        LINES.get_or_init(Default::default).lock().unwrap().push((
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

/// Installs the capture (first call only), at trace level.
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        static LOGGER: Capture = Capture;
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
}

/// Every line captured so far: (level, target, text).
pub fn lines() -> Vec<(log::Level, String, String)> {
    LINES.get_or_init(Default::default).lock().unwrap().clone()
}
