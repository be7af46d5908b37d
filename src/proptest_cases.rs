//! How many cases the property tests run (`src/*/proptests.rs`): each picks a number
//! that keeps `cargo test` quick; `PROPTEST_CASES=N` runs N instead, for a longer hunt.

use proptest::test_runner::Config;

pub fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        ..Config::default()
    }
}
