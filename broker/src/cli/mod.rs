//! The `fjord` command-line tool.
