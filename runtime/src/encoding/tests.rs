use std::collections::HashSet;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;

/// The corpus shared with the rest of the project, relative to this crate.
const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/corpus/otp-samples.txt"
);

// An independent transcription of 3GPP TS 23.038 for the reference model
// below, so a slip in `gsm7`'s tables shows up as a disagreement.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// What the reference model expects of a body.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    encoding: Encoding,
    part_units: Vec<usize>,
    units: usize,
    characters: usize,
    non_gsm: Vec<char>,
}

/// A deliberately naive model of the rules: cost every character, then fill
/// parts greedily with whole characters.
fn model(text: &str) -> Expected {
    let gsm_cost = |c: char| {
        if GSM_BASIC.contains(c) {
            Some(1)
        } else if GSM_EXTENSION.contains(c) {
            Some(2)
        } else {
            None
        }
    };
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_cost).collect();
    let (encoding, costs, single, concat) = match gsm {
        Some(costs) => (Encoding::Gsm7, costs, 160, 153),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            70,
            67,
        ),
    };
    let units = costs.iter().sum();
    let part_units = if units <= single {
        vec![units]
    } else {
        let mut parts = vec![0];
        for cost in costs {
            if parts.last().is_some_and(|&n| n + cost > concat) {
                parts.push(0);
            }
            if let Some(n) = parts.last_mut() {
                *n += cost;
            }
        }
        parts
    };
    let mut non_gsm = Vec::new();
    for c in text.chars().filter(|&c| gsm_cost(c).is_none()) {
        if !non_gsm.contains(&c) {
            non_gsm.push(c);
        }
    }
    Expected {
        encoding,
        part_units,
        units,
        characters: text.chars().count(),
        non_gsm,
    }
}

/// Checks everything `analyze`, `encode` and `decode` promise about `text`.
fn check(text: &str, reference: u8) {
    let analysis = analyze(text);
    let encoded = encode(text, reference);
    let parts = &encoded.parts;
    let total = parts.len();

    assert_eq!(analysis.segments, total, "segments vs parts for {text:?}");
    assert_eq!(analysis.encoding, encoded.encoding);
    assert_eq!(analysis.units, encoded.units);
    assert_eq!(analysis.characters, encoded.characters);
    assert_eq!(encoded.characters, text.chars().count());
    assert_eq!(parts.iter().map(|p| p.units).sum::<usize>(), encoded.units);
    assert_eq!(
        parts.iter().map(|p| p.text.as_str()).collect::<String>(),
        text
    );
    assert!(total >= 1);

    let encoding = encoded.encoding;
    let limit = if total == 1 {
        encoding.max_single_units()
    } else {
        encoding.max_concat_units()
    };
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.index, i);
        assert!(part.units <= limit, "part {i} holds {} units", part.units);
        assert_eq!(part.units, units_of(encoding, &part.text));
        assert!(total == 1 || !part.text.is_empty());
        if total == 1 {
            assert!(part.udh.is_empty());
        } else {
            assert_eq!(part.udh, [5, 0, 3, reference, total as u8, i as u8 + 1]);
        }
        assert_eq!(
            part.user_data(),
            [&part.udh[..], &part.payload[..]].concat()
        );
        // Each part stands alone: nothing straddles a boundary.
        let mut alone = String::new();
        match encoding {
            Encoding::Gsm7 => {
                let fill = if total == 1 { 0 } else { 1 };
                assert_eq!(part.payload.len(), (fill + 7 * part.units).div_ceil(8));
                gsm7::decode(&part.payload, fill as u32, part.units, i, &mut alone).unwrap();
            }
            Encoding::Ucs2 => {
                assert_eq!(part.payload.len(), 2 * part.units);
                ucs2::decode(&part.payload, part.units, i, &mut alone).unwrap();
            }
        }
        assert_eq!(alone, part.text);
        // Greedy: a part ends only when the next character does not fit.
        if let Some(next) = parts.get(i + 1).and_then(|p| p.text.chars().next()) {
            assert!(part.units + units_of(encoding, next.encode_utf8(&mut [0; 4])) > limit);
        }
    }

    assert_eq!(decode(encoding, parts).as_deref(), Ok(text));
}

