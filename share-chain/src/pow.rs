//! Proof of work: the hash a share's header must bring under its target.
//!
//! Litecoin hashes the 80-byte header with scrypt (N=1024, r=1, p=1, the header as both
//! password and salt, 32 bytes out); Bitcoin with double SHA-256. Either way the result is
//! compared with the target as a little-endian 256-bit integer (see [`crate::target`]).
//! The share's *id* is always `sha256d(header)`, whatever the proof-of-work function.
//!
//! Every Stratum submission costs one scrypt hash, so it is specialised here for Litecoin's
//! fixed parameters: the 128-byte ROMix state lives in 32-bit words (no byte conversions
//! per block) and the 128 KiB scratch table is allocated once per thread and reused. Four
//! headers at a time ([`scrypt_1024_1_1_many`]) run side by side in AVX-512 vectors where
//! the CPU has them (found at run time), which is where the speed is: one Salsa20/8 is a
//! chain of dependent steps that leaves a vector unit mostly idle. PBKDF2-HMAC-SHA256 comes
//! from the `pbkdf2` and `sha2` crates. The RustCrypto `scrypt` crate stays as the
//! reference the tests compare with.

use std::cell::RefCell;

use crate::hash::sha256d;
use crate::params::PowAlgorithm;

/// The proof-of-work hash of an 80-byte header, in the hash function's byte order.
pub fn pow_hash(algorithm: PowAlgorithm, header: &[u8; 80]) -> [u8; 32] {
    match algorithm {
        PowAlgorithm::Scrypt => scrypt_1024_1_1(header),
        PowAlgorithm::Sha256d => sha256d(header),
    }
}

/// Litecoin's scrypt: N=1024 (log2 10), r=1, p=1, dkLen=32, salt = password = header.
pub fn scrypt_1024_1_1(header: &[u8; 80]) -> [u8; 32] {
    let mut b = [0u8; 128];
    let mut x = pbkdf2_in(header, &mut b);
    with_scratch(|v| romix(&mut x, v));
    pbkdf2_out(header, &x, &mut b)
}

/// How many headers [`scrypt_1024_1_1_many`] hashes at once where the CPU can.
pub const SCRYPT_BATCH: usize = 4;

/// [`scrypt_1024_1_1`] of every header in `headers`, in order.
///
/// Salsa20/8 is a chain of dependent steps, so one hash leaves a vector unit mostly
/// waiting; four hashes side by side in 512-bit vectors (AVX-512, found at run time) cost
/// little more than one. Elsewhere, and for a remainder under four, the headers are hashed
/// one by one.
pub fn scrypt_1024_1_1_many(headers: &[[u8; 80]]) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(headers.len());
    let mut chunks = headers.chunks_exact(SCRYPT_BATCH);
    let remainder = chunks.remainder();
    hash_fours(&mut chunks, &mut out);
    for header in chunks.flatten().chain(remainder) {
        out.push(scrypt_1024_1_1(header));
    }
    out
}

/// Hashes whole groups of four from `chunks` side by side, if this CPU (and the compiler
/// that built this: AVX-512 intrinsics are stable from Rust 1.89) can; leaves the rest.
#[cfg(target_arch = "x86_64")]
#[rustversion::since(1.89)]
fn hash_fours(chunks: &mut std::slice::ChunksExact<'_, [u8; 80]>, out: &mut Vec<[u8; 32]>) {
    if !x86::has_avx512() {
        return;
    }
    for chunk in chunks {
        let mut states = [[0u32; 32]; SCRYPT_BATCH];
        let mut salted = [[0u8; 128]; SCRYPT_BATCH];
        for ((state, b), header) in states.iter_mut().zip(salted.iter_mut()).zip(chunk) {
            *state = pbkdf2_in(header, b);
        }
        with_scratch_x4(|v| {
            // SAFETY (of the call): `has_avx512` checked the CPU above.
            unsafe { x86::romix_x4_avx512(&mut states, v) }
        });
        for ((state, b), header) in states.iter().zip(salted.iter_mut()).zip(chunk) {
            out.push(pbkdf2_out(header, state, b));
        }
    }
}

