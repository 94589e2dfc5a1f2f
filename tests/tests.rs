//! The black-box test suite: one binary, one module per area.

mod util;

mod alerting;

// The Lambda function's tests need the `lambda` feature (on by default).
#[cfg(feature = "lambda")]
mod catalogue;
mod cli;
mod cli_ops;
mod conformance;
#[cfg(feature = "lambda")]
mod context;
mod differential;
mod docs;
#[cfg(feature = "lambda")]
mod e2e;
#[cfg(feature = "lambda")]
mod eventbridge;
mod fast_path;
#[cfg(feature = "lambda")]
mod faults;
#[cfg(feature = "lambda")]
mod formats;
#[cfg(feature = "lambda")]
mod handler;
#[cfg(feature = "lambda")]
mod history;
mod house;
#[cfg(feature = "lambda")]
mod org;
#[cfg(feature = "lambda")]
mod pager;
mod real_files;
#[cfg(feature = "lambda")]
mod state;
#[cfg(feature = "lambda")]
mod stores;
