//! Holder crate for the workspace-level integration tests (see `integration/`).