/// Without AVX-512 (or an older compiler) every header is hashed on its own.
#[cfg(not(target_arch = "x86_64"))]
fn hash_fours(_: &mut std::slice::ChunksExact<'_, [u8; 80]>, _: &mut Vec<[u8; 32]>) {}

#[cfg(target_arch = "x86_64")]
#[rustversion::before(1.89)]
fn hash_fours(_: &mut std::slice::ChunksExact<'_, [u8; 80]>, _: &mut Vec<[u8; 32]>) {}

/// scrypt's first PBKDF2 step: the header stretched to 128 bytes, as ROMix's words.
fn pbkdf2_in(header: &[u8; 80], b: &mut [u8; 128]) -> [u32; 32] {
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(header, header, 1, b);
    let mut x = [0u32; 32];
    for (word, bytes) in x.iter_mut().zip(b.chunks_exact(4)) {
        *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    x
}

/// scrypt's last PBKDF2 step: ROMix's result salts the header into the 32-byte hash.
fn pbkdf2_out(header: &[u8; 80], x: &[u32; 32], b: &mut [u8; 128]) -> [u8; 32] {
    for (bytes, word) in b.chunks_exact_mut(4).zip(x.iter()) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(header, b, 1, &mut out);
    out
}

/// The same hash through the RustCrypto `scrypt` crate: the reference the fast path is
/// tested against (and benchmarked beside).
pub fn scrypt_1024_1_1_reference(header: &[u8; 80]) -> [u8; 32] {
    // These parameters are valid constants; `Params::new` cannot fail for them.
    let params = scrypt::Params::new(10, 1, 1, 32).expect("scrypt(10, 1, 1, 32) is valid");
    let mut out = [0u8; 32];
    scrypt::scrypt(header, header, &params, &mut out).expect("32 bytes is a valid output length");
    out
}

/// scrypt's N for Litecoin.
const N: usize = 1024;

/// One 128-byte ROMix block (r = 1) as words; aligned for vector loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block([u32; 32]);

thread_local! {
    /// ROMix's table V (N blocks, 128 KiB), reused by every hash on this thread.
    static SCRATCH: RefCell<Box<[Block]>> = RefCell::new(new_scratch());
}

fn new_scratch() -> Box<[Block]> {
    vec![Block([0; 32]); N].into_boxed_slice()
}

/// Four ROMix blocks interleaved row by row: vector `k` holds row `k` of each hash.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Block4([u32; 128]);

thread_local! {
    /// The 4-way table (N blocks of four hashes, 512 KiB), allocated on first use.
    static SCRATCH_X4: RefCell<Option<Box<[Block4]>>> = const { RefCell::new(None) };
}

fn new_scratch_x4() -> Box<[Block4]> {
    vec![Block4([0; 128]); N].into_boxed_slice()
}

/// Like [`with_scratch`], for the 4-way table.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[rustversion::attr(before(1.89), allow(dead_code))]
fn with_scratch_x4<R>(mut f: impl FnMut(&mut [Block4]) -> R) -> R {
    let reused = SCRATCH_X4.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        Some(f(slot.get_or_insert_with(new_scratch_x4)))
    });
    match reused {
        Ok(Some(r)) => r,
        _ => f(&mut new_scratch_x4()),
    }
}

/// Runs `f` on this thread's scratch table (a fresh one if it is unavailable: during
/// thread teardown, say).
fn with_scratch<R>(mut f: impl FnMut(&mut [Block]) -> R) -> R {
    let reused = SCRATCH.try_with(|cell| cell.try_borrow_mut().ok().map(|mut v| f(&mut v)));
    match reused {
        Ok(Some(r)) => r,
        _ => f(&mut new_scratch()),
    }
}

/// scrypt's ROMix with N = 1024, r = 1 on the state `x` (32 little-endian words).
fn romix(x: &mut [u32; 32], v: &mut [Block]) {
    // One hash at a time, the plain-word version is the fastest measured (vectors do not
    // pay for their shuffles without several hashes side by side; see the benches).
    portable::romix(x, v);
}

/// Salsa20/8 and ROMix on plain words, for any CPU (and as a second reference in tests).
mod portable {
    use super::{Block, N};

    /// The Salsa20 core with 8 rounds, added to its input (scrypt's `Salsa20/8`).
    pub(super) fn salsa20_8(b: &mut [u32; 16]) {
        let mut x = *b;
        macro_rules! quarter {
            ($a:expr, $b:expr, $c:expr, $d:expr) => {
                x[$b] ^= x[$a].wrapping_add(x[$d]).rotate_left(7);
                x[$c] ^= x[$b].wrapping_add(x[$a]).rotate_left(9);
                x[$d] ^= x[$c].wrapping_add(x[$b]).rotate_left(13);
                x[$a] ^= x[$d].wrapping_add(x[$c]).rotate_left(18);
            };
        }
        for _ in 0..4 {
            // Columns.
            quarter!(0, 4, 8, 12);
            quarter!(5, 9, 13, 1);
            quarter!(10, 14, 2, 6);
            quarter!(15, 3, 7, 11);
            // Rows.
            quarter!(0, 1, 2, 3);
            quarter!(5, 6, 7, 4);
            quarter!(10, 11, 8, 9);
            quarter!(15, 12, 13, 14);
        }
        for (b, x) in b.iter_mut().zip(x.iter()) {
            *b = b.wrapping_add(*x);
        }
    }

    /// BlockMix for r = 1: `B0 = S(B0 ^ B1)`, then `B1 = S(B1 ^ B0)`.
    fn block_mix(x: &mut [u32; 32]) {
        let (lo, hi) = x.split_at_mut(16);
        let (Ok(b0), Ok(b1)) = (
            <&mut [u32; 16]>::try_from(lo),
            <&mut [u32; 16]>::try_from(hi),
        ) else {
            return;
        };
        for (a, b) in b0.iter_mut().zip(b1.iter()) {
            *a ^= *b;
        }
        salsa20_8(b0);
        for (b, a) in b1.iter_mut().zip(b0.iter()) {
            *b ^= *a;
        }
        salsa20_8(b1);
    }

    pub(super) fn romix(x: &mut [u32; 32], v: &mut [Block]) {
        for slot in v.iter_mut().take(N) {
            slot.0 = *x;
            block_mix(x);
        }
        for _ in 0..N {
            let j = (x[16] as usize) & (N - 1);
            if let Some(slot) = v.get(j) {
                for (a, b) in x.iter_mut().zip(slot.0.iter()) {
                    *a ^= *b;
                }
            }
            block_mix(x);
        }
    }
}

/// ROMix with the Salsa20/8 core on vectors.
///
/// Each 16-word block is kept "diagonal first": row `k` (four words) holds words
/// `(4k, 4k+5, 4k+10, 4k+15) mod 16`, so every column step and every row step of Salsa20
/// is one lane-wise add, rotate and xor over four words, with lane rotations in between.
/// ROMix itself (copies, xors, the index in word 16) does not care about the order, so
/// the state is shuffled once on the way in and once on the way out.
#[cfg(target_arch = "x86_64")]
#[rustversion::since(1.89)]
// The workspace's MSRV predates these intrinsics; `rustversion` leaves this module out of
// builds by older compilers (they hash one header at a time).
#[allow(clippy::incompatible_msrv)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Block4, N};

    /// Word `i` of a shuffled block is word `SHUFFLE[i]` of the plain one.
    const SHUFFLE: [usize; 16] = [0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12, 1, 6, 11];

    fn shuffle(x: &[u32; 32]) -> [u32; 32] {
        let mut out = [0u32; 32];
        for half in 0..2 {
            for (i, &from) in SHUFFLE.iter().enumerate() {
                out[half * 16 + i] = x[half * 16 + from];
            }
        }
        out
    }

    fn unshuffle(x: &[u32; 32]) -> [u32; 32] {
        let mut out = [0u32; 32];
        for half in 0..2 {
            for (i, &to) in SHUFFLE.iter().enumerate() {
                out[half * 16 + to] = x[half * 16 + i];
            }
        }
        out
    }

    /// Whether the CPU runs [`romix_x4_avx512`].
    pub(super) fn has_avx512() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// ROMix of four independent states at once: vector `k` of the state holds row `k`
    /// (four words, diagonal-first order as above) of each of the four hashes, one per
    /// 128-bit lane; Salsa20's lane rotations stay within each 128-bit lane, so the four
    /// hashes never mix. Each hash reads its own table entry (masked loads).
    ///
    /// Callers must make sure the CPU supports AVX-512F ([`has_avx512`]).
    #[target_feature(enable = "avx512f")]
    pub(super) fn romix_x4_avx512(states: &mut [[u32; 32]; 4], v: &mut [Block4]) {
        let mut rows = Block4([0; 128]);
        for (h, state) in states.iter().enumerate() {
            let shuffled = shuffle(state);
            for k in 0..8 {
                for i in 0..4 {
                    rows.0[k * 16 + h * 4 + i] = shuffled[k * 4 + i];
                }
            }
        }
        let p = rows.0.as_ptr() as *const __m512i;
        // SAFETY: `Block4` is 128 words (8 vectors) and 64-byte aligned.
        let mut s: [__m512i; 8] = unsafe {
            [
                _mm512_load_si512(p),
                _mm512_load_si512(p.add(1)),
                _mm512_load_si512(p.add(2)),
                _mm512_load_si512(p.add(3)),
                _mm512_load_si512(p.add(4)),
                _mm512_load_si512(p.add(5)),
                _mm512_load_si512(p.add(6)),
                _mm512_load_si512(p.add(7)),
            ]
        };
        macro_rules! salsa {
            ($b0:expr, $b1:expr, $b2:expr, $b3:expr) => {{
                let (mut r0, mut r1, mut r2, mut r3) = ($b0, $b1, $b2, $b3);
                for _ in 0..4 {
                    r1 = _mm512_xor_si512(r1, _mm512_rol_epi32::<7>(_mm512_add_epi32(r0, r3)));
                    r2 = _mm512_xor_si512(r2, _mm512_rol_epi32::<9>(_mm512_add_epi32(r1, r0)));
                    r3 = _mm512_xor_si512(r3, _mm512_rol_epi32::<13>(_mm512_add_epi32(r2, r1)));
                    r0 = _mm512_xor_si512(r0, _mm512_rol_epi32::<18>(_mm512_add_epi32(r3, r2)));
                    r1 = _mm512_shuffle_epi32::<0x93>(r1);
                    r2 = _mm512_shuffle_epi32::<0x4e>(r2);
                    r3 = _mm512_shuffle_epi32::<0x39>(r3);
                    r3 = _mm512_xor_si512(r3, _mm512_rol_epi32::<7>(_mm512_add_epi32(r0, r1)));
                    r2 = _mm512_xor_si512(r2, _mm512_rol_epi32::<9>(_mm512_add_epi32(r3, r0)));
                    r1 = _mm512_xor_si512(r1, _mm512_rol_epi32::<13>(_mm512_add_epi32(r2, r3)));
                    r0 = _mm512_xor_si512(r0, _mm512_rol_epi32::<18>(_mm512_add_epi32(r1, r2)));
                    r1 = _mm512_shuffle_epi32::<0x39>(r1);
                    r2 = _mm512_shuffle_epi32::<0x4e>(r2);
                    r3 = _mm512_shuffle_epi32::<0x93>(r3);
                }
                $b0 = _mm512_add_epi32($b0, r0);
                $b1 = _mm512_add_epi32($b1, r1);
                $b2 = _mm512_add_epi32($b2, r2);
                $b3 = _mm512_add_epi32($b3, r3);
            }};
        }
        macro_rules! block_mix {
            () => {{
                s[0] = _mm512_xor_si512(s[0], s[4]);
                s[1] = _mm512_xor_si512(s[1], s[5]);
                s[2] = _mm512_xor_si512(s[2], s[6]);
                s[3] = _mm512_xor_si512(s[3], s[7]);
                salsa!(s[0], s[1], s[2], s[3]);
                s[4] = _mm512_xor_si512(s[4], s[0]);
                s[5] = _mm512_xor_si512(s[5], s[1]);
                s[6] = _mm512_xor_si512(s[6], s[2]);
                s[7] = _mm512_xor_si512(s[7], s[3]);
                salsa!(s[4], s[5], s[6], s[7]);
            }};
        }

        for slot in v.iter_mut().take(N) {
            let q = slot.0.as_mut_ptr() as *mut __m512i;
            for (k, vector) in s.iter().enumerate() {
                // SAFETY: `slot` is a 64-byte aligned block of 8 vectors; k < 8.
                unsafe { _mm512_store_si512(q.add(k), *vector) };
            }
            block_mix!();
        }
        let mut first_row = [0u32; 16];
        for _ in 0..N {
            // Word 16 of each hash (the first of its second half) is lane 0 of its
            // 128-bit lane of vector 4, in both word orders.
            // SAFETY: 16 words are 64 bytes; unaligned store.
            unsafe { _mm512_storeu_si512(first_row.as_mut_ptr() as *mut __m512i, s[4]) };
            let j = [0usize, 4, 8, 12].map(|lane| (first_row[lane] as usize) & (N - 1));
            let (Some(b0), Some(b1), Some(b2), Some(b3)) =
                (v.get(j[0]), v.get(j[1]), v.get(j[2]), v.get(j[3]))
            else {
                continue;
            };
            let base = [b0, b1, b2, b3].map(|b| b.0.as_ptr());
            for (k, vector) in s.iter_mut().enumerate() {
                // SAFETY: each table entry is a 64-byte aligned block of 8 vectors (128
                // words); k < 8, so `k * 16` words in stays inside it.
                let row = unsafe {
                    let mut row = _mm512_load_si512(base[0].add(k * 16) as *const __m512i);
                    row = _mm512_mask_load_epi32(row, 0x00f0, base[1].add(k * 16) as *const i32);
                    row = _mm512_mask_load_epi32(row, 0x0f00, base[2].add(k * 16) as *const i32);
                    _mm512_mask_load_epi32(row, 0xf000, base[3].add(k * 16) as *const i32)
                };
                *vector = _mm512_xor_si512(*vector, row);
            }
            block_mix!();
        }

        let q = rows.0.as_mut_ptr() as *mut __m512i;
        for (k, vector) in s.iter().enumerate() {
            // SAFETY: as above.
            unsafe { _mm512_store_si512(q.add(k), *vector) };
        }
        for (h, state) in states.iter_mut().enumerate() {
            let mut shuffled = [0u32; 32];
            for k in 0..8 {
                for i in 0..4 {
                    shuffled[k * 4 + i] = rows.0[k * 16 + h * 4 + i];
                }
            }
            *state = unshuffle(&shuffled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;
    use proptest::prelude::*;

    fn display(mut hash: [u8; 32]) -> String {
        hash.reverse();
        hex::encode(hash)
    }

    const LITECOIN_GENESIS: &str = "010000000000000000000000000000000000000000000000000000000000000000000000d9ced4ed1130f7b7faad9be25323ffafa33232a17c3edf6cfd97bee6bafbdd97b9aa8e4ef0ff0f1ecd513f7c";

    #[test]
    fn litecoin_genesis_scrypt_hash() {
        let header: [u8; 80] = hex::decode(LITECOIN_GENESIS).unwrap().try_into().unwrap();
        let pow = pow_hash(PowAlgorithm::Scrypt, &header);
        let shown = display(pow);
        assert_eq!(
            shown,
            "0000050c34a64b415b6b15b37f2216634b5b1669cb9a2e38d76f7213b0671e00"
        );
        assert_eq!(pow, scrypt_1024_1_1_reference(&header));
        // It meets the genesis block's own target (bits 0x1e0ffff0) ...
        assert!(Target::from_compact(0x1e0ffff0).unwrap().is_met_by(&pow));
        // ... and the sha256d id does not (it is not the proof of work).
        let id = pow_hash(PowAlgorithm::Sha256d, &header);
        assert!(!Target::from_compact(0x1e0ffff0).unwrap().is_met_by(&id));
    }

    /// The Salsa20/8 test vector of RFC 7914, section 8.
    #[test]
    fn salsa20_8_rfc7914_vector() {
        let input = hex::decode(
            "7e879a214f3ec9867ca940e641718f26baee555b8c61c1b50df846116dcd3b1d\
             ee24f319df9b3d8514121e4b5ac5aa3276021d2909c74829edebc68db8b8c25e",
        )
        .unwrap();
        let output = hex::decode(
            "a41f859c6608cc993b81cacb020cef05044b2181a2fd337dfd7b1c6396682f29\
             b4393168e3c9e6bcfe6bc5b7a06d96bae424cc102c91745c24ad673dc7618f81",
        )
        .unwrap();
        let mut b = [0u32; 16];
        for (w, c) in b.iter_mut().zip(input.chunks_exact(4)) {
            *w = u32::from_le_bytes(c.try_into().unwrap());
        }
        portable::salsa20_8(&mut b);
        let got: Vec<u8> = b.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(got, output);
    }

    /// The scratch table is reused: the same thread hashing different headers in a row
    /// gets each one right (nothing of an earlier hash leaks into a later one).
    #[test]
    fn scratch_reuse_is_clean() {
        for seed in 0..5u8 {
            let header = [seed.wrapping_mul(37); 80];
            assert_eq!(scrypt_1024_1_1(&header), scrypt_1024_1_1_reference(&header));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn equals_the_scrypt_crate(bytes in proptest::collection::vec(any::<u8>(), 80)) {
            let header: [u8; 80] = bytes.try_into().unwrap();
            prop_assert_eq!(scrypt_1024_1_1(&header), scrypt_1024_1_1_reference(&header));
        }

        /// Four at a time (AVX-512 where the CPU has it), and any remainder, equals the
        /// crate hash by hash.
        #[test]
        fn many_equals_the_scrypt_crate(
            headers in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 80), 0..10)
        ) {
            let headers: Vec<[u8; 80]> =
                headers.into_iter().map(|h| h.try_into().unwrap()).collect();
            let hashes = scrypt_1024_1_1_many(&headers);
            prop_assert_eq!(hashes.len(), headers.len());
            for (header, hash) in headers.iter().zip(&hashes) {
                prop_assert_eq!(*hash, scrypt_1024_1_1_reference(header));
            }
        }
    }
}
