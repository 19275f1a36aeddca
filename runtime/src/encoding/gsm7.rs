//! GSM 03.38 (3GPP TS 23.038) default alphabet, its extension table, and
//! septet packing.

use super::EncodingError;

/// The escape septet that introduces an extension-table character.
pub(super) const ESC: u8 = 0x1B;

/// The default alphabet, indexed by septet. Entry 0x1B is the escape and is
/// never looked up as a character.
const DEFAULT: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table: each character is sent as `ESC, code`.
const EXTENSION: [(char, u8); 10] = [
    ('\u{0C}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// A character's representation in GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Septets {
    /// One septet from the default alphabet.
    Basic(u8),
    /// `ESC` followed by this code from the extension table.
    Extended(u8),
}

impl Septets {
    /// Septets this character occupies.
    pub(super) fn len(self) -> usize {
        match self {
            Septets::Basic(_) => 1,
            Septets::Extended(_) => 2,
        }
    }
}

// Every GSM character except '€' lies below U+0400, so a small table answers
// the hot-path lookup without scanning; everything above is a short scan.
const TABLE_LEN: usize = 0x400;
const ABSENT: u8 = 0xFF;
const EXTENDED_FLAG: u8 = 0x80;

const REVERSE: [u8; TABLE_LEN] = {
    let mut table = [ABSENT; TABLE_LEN];
    let mut septet = 0;
    while septet < DEFAULT.len() {
        if septet != ESC as usize {
            let c = DEFAULT[septet] as usize;
            assert!(c < TABLE_LEN && table[c] == ABSENT);
            table[c] = septet as u8;
        }
        septet += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (c, code) = EXTENSION[i];
        let c = c as usize;
        if c < TABLE_LEN {
            assert!(table[c] == ABSENT);
            table[c] = code | EXTENDED_FLAG;
        }
        i += 1;
    }
    table
};

/// How `c` is written in GSM-7, or `None` if it is not representable.
pub(super) fn lookup(c: char) -> Option<Septets> {
    match REVERSE.get(c as usize) {
        // Checked first: ABSENT has the extended flag set.
        Some(&ABSENT) => None,
        Some(&entry) if entry & EXTENDED_FLAG != 0 => {
            Some(Septets::Extended(entry & !EXTENDED_FLAG))
        }
        Some(&entry) => Some(Septets::Basic(entry)),
        None => EXTENSION
            .iter()
            .find(|&&(ext, _)| ext == c)
            .map(|&(_, code)| Septets::Extended(code)),
    }
}

/// The character for a default-alphabet septet (`None` for the escape).
pub(super) fn basic_char(septet: u8) -> Option<char> {
    if septet == ESC {
        None
    } else {
        DEFAULT.get(usize::from(septet)).copied()
    }
}

/// The character for an extension-table code.
pub(super) fn extended_char(code: u8) -> Option<char> {
    EXTENSION
        .iter()
        .find(|&&(_, ext)| ext == code)
        .map(|&(c, _)| c)
}

/// Appends the septets of `text` to `out`. Characters outside the alphabet
/// are skipped; callers only pass text already classified as GSM-7.
pub(super) fn push_septets(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match lookup(c) {
            Some(Septets::Basic(septet)) => out.push(septet),
            Some(Septets::Extended(code)) => out.extend([ESC, code]),
            None => debug_assert!(false, "{c:?} is not GSM-7"),
        }
    }
}

/// Number of fill bits needed after a UDH of `udh_len` octets so that the
/// first septet starts on a septet boundary of TP-UD.
pub(super) fn fill_bits(udh_len: usize) -> u32 {
    // Reduce first so huge lengths cannot overflow; the result is in 0..7.
    let header_bits = (udh_len % 7) * 8 % 7;
    ((7 - header_bits) % 7) as u32
}

/// Octets taken by `fill` bits followed by `septets` packed septets, or `None`
/// on overflow (only reachable with a nonsense septet count).
pub(super) fn packed_len(septets: usize, fill: u32) -> Option<usize> {
    septets
        .checked_mul(7)?
        .checked_add(fill as usize)?
        .checked_add(7)
        .map(|bits| bits / 8)
}

/// Packs septets LSB first (3GPP TS 23.038 §6.1.2.1), after `fill` zero bits.
/// Spare bits in the final octet are zero; only the low 7 bits of each
/// septet are used.
pub fn pack_septets(septets: &[u8], fill: u32) -> Vec<u8> {
    let fill = fill % 8;
    let mut out = Vec::with_capacity(packed_len(septets.len(), fill).unwrap_or(0));
    let mut acc: u32 = 0;
    let mut bits = fill;
    for &septet in septets {
        acc |= u32::from(septet & 0x7F) << bits;
        bits += 7;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks `count` septets that follow `fill` bits in `bytes`, or `None` if
/// `bytes` is not exactly the length those septets pack into.
pub fn unpack_septets(bytes: &[u8], fill: u32, count: usize) -> Option<Vec<u8>> {
    let fill = fill % 8;
    if packed_len(count, fill)? != bytes.len() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut skip = fill;
    for &byte in bytes {
        acc |= u32::from(byte) << bits;
        bits += 8;
        // The fill bits sit at the bottom of the first octet.
        acc >>= skip;
        bits -= skip;
        skip = 0;
        while bits >= 7 && out.len() < count {
            out.push((acc & 0x7F) as u8);
            acc >>= 7;
            bits -= 7;
        }
    }
    Some(out)
}

/// Decodes a part's payload of `septets` septets after `fill` bits onto
/// `out`; `part` labels errors.
pub(super) fn decode(
    payload: &[u8],
    fill: u32,
    septets: usize,
    part: usize,
    out: &mut String,
) -> Result<(), EncodingError> {
    let septets = unpack_septets(payload, fill, septets).ok_or(EncodingError::LengthMismatch {
        part,
        units: septets,
        len: payload.len(),
    })?;
    let mut septets = septets.into_iter();
    while let Some(septet) = septets.next() {
        let c = match basic_char(septet) {
            Some(c) => c,
            // Only the escape has no character of its own.
            None => {
                let code = septets
                    .next()
                    .ok_or(EncodingError::DanglingEscape { part })?;
                extended_char(code).ok_or(EncodingError::InvalidEscape { part, code })?
            }
        };
        out.push(c);
    }
    Ok(())
}
