//! Hex, both ways: md5 digests (lowercase, as ModSecurity writes them), Sguil's message
//! and detail fields (uppercase, as the analyst GUI decodes them), certificate pins.

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn encode(bytes: &[u8], digits: &[u8; 16]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = digits[usize::from(b >> 4)];
        pair[1] = digits[usize::from(b & 15)];
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Lowercase hex.
pub fn lower(bytes: &[u8]) -> String {
    encode(bytes, LOWER)
}

/// Uppercase hex.
pub fn upper(bytes: &[u8]) -> String {
    encode(bytes, UPPER)
}

/// Decodes an even number of hex digits of either case; `None` for anything else.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    text.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(lower(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(upper(&[0x00, 0xab, 0xff]), "00ABFF");
        assert_eq!(decode(b"00aBfF"), Some(vec![0x00, 0xab, 0xff]));
        assert_eq!(decode(b"abc"), None);
        assert_eq!(decode(b"zz"), None);
        assert_eq!(decode(b""), Some(vec![]));
    }

    proptest! {
        #[test]
        fn round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode(lower(&bytes).as_bytes()), Some(bytes.clone()));
            prop_assert_eq!(decode(upper(&bytes).as_bytes()), Some(bytes));
        }
    }
}
