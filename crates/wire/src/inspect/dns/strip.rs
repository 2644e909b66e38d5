//! Taking the `ech` parameter (RFC 9460 §14.3.2, key 5: the keys for encrypted ClientHellos)
//! out of the SVCB/HTTPS records of a DNS response, so that clients behind the gateway
//! connect without ECH and their real server name stays visible to the filter.
//!
//! [`EchStripper::strip`] takes one message and writes the rewritten one into a caller-owned
//! buffer: every record is kept, only the `ech` parameters go (and key 5 from a `mandatory`
//! list, which would otherwise make clients ignore the record, RFC 9460 §8). Removing bytes
//! moves everything after them, so every compression pointer in the message (question and
//! owner names, and the names in the record data of the RFC 1035 types, the only ones that
//! may be compressed, RFC 3597 §4) is moved with it, and every name is read again from the
//! result to check it still says the same. A message this cannot rewrite safely (a pointer
//! into the removed or the changed bytes, a malformed record) is an error and stays as it
//! was. [`EchStripper::hide`] is the same-length variant for DNS over TCP: the parameter
//! moves to the end of its record under a private-use key that clients ignore.
//! Never panics; allocates only in the reused buffers.

use std::ops::Range;

use super::super::reader::Reader;
use super::super::At;
use super::{DnsError, HEADER_LEN, SVC_PARAM_ECH, TYPE_HTTPS, TYPE_SVCB};

/// SvcParamKey `mandatory` (RFC 9460 §8): keys the client must understand.
const SVC_PARAM_MANDATORY: u16 = 0;
/// The header's AD bit: the resolver vouches for the data, which no longer holds once
/// records are changed.
const FLAG_AUTHENTIC_DATA: u16 = 0x0020;

/// One change to the message, at a byte offset of the original.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Edit {
    /// Leave these bytes out.
    Remove(Range<usize>),
    /// Write this big-endian u16 instead of the two bytes at the offset.
    Write16(usize, u16),
    /// A compression pointer at the offset, to this original target.
    Pointer(usize, usize),
}

impl Edit {
    fn start(&self) -> usize {
        match self {
            Edit::Remove(range) => range.start,
            Edit::Write16(at, _) | Edit::Pointer(at, _) => *at,
        }
    }
}

/// Reusable state for rewriting messages (a packet thread keeps one).
#[derive(Debug, Default)]
pub struct EchStripper {
    edits: Vec<Edit>,
    /// Where every name of the message starts (questions, owners, names in record data).
    names: Vec<usize>,
    /// Per record with `ech`: the parameter's bytes, where the record's parameters end, and
    /// whether [`EchStripper::hide`] can hide it (no `mandatory` naming it, no key at or
    /// above [`HIDDEN_KEY`]).
    ech_params: Vec<(Range<usize>, usize, bool)>,
    rewritten: Vec<u8>,
}

/// The private-use SvcParamKey (RFC 9460 §14.3.2: 65280-65534) that [`EchStripper::hide`]
/// gives the `ech` parameter: clients ignore keys they do not know (§2.2), so the keys are
/// still in the message but no client uses them.
pub const HIDDEN_KEY: u16 = 65534;