fn units_of(encoding: Encoding, text: &str) -> usize {
    text.chars().map(|c| segment::cost(c, encoding)).sum()
}

/// `n` copies of `s`.
fn rep(s: &str, n: usize) -> String {
    s.repeat(n)
}

struct Vector {
    name: &'static str,
    text: String,
    encoding: Encoding,
    part_units: &'static [usize],
    units: usize,
    characters: usize,
    non_gsm: &'static str,
}

fn vector(
    name: &'static str,
    text: impl Into<String>,
    encoding: Encoding,
    part_units: &'static [usize],
    units: usize,
    characters: usize,
    non_gsm: &'static str,
) -> Vector {
    Vector {
        name,
        text: text.into(),
        encoding,
        part_units,
        units,
        characters,
        non_gsm,
    }
}

// One vector per line reads better than rustfmt's layout.
#[rustfmt::skip]
fn vectors() -> Vec<Vector> {
    use Encoding::{Gsm7, Ucs2};
    let a = |n| rep("a", n);
    let yan = |n| rep("验", n);
    vec![
        vector("empty", "", Gsm7, &[0], 0, 0, ""),
        vector("hellohello", "hellohello", Gsm7, &[10], 10, 10, ""),
        vector("160 septets", a(160), Gsm7, &[160], 160, 160, ""),
        vector("161 septets", a(161), Gsm7, &[153, 8], 161, 161, ""),
        vector("306 septets", a(306), Gsm7, &[153, 153], 306, 306, ""),
        vector("307 septets", a(307), Gsm7, &[153, 153, 1], 307, 307, ""),
        vector("whole alphabet", format!("{GSM_BASIC}{GSM_EXTENSION}"), Gsm7, &[147], 147, 137, ""),
        vector("euro ends at 160", a(158) + "€", Gsm7, &[160], 160, 159, ""),
        vector("euro ends at 161", a(159) + "€", Gsm7, &[153, 8], 161, 160, ""),
        vector("euro would straddle", a(152) + "€" + rep("b", 10).as_str(), Gsm7, &[152, 12], 164, 163, ""),
        vector("straddling brace costs a part", a(152) + "{" + a(152).as_str(), Gsm7, &[152, 153, 1], 306, 305, ""),
        vector("brace ends part 1", a(151) + "{" + a(10).as_str(), Gsm7, &[153, 10], 163, 162, ""),
        vector("brace opens part 2", a(153) + "{" + a(10).as_str(), Gsm7, &[153, 12], 165, 164, ""),
        vector("price", "Price: 5€", Gsm7, &[10], 10, 9, ""),
        vector("extension table", "{code}: [1234] ~ ^ | \\ €", Gsm7, &[33], 33, 24, ""),
        vector("line breaks and form feed", "Line1\r\nLine2\u{0C}Page2", Gsm7, &[19], 19, 18, ""),
        vector("backtick", "a`b", Ucs2, &[3], 3, 3, "`"),
        vector("lowercase c cedilla", "ç", Ucs2, &[1], 1, 1, "ç"),
        vector("greek capital alpha", "Α", Ucs2, &[1], 1, 1, "Α"),
        vector("bare escape", "\u{1B}", Ucs2, &[1], 1, 1, "\u{1B}"),
        vector("check mark", "Your code is 1234 ✓", Ucs2, &[19], 19, 19, "✓"),
        vector("70 units", yan(70), Ucs2, &[70], 70, 70, "验"),
        vector("71 units", yan(71), Ucs2, &[67, 4], 71, 71, "验"),
        vector("134 units", yan(134), Ucs2, &[67, 67], 134, 134, "验"),
        vector("135 units", yan(135), Ucs2, &[67, 67, 1], 135, 135, "验"),
        vector("one emoji", "😀", Ucs2, &[2], 2, 1, "😀"),
        vector("35 emoji", rep("😀", 35), Ucs2, &[70], 70, 35, "😀"),
        vector("36 emoji", rep("😀", 36), Ucs2, &[66, 6], 72, 36, "😀"),
        vector("emoji ends at 70", a(68) + "😀", Ucs2, &[70], 70, 69, "😀"),
        vector("emoji fills unit 67", yan(65) + "😀" + yan(10).as_str(), Ucs2, &[67, 10], 77, 76, "验😀"),
        vector("emoji would straddle", yan(66) + "😀" + yan(10).as_str(), Ucs2, &[66, 12], 78, 77, "验😀"),
        vector("straddling emoji costs a part", yan(66) + "😀" + yan(66).as_str(), Ucs2, &[66, 67, 1], 134, 133, "验😀"),
        vector(
            "Chinese OTP",
            "【腾讯科技】您的验证码是123456，5分钟内有效，请勿泄露。",
            Ucs2, &[31], 31, 31,
            "【腾讯科技】您的验证码是，分钟内有效请勿泄露。",
        ),
        vector(
            "Japanese OTP",
            "【LINE】認証番号：123456 この番号を他人に教えないでください。",
            Ucs2, &[36], 36, 36,
            "【】認証番号：このを他人に教えないでくださ。",
        ),
        vector(
            "Japanese OTP with emoji, two parts",
            "【LINE】認証番号：123456 この番号を他人に教えないでください。\
             有効期限は10分です。心当たりがない場合は、このメッセージを無視してください。🔒",
            Ucs2, &[67, 10], 77, 76,
            "【】認証番号：このを他人に教えないでくださ。有効期限は分す心当たりが場合、メッセージ無視して🔒",
        ),
        vector(
            "Vietnamese OTP",
            "Mã xác thực của bạn là 123456. Không chia sẻ mã này với bất kỳ ai.",
            Ucs2, &[66], 66, 66,
            // 'à' is in the GSM alphabet, so it is not listed.
            "ãáựủạôẻớấỳ",
        ),
        vector(
            "Vietnamese OTP, two parts",
            "Mã xác thực của bạn là 123456. Mã có hiệu lực trong 5 phút. \
             Không chia sẻ mã này với bất kỳ ai.",
            Ucs2, &[67, 28], 95, 95,
            "ãáựủạóệúôẻớấỳ",
        ),
        vector(
            "Vietnamese OTP without diacritics",
            "Ma xac thuc cua ban la 123456",
            Gsm7, &[29], 29, 29, "",
        ),
    ]
}

