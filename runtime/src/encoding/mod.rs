//! SMS body encoding: choosing GSM-7 or UCS-2, counting what a body costs,
//! splitting it into concatenated parts and producing each part's TP-UD.
//!
//! * A body is sent as GSM-7 when every character is in the GSM 03.38
//!   (3GPP TS 23.038) default alphabet or its extension table; extension
//!   characters cost two septets (`ESC`, code). Otherwise it is sent as UCS-2,
//!   counted in UTF-16 code units: characters outside the BMP (most emoji)
//!   cost two units and travel as a surrogate pair, as carriers do.
//! * One part holds [`MAX_SINGLE_GSM7`] septets or [`MAX_SINGLE_UCS2`] units.
//!   Longer bodies are split into parts that each carry a 6-byte
//!   concatenation UDH (`05 00 03 ref total seq`) and hold
//!   [`MAX_CONCAT_GSM7`] septets or [`MAX_CONCAT_UCS2`] units.
//! * Parts are filled greedily with whole characters: an escape pair or a
//!   surrogate pair never straddles two parts, so a part may hold one unit
//!   less than its limit.
//!
//! [`analyze`] prices a body cheaply; [`encode`] produces the parts;
//! [`decode`] reassembles text from parts' UDH and payload.

mod gsm7;
mod segment;
mod smart;
mod ucs2;

#[cfg(test)]
mod tests;

use std::fmt;

pub use gsm7::{pack_septets, unpack_septets};
pub use smart::{REPLACEMENTS as SMART_REPLACEMENTS, smart_encode};

/// Septets in a single, unconcatenated GSM-7 message.
pub const MAX_SINGLE_GSM7: usize = 160;
/// Septets in each part of a concatenated GSM-7 message (7 go to the UDH).
pub const MAX_CONCAT_GSM7: usize = 153;
/// UTF-16 code units in a single, unconcatenated UCS-2 message.
pub const MAX_SINGLE_UCS2: usize = 70;
/// UTF-16 code units in each part of a concatenated UCS-2 message.
pub const MAX_CONCAT_UCS2: usize = 67;
/// Most parts the 8-bit concatenation header can number.
pub const MAX_PARTS: usize = u8::MAX as usize;
/// Length in bytes of the concatenation UDH carried by each part of a
/// multi-part message.
pub const CONCAT_UDH_LEN: usize = segment::CONCAT_UDH_LEN;

/// The data coding used for a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet with extension table, packed in septets.
    Gsm7,
    /// UCS-2 (in practice UTF-16 big-endian).
    Ucs2,
}

impl Encoding {
    /// The canonical name: `"gsm7"` or `"ucs2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Parses a canonical name, ignoring ASCII case.
    pub fn parse(s: &str) -> Option<Encoding> {
        [Encoding::Gsm7, Encoding::Ucs2]
            .into_iter()
            .find(|encoding| s.eq_ignore_ascii_case(encoding.as_str()))
    }

    /// Units that fit in a single, unconcatenated message.
    pub fn max_single_units(self) -> usize {
        match self {
            Encoding::Gsm7 => MAX_SINGLE_GSM7,
            Encoding::Ucs2 => MAX_SINGLE_UCS2,
        }
    }

    /// Units that fit in each part of a concatenated message.
    pub fn max_concat_units(self) -> usize {
        match self {
            Encoding::Gsm7 => MAX_CONCAT_GSM7,
            Encoding::Ucs2 => MAX_CONCAT_UCS2,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why parts could not be decoded (or a body could not be encoded).
///
/// `part` is the position of the offending part in the slice given to
/// [`decode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("no parts to decode")]
    NoParts,
    #[error("part {part}: user data header is not a 6-byte concatenation header")]
    InvalidUdh { part: usize },
    #[error("part {part}: header numbers it {seq} of {total}, but {parts} parts were given")]
    BadSequence {
        part: usize,
        seq: u8,
        total: u8,
        parts: usize,
    },
    #[error("part {part}: sequence number {seq} appears more than once")]
    DuplicateSequence { part: usize, seq: u8 },
    #[error("part {part}: concatenation reference {found}, expected {expected}")]
    ReferenceMismatch {
        part: usize,
        expected: u8,
        found: u8,
    },
    #[error("part {part}: payload of {len} bytes does not hold exactly {units} units")]
    LengthMismatch {
        part: usize,
        units: usize,
        len: usize,
    },
    #[error("part {part}: odd UCS-2 payload length {len}")]
    OddLength { part: usize, len: usize },
    #[error("part {part}: unpaired UTF-16 surrogate {unit:#06x}")]
    UnpairedSurrogate { part: usize, unit: u16 },
    #[error("part {part}: escape followed by {code:#04x}, not in the extension table")]
    InvalidEscape { part: usize, code: u8 },
    #[error("part {part}: ends with a GSM-7 escape septet")]
    DanglingEscape { part: usize },
    #[error("body needs {parts} parts; an 8-bit concatenation header numbers {MAX_PARTS} at most")]
    TooManyParts { parts: usize },
}

/// What a body costs, without producing payloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub encoding: Encoding,
    /// Parts the body is sent as; always `encode(text, _).parts.len()`.
    pub segments: usize,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2), excluding UDHs.
    pub units: usize,
    /// Unicode scalar values in the body.
    pub characters: usize,
    /// The distinct characters that forced UCS-2, in order of first
    /// appearance; empty for GSM-7.
    pub non_gsm: Vec<char>,
}

