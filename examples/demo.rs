//! Placeholder: being written (see the open issues).
fn main() {}