#[test]
fn vectors_match() {
    for v in vectors() {
        let analysis = analyze(&v.text);
        let name = v.name;
        assert_eq!(analysis.encoding, v.encoding, "{name}: encoding");
        assert_eq!(analysis.segments, v.part_units.len(), "{name}: segments");
        assert_eq!(analysis.units, v.units, "{name}: units");
        assert_eq!(analysis.characters, v.characters, "{name}: characters");
        let non_gsm: Vec<char> = v.non_gsm.chars().collect();
        assert_eq!(analysis.non_gsm, non_gsm, "{name}: non_gsm");
        let part_units: Vec<usize> = encode(&v.text, 0x42)
            .parts
            .iter()
            .map(|p| p.units)
            .collect();
        assert_eq!(part_units, v.part_units, "{name}: part units");
        // The model agrees with the hand-written expectations...
        let expected = Expected {
            encoding: v.encoding,
            part_units: v.part_units.to_vec(),
            units: v.units,
            characters: v.characters,
            non_gsm,
        };
        assert_eq!(model(&v.text), expected, "{name}: model");
        check(&v.text, 0x42);
    }
}

#[test]
fn corpus_lines_match_model() {
    let corpus = std::fs::read_to_string(CORPUS)
        .unwrap_or_else(|err| panic!("cannot read the OTP corpus at {CORPUS}: {err}"));
    let lines: Vec<&str> = corpus.lines().collect();
    assert!(!lines.is_empty(), "the OTP corpus at {CORPUS} is empty");
    for (number, line) in lines.iter().enumerate().map(|(i, l)| (i + 1, l)) {
        // ...so it can stand in for hand-written values on the corpus.
        let expected = model(line);
        let analysis = analyze(line);
        let context = format!("{CORPUS}:{number}: {line:?}");
        assert_eq!(analysis.encoding, expected.encoding, "{context}");
        assert_eq!(analysis.segments, expected.part_units.len(), "{context}");
        assert_eq!(analysis.units, expected.units, "{context}");
        assert_eq!(analysis.characters, expected.characters, "{context}");
        assert_eq!(analysis.non_gsm, expected.non_gsm, "{context}");
        check(line, number as u8);
    }
}

