//! The outbound half of permessage-deflate for one connection (RFC 7692
//! §7.2.1): which messages are compressed, and the compression itself.

use super::codec::{DeflateSettings, Deflater};
use super::{DeflateAgreement, DeflateDirection};
use crate::role::Role;

/// Largest compression scratch buffer kept between messages, in bytes.
const SCRATCH_KEEP: usize = 64 * 1024;

/// A connection's compressor: its deflater, the size threshold, and the
/// scratch buffer compressed output is framed from.
#[derive(Debug)]
pub(crate) struct Compressor {
    deflater: Deflater,
    /// Messages of at least this many bytes are compressed.
    threshold: usize,
    /// Compressed output before it is framed.
    scratch: Vec<u8>,
    /// What was negotiated, for [`Connection::config`](crate::Connection::config).
    agreement: DeflateAgreement,
}

impl Compressor {
    /// The compressor of the `role` end under `agreement`.
    pub(crate) fn new(agreement: &DeflateAgreement, role: Role) -> Self {
        Self {
            deflater: Deflater::new(
                agreement.outbound(role),
                DeflateSettings::new(agreement.level, agreement.mem_level),
            ),
            threshold: agreement.threshold,
            scratch: Vec::new(),
            agreement: agreement.clone(),
        }
    }

    /// The agreement this compressor was made for.
    pub(crate) fn agreement(&self) -> &DeflateAgreement {
        &self.agreement
    }

    /// Whether a data message of `len` bytes goes out compressed: the
    /// threshold's rule alone, so a peer sees every message above it
    /// compressed.
    #[inline]
    pub(crate) fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Our outbound window and context takeover (RFC 7692 §7.1).
    pub(crate) fn direction(&self) -> DeflateDirection {
        self.deflater.direction()
    }

    /// Compression level and memory level.
    pub(crate) fn settings(&self) -> DeflateSettings {
        self.deflater.settings()
    }

    /// Compresses `payload` as one message (§7.2.1: trailer removed); the
    /// output lives in the scratch buffer until the next call.
    pub(crate) fn compress(&mut self, payload: &[u8]) -> &[u8] {
        self.scratch.clear();
        self.deflater.compress(payload, &mut self.scratch);
        &self.scratch
    }

    /// After a large message, gives back a scratch buffer past
    /// [`SCRATCH_KEEP`].
    pub(crate) fn trim(&mut self) {
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// Gives back the scratch buffer (an idle connection).
    pub(crate) fn shrink(&mut self) {
        self.scratch = Vec::new();
    }

    /// Bytes of scratch buffer held.
    pub(crate) fn scratch_capacity(&self) -> usize {
        self.scratch.capacity()
    }

    /// Bytes held: the deflate state and the scratch buffer.
    pub(crate) fn memory(&self) -> usize {
        self.deflater.memory() + self.scratch.capacity()
    }
}
