//! Which Kafka partition a keyed record goes to, as the Java client's default partitioner
//! decides it (librdkafka's `murmur2_random` for non-null keys): `beckon replay` splits devices
//! over partitions exactly as the producers of the pings topic did, so each replayed engine sees
//! the devices, and spends the budget share, of one streaming engine.
//!
//! It must not drift from Kafka's `Utils.murmur2`: a different hash would put devices on other
//! partitions and budget-limited offers would go to other devices.

/// The partition of a record keyed `key` among `partitions` (at least 1):
/// `(murmur2(key) & 0x7fffffff) % partitions`.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's `Utils.murmur2`: MurmurHash2 with seed `0x9747b28c`, little-endian words, Java's
/// `int` arithmetic (wrapping).
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java hashes the length as an `int`; keys are far below 2^31 bytes.
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (signed, as Java returns them) and librdkafka's
    /// `unittest_murmur2` (every tail length, the empty key).
    const VECTORS: [(&str, i32); 17] = [
        ("21", -973_932_308),
        ("foobar", -790_332_482),
        ("a-little-bit-long-string", -985_981_536),
        ("a-little-bit-longer-string", -1_486_304_829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58_897_971,
        ),
        ("abc", 479_470_107),
        ("kafka", 0xd067_cf64_u32 as i32),
        ("giberish123456789", 0x8f55_2b0c_u32 as i32),
        ("1234", 0x9fc9_7b14_u32 as i32),
        ("234", 0xe7c0_09ca_u32 as i32),
        ("34", 0x8739_30da_u32 as i32),
        ("4", 0x5a4b_5ca1),
        ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x7842_4f1c),
        ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4a62_b377),
        (
            "eAmbleWillBeRemoved,ThePrePartThatIs",
            0xe0e4_e09e_u32 as i32,
        ),
        ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8_b43f),
        ("", 0x106e_08d9),
    ];

    #[test]
    fn murmur2_is_kafkas() {
        for (key, want) in VECTORS {
            assert_eq!(murmur2(key.as_bytes()) as i32, want, "{key:?}");
        }
    }

    #[test]
    fn the_partition_is_the_positive_hash_modulo_the_count() {
        for (key, hash) in VECTORS {
            for partitions in [1, 2, 3, 12, 50] {
                let want = (hash & 0x7fff_ffff) as u32 % partitions;
                assert_eq!(partition_of(key.as_bytes(), partitions), want, "{key:?}");
            }
        }
    }
}
