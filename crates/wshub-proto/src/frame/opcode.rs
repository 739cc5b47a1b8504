//! [`Opcode`]: what a frame's payload is (RFC 6455 §5.2, §11.8), and which
//! opcodes are control frames (§5.5).

/// The 4-bit opcode of a frame (RFC 6455 §5.2, §11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    /// `0x0`: a continuation fragment of a data message (§5.4).
    Continuation,
    /// `0x1`: the first frame of a text message (UTF-8, §5.6).
    Text,
    /// `0x2`: the first frame of a binary message (§5.6).
    Binary,
    /// `0x8`: a Close control frame (§5.5.1).
    Close,
    /// `0x9`: a Ping control frame (§5.5.2).
    Ping,
    /// `0xA`: a Pong control frame (§5.5.3).
    Pong,
}

impl Opcode {
    /// Decodes the low 4 bits of the first header byte; `None` for the reserved
    /// opcodes `0x3`–`0x7` and `0xB`–`0xF`, which fail the connection (§5.2).
    pub fn from_u8(bits: u8) -> Option<Self> {
        match bits {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The opcode's 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Control frames have the high bit of the opcode set (§5.5).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_opcode_round_trips_and_reserved_ones_are_none() {
        for bits in 0u8..16 {
            match Opcode::from_u8(bits) {
                Some(op) => assert_eq!(op.as_u8(), bits),
                None => assert!(matches!(bits, 0x3..=0x7 | 0xB..=0xF)),
            }
        }
    }

    #[test]
    fn control_opcodes_are_close_ping_pong() {
        assert!(Opcode::Close.is_control());
        assert!(Opcode::Ping.is_control());
        assert!(Opcode::Pong.is_control());
        assert!(!Opcode::Text.is_control());
        assert!(!Opcode::Binary.is_control());
        assert!(!Opcode::Continuation.is_control());
    }
}
