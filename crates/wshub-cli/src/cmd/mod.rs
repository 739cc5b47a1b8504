//! The subcommands, one module each: `serve`, `connect`, `bench`.

pub(crate) mod bench;
pub(crate) mod connect;
pub(crate) mod serve;
