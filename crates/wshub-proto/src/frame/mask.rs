//! Client-to-server masking (RFC 6455 §5.3).
//!
//! "Octet i of the transformed data is the XOR of octet i of the original data
//! with octet at index i modulo 4 of the masking key." Applying the same mask
//! twice gives the input back.

/// XORs `buf` in place with the 4-byte masking key, starting at key index 0.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4]) {
    mask_words(buf, key);
}

/// XORs `buf` in place with the masking key, starting at key index `offset % 4`.
///
/// Used when a frame's payload arrives in pieces: `offset` is the number of
/// payload bytes of this frame already unmasked.
pub(crate) fn apply_mask_offset(buf: &mut [u8], mut key: [u8; 4], offset: usize) {
    key.rotate_left(offset % 4);
    mask_words(buf, key);
}

/// XORs `buf` with `key` repeated from its first byte.
#[inline(always)]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    // Eight bytes at a time through a u64 XOR: the compiler vectorises this
    // loop without `unsafe`.
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let word = u64::from_ne_bytes(
            chunk
                .try_into()
                .expect("chunks_exact_mut(8) yields 8 bytes"),
        );
        chunk.copy_from_slice(&(word ^ wide).to_ne_bytes());
    }
    // Up to 7 bytes left: one 4-byte word (the key is 4-periodic, so the
    // word starts at key[0] again), then at most 3 single bytes.
    let rest = chunks.into_remainder();
    let tail = match rest.split_first_chunk_mut::<4>() {
        Some((word, tail)) => {
            *word = (u32::from_ne_bytes(*word) ^ u32::from_ne_bytes(key)).to_ne_bytes();
            tail
        }
        None => rest,
    };
    for (byte, k) in tail.iter_mut().zip(key) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scalar_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn masks_hello_as_in_rfc_6455_section_5_7() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    proptest! {
        #[test]
        fn wide_mask_equals_the_scalar_reference(data in proptest::collection::vec(any::<u8>(), 0..300), key: [u8; 4], offset in 0usize..8) {
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask_offset(&mut fast, key, offset);
            scalar_mask(&mut slow, key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn masking_twice_gives_the_input_back(data in proptest::collection::vec(any::<u8>(), 0..300), key: [u8; 4]) {
            let mut buf = data.clone();
            apply_mask(&mut buf, key);
            apply_mask(&mut buf, key);
            prop_assert_eq!(buf, data);
        }

        #[test]
        fn masking_in_pieces_equals_masking_at_once(data in proptest::collection::vec(any::<u8>(), 0..100), key: [u8; 4], split in 0usize..100) {
            let split = split.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key);
            let mut pieces = data.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask_offset(a, key, 0);
            apply_mask_offset(b, key, split);
            prop_assert_eq!(pieces, whole);
        }
    }
}