#[test]
fn lookup_agrees_with_the_model_for_every_char() {
    let basic: HashSet<char> = GSM_BASIC.chars().collect();
    let extension: HashSet<char> = GSM_EXTENSION.chars().collect();
    assert_eq!((basic.len(), extension.len()), (127, 10));
    for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
        let expected = match (basic.contains(&c), extension.contains(&c)) {
            (true, _) => Some(1),
            (_, true) => Some(2),
            _ => None,
        };
        assert_eq!(gsm7::lookup(c).map(gsm7::Septets::len), expected, "{c:?}");
    }
}

#[test]
fn septets_round_trip_through_tables() {
    for septet in 0..=0x7F {
        match gsm7::basic_char(septet) {
            Some(c) => assert_eq!(gsm7::lookup(c), Some(gsm7::Septets::Basic(septet))),
            None => assert_eq!(septet, gsm7::ESC),
        }
    }
    for c in GSM_EXTENSION.chars() {
        let Some(gsm7::Septets::Extended(code)) = gsm7::lookup(c) else {
            panic!("{c:?} is not in the extension table");
        };
        assert_eq!(gsm7::extended_char(code), Some(c));
    }
    assert_eq!(gsm7::lookup('€'), Some(gsm7::Septets::Extended(0x65)));
    assert_eq!(gsm7::lookup('@'), Some(gsm7::Septets::Basic(0x00)));
    assert_eq!(gsm7::lookup('$'), Some(gsm7::Septets::Basic(0x02)));
    assert_eq!(gsm7::lookup('¤'), Some(gsm7::Septets::Basic(0x24)));
}

fn septets(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    gsm7::push_septets(text, &mut out);
    out
}

const HELLOHELLO: [u8; 9] = [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37];

#[test]
fn packs_hellohello() {
    assert_eq!(pack_septets(&septets("hellohello"), 0), HELLOHELLO);
    assert_eq!(encode("hellohello", 0).parts[0].payload, HELLOHELLO);
    assert_eq!(
        unpack_septets(&HELLOHELLO, 0, 10),
        Some(septets("hellohello"))
    );
}

#[test]
fn fill_bit_shifts_the_packing() {
    // The same septets one bit later, as after a 6-byte UDH.
    let shifted = [0xD0, 0x65, 0x36, 0xFB, 0x8D, 0x2E, 0xB3, 0xD9, 0x6F];
    assert_eq!(pack_septets(&septets("hellohello"), 1), shifted);
    assert_eq!(unpack_septets(&shifted, 1, 10), Some(septets("hellohello")));
    assert_eq!(gsm7::fill_bits(0), 0);
    assert_eq!(gsm7::fill_bits(CONCAT_UDH_LEN), 1);
}

#[test]
fn concatenated_user_data_puts_septets_on_septet_boundaries() {
    let text = rep("hellohello", 20);
    let encoded = encode(&text, 0xCC);
    assert_eq!(encoded.parts.len(), 2);
    for part in &encoded.parts {
        let user_data = part.user_data();
        let bit = |n: usize| (user_data[n / 8] >> (n % 8)) & 1;
        // A handset reads septet k of TP-UD at bit 7k; the UDH fills 7 septets.
        let read: Vec<u8> = (7..7 + part.units)
            .map(|k| (0..7).map(|b| bit(7 * k + b) << b).sum())
            .collect();
        assert_eq!(read, septets(&part.text));
        assert_eq!(
            user_data.len(),
            (7 * (7 + part.units)).div_ceil(8),
            "TP-UD length for UDL {}",
            7 + part.units
        );
    }
}

