//! tap: converges the TAP multi-region stack straight through the AWS APIs.

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod dr;
pub mod graph_view;
pub mod kinds;
pub mod migrate;
pub mod passes;
pub mod render;
pub mod report;
pub mod resources;
pub mod run;
pub mod stack;
pub mod timeline_svg;
pub mod topology;
pub use tap_engine as engine;
