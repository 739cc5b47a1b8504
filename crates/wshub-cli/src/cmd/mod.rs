pub(crate) mod bench;
pub(crate) mod connect;
pub(crate) mod serve;
