//! The SMPP 3.4 wire format, for the PDUs Pigeon's server reads and
//! writes: a 16-byte header (length, command id, status, sequence) and a
//! body of C-octet strings, integers, octet strings and TLVs. Decoding
//! never panics: every read is bounded by the PDU's own length.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest PDU accepted: a 64 KiB `message_payload` and the rest. A
/// longer declared length closes the connection.
pub const MAX_PDU_LEN: usize = 70_000;
pub const HEADER_LEN: usize = 16;

pub mod command {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    /// The bit that makes a command id its response's.
    pub const RESP: u32 = 0x8000_0000;
}

pub mod status {
    pub const ROK: u32 = 0x00;
    pub const RINVMSGLEN: u32 = 0x01;
    pub const RINVCMDLEN: u32 = 0x02;
    pub const RINVCMDID: u32 = 0x03;
    pub const RINVBNDSTS: u32 = 0x04;
    pub const RALYBND: u32 = 0x05;
    pub const RSYSERR: u32 = 0x08;
    pub const RINVSRCADR: u32 = 0x0A;
    pub const RINVDSTADR: u32 = 0x0B;
    pub const RBINDFAIL: u32 = 0x0D;
    pub const RSUBMITFAIL: u32 = 0x45;
    pub const RTHROTTLED: u32 = 0x58;
    pub const RINVSCHED: u32 = 0x61;
    pub const RINVEXPIRY: u32 = 0x62;
}

pub mod tag {
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const MESSAGE_STATE: u16 = 0x0427;
}

