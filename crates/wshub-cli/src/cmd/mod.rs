pub(crate) mod connect;
pub(crate) mod serve;
