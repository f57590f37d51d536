pub fn hello() -> &'static str {
    "hello from a vendored crate"
}
