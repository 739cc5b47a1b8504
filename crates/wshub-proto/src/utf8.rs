//! UTF-8 validation of text messages, incremental across frames and fragments
//! (RFC 6455 §5.6, §8.1).
//!
//! "When an endpoint is to interpret a byte stream as UTF-8 but finds that the
//! byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail
//! the WebSocket Connection_" (§8.1). Validation runs on each piece of payload
//! as it arrives, so an invalid byte fails the connection at once rather than
//! when the message is complete.

/// Inputs shorter than this (bytes) go straight to the standard library's
/// validator. simdutf8 works in 64-byte blocks and passes shorter inputs to
/// the standard library itself, after its own dispatch: on a 20-byte text
/// echo, callgrind counted 31 of validation's 108 instructions in that
/// dispatch.
const SIMD_MIN: usize = 64;

/// Why bytes are not UTF-8, as [`std::str::Utf8Error`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Invalid {
    /// Bytes from the start that are valid.
    valid_up_to: usize,
    /// Length of the invalid sequence at `valid_up_to`; `None` when the input
    /// ends inside a sequence that more bytes could complete.
    error_len: Option<usize>,
}

/// UTF-8 validation with the standard library's answers, by simdutf8 for
/// inputs long enough to gain from it. Short inputs are first checked for
/// ASCII a word at a time, the common case for short text; longer ones are
/// not, since simdutf8 has its own ASCII path and a failed pre-check would
/// read them twice.
fn check(bytes: &[u8]) -> Result<(), Invalid> {
    if bytes.len() < SIMD_MIN {
        if bytes.is_ascii() {
            return Ok(());
        }
        return std::str::from_utf8(bytes).map(drop).map_err(|e| Invalid {
            valid_up_to: e.valid_up_to(),
            error_len: e.error_len(),
        });
    }
    simdutf8::compat::from_utf8(bytes)
        .map(drop)
        .map_err(|e| Invalid {
            valid_up_to: e.valid_up_to(),
            error_len: e.error_len(),
        })
}

/// Checks that a whole message payload is UTF-8; on failure returns the
/// offset of the first invalid byte (or of the incomplete sequence at the
/// end).
pub(crate) fn check_message(bytes: &[u8]) -> Result<(), usize> {
    check(bytes).map_err(|e| e.valid_up_to)
}

/// Validates a whole buffer; on failure returns the offset of the first
/// invalid byte (or of the incomplete sequence at the end).
pub(crate) fn validate(bytes: &[u8]) -> Result<&str, usize> {
    if bytes.len() < SIMD_MIN {
        std::str::from_utf8(bytes).map_err(|e| e.valid_up_to())
    } else {
        simdutf8::compat::from_utf8(bytes).map_err(|e| e.valid_up_to())
    }
}

/// Tracks how much of a growing text message buffer is known to be valid.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    valid_up_to: usize,
}

impl Utf8Validator {
    /// Validates the bytes of `message` past what earlier calls validated.
    ///
    /// A code point cut at the end of `message` is fine as long as its bytes so
    /// far can start a valid sequence: the rest may come in the next fragment.
    /// Returns the offset of the first invalid byte on failure.
    pub(crate) fn feed(&mut self, message: &[u8]) -> Result<(), usize> {
        let tail = &message[self.valid_up_to..];
        match check(tail) {
            Ok(()) => {
                self.valid_up_to = message.len();
                Ok(())
            }
            Err(e) => match e.error_len {
                // The input ends inside a sequence that may still complete.
                None => {
                    self.valid_up_to += e.valid_up_to;
                    Ok(())
                }
                Some(_) => Err(self.valid_up_to + e.valid_up_to),
            },
        }
    }

    /// Checks that the complete message does not end inside a code point.
    pub(crate) fn finish(&mut self, message: &[u8]) -> Result<(), usize> {
        self.feed(message)?;
        let end = self.valid_up_to;
        self.valid_up_to = 0;
        if end == message.len() {
            Ok(())
        } else {
            Err(end)
        }
    }

    pub(crate) fn reset(&mut self) {
        self.valid_up_to = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<(), usize> {
        let mut v = Utf8Validator::default();
        let mut prev = 0;
        for &cut in cuts {
            v.feed(&bytes[..cut.max(prev)])?;
            prev = cut.max(prev);
        }
        v.finish(bytes)
    }

    #[test]
    fn accepts_a_code_point_split_at_every_byte() {
        let text = "κόσμε 🎉 hello".as_bytes();
        for cut in 0..=text.len() {
            assert_eq!(feed_in_pieces(text, &[cut]), Ok(()), "cut at {cut}");
        }
    }

    #[test]
    fn fails_fast_on_the_first_invalid_byte_before_the_message_ends() {
        let mut v = Utf8Validator::default();
        // 0xCE 0xBA is "κ"; 0xF4 0x90 starts a code point above U+10FFFF.
        assert_eq!(v.feed(&[0xce, 0xba, 0xf4, 0x90]), Err(2));
    }

    #[test]
    fn a_message_ending_inside_a_code_point_is_invalid() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(&[b'a', 0xe2, 0x82]), Ok(()));
        assert_eq!(v.finish(&[b'a', 0xe2, 0x82]), Err(1));
    }

    proptest! {
        #[test]
        fn incremental_validation_agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..64), a in 0usize..64, b in 0usize..64) {
            let a = a.min(bytes.len());
            let b = b.min(bytes.len()).max(a);
            let expected = std::str::from_utf8(&bytes).map(|_| ()).map_err(|e| e.valid_up_to());
            prop_assert_eq!(feed_in_pieces(&bytes, &[a, b]), expected);
        }

        /// Text of 0 to about 600 bytes, either side of [`SIMD_MIN`], with
        /// at most one byte replaced: both validators must give the
        /// standard library's answer, offset and all.
        #[test]
        fn both_validators_agree_with_std(s in "\\PC{0,150}", at in any::<prop::sample::Index>(), byte in any::<u8>(), corrupt in any::<bool>()) {
            let mut bytes = s.into_bytes();
            if corrupt && !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let std = std::str::from_utf8(&bytes);
            prop_assert_eq!(validate(&bytes).map(str::len), std.map(str::len).map_err(|e| e.valid_up_to()));
            prop_assert_eq!(check_message(&bytes), std.map(drop).map_err(|e| e.valid_up_to()));
            prop_assert_eq!(check(&bytes), std.map(drop).map_err(|e| Invalid { valid_up_to: e.valid_up_to(), error_len: e.error_len() }));
        }

        #[test]
        fn valid_strings_pass_at_every_split(s in "\\PC{0,20}", cut in 0usize..80) {
            let bytes = s.as_bytes();
            prop_assert_eq!(feed_in_pieces(bytes, &[cut.min(bytes.len())]), Ok(()));
        }
    }
}