#[test]
fn units_disambiguate_trailing_spare_bits() {
    // Seven spare zero bits look exactly like a trailing '@' (septet 0).
    let short = encode("hellohe", 0);
    let long = encode("hellohe@", 0);
    assert_eq!(short.parts[0].payload, long.parts[0].payload);
    assert_eq!(
        decode(Encoding::Gsm7, &short.parts).as_deref(),
        Ok("hellohe")
    );
    assert_eq!(
        decode(Encoding::Gsm7, &long.parts).as_deref(),
        Ok("hellohe@")
    );
}

#[test]
fn decodes_parts_in_sequence_order() {
    let text = rep("0123456789", 40);
    let mut parts = encode(&text, 7).parts;
    parts.reverse();
    assert_eq!(decode(Encoding::Gsm7, &parts), Ok(text));
}

#[test]
fn accepts_a_single_part_numbered_one_of_one() {
    let part = Part {
        index: 0,
        text: String::new(),
        udh: vec![5, 0, 3, 9, 1, 1],
        payload: pack_septets(&septets("hellohello"), 1),
        units: 10,
    };
    assert_eq!(decode(Encoding::Gsm7, &[part]).as_deref(), Ok("hellohello"));
}

fn raw(udh: &[u8], payload: &[u8], units: usize) -> Part {
    Part {
        index: 0,
        text: String::new(),
        udh: udh.to_vec(),
        payload: payload.to_vec(),
        units,
    }
}

#[test]
fn rejects_malformed_parts() {
    use Encoding::{Gsm7, Ucs2};
    use EncodingError as E;
    let hello = pack_septets(&septets("hello"), 1);
    let concat = |reference, total, seq| raw(&[5, 0, 3, reference, total, seq], &hello, 5);
    let cases: Vec<(&str, Encoding, Vec<Part>, EncodingError)> = vec![
        ("no parts", Gsm7, vec![], E::NoParts),
        (
            "odd UCS-2 length",
            Ucs2,
            vec![raw(&[], &[0x00, 0x61, 0x00], 1)],
            E::OddLength { part: 0, len: 3 },
        ),
        (
            "high surrogate then a letter",
            Ucs2,
            vec![raw(&[], &[0xD8, 0x3D, 0x00, 0x61], 2)],
            E::UnpairedSurrogate {
                part: 0,
                unit: 0xD83D,
            },
        ),
        (
            "trailing high surrogate",
            Ucs2,
            vec![raw(&[], &[0x00, 0x61, 0xD8, 0x3D], 2)],
            E::UnpairedSurrogate {
                part: 0,
                unit: 0xD83D,
            },
        ),
        (
            "lone low surrogate",
            Ucs2,
            vec![raw(&[], &[0xDE, 0x00], 1)],
            E::UnpairedSurrogate {
                part: 0,
                unit: 0xDE00,
            },
        ),
        (
            "UCS-2 units disagree with bytes",
            Ucs2,
            vec![raw(&[], &[0x00, 0x61], 2)],
            E::LengthMismatch {
                part: 0,
                units: 2,
                len: 2,
            },
        ),
        (
            "escape then a code outside the extension table",
            Gsm7,
            vec![raw(&[], &pack_septets(&[0x1B, 0x41], 0), 2)],
            E::InvalidEscape {
                part: 0,
                code: 0x41,
            },
        ),
        (
            "double escape",
            Gsm7,
            vec![raw(&[], &pack_septets(&[0x1B, 0x1B], 0), 2)],
            E::InvalidEscape {
                part: 0,
                code: 0x1B,
            },
        ),
        (
            "escape at end of part",
            Gsm7,
            vec![raw(&[], &pack_septets(&[0x61, 0x1B], 0), 2)],
            E::DanglingEscape { part: 0 },
        ),
        (
            "GSM-7 units disagree with bytes",
            Gsm7,
            vec![raw(&[], &HELLOHELLO, 12)],
            E::LengthMismatch {
                part: 0,
                units: 12,
                len: 9,
            },
        ),
        (
            "absurd septet count",
            Gsm7,
            vec![raw(&[], &HELLOHELLO, usize::MAX)],
            E::LengthMismatch {
                part: 0,
                units: usize::MAX,
                len: 9,
            },
        ),
        (
            "16-bit reference concatenation header",
            Gsm7,
            vec![raw(&[6, 8, 4, 0, 1, 1, 1], &hello, 5)],
            E::InvalidUdh { part: 0 },
        ),
        (
            "truncated header",
            Gsm7,
            vec![raw(&[5, 0, 3, 1, 1], &hello, 5)],
            E::InvalidUdh { part: 0 },
        ),
        (
            "port addressing header",
            Gsm7,
            vec![raw(&[5, 4, 2, 0x0B, 0x84, 0x23], &hello, 5)],
            E::InvalidUdh { part: 0 },
        ),
        (
            "second part lacks a header",
            Gsm7,
            vec![concat(1, 2, 1), raw(&[], &hello, 5)],
            E::InvalidUdh { part: 1 },
        ),
        (
            "total disagrees with part count",
            Gsm7,
            vec![concat(1, 3, 1), concat(1, 3, 2)],
            E::BadSequence {
                part: 0,
                seq: 1,
                total: 3,
                parts: 2,
            },
        ),
        (
            "sequence zero",
            Gsm7,
            vec![concat(1, 2, 0), concat(1, 2, 1)],
            E::BadSequence {
                part: 0,
                seq: 0,
                total: 2,
                parts: 2,
            },
        ),
        (
            "sequence past total",
            Gsm7,
            vec![concat(1, 2, 1), concat(1, 2, 3)],
            E::BadSequence {
                part: 1,
                seq: 3,
                total: 2,
                parts: 2,
            },
        ),
        (
            "duplicate sequence",
            Gsm7,
            vec![concat(1, 2, 2), concat(1, 2, 2)],
            E::DuplicateSequence { part: 1, seq: 2 },
        ),
        (
            "mixed references",
            Gsm7,
            vec![concat(1, 2, 1), concat(2, 2, 2)],
            E::ReferenceMismatch {
                part: 1,
                expected: 1,
                found: 2,
            },
        ),
    ];
    for (name, encoding, parts, error) in cases {
        assert_eq!(decode(encoding, &parts), Err(error), "{name}");
    }
}

