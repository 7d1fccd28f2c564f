//! The `ringlb` command line.
fn main() {}
