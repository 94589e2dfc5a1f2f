//! The black-box test suite: one binary, one module per area.

mod util;

mod catalogue;
mod cli;
mod conformance;
mod differential;
mod e2e;
mod fast_path;
mod faults;
mod handler;
mod real_files;