#[test]
fn part_count_is_capped_by_the_8_bit_header() {
    let most = rep("a", MAX_CONCAT_GSM7 * MAX_PARTS);
    let encoded = try_encode(&most, 1).map(|e| e.parts.len());
    assert_eq!(encoded, Ok(MAX_PARTS));
    assert_eq!(decode(Encoding::Gsm7, &encode(&most, 1).parts), Ok(most));

    let too_many = rep("a", MAX_CONCAT_GSM7 * MAX_PARTS + 1);
    assert_eq!(analyze(&too_many).segments, MAX_PARTS + 1);
    assert_eq!(
        try_encode(&too_many, 1),
        Err(EncodingError::TooManyParts {
            parts: MAX_PARTS + 1
        })
    );
    // Encodes without panicking, but cannot be reassembled.
    let parts = encode(&too_many, 1).parts;
    assert_eq!(parts.len(), MAX_PARTS + 1);
    assert!(decode(Encoding::Gsm7, &parts).is_err());
}

#[test]
fn encoding_names() {
    for encoding in [Encoding::Gsm7, Encoding::Ucs2] {
        assert_eq!(Encoding::parse(encoding.as_str()), Some(encoding));
        assert_eq!(encoding.to_string(), encoding.as_str());
    }
    assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
    assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
    assert_eq!(Encoding::parse("UCS2"), Some(Encoding::Ucs2));
    assert_eq!(Encoding::parse("gsm-7"), None);
    assert_eq!(Encoding::parse(""), None);
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // Keep regressions beside this file rather than in a crate-level
        // directory.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn chars_of(s: &'static str) -> Vec<char> {
    s.chars().collect()
}

