//! Helpers for integration tests: start real binaries on port 0 and read their `listening on` line.