impl EchStripper {
    /// Writes into `out` the response `message` without its `ech` parameters and returns how
    /// many it removed. With none to remove (or a query) returns 0 and leaves `out` alone.
    pub fn strip(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<usize, At<DnsError>> {
        let Some(flags) = self.walk(message)? else {
            return Ok(0);
        };
        self.check_pointers()?;
        if flags & FLAG_AUTHENTIC_DATA != 0 {
            self.edits
                .push(Edit::Write16(2, flags & !FLAG_AUTHENTIC_DATA));
        }
        self.edits.sort_by_key(Edit::start);
        self.write(message)?;
        self.check_names(message, |offset| self.removed_before(offset))?;
        std::mem::swap(out, &mut self.rewritten);
        Ok(self.ech_params.len())
    }

    /// The same without changing the message's length, for DNS over TCP (whose stream
    /// cannot grow or shrink on the way): each `ech` parameter moves to the end of its
    /// record's parameters under the private-use key [`HIDDEN_KEY`], the parameters after
    /// it moving up; key order stays ascending, every other byte stays where it was.
    /// Fails where a `mandatory` list names `ech` (clients would then ignore the record).
    pub fn hide(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<usize, At<DnsError>> {
        let Some(flags) = self.walk(message)? else {
            return Ok(0);
        };
        let truncated = DnsError::Truncated("rewritten message");
        let mut rewritten = std::mem::take(&mut self.rewritten);
        rewritten.clear();
        rewritten.extend_from_slice(message);
        let result = (|| {
            for (ech, params_end, hideable) in &self.ech_params {
                if !hideable {
                    return Err(DnsError::BadRecordData.into());
                }
                let after = message.get(ech.end..*params_end).ok_or(truncated)?;
                let value = message.get(ech.start + 2..ech.end).ok_or(truncated)?;
                let region = rewritten.get_mut(ech.start..*params_end).ok_or(truncated)?;
                let (moved, rest) = region.split_at_mut_checked(after.len()).ok_or(truncated)?;
                moved.copy_from_slice(after);
                let (key, tail) = rest.split_at_mut_checked(2).ok_or(truncated)?;
                key.copy_from_slice(&HIDDEN_KEY.to_be_bytes());
                tail.copy_from_slice(value);
            }
            if flags & FLAG_AUTHENTIC_DATA != 0 {
                let header = rewritten.get_mut(2..4).ok_or(truncated)?;
                header.copy_from_slice(&(flags & !FLAG_AUTHENTIC_DATA).to_be_bytes());
            }
            Ok::<(), At<DnsError>>(())
        })();
        self.rewritten = rewritten;
        result?;
        self.check_names(message, |_| 0)?;
        std::mem::swap(out, &mut self.rewritten);
        Ok(self.ech_params.len())
    }

    /// Walks the whole message, noting names, pointers and the `ech` parameters; the
    /// response's flags when it has `ech` parameters, `None` when it has none (or is a
    /// query).
    fn walk(&mut self, message: &[u8]) -> Result<Option<u16>, At<DnsError>> {
        self.edits.clear();
        self.names.clear();
        self.ech_params.clear();
        let mut header = Reader::new(message);
        let (Some(_id), Some(flags), Some(questions), Some(answers), Some(authority), Some(extra)) = (
            header.u16(),
            header.u16(),
            header.u16(),
            header.u16(),
            header.u16(),
            header.u16(),
        ) else {
            return Err(DnsError::TruncatedHeader.into());
        };
        if flags & 0x8000 == 0 {
            return Ok(None);
        }
        let mut reader = Reader::at(message, HEADER_LEN);
        for _ in 0..questions {
            self.walk_name(message, &mut reader)?;
            reader
                .skip(4)
                .ok_or_else(|| reader.fault(DnsError::Truncated("question")))?;
        }
        let records = u32::from(answers) + u32::from(authority) + u32::from(extra);
        for _ in 0..records {
            self.walk_record(message, &mut reader)?;
        }
        Ok((!self.ech_params.is_empty()).then_some(flags))
    }

    /// Every name must read the same in the rewritten message as in the original: a pointer
    /// may aim into the middle of other data, whose bytes may be the ones that changed.
    /// `moved_by` tells how far an offset of the original moved towards the start.
    fn check_names(
        &self,
        message: &[u8],
        moved_by: impl Fn(usize) -> usize,
    ) -> Result<(), At<DnsError>> {
        for &start in &self.names {
            let moved = start
                .checked_sub(moved_by(start))
                .ok_or(DnsError::BadRecordData)?;
            let before = super::read_name(message, &mut Reader::at(message, start));
            let after = super::read_name(&self.rewritten, &mut Reader::at(&self.rewritten, moved));
            if before != after {
                return Err(DnsError::BadRecordData.into());
            }
        }
        Ok(())
    }

    /// Notes the compression pointer of the name at the reader (if it has one in place) and
    /// moves the reader past the name's in-place bytes.
    fn walk_name(&mut self, message: &[u8], reader: &mut Reader<'_>) -> Result<(), At<DnsError>> {
        self.names.push(reader.position());
        for _ in 0..=super::MAX_POINTER_HOPS {
            let at = reader.position();
            let length = reader
                .u8()
                .ok_or_else(|| reader.fault(DnsError::Truncated("name")))?;
            match length & 0xc0 {
                0x00 if length == 0 => return Ok(()),
                0x00 => reader
                    .skip(usize::from(length))
                    .ok_or_else(|| reader.fault(DnsError::Truncated("label")))?,
                0xc0 => {
                    let low = reader
                        .u8()
                        .ok_or_else(|| reader.fault(DnsError::Truncated("compression pointer")))?;
                    let target = usize::from(u16::from_be_bytes([length & 0x3f, low]));
                    // RFC 1035 §4.1.4: a pointer refers to a prior occurrence.
                    if target >= at || target >= message.len() {
                        return Err(DnsError::ForwardPointer.into());
                    }
                    self.edits.push(Edit::Pointer(at, target));
                    return Ok(());
                }
                _ => return Err(DnsError::ReservedLabelType.into()),
            }
        }
        Err(DnsError::BadName.into())
    }

    /// Walks one resource record.
    fn walk_record(&mut self, message: &[u8], reader: &mut Reader<'_>) -> Result<(), At<DnsError>> {
        let truncated = DnsError::Truncated("resource record");
        self.walk_name(message, reader)?;
        let rtype = reader.u16().ok_or_else(|| reader.fault(truncated))?;
        reader.skip(6).ok_or_else(|| reader.fault(truncated))?; // class, TTL
        let length_at = reader.position();
        let rdlength = reader.u16().ok_or_else(|| reader.fault(truncated))?;
        let start = reader.position();
        let rdata = reader
            .take(usize::from(rdlength))
            .ok_or_else(|| reader.fault(truncated))?;
        let end = reader.position();
        // Names inside the record data of the types RFC 1035 defines (RFC 3597 §4: no
        // other type may compress).
        let (skip_before, names, skip_after) = match rtype {
            2..=5 | 7..=9 | 12 => (0, 1, 0), // NS, MD, MF, CNAME, MB, MG, MR, PTR
            6 => (0, 2, 20),                 // SOA: MNAME, RNAME, five counters
            14 => (0, 2, 0),                 // MINFO
            15 => (2, 1, 0),                 // MX: preference, exchange
            TYPE_SVCB | TYPE_HTTPS => {
                return self.walk_svcb(rdata, start, length_at, rdlength);
            }
            _ => return Ok(()),
        };
        let mut inside = Reader::at(message, start);
        inside
            .skip(skip_before)
            .ok_or_else(|| inside.fault(DnsError::BadRecordData))?;
        for _ in 0..names {
            self.walk_name(message, &mut inside)?;
        }
        inside
            .skip(skip_after)
            .ok_or_else(|| inside.fault(DnsError::BadRecordData))?;
        if inside.position() != end {
            return Err(DnsError::BadRecordData.into());
        }
        Ok(())
    }

    /// Notes the edits that take the `ech` parameter out of one SVCB/HTTPS record whose data
    /// `rdata` starts at message offset `start`.
    fn walk_svcb(
        &mut self,
        rdata: &[u8],
        start: usize,
        length_at: usize,
        rdlength: u16,
    ) -> Result<(), At<DnsError>> {
        let bad = DnsError::BadRecordData;
        let mut reader = super::svcb_params(rdata)?;
        let mut ech: Option<Range<usize>> = None;
        let mut mandatory: Option<(usize, Reader<'_>)> = None;
        let mut previous_key: Option<u16> = None;
        while reader.remaining() > 0 {
            let param_start = reader.position();
            let key = reader.u16().ok_or_else(|| reader.fault(bad))?;
            // Keys in strictly increasing order (RFC 9460 §2.2): one `ech` at most.
            if previous_key.is_some_and(|previous| key <= previous) {
                return Err(At::new(bad, start + param_start));
            }
            previous_key = Some(key);
            let value = reader.vec16().ok_or_else(|| reader.fault(bad))?;
            match key {
                SVC_PARAM_ECH => ech = Some(start + param_start..start + reader.position()),
                SVC_PARAM_MANDATORY => mandatory = Some((start + param_start, value)),
                _ => {}
            }
        }
        let Some(ech) = ech else {
            return Ok(());
        };
        let last_key = previous_key.unwrap_or(SVC_PARAM_ECH);
        let mut hideable = last_key < HIDDEN_KEY;
        let mut cut = ech.len();
        self.edits.push(Edit::Remove(ech.clone()));
        if let Some((param_at, mut keys)) = mandatory {
            let value_len = keys.remaining();
            if value_len % 2 != 0 {
                return Err(At::new(bad, param_at));
            }
            let count = value_len / 2;
            let mut index = 0;
            while let Some(key) = keys.u16() {
                if key == SVC_PARAM_ECH {
                    hideable = false;
                    if count == 1 {
                        // An empty mandatory list is not allowed: the parameter goes.
                        self.edits
                            .push(Edit::Remove(param_at..param_at + 4 + value_len));
                        cut += 4 + value_len;
                    } else {
                        let key_at = param_at + 4 + 2 * index;
                        self.edits.push(Edit::Remove(key_at..key_at + 2));
                        let length = u16::try_from(2 * (count - 1)).map_err(|_| bad)?;
                        self.edits.push(Edit::Write16(param_at + 2, length));
                        cut += 2;
                    }
                    break;
                }
                index += 1;
            }
        }
        let shorter = u16::try_from(cut)
            .ok()
            .and_then(|cut| rdlength.checked_sub(cut))
            .ok_or(bad)?;
        self.edits.push(Edit::Write16(length_at, shorter));
        self.ech_params.push((ech, start + rdata.len(), hideable));
        Ok(())
    }

    /// Every pointer must point at bytes that stay.
    fn check_pointers(&self) -> Result<(), At<DnsError>> {
        for edit in &self.edits {
            if let Edit::Pointer(_, target) = edit {
                if self.removed_range_holding(*target) {
                    return Err(DnsError::BadRecordData.into());
                }
            }
        }
        Ok(())
    }

    fn removed_range_holding(&self, offset: usize) -> bool {
        self.edits
            .iter()
            .any(|edit| matches!(edit, Edit::Remove(range) if range.contains(&offset)))
    }

    /// Bytes removed before `offset`.
    fn removed_before(&self, offset: usize) -> usize {
        self.edits
            .iter()
            .map(|edit| match edit {
                Edit::Remove(range) if range.end <= offset => range.len(),
                _ => 0,
            })
            .sum()
    }

    /// Applies the sorted edits to `message`, into `self.rewritten`.
    fn write(&mut self, message: &[u8]) -> Result<(), At<DnsError>> {
        let mut out = std::mem::take(&mut self.rewritten);
        out.clear();
        let result = self.apply_edits(message, &mut out);
        self.rewritten = out;
        result
    }

    fn apply_edits(&self, message: &[u8], out: &mut Vec<u8>) -> Result<(), At<DnsError>> {
        let truncated = DnsError::Truncated("rewritten message");
        let mut copied = 0;
        for edit in &self.edits {
            let at = edit.start();
            out.extend_from_slice(message.get(copied..at).ok_or(truncated)?);
            match edit {
                Edit::Remove(range) => copied = range.end,
                Edit::Write16(_, value) => {
                    out.extend_from_slice(&value.to_be_bytes());
                    copied = at + 2;
                }
                Edit::Pointer(_, target) => {
                    let moved = target
                        .checked_sub(self.removed_before(*target))
                        .and_then(|moved| u16::try_from(moved).ok())
                        .ok_or(truncated)?;
                    let pointer = 0xc000 | moved;
                    out.extend_from_slice(&pointer.to_be_bytes());
                    copied = at + 2;
                }
            }
        }
        out.extend_from_slice(message.get(copied..).ok_or(truncated)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Message, RecordData, TYPE_A};
    use super::*;
    use telestrip_testkit::{dns_query, dns_response, ech_config_list, Answer};

    const V4: [u8; 4] = [10, 77, 0, 3];
    const V6: [u8; 16] = [0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn https_answer(ech: bool) -> Vec<u8> {
        dns_response(
            9,
            "svc.example",
            TYPE_HTTPS,
            &[Answer::Https("svc.example", V4, V6, ech)],
        )
    }

    fn records(message: &[u8]) -> Vec<super::super::Record> {
        Message::parse(message)
            .unwrap()
            .answers()
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// A record's data with the `ech` flag and configuration cleared, for comparing the
    /// rest of what a record says.
    fn without_ech(mut record: super::super::Record) -> super::super::Record {
        if let RecordData::Svcb(hints) = &mut record.data {
            hints.ech = false;
            hints.ech_config = None;
        }
        record
    }

    #[test]
    fn removes_the_ech_parameter_and_keeps_the_hints() {
        let original = https_answer(true);
        let mut out = Vec::new();
        let removed = EchStripper::default().strip(&original, &mut out).unwrap();
        assert_eq!(removed, 1);
        let list = ech_config_list(telestrip_testkit::ECH_CONFIG_ID, "public.cdn.example");
        assert_eq!(out.len(), original.len() - 4 - list.len());
        let before = records(&original);
        let after = records(&out);
        let RecordData::Svcb(hints) = after[0].data else {
            panic!("not an HTTPS record: {:?}", after[0].data);
        };
        assert!(!hints.ech);
        assert_eq!(
            hints.addresses().collect::<Vec<_>>(),
            vec![std::net::IpAddr::from(V4), std::net::IpAddr::from(V6)]
        );
        assert_eq!(
            after,
            before.into_iter().map(without_ech).collect::<Vec<_>>()
        );
        // Without ech the record is what a server without ECH would have sent.
        assert_eq!(out, https_answer(false));
    }

    #[test]
    fn leaves_messages_without_ech_and_queries_alone() {
        let mut out = vec![1, 2, 3];
        let mut stripper = EchStripper::default();
        assert_eq!(stripper.strip(&https_answer(false), &mut out), Ok(0));
        assert_eq!(
            stripper.strip(&dns_query(1, "svc.example", TYPE_HTTPS), &mut out),
            Ok(0)
        );
        assert_eq!(out, vec![1, 2, 3]);
    }

    /// An answer for m.example with one HTTPS record of the given data (TTL 256).
    fn answer_with_https_rdata(rdata: &[u8]) -> Vec<u8> {
        let mut message = dns_response(3, "m.example", TYPE_HTTPS, &[]);
        message[7] = 1;
        message.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0]);
        message.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        message.extend_from_slice(rdata);
        message
    }

    /// The HTTPS answer, then an A record whose owner is written out, then one whose owner
    /// points at it: that pointer lies behind the removed bytes and must move with them.
    fn answer_with_pointer_behind_ech() -> Vec<u8> {
        let mut message = https_answer(true);
        message[7] = 3; // ANCOUNT
        let other_at = message.len();
        message.extend_from_slice(b"\x05other\x07example\x00");
        message.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        message.extend_from_slice(&(0xc000 | other_at as u16).to_be_bytes());
        message.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2]);
        message
    }

    #[test]
    fn moves_compression_pointers_that_point_behind_the_removed_bytes() {
        let original = answer_with_pointer_behind_ech();
        let mut out = Vec::new();
        assert_eq!(EchStripper::default().strip(&original, &mut out), Ok(1));
        let after = records(&out);
        assert_eq!(after.len(), 3);
        assert_eq!(after[2].name.as_str(), "other.example");
        assert_eq!(after[2].data, RecordData::A([192, 0, 2, 2].into()));
        let before = records(&original);
        assert_eq!(
            after,
            before.into_iter().map(without_ech).collect::<Vec<_>>()
        );
    }

    #[test]
    fn moves_pointers_inside_cname_data_and_in_the_authority_section() {
        // HTTPS with ech, then a CNAME (in the authority section) whose target points at the
        // owner name of the A record written out behind the ech bytes.
        let mut message = answer_with_pointer_behind_ech();
        let other_at = message
            .windows(7)
            .position(|w| w == b"\x05other\x07")
            .unwrap();
        message[9] = 1; // NSCOUNT
        message.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 2]);
        message.extend_from_slice(&(0xc000 | other_at as u16).to_be_bytes());
        let mut out = Vec::new();
        assert_eq!(EchStripper::default().strip(&message, &mut out), Ok(1));
        let cname_target = &out[out.len() - 2..];
        let moved = usize::from(u16::from_be_bytes([cname_target[0], cname_target[1]]) & 0x3fff);
        assert_eq!(&out[moved..moved + 7], b"\x05other\x07");
    }