/// GSM-7 text, about one character in five from the extension table so
/// escape pairs regularly land on part boundaries.
fn gsm_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => prop::sample::select(chars_of(GSM_BASIC)),
        2 => prop::sample::select(chars_of(GSM_EXTENSION)),
    ];
    prop::collection::vec(c, len).prop_map(String::from_iter)
}

/// Mostly UCS-2 text with many surrogate pairs.
fn emoji_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let c = prop_oneof![
        3 => prop::sample::select(chars_of("😀🔒👍🏽🇻🇳🎉𝄞𠀀")),
        3 => prop::sample::select(chars_of("验证码認証番号ãáự【】。")),
        2 => prop::sample::select(chars_of(GSM_BASIC)),
        1 => prop::sample::select(chars_of(GSM_EXTENSION)),
    ];
    prop::collection::vec(c, len).prop_map(String::from_iter)
}

fn any_text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), len).prop_map(String::from_iter)
}

/// Anything from empty to several parts, weighted towards the shapes above.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        gsm_text(0..200),
        gsm_text(140..480),
        emoji_text(0..80),
        emoji_text(60..300),
        any_text(0..160),
    ]
}

/// Parts with arbitrary, occasionally plausible, contents.
fn junk_parts() -> impl Strategy<Value = Vec<Part>> {
    let udh = prop_oneof![
        Just(Vec::new()),
        (any::<u8>(), 0..4u8, 0..4u8).prop_map(|(r, t, s)| vec![5, 0, 3, r, t, s]),
        prop::collection::vec(any::<u8>(), 0..9),
    ];
    let units = prop_oneof![0..200usize, any::<usize>()];
    let part = (udh, prop::collection::vec(any::<u8>(), 0..180), units).prop_map(
        |(udh, payload, units)| Part {
            index: 0,
            text: String::new(),
            udh,
            payload,
            units,
        },
    );
    prop::collection::vec(part, 0..4)
}

fn any_encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![Just(Encoding::Gsm7), Just(Encoding::Ucs2)]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_decode_round_trips(text in text(), reference in any::<u8>()) {
        check(&text, reference);
    }

    #[test]
    fn analyze_matches_model(text in text()) {
        let analysis = analyze(&text);
        let expected = model(&text);
        prop_assert_eq!(analysis.encoding, expected.encoding);
        prop_assert_eq!(analysis.segments, expected.part_units.len());
        prop_assert_eq!(analysis.units, expected.units);
        prop_assert_eq!(analysis.characters, expected.characters);
        prop_assert_eq!(analysis.non_gsm, expected.non_gsm);
        let part_units: Vec<usize> = encode(&text, 0).parts.iter().map(|p| p.units).collect();
        prop_assert_eq!(part_units, expected.part_units);
    }

    #[test]
    fn decode_never_panics_on_junk(encoding in any_encoding(), parts in junk_parts()) {
        let _ = decode(encoding, &parts);
    }

    #[test]
    fn decode_never_panics_on_damaged_parts(
        text in text(),
        which in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        units_delta in -2isize..=2,
    ) {
        let encoded = encode(&text, 3);
        let mut parts = encoded.parts;
        let part = which.get_mut(&mut parts);
        if !part.payload.is_empty() {
            *at.get_mut(&mut part.payload) ^= byte;
        }
        if !part.udh.is_empty() {
            *at.get_mut(&mut part.udh) ^= byte;
        }
        part.units = part.units.saturating_add_signed(units_delta);
        let _ = decode(encoded.encoding, &parts);
        parts.pop();
        let _ = decode(encoded.encoding, &parts);
    }

    #[test]
    fn packing_round_trips(septets in prop::collection::vec(0..0x80u8, 0..400), fill in 0..8u32) {
        let packed = pack_septets(&septets, fill);
        prop_assert_eq!(packed.len(), (fill as usize + 7 * septets.len()).div_ceil(8));
        prop_assert_eq!(unpack_septets(&packed, fill, septets.len()), Some(septets));
    }
}