/// Prices `text`. Cheap enough for the accept path: a few passes over the
/// text and no allocation except `non_gsm`.
///
/// ```
/// use pigeon::encoding::{Encoding, analyze};
///
/// // `€` is in the GSM extension table: it costs two septets.
/// let euro = analyze("Total: 5€");
/// assert_eq!((euro.encoding, euro.units, euro.segments), (Encoding::Gsm7, 10, 1));
///
/// // One character outside GSM-7 makes the whole body UCS-2.
/// let otp = analyze("验证码 123456");
/// assert_eq!(otp.encoding, Encoding::Ucs2);
/// assert_eq!(otp.non_gsm, ['验', '证', '码']);
/// ```
pub fn analyze(text: &str) -> Analysis {
    let Measure {
        encoding,
        units,
        characters,
    } = measure(text);
    let non_gsm = match encoding {
        Encoding::Gsm7 => Vec::new(),
        Encoding::Ucs2 => non_gsm(text),
    };
    Analysis {
        encoding,
        segments: segment::count(text, encoding, units),
        units,
        characters,
        non_gsm,
    }
}

/// One part of an encoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// 0-based position of the part.
    pub index: usize,
    /// The slice of the original text this part carries.
    pub text: String,
    /// Empty for a single-part message; else the 6-byte concatenation UDH.
    pub udh: Vec<u8>,
    /// The bytes that follow the UDH in TP-UD: packed septets (after one fill
    /// bit when there is a UDH) or UTF-16BE bytes.
    pub payload: Vec<u8>,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) in this part, excluding
    /// the UDH. For GSM-7 this is what TP-UDL conveys: the payload's byte
    /// length alone cannot tell 7 spare bits from a trailing `@`.
    pub units: usize,
}

impl Part {
    /// The full TP-UD: `udh` followed by `payload`.
    pub fn user_data(&self) -> Vec<u8> {
        [self.udh.as_slice(), self.payload.as_slice()].concat()
    }
}

/// A body split into parts ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub encoding: Encoding,
    pub parts: Vec<Part>,
    /// Total units over all parts, excluding UDHs.
    pub units: usize,
    /// Unicode scalar values in the body.
    pub characters: usize,
}

/// Encodes `text` into parts. `reference` is the 8-bit concatenation
/// reference written into each part's UDH (unused for a single part).
///
/// An 8-bit header numbers at most [`MAX_PARTS`] parts. Beyond that the
/// body is still split, but the header's total and sequence fields are
/// truncated to 8 bits and the parts cannot be reassembled (by [`decode`]
/// or a handset); check [`Analysis::segments`] first or use [`try_encode`].
pub fn encode(text: &str, reference: u8) -> Encoded {
    let Measure {
        encoding,
        units,
        characters,
    } = measure(text);
    let spans: Vec<_> = segment::spans(text, encoding, units).collect();
    let total = spans.len();
    let parts = spans
        .into_iter()
        .enumerate()
        .map(|(index, span)| {
            let body = text.get(span.range).unwrap_or_default();
            let udh = if total > 1 {
                // Truncation past MAX_PARTS is documented above.
                segment::concat_udh(reference, total as u8, (index + 1) as u8).to_vec()
            } else {
                Vec::new()
            };
            let payload = match encoding {
                Encoding::Gsm7 => {
                    let mut septets = Vec::with_capacity(span.units);
                    gsm7::push_septets(body, &mut septets);
                    pack_septets(&septets, gsm7::fill_bits(udh.len()))
                }
                Encoding::Ucs2 => {
                    let mut bytes = Vec::with_capacity(span.units * 2);
                    ucs2::push_bytes(body, &mut bytes);
                    bytes
                }
            };
            Part {
                index,
                text: body.to_owned(),
                udh,
                payload,
                units: span.units,
            }
        })
        .collect();
    Encoded {
        encoding,
        parts,
        units,
        characters,
    }
}

/// Like [`encode`], but refuses a body that needs more than [`MAX_PARTS`]
/// parts.
pub fn try_encode(text: &str, reference: u8) -> Result<Encoded, EncodingError> {
    let encoded = encode(text, reference);
    match encoded.parts.len() {
        parts if parts > MAX_PARTS => Err(EncodingError::TooManyParts { parts }),
        _ => Ok(encoded),
    }
}