    #[test]
    fn takes_ech_out_of_the_mandatory_list_too() {
        // alpn, then mandatory=alpn,ech would come first by key order: key 0 before key 1.
        let list = ech_config_list(7, "public.example");
        let build = |mandatory: &[u16], ech: bool| {
            let mut rdata = vec![0, 1, 0];
            if !mandatory.is_empty() {
                rdata.extend_from_slice(&[0, 0]);
                rdata.extend_from_slice(&(2 * mandatory.len() as u16).to_be_bytes());
                for key in mandatory {
                    rdata.extend_from_slice(&key.to_be_bytes());
                }
            }
            rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']);
            if ech {
                rdata.extend_from_slice(&[0, 5]);
                rdata.extend_from_slice(&(list.len() as u16).to_be_bytes());
                rdata.extend_from_slice(&list);
            }
            answer_with_https_rdata(&rdata)
        };
        let mut stripper = EchStripper::default();
        let mut out = Vec::new();
        assert_eq!(stripper.strip(&build(&[1, 5], true), &mut out), Ok(1));
        assert_eq!(out, build(&[1], false));
        assert_eq!(stripper.strip(&build(&[5], true), &mut out), Ok(1));
        assert_eq!(out, build(&[], false));
    }

    #[test]
    fn strips_every_https_record_and_clears_the_authentic_data_bit() {
        let mut original = dns_response(
            4,
            "svc.example",
            TYPE_HTTPS,
            &[
                Answer::Https("svc.example", V4, V6, true),
                Answer::Https("svc.example", V4, V6, true),
            ],
        );
        original[3] |= 0x20;
        let mut out = Vec::new();
        assert_eq!(EchStripper::default().strip(&original, &mut out), Ok(2));
        let mut expected = dns_response(
            4,
            "svc.example",
            TYPE_HTTPS,
            &[
                Answer::Https("svc.example", V4, V6, false),
                Answer::Https("svc.example", V4, V6, false),
            ],
        );
        assert_eq!(out, expected);
        expected[3] |= 0x20;
        assert_ne!(out, expected);
    }

