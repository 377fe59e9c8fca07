//! SHA-256 digests in lower-case hex: how pinned weights are verified, and
//! how a job's uploaded weights file is named on the wire and in a worker's
//! cache (the same bytes under the same name, whichever job sent them).

use std::io::{self, Read};

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of everything `reader` yields, read a megabyte
/// at a time.
pub fn sha256_hex(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether `s` is a SHA-256 in lower-case hex (64 characters of `0-9a-f`),
/// so that, coming from the wire, it is safe as a file name.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_in_lower_case_hex() {
        let empty = sha256_hex(&b""[..]).expect("hashed");
        assert_eq!(
            empty,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_hex(&empty));
        // More than one read's worth gives the digest of the whole.
        let big = vec![7u8; 3 << 20];
        assert_eq!(
            sha256_hex(&big[..]).expect("hashed"),
            sha256_hex(std::io::Cursor::new(big.clone())).expect("hashed")
        );
        assert_ne!(
            sha256_hex(&big[1..]).expect("hashed"),
            sha256_hex(&big[..]).expect("hashed")
        );
    }

    #[test]
    fn only_a_digest_passes_as_one() {
        let good = "a".repeat(64);
        assert!(is_sha256_hex(&good));
        for bad in [
            "",
            &"a".repeat(63),
            &"A".repeat(64),
            &format!("../{}", "a".repeat(61)),
        ] {
            assert!(!is_sha256_hex(bad), "{bad:?}");
        }
    }
}