/// Reassembles the text from parts' `udh`, `payload` and `units` (never
/// `text`). Parts are put in order by their UDH sequence numbers. A single
/// part may have no UDH or a concatenation UDH numbering it 1 of 1.
///
/// Decoding is strict: each part must decode on its own, so an escape or
/// surrogate pair split across parts is rejected, as are unknown extension
/// codes (rather than the 23.038 fallback to the default alphabet).
pub fn decode(encoding: Encoding, parts: &[Part]) -> Result<String, EncodingError> {
    let mut text = String::new();
    for (position, part) in in_sequence(parts)? {
        match encoding {
            Encoding::Gsm7 => gsm7::decode(
                &part.payload,
                gsm7::fill_bits(part.udh.len()),
                part.units,
                position,
                &mut text,
            )?,
            Encoding::Ucs2 => ucs2::decode(&part.payload, part.units, position, &mut text)?,
        }
    }
    Ok(text)
}

/// The parts with their positions in `parts`, in UDH sequence order, after
/// checking the headers agree with each other and with the part count.
fn in_sequence(parts: &[Part]) -> Result<Vec<(usize, &Part)>, EncodingError> {
    match parts {
        [] => return Err(EncodingError::NoParts),
        [only] if only.udh.is_empty() => return Ok(vec![(0, only)]),
        _ => {}
    }
    let mut ordered: Vec<Option<(usize, &Part)>> = vec![None; parts.len()];
    let mut expected_reference = None;
    for (position, part) in parts.iter().enumerate() {
        let concat =
            segment::parse_udh(&part.udh).ok_or(EncodingError::InvalidUdh { part: position })?;
        let expected = *expected_reference.get_or_insert(concat.reference);
        if concat.reference != expected {
            return Err(EncodingError::ReferenceMismatch {
                part: position,
                expected,
                found: concat.reference,
            });
        }
        let slot = usize::from(concat.seq)
            .checked_sub(1)
            .filter(|_| usize::from(concat.total) == parts.len())
            .and_then(|slot| ordered.get_mut(slot))
            .ok_or(EncodingError::BadSequence {
                part: position,
                seq: concat.seq,
                total: concat.total,
                parts: parts.len(),
            })?;
        if slot.replace((position, part)).is_some() {
            return Err(EncodingError::DuplicateSequence {
                part: position,
                seq: concat.seq,
            });
        }
    }
    // With no duplicates among `parts.len()` in-range sequence numbers,
    // every slot is filled.
    Ok(ordered.into_iter().flatten().collect())
}

/// Encoding, units and character count of a body.
struct Measure {
    encoding: Encoding,
    units: usize,
    characters: usize,
}

fn measure(text: &str) -> Measure {
    // `septets` becomes None at the first character GSM-7 cannot carry.
    let mut septets = Some(0);
    let mut utf16 = 0;
    let mut characters = 0;
    for c in text.chars() {
        characters += 1;
        utf16 += c.len_utf16();
        septets = septets.and_then(|n| gsm7::lookup(c).map(|s| n + s.len()));
    }
    match septets {
        Some(units) => Measure {
            encoding: Encoding::Gsm7,
            units,
            characters,
        },
        None => Measure {
            encoding: Encoding::Ucs2,
            units: utf16,
            characters,
        },
    }
}

/// Distinct characters outside GSM-7, in order of first appearance.
fn non_gsm(text: &str) -> Vec<char> {
    let mut found = Vec::new();
    for c in text.chars() {
        // A linear scan: the list is short in practice and this avoids a set.
        if gsm7::lookup(c).is_none() && !found.contains(&c) {
            found.push(c);
        }
    }
    found
}

/// The text of unpacked GSM 7-bit septets, one per octet, as SMPP carries
/// them with `data_coding` 0. An unknown extension code reads as its
/// default-alphabet character (23.038's fallback); a trailing escape is dropped.
pub fn text_of_septets(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut bytes = septets.iter().map(|b| b & 0x7F);
    while let Some(septet) = bytes.next() {
        if septet == gsm7::ESC {
            let Some(code) = bytes.next() else { break };
            if let Some(c) = gsm7::extended_char(code).or_else(|| gsm7::basic_char(code)) {
                text.push(c);
            }
        } else if let Some(c) = gsm7::basic_char(septet) {
            text.push(c);
        }
    }
    text
}

/// `text` as unpacked GSM 7-bit septets, if every character has one.
pub fn septets_of_text(text: &str) -> Option<Vec<u8>> {
    if !text.chars().all(|c| gsm7::lookup(c).is_some()) {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    gsm7::push_septets(text, &mut out);
    Some(out)
}
