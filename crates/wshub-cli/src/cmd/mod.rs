//! The subcommands, one module each: `serve`, `connect`, `publish`, `bench`.

pub(crate) mod bench;
pub(crate) mod connect;
pub(crate) mod publish;
pub(crate) mod serve;
