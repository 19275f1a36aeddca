//! Splitting a body into parts, and the concatenation UDH.

use std::ops::Range;

use super::Encoding;
use super::gsm7;

/// Length of the concatenation UDH: UDHL, IEI, IEDL, reference, total, seq.
pub(super) const CONCAT_UDH_LEN: usize = 6;
/// UDHL (5 octets follow), IEI 0x00 (concatenation, 8-bit reference), IEDL 3.
const CONCAT_UDH_PREFIX: [u8; 3] = [0x05, 0x00, 0x03];

/// Units `c` costs: septets in GSM-7, UTF-16 code units in UCS-2.
pub(super) fn cost(c: char, encoding: Encoding) -> usize {
    match encoding {
        // Only text that is entirely GSM-7 gets here, so the default is moot.
        Encoding::Gsm7 => gsm7::lookup(c).map_or(1, gsm7::Septets::len),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// One part's slice of the text (byte range) and its units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) range: Range<usize>,
    pub(super) units: usize,
}

/// Greedy split: each part takes whole characters while they fit, so an
/// escape pair or surrogate pair is never cut in two.
pub(super) struct Spans<'a> {
    text: &'a str,
    encoding: Encoding,
    limit: usize,
    pos: usize,
    done: bool,
}

impl Iterator for Spans<'_> {
    type Item = Span;

    fn next(&mut self) -> Option<Span> {
        if self.done {
            return None;
        }
        let start = self.pos;
        let rest = self.text.get(start..).unwrap_or_default();
        let mut units = 0;
        for (offset, c) in rest.char_indices() {
            let cost = cost(c, self.encoding);
            // `units > 0` guarantees progress even if a character could
            // never fit (it cannot with real limits).
            if units > 0 && units + cost > self.limit {
                self.pos = start + offset;
                return Some(Span {
                    range: start..self.pos,
                    units,
                });
            }
            units += cost;
        }
        // The last part; for empty text this is the single empty part.
        self.done = true;
        self.pos = self.text.len();
        Some(Span {
            range: start..self.pos,
            units,
        })
    }
}

/// Splits `text`, whose total cost in `encoding` is `total_units`.
pub(super) fn spans(text: &str, encoding: Encoding, total_units: usize) -> Spans<'_> {
    let limit = if total_units <= encoding.max_single_units() {
        encoding.max_single_units()
    } else {
        encoding.max_concat_units()
    };
    Spans {
        text,
        encoding,
        limit,
        pos: 0,
        done: false,
    }
}

/// Number of parts `spans` would produce, without a pass when it fits in one.
pub(super) fn count(text: &str, encoding: Encoding, total_units: usize) -> usize {
    if total_units <= encoding.max_single_units() {
        1
    } else {
        spans(text, encoding, total_units).count()
    }
}

/// The concatenation UDH for part `seq` (1-based) of `total`.
pub(super) fn concat_udh(reference: u8, total: u8, seq: u8) -> [u8; CONCAT_UDH_LEN] {
    let [a, b, c] = CONCAT_UDH_PREFIX;
    [a, b, c, reference, total, seq]
}

/// Fields of a concatenation UDH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Concat {
    pub(super) reference: u8,
    pub(super) total: u8,
    pub(super) seq: u8,
}

/// Parses `udh` if it is exactly a 6-byte concatenation header.
pub(super) fn parse_udh(udh: &[u8]) -> Option<Concat> {
    match *udh {
        [a, b, c, reference, total, seq] if [a, b, c] == CONCAT_UDH_PREFIX => Some(Concat {
            reference,
            total,
            seq,
        }),
        _ => None,
    }
}