    #[test]
    fn refuses_a_pointer_into_the_removed_bytes() {
        let mut message = https_answer(true);
        let ech_at = message.windows(2).rposition(|w| w == [0, 5]).unwrap();
        message[7] = 2;
        message.extend_from_slice(&(0xc000 | (ech_at + 4) as u16).to_be_bytes());
        message.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let mut out = vec![9];
        assert_eq!(
            EchStripper::default().strip(&message, &mut out),
            Err(DnsError::BadRecordData.into())
        );
        assert_eq!(out, vec![9]);
    }

    #[test]
    fn refuses_a_pointer_into_a_record_length_that_changes() {
        let mut message = https_answer(true);
        // The HTTPS record's owner is the pointer at offset 12 + question; its RDLENGTH
        // follows type, class and TTL.
        let question_end = 12 + "svc.example".len() + 2 + 4;
        let rdlength_at = question_end + 2 + 8;
        message[7] = 2;
        message.extend_from_slice(&(0xc000 | (rdlength_at + 1) as u16).to_be_bytes());
        message.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        let mut out = Vec::new();
        assert_eq!(
            EchStripper::default().strip(&message, &mut out),
            Err(DnsError::BadRecordData.into())
        );
    }

    #[test]
    fn rejects_truncated_records_at_every_prefix() {
        let original = answer_with_pointer_behind_ech();
        let mut stripper = EchStripper::default();
        let mut out = Vec::new();
        for end in 0..original.len() {
            let result = stripper.strip(&original[..end], &mut out);
            assert!(result.is_err(), "prefix of {end} bytes: {result:?}");
            let result = stripper.hide(&original[..end], &mut out);
            assert!(result.is_err(), "prefix of {end} bytes, hiding: {result:?}");
        }
    }

