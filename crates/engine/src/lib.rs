//! The engine: graph, scheduler, state, plan and reconcile driver. Free of AWS types.

pub mod backend;
pub mod cancel;
pub mod create;
pub mod events;
pub mod graph;
pub mod permits;
pub mod policy;
pub mod reconcile;
pub mod resource;
pub mod retry;
pub mod scheduler;
pub mod state;
pub mod store;
pub mod timeline;

#[cfg(test)]
mod reconcile_tests;
