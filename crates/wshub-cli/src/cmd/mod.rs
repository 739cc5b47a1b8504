//! The subcommands, one module each: `serve`, `connect`, `listen`,
//! `publish`, `bench`.

pub(crate) mod bench;
pub(crate) mod connect;
pub(crate) mod listen;
pub(crate) mod publish;
pub(crate) mod serve;
