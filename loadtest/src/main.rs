//! ringload: placeholder until the generator lands.
fn main() {}
