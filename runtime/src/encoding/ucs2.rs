//! UCS-2 payloads. Carriers actually carry UTF-16: characters outside the BMP
//! travel as surrogate pairs, so that is what is produced and accepted.

use super::EncodingError;

/// Appends `text` as UTF-16 big-endian bytes.
pub(super) fn push_bytes(text: &str, out: &mut Vec<u8>) {
    out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
}

/// Decodes a part's payload of `units` UTF-16BE code units onto `out`;
/// `part` labels errors.
pub(super) fn decode(
    payload: &[u8],
    units: usize,
    part: usize,
    out: &mut String,
) -> Result<(), EncodingError> {
    let len = payload.len();
    if !len.is_multiple_of(2) {
        return Err(EncodingError::OddLength { part, len });
    }
    if len / 2 != units {
        return Err(EncodingError::LengthMismatch { part, units, len });
    }
    let code_units = payload
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    for decoded in char::decode_utf16(code_units) {
        let c = decoded.map_err(|err| EncodingError::UnpairedSurrogate {
            part,
            unit: err.unpaired_surrogate(),
        })?;
        out.push(c);
    }
    Ok(())
}