#[derive(Debug, thiserror::Error)]
pub enum PduError {
    #[error("declared PDU length {0} is outside 16..={MAX_PDU_LEN}")]
    BadLength(usize),
    #[error("the PDU body ends inside `{0}`")]
    Truncated(&'static str),
    #[error("`{0}` is longer than SMPP allows")]
    TooLong(&'static str),
    #[error("TLV {tag:#06x} is malformed")]
    BadTlv { tag: u16 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One PDU: its header and its undecoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub command_id: u32,
    pub status: u32,
    pub sequence: u32,
    pub body: Vec<u8>,
}

impl Pdu {
    pub fn new(command_id: u32, status: u32, sequence: u32, body: Vec<u8>) -> Self {
        Self {
            command_id,
            status,
            sequence,
            body,
        }
    }

    /// The PDU as sent on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = HEADER_LEN + self.body.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&self.command_id.to_be_bytes());
        out.extend_from_slice(&self.status.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses one whole PDU from `bytes` (header included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PduError> {
        if bytes.len() < HEADER_LEN {
            return Err(PduError::BadLength(bytes.len()));
        }
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let len = word(0) as usize;
        if len != bytes.len() || !(HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
            return Err(PduError::BadLength(len));
        }
        Ok(Self {
            command_id: word(4),
            status: word(8),
            sequence: word(12),
            body: bytes[HEADER_LEN..].to_vec(),
        })
    }
}

/// Reads one PDU. `Ok(None)` at a clean end of stream; a length outside
/// `16..=MAX_PDU_LEN` is an error after which the stream cannot be read on.
pub async fn read_pdu<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<Pdu>, PduError> {
    let mut header = [0u8; HEADER_LEN];
    match reader.read_exact(&mut header[..4]).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(HEADER_LEN..=MAX_PDU_LEN).contains(&len) {
        return Err(PduError::BadLength(len));
    }
    reader.read_exact(&mut header[4..]).await?;
    let mut bytes = vec![0u8; len];
    bytes[..HEADER_LEN].copy_from_slice(&header);
    reader.read_exact(&mut bytes[HEADER_LEN..]).await?;
    Pdu::from_bytes(&bytes).map(Some)
}

/// Reads a PDU body field by field.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    /// A C-octet string of at most `max` bytes including its NUL.
    pub fn c_string(&mut self, field: &'static str, max: usize) -> Result<String, PduError> {
        let rest = &self.bytes[self.at.min(self.bytes.len())..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PduError::Truncated(field))?;
        if end + 1 > max {
            return Err(PduError::TooLong(field));
        }
        self.at += end + 1;
        // SMPP strings are ASCII; anything else is kept, not refused.
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, PduError> {
        let byte = *self.bytes.get(self.at).ok_or(PduError::Truncated(field))?;
        self.at += 1;
        Ok(byte)
    }

    pub fn octets(&mut self, field: &'static str, len: usize) -> Result<Vec<u8>, PduError> {
        let end = self.at.checked_add(len).ok_or(PduError::Truncated(field))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(PduError::Truncated(field))?;
        self.at = end;
        Ok(slice.to_vec())
    }

    /// The optional parameters that end a body: tag to value (a repeated
    /// tag keeps its first value).
    pub fn tlvs(&mut self) -> Result<BTreeMap<u16, Vec<u8>>, PduError> {
        let mut tlvs = BTreeMap::new();
        while !self.is_empty() {
            let head = self.octets("tlv", 4)?;
            let tag = u16::from_be_bytes([head[0], head[1]]);
            let len = u16::from_be_bytes([head[2], head[3]]) as usize;
            let value = self
                .octets("tlv", len)
                .map_err(|_| PduError::BadTlv { tag })?;
            tlvs.entry(tag).or_insert(value);
        }
        Ok(tlvs)
    }
}

/// Builds a PDU body.
#[derive(Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn c_string(&mut self, value: &str) -> &mut Self {
        self.bytes.extend(value.bytes().filter(|&b| b != 0));
        self.bytes.push(0);
        self
    }

    pub fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub fn octets(&mut self, value: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn tlv(&mut self, tag: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.bytes.extend_from_slice(&tag.to_be_bytes());
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(&value[..usize::from(len)]);
        self
    }
}

/// A `bind_transmitter`, `bind_receiver` or `bind_transceiver` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
}

impl Bind {
    pub fn decode(body: &[u8]) -> Result<Self, PduError> {
        let mut r = Reader::new(body);
        let bind = Self {
            system_id: r.c_string("system_id", 16)?,
            password: r.c_string("password", 9)?,
            system_type: r.c_string("system_type", 13)?,
            interface_version: r.u8("interface_version")?,
        };
        // addr_ton, addr_npi, address_range: not used.
        Ok(bind)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.c_string(&self.system_id)
            .c_string(&self.password)
            .c_string(&self.system_type)
            .u8(self.interface_version)
            .u8(0)
            .u8(0)
            .c_string("");
        w.bytes
    }
}

/// A `submit_sm` or `deliver_sm` body (they share the layout).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShortMessage {
    pub service_type: String,
    pub source_ton: u8,
    pub source_npi: u8,
    pub source_addr: String,
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub destination_addr: String,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Vec<u8>,
    pub tlvs: BTreeMap<u16, Vec<u8>>,
}

impl ShortMessage {
    pub fn decode(body: &[u8]) -> Result<Self, PduError> {
        let mut r = Reader::new(body);
        let mut sm = Self {
            service_type: r.c_string("service_type", 6)?,
            source_ton: r.u8("source_addr_ton")?,
            source_npi: r.u8("source_addr_npi")?,
            source_addr: r.c_string("source_addr", 21)?,
            dest_ton: r.u8("dest_addr_ton")?,
            dest_npi: r.u8("dest_addr_npi")?,
            destination_addr: r.c_string("destination_addr", 21)?,
            esm_class: r.u8("esm_class")?,
            protocol_id: r.u8("protocol_id")?,
            priority_flag: r.u8("priority_flag")?,
            schedule_delivery_time: r.c_string("schedule_delivery_time", 17)?,
            validity_period: r.c_string("validity_period", 17)?,
            registered_delivery: r.u8("registered_delivery")?,
            replace_if_present: r.u8("replace_if_present_flag")?,
            data_coding: r.u8("data_coding")?,
            sm_default_msg_id: r.u8("sm_default_msg_id")?,
            ..Self::default()
        };
        let len = r.u8("sm_length")?;
        sm.short_message = r.octets("short_message", usize::from(len))?;
        sm.tlvs = r.tlvs()?;
        Ok(sm)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.c_string(&self.service_type)
            .u8(self.source_ton)
            .u8(self.source_npi)
            .c_string(&self.source_addr)
            .u8(self.dest_ton)
            .u8(self.dest_npi)
            .c_string(&self.destination_addr)
            .u8(self.esm_class)
            .u8(self.protocol_id)
            .u8(self.priority_flag)
            .c_string(&self.schedule_delivery_time)
            .c_string(&self.validity_period)
            .u8(self.registered_delivery)
            .u8(self.replace_if_present)
            .u8(self.data_coding)
            .u8(self.sm_default_msg_id);
        let short = &self.short_message[..self.short_message.len().min(254)];
        w.u8(short.len() as u8).octets(short);
        for (tag, value) in &self.tlvs {
            w.tlv(*tag, value);
        }
        w.bytes
    }

    pub fn tlv_u8(&self, tag: u16) -> Option<u8> {
        match self.tlvs.get(&tag)?.as_slice() {
            [value] => Some(*value),
            _ => None,
        }
    }

    pub fn tlv_u16(&self, tag: u16) -> Option<u16> {
        match self.tlvs.get(&tag)?.as_slice() {
            [hi, lo] => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// A response body holding only a `message_id` (submit_sm_resp,
/// deliver_sm_resp) or a `system_id` (bind_*_resp).
pub fn id_body(id: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.c_string(id);
    w.bytes
}

/// The first C-octet string of a response body, if any.
pub fn read_id(body: &[u8]) -> Option<String> {
    Reader::new(body).c_string("id", 65).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_round_trip_with_tlvs() {
        let mut sm = ShortMessage {
            source_addr: "+15550001".into(),
            destination_addr: "15550002".into(),
            dest_ton: 1,
            data_coding: 8,
            registered_delivery: 1,
            short_message: vec![0, 0x48, 0, 0x69],
            ..ShortMessage::default()
        };
        sm.tlvs.insert(tag::SAR_MSG_REF_NUM, vec![0, 7]);
        let pdu = Pdu::new(command::SUBMIT_SM, 0, 42, sm.encode());
        let parsed = Pdu::from_bytes(&pdu.to_bytes()).unwrap();
        assert_eq!(parsed, pdu);
        let decoded = ShortMessage::decode(&parsed.body).unwrap();
        assert_eq!(decoded, sm);
        assert_eq!(decoded.tlv_u16(tag::SAR_MSG_REF_NUM), Some(7));
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        let sm = ShortMessage::default().encode();
        for cut in 0..sm.len() {
            assert!(ShortMessage::decode(&sm[..cut]).is_err(), "cut at {cut}");
        }
        // A TLV that claims more than there is.
        let mut bad = sm.clone();
        bad.extend_from_slice(&[0x04, 0x24, 0x00, 0x10, 1, 2]);
        assert!(ShortMessage::decode(&bad).is_err());
        // A string with no NUL, and one longer than its maximum.
        assert!(Bind::decode(b"abc").is_err());
        assert!(Bind::decode(b"0123456789abcdefXYZ\0pw\0\0\x34\0\0\0").is_err());
        assert!(Pdu::from_bytes(&[0, 0, 0, 3]).is_err());
    }

    #[test]
    fn binds_round_trip() {
        let bind = Bind {
            system_id: "acme".into(),
            password: "secret12".into(),
            system_type: "".into(),
            interface_version: 0x34,
        };
        assert_eq!(Bind::decode(&bind.encode()).unwrap(), bind);
    }
}