    #[test]
    fn a_stripped_answer_still_says_what_the_a_records_said() {
        let original = dns_response(
            5,
            "svc.example",
            TYPE_A,
            &[
                Answer::Https("svc.example", V4, V6, true),
                Answer::A("svc.example", V4),
            ],
        );
        let mut out = Vec::new();
        assert_eq!(EchStripper::default().strip(&original, &mut out), Ok(1));
        assert_eq!(records(&out)[1].data, RecordData::A(V4.into()));
    }

    #[test]
    fn hides_ech_under_a_private_key_at_the_end_without_changing_the_length() {
        let original = https_answer(true);
        let mut out = Vec::new();
        assert_eq!(EchStripper::default().hide(&original, &mut out), Ok(1));
        assert_eq!(out.len(), original.len());
        let list = ech_config_list(telestrip_testkit::ECH_CONFIG_ID, "public.cdn.example");
        // The record of a server without ECH, then the keys under 65534.
        let mut expected = https_answer(false);
        expected.extend_from_slice(&HIDDEN_KEY.to_be_bytes());
        expected.extend_from_slice(&(list.len() as u16).to_be_bytes());
        expected.extend_from_slice(&list);
        let rdlength_at = 12 + "svc.example".len() + 2 + 4 + 2 + 8;
        expected[rdlength_at..rdlength_at + 2]
            .copy_from_slice(&original[rdlength_at..rdlength_at + 2]);
        assert_eq!(out, expected);
        let after = records(&out);
        assert_eq!(
            after,
            records(&original)
                .into_iter()
                .map(without_ech)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn hiding_keeps_every_pointer_and_refuses_a_mandatory_ech() {
        let original = answer_with_pointer_behind_ech();
        let mut out = Vec::new();
        let mut stripper = EchStripper::default();
        assert_eq!(stripper.hide(&original, &mut out), Ok(1));
        assert_eq!(records(&out)[2].name.as_str(), "other.example");
        assert_eq!(stripper.hide(&https_answer(false), &mut out), Ok(0));
        // mandatory=ech: a client that cannot find the key must ignore the record.
        let list = ech_config_list(7, "public.example");
        let mut rdata = vec![0, 1, 0, 0, 0, 0, 2, 0, 5, 0, 5];
        rdata.extend_from_slice(&(list.len() as u16).to_be_bytes());
        rdata.extend_from_slice(&list);
        let message = answer_with_https_rdata(&rdata);
        assert_eq!(
            stripper.hide(&message, &mut out),
            Err(DnsError::BadRecordData.into())
        );
        assert_eq!(stripper.strip(&message, &mut out), Ok(1));
    }

    proptest::proptest! {
        /// Hiding, like stripping, leaves a message that says the same but for ech, and
        /// keeps its length.
        #[test]
        fn hiding_in_any_message_keeps_it_well_formed_and_as_long(
            flip in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..4),
        ) {
            let mut message = answer_with_pointer_behind_ech();
            for (at, byte) in flip {
                if let Some(slot) = message.get_mut(at) {
                    *slot = byte;
                }
            }
            let mut out = Vec::new();
            if let Ok(hidden) = EchStripper::default().hide(&message, &mut out) {
                if hidden > 0 {
                    proptest::prop_assert_eq!(out.len(), message.len());
                    let after: Vec<_> = Message::parse(&out).unwrap().answers().unwrap().collect();
                    let before: Vec<_> = Message::parse(&message).unwrap().answers().unwrap().collect();
                    proptest::prop_assert_eq!(after.len(), before.len());
                    for (a, b) in after.into_iter().zip(before) {
                        match (a, b) {
                            (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, without_ech(b)),
                            (a, b) => proptest::prop_assert_eq!(a.is_err(), b.is_err()),
                        }
                    }
                }
            }
        }
    }

    proptest::proptest! {
        /// Whatever the bytes, stripping never panics, and what it writes parses with the
        /// same records, none of them with ech left.
        #[test]
        fn stripping_any_message_keeps_it_well_formed(
            cut in 0usize..400,
            flip in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..4),
        ) {
            let mut message = answer_with_pointer_behind_ech();
            for (at, byte) in flip {
                if let Some(slot) = message.get_mut(at) {
                    *slot = byte;
                }
            }
            message.truncate(message.len().saturating_sub(cut % 8));
            let mut out = Vec::new();
            if let Ok(removed) = EchStripper::default().strip(&message, &mut out) {
                if removed > 0 {
                    let after: Vec<_> = Message::parse(&out).unwrap().answers().unwrap().collect();
                    let before: Vec<_> = Message::parse(&message).unwrap().answers().unwrap().collect();
                    proptest::prop_assert_eq!(after.len(), before.len());
                    for (a, b) in after.into_iter().zip(before) {
                        match (a, b) {
                            (Ok(a), Ok(b)) => {
                                if let RecordData::Svcb(hints) = a.data {
                                    proptest::prop_assert!(!hints.ech);
                                }
                                proptest::prop_assert_eq!(a, without_ech(b));
                            }
                            (a, b) => proptest::prop_assert_eq!(a.is_err(), b.is_err()),
                        }
                    }
                }
            }
        }
    }
}
