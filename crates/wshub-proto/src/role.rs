//! Which end of the connection this is, and what that decides: masking
//! (RFC 6455 §5.1, §5.3).

/// Which end of the connection this is; decides masking (RFC 6455 §5.1).
///
/// `Client` masks every frame it sends and rejects masked input; `Server` does
/// the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The endpoint that sent the opening handshake request.
    Client,
    /// The endpoint that answered it.
    Server,
}

impl Role {
    /// Whether the frames this endpoint receives must be masked: "a client
    /// MUST mask all frames that it sends to the server" (§5.3), so a server
    /// receives masked frames and a client unmasked ones (§5.1).
    #[inline]
    pub fn receives_masked(self) -> bool {
        self == Role::Server
    }
}
