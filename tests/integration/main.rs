//! Integration tests against a real AWS API emulator (moto server, or `TAP_TEST_ENDPOINT`).

mod cli;
mod common;
mod slice;
mod verify;
