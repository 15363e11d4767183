//! Integration tests against a real AWS API emulator (moto server, or `TAP_TEST_ENDPOINT`).

mod cli;
mod common;
mod defects;
mod dr;
mod drift;
mod emulator_dr;
mod faults;
mod interrupt;
mod migration;
mod operator;
mod recovery;
mod regions;
mod rules;
mod secrets;
mod snapshots;
mod stack;
mod team_state;
mod team_state_faults;
mod team_state_localstack;
mod timing;
mod verify;
mod verify_edge;
mod verify_stack;
