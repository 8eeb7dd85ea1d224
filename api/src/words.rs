//! Finding words in ASCII text 64 bytes at a time, for jobs that tokenize much text (word
//! count, indexers).
//!
//! A byte loop asks "is this a letter?" once per byte and branches on the answer; here a
//! block of 64 bytes becomes one 64-bit mask of its letters (SSE2 compares on x86_64, carry-free
//! byte arithmetic elsewhere), and the word edges in it are found with bit operations: the
//! branches are per word, not per byte.

use std::ops::Range;

/// Calls `f` with the byte range of every maximal run of ASCII letters (`A`–`Z`, `a`–`z`) in
/// `text`, in order. Other bytes, non-ASCII ones included, separate words: for ASCII text
/// these are exactly its runs of `char::is_alphabetic` characters.
pub fn for_each_ascii_word(text: &[u8], mut f: impl FnMut(Range<usize>)) {
    let n = text.len();
    let (mut i, mut start, mut in_word) = (0, 0, 0u64);
    while i < n {
        let m = match text.get(i..i + 64) {
            Some(block) => letters64(block),
            None => {
                // Zero padding is not a letter: a word running to the end closes here.
                let mut pad = [0u8; 64];
                pad[..n - i].copy_from_slice(&text[i..]);
                letters64(&pad)
            }
        };
        let shifted = (m << 1) | in_word;
        // A start is a letter after a non-letter, an end a non-letter after a letter; they
        // alternate, so one pass over both in order pairs them up.
        let mut edges = (m & !shifted) | (!m & shifted);
        while edges != 0 {
            let b = edges.trailing_zeros() as usize;
            edges &= edges - 1;
            if m >> b & 1 == 1 {
                start = i + b;
            } else {
                f(start..i + b);
            }
        }
        in_word = m >> 63;
        i += 64;
    }
    if in_word == 1 {
        f(start..n);
    }
}

/// Bit `j` set when `block[j]` is an ASCII letter (`block` holds at least 64 bytes).
#[cfg(target_arch = "x86_64")]
fn letters64(block: &[u8]) -> u64 {
    use std::arch::x86_64::*;
    assert!(block.len() >= 64);
    let mut m = 0u64;
    for k in 0..4 {
        // SAFETY: SSE2 is part of x86_64; the load reads 16 bytes at k*16 < 64 <= len,
        // unaligned loads being allowed by `loadu`.
        let bits = unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(k * 16).cast());
            // Folding in 0x20 maps 'A'..='Z' onto 'a'..='z' and nothing else into that
            // range; bytes from 0x80 are negative as i8, so below 'a'.
            let x = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let ge = _mm_cmpgt_epi8(x, _mm_set1_epi8(b'a' as i8 - 1));
            let le = _mm_cmpgt_epi8(_mm_set1_epi8(b'z' as i8 + 1), x);
            _mm_movemask_epi8(_mm_and_si128(ge, le)) as u16
        };
        m |= u64::from(bits) << (k * 16);
    }
    m
}

#[cfg(not(target_arch = "x86_64"))]
fn letters64(block: &[u8]) -> u64 {
    letters64_swar(block)
}

/// [`letters64`] eight bytes at a time with carry-free byte arithmetic: the path for machines
/// without SSE2 (tested on all).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn letters64_swar(block: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f * ONES;
    let mut m = 0u64;
    for (k, w) in block[..64].chunks_exact(8).enumerate() {
        let raw = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        // Seven low bits only, so adding below 0x80 cannot carry into the next byte; bytes
        // from 0x80 are masked out at the end.
        let x = (raw & LOW7) | (0x20 * ONES);
        let ge_a = x.wrapping_add((0x80 - u64::from(b'a')) * ONES);
        let gt_z = x.wrapping_add((0x80 - u64::from(b'z') - 1) * ONES);
        let high = ge_a & !gt_z & !raw & (0x80 * ONES);
        // Gather the eight high bits into one byte.
        let byte = ((high >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
        m |= byte << (k * 8);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn every_byte_is_classified_as_is_ascii_alphabetic_does() {
        for b in 0u8..=255 {
            let mut block = [b' '; 64];
            block[b as usize % 64] = b;
            for bits in [letters64(&block), letters64_swar(&block)] {
                assert_eq!(bits >> (b as usize % 64) & 1 == 1, b.is_ascii_alphabetic(), "byte {b:#x}");
                assert_eq!(bits.count_ones(), u32::from(b.is_ascii_alphabetic()), "byte {b:#x}");
            }
        }
    }

    /// Words of every length around the 64-byte block edges, separated by ASCII and
    /// non-ASCII bytes, cut at every length near the edges.
    #[test]
    fn words_are_the_runs_a_plain_split_finds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut text = Vec::new();
        for _ in 0..4_000 {
            let len = rng.random_range(1..=80);
            text.extend((0..len).map(|_| if rng.random_ratio(1, 2) { b'a' } else { b'A' + rng.random_range(0..26) }));
            let seps = b" ,.\n9@[`{\xc3\xa9\xff";
            text.extend((0..rng.random_range(1..3)).map(|_| seps[rng.random_range(0..seps.len())]));
        }
        for cut in [text.len(), text.len() - 1, 0, 1, 17, 63, 64, 65, 127, 128, 129] {
            let t = &text[..cut];
            let expected: Vec<&[u8]> = t.split(|b| !b.is_ascii_alphabetic()).filter(|w| !w.is_empty()).collect();
            let mut got = Vec::new();
            for_each_ascii_word(t, |r| got.push(&t[r]));
            assert_eq!(got, expected, "first {cut} bytes");
        }
    }
}
