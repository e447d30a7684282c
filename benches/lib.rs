//! Holder crate for the criterion benches (see `main.rs`).
