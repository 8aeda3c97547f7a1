//! Backup files. Format 2 (written today) is logical: the store's records, one frame at a time,
//! so it is written and read with bounded memory and restores into either kind of store. Format 1
//! (sled's trees whole, in memory) is still read.
//!
//! Format 2 (integers big-endian):
//!
//! | bytes | what |
//! | --- | --- |
//! | 15 | `MAGIC`, `mfadmin-backup` and a NUL |
//! | 4 | format version, 2 |
//! | frames | each a 4-byte length and the postcard of a [`Frame`]: one `Header`, then a `Record` per record, then `End` with the counts |
//! | 32 | HMAC-SHA256 of everything before it, keyed by `Sealer::mac("backup")` from the key file |
//!
//! Whoever alters a backup without the key file cannot make its code match, so a restore refuses it.
//! The header names the key file it was written with (a code derived from it, not the key), so a
//! backup read with another key file is told apart from an altered one.
//!
//! Format 1: `MAGIC`, version 1, the body's length (8 bytes), the postcard of a [`Snapshot`] (every
//! sled tree), and the SHA-256 of everything before it.
//!
//! Records are copied byte for byte: TOTP secrets stay sealed, so a restore needs the key file the
//! store was created with, which is not in the backup.

use super::Record;
use crate::auth::seal::{MacSha256, Sealer};
use crate::error::{Error, Result};
use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

pub const MAGIC: &[u8; 15] = b"mfadmin-backup\0";
/// The format written today.
pub const FORMAT_VERSION: u32 = 2;
/// The format of whole-tree snapshots, still read.
pub const TREES_FORMAT_VERSION: u32 = 1;
/// The purpose of the key that authenticates backups (see `Sealer::mac`).
pub const MAC_PURPOSE: &str = "backup";
const MAC_LEN: usize = 32;
/// No record comes near this; a larger frame length is damage, refused before it is allocated.
const MAX_FRAME: usize = 16 << 20;
const HEADER_LEN: usize = MAGIC.len() + 4 + 8;
/// The magic and the format version.
const PREAMBLE_LEN: usize = MAGIC.len() + 4;
const CHECKSUM_LEN: usize = 32;

/// Every tree of a sled store at one moment (format 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub schema_version: u32,
    /// Unix seconds when it was taken.
    pub taken_at: i64,
    pub trees: Vec<TreeDump>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDump {
    pub name: Vec<u8>,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// How much a backup holds, for people to check (and the reader to compare with what it read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub users: usize,
    pub orgs: usize,
    pub audit_events: usize,
    pub sessions: usize,
}

impl Snapshot {
    pub fn counts(&self) -> Counts {
        let len = |name: &str| self.trees.iter().find(|t| t.name == name.as_bytes()).map_or(0, |t| t.entries.len());
        Counts { users: len("users"), orgs: len("orgs"), audit_events: len("audit"), sessions: len("sessions") }
    }

    /// The bytes of a format-1 backup file (no mfadmin writes these any more; kept to test that
    /// they still restore).
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_stdvec(self).expect("in-memory snapshots always encode");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len() + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&TREES_FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&(body.len() as u64).to_be_bytes());
        out.extend_from_slice(&body);
        let sum: [u8; 32] = Sha256::digest(&out).into();
        out.extend_from_slice(&sum);
        out
    }

    /// Read a format-1 backup file's bytes, refusing anything truncated, damaged or not a backup.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let bad = |why: String| Error::Corrupt(format!("the backup {why}"));
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::invalid("this file is not an mfadmin backup (it does not start with the backup header)"));
        }
        if bytes.len() < HEADER_LEN {
            return Err(bad("is truncated: it ends inside its header".into()));
        }
        let version = u32::from_be_bytes(bytes[MAGIC.len()..MAGIC.len() + 4].try_into().expect("4 bytes"));
        check_version(version)?;
        if version != TREES_FORMAT_VERSION {
            return Err(bad(format!("has format version {version}, which is read record by record, not whole")));
        }
        let body_len = u64::from_be_bytes(bytes[MAGIC.len() + 4..HEADER_LEN].try_into().expect("8 bytes"));
        let expected = (HEADER_LEN as u64).saturating_add(body_len).saturating_add(CHECKSUM_LEN as u64);
        if (bytes.len() as u64) < expected {
            return Err(bad(format!("is truncated: {} bytes of the {expected} it should have", bytes.len())));
        }
        if (bytes.len() as u64) > expected {
            return Err(bad(format!("has {} bytes after its end: it is damaged", bytes.len() as u64 - expected)));
        }
        let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        let actual: [u8; 32] = Sha256::digest(content).into();
        if actual.as_slice() != sum {
            return Err(bad("is damaged: its checksum does not match its content".into()));
        }
        let snapshot: Snapshot = postcard::from_bytes(&content[HEADER_LEN..])
            .map_err(|e| bad(format!("has a checksum that matches but a body that does not decode ({e})")))?;
        Ok(snapshot)
    }
}

fn bad(why: String) -> Error {
    Error::Corrupt(format!("the backup {why}"))
}

fn check_version(version: u32) -> Result<()> {
    if version > FORMAT_VERSION {
        return Err(bad(format!("has format version {version}, written by a newer mfadmin; this one reads up to {FORMAT_VERSION}")));
    }
    if version == 0 {
        return Err(bad("has format version 0, which no mfadmin writes".into()));
    }
    Ok(())
}

/// What a backup says about itself before its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Unix seconds when it was taken.
    pub taken_at: i64,
    /// The kind of store it was taken from (`sled`, `postgres`), for people to read.
    pub store_kind: String,
    /// Names the key file it was written with: a code derived from the key, not the key.
    pub key_id: [u8; 16],
}

/// One frame of a format-2 backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Frame {
    Header(Header),
    Record(Record),
    End(Counts),
}

/// The key file's name in a backup's header.
fn key_id(sealer: &Sealer) -> [u8; 16] {
    let code = sealer.mac(MAC_PURPOSE).chain_update(b"key id").finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&code[..16]);
    id
}

impl Counts {
    /// Count `record` in.
    pub fn add(&mut self, record: &Record) {
        match record {
            Record::User { .. } => self.users += 1,
            Record::Org { .. } => self.orgs += 1,
            Record::Audit { .. } => self.audit_events += 1,
            Record::Session { .. } => self.sessions += 1,
            Record::NextNumber(_) | Record::Meta { .. } | Record::AuditHead { .. } => {}
        }
    }
}

/// Writes a format-2 backup to `out` record by record: nothing is gathered, so memory stays the
/// same whatever the size of the store.
pub struct BackupWriter<W: Write> {
    out: W,
    mac: MacSha256,
    counts: Counts,
    buf: Vec<u8>,
}

impl<W: Write> BackupWriter<W> {
    pub fn start(out: W, sealer: &Sealer, taken_at: i64, store_kind: &str) -> Result<BackupWriter<W>> {
        let mut writer = BackupWriter { out, mac: sealer.mac(MAC_PURPOSE), counts: Counts::default(), buf: Vec::with_capacity(4096) };
        let mut preamble = [0u8; PREAMBLE_LEN];
        preamble[..MAGIC.len()].copy_from_slice(MAGIC);
        preamble[MAGIC.len()..].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        writer.put(&preamble)?;
        writer.frame(&Frame::Header(Header { taken_at, store_kind: store_kind.into(), key_id: key_id(sealer) }))?;
        Ok(writer)
    }

    pub fn record(&mut self, record: Record) -> Result<()> {
        self.counts.add(&record);
        self.frame(&Frame::Record(record))
    }

    /// Write the counts and the code, and hand back the output (not flushed) and the counts.
    pub fn finish(mut self) -> Result<(W, Counts)> {
        let counts = self.counts;
        self.frame(&Frame::End(counts))?;
        let code: [u8; MAC_LEN] = self.mac.clone().finalize().into_bytes().into();
        self.out.write_all(&code).map_err(written)?;
        Ok((self.out, counts))
    }

    fn frame(&mut self, frame: &Frame) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        let mut buf = postcard::to_extend(frame, buf).expect("in-memory records always encode");
        let len = u32::try_from(buf.len() - 4).ok().filter(|&n| (n as usize) <= MAX_FRAME).ok_or_else(|| {
            Error::Storage(format!("a record of {} bytes is too large for a backup", buf.len() - 4))
        })?;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        let done = self.put(&buf);
        self.buf = buf;
        done
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.mac.update(bytes);
        self.out.write_all(bytes).map_err(written)
    }
}

fn written(e: std::io::Error) -> Error {
    Error::Storage(format!("writing the backup: {e}"))
}

/// A backup being read: format 2 record by record, or format 1 whole.
pub enum Opened<R: Read> {
    Records(Box<BackupReader<R>>),
    Trees(Snapshot),
}

/// Open a backup from `input`, reading its header. With `sealer`, a backup written with another
/// key file is refused here, and the code is checked at the end; without one (a client that has
/// no key file), only its structure and counts are.
pub fn open<R: Read>(mut input: R, sealer: Option<&Sealer>) -> Result<Opened<R>> {
    let mut preamble = [0u8; PREAMBLE_LEN];
    let got = read_up_to(&mut input, &mut preamble)?;
    if got < MAGIC.len() || &preamble[..MAGIC.len()] != MAGIC {
        return Err(Error::invalid("this file is not an mfadmin backup (it does not start with the backup header)"));
    }
    if got < PREAMBLE_LEN {
        return Err(bad("is truncated: it ends inside its header".into()));
    }
    let version = u32::from_be_bytes(preamble[MAGIC.len()..].try_into().expect("4 bytes"));
    check_version(version)?;
    if version == TREES_FORMAT_VERSION {
        let mut bytes = preamble.to_vec();
        input.read_to_end(&mut bytes).map_err(|e| Error::Storage(format!("reading the backup: {e}")))?;
        return Ok(Opened::Trees(Snapshot::decode(&bytes)?));
    }
    let mac = sealer.map(|s| {
        let mut mac = s.mac(MAC_PURPOSE);
        mac.update(&preamble);
        mac
    });
    let mut reader = BackupReader { input, mac, counts: Counts::default(), header: None, ended: false, buf: Vec::new() };
    let header = match reader.frame()? {
        Frame::Header(header) => header,
        _ => return Err(bad("is damaged: it does not begin with its header".into())),
    };
    if let Some(s) = sealer
        && header.key_id != key_id(s)
    {
        return Err(Error::KeyFile(
            "this backup was written with another key file: the key file does not belong to this store. \
             A restore needs the key file of the store the backup was taken from"
                .into(),
        ));
    }
    reader.header = Some(header);
    Ok(Opened::Records(Box::new(reader)))
}

/// Reads a format-2 backup record by record (see [`open`]).
pub struct BackupReader<R: Read> {
    input: R,
    mac: Option<MacSha256>,
    counts: Counts,
    header: Option<Header>,
    ended: bool,
    buf: Vec<u8>,
}

impl<R: Read> BackupReader<R> {
    pub fn header(&self) -> &Header {
        self.header.as_ref().expect("read when opened")
    }

    /// The next record, or `None` at the end, once the counts and the code are checked: a
    /// backup that was cut short, altered or damaged is an error, never a shorter store.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if self.ended {
            return Ok(None);
        }
        match self.frame()? {
            Frame::Record(record) => {
                self.counts.add(&record);
                Ok(Some(record))
            }
            Frame::End(counts) => {
                self.finish(counts)?;
                Ok(None)
            }
            Frame::Header(_) => Err(bad("is damaged: it has a second header".into())),
        }
    }

    /// What was read so far (all of it once [`BackupReader::next_record`] gave `None`).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn finish(&mut self, said: Counts) -> Result<()> {
        let mut code = [0u8; MAC_LEN];
        if read_up_to(&mut self.input, &mut code)? < MAC_LEN {
            return Err(bad("is truncated: it ends before its authentication code".into()));
        }
        if let Some(mac) = self.mac.take()
            && mac.verify_slice(&code).is_err()
        {
            return Err(Error::Corrupt(
                "the backup was altered or damaged after it was written: its authentication code (made with the key \
                 file) does not match its content. Nothing was restored from it; use another backup"
                    .into(),
            ));
        }
        if read_up_to(&mut self.input, &mut [0u8; 1])? != 0 {
            return Err(bad("has bytes after its end: it is damaged".into()));
        }
        if said != self.counts {
            return Err(bad(format!("is damaged: it says it holds {said:?} but holds {:?}", self.counts)));
        }
        self.ended = true;
        Ok(())
    }

    fn frame(&mut self) -> Result<Frame> {
        let mut len = [0u8; 4];
        match read_up_to(&mut self.input, &mut len)? {
            4 => {}
            _ => return Err(bad("is truncated: it ends before its last record".into())),
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_FRAME {
            return Err(bad(format!("is damaged: a record says it is {n} bytes long")));
        }
        self.buf.resize(n, 0);
        if read_up_to(&mut self.input, &mut self.buf)? < n {
            return Err(bad("is truncated: it ends inside a record".into()));
        }
        if let Some(mac) = &mut self.mac {
            mac.update(&len);
            mac.update(&self.buf);
        }
        postcard::from_bytes(&self.buf).map_err(|e| bad(format!("is damaged: a record does not decode ({e})")))
    }
}

/// Fill `buf` as far as `input` goes; the number of bytes read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Storage(format!("reading the backup: {e}"))),
        }
    }
    Ok(filled)
}

/// What a whole backup holds, once read to its end and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Format 2's header; `None` for format 1.
    pub header: Option<Header>,
    pub taken_at: i64,
    pub counts: Counts,
    pub format: u32,
}

/// Read a whole backup from `input` and check it (with `sealer`: its code too), keeping nothing.
pub fn verify<R: Read>(input: R, sealer: Option<&Sealer>) -> Result<Summary> {
    match open(input, sealer)? {
        Opened::Trees(snapshot) => Ok(Summary { header: None, taken_at: snapshot.taken_at, counts: snapshot.counts(), format: TREES_FORMAT_VERSION }),
        Opened::Records(mut reader) => {
            while reader.next_record()?.is_some() {}
            let header = reader.header().clone();
            Ok(Summary { taken_at: header.taken_at, header: Some(header), counts: reader.counts(), format: FORMAT_VERSION })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sealer: &Sealer) -> Vec<u8> {
        let mut w = BackupWriter::start(Vec::new(), sealer, 7, "sled").unwrap();
        w.record(Record::NextNumber(3)).unwrap();
        w.record(Record::Org { key: "acme".into(), record: vec![1, 2] }).unwrap();
        w.record(Record::User { id: uuid::Uuid::nil(), record: vec![3; 40] }).unwrap();
        w.record(Record::Audit { seq: 1, record: vec![4; 10] }).unwrap();
        w.finish().unwrap().0
    }

    fn read_all(bytes: &[u8], sealer: Option<&Sealer>) -> Result<Vec<Record>> {
        let Opened::Records(mut r) = open(bytes, sealer)? else { panic!("format 2") };
        let mut out = Vec::new();
        while let Some(rec) = r.next_record()? {
            out.push(rec);
        }
        Ok(out)
    }

    #[test]
    fn records_come_back_in_order_and_counted() {
        let sealer = Sealer::ephemeral();
        let bytes = sample(&sealer);
        let records = read_all(&bytes, Some(&sealer)).unwrap();
        assert_eq!(records.len(), 4);
        let summary = verify(&bytes[..], Some(&sealer)).unwrap();
        assert_eq!((summary.counts.users, summary.counts.orgs, summary.counts.audit_events, summary.taken_at), (1, 1, 1, 7));
        assert!(verify(&bytes[..], None).is_ok(), "without the key file, the structure is checked");
    }

    /// A byte changed anywhere, a cut anywhere, or another key file: refused, never a shorter store.
    #[test]
    fn altered_truncated_and_foreign_backups_are_refused() {
        let sealer = Sealer::ephemeral();
        let bytes = sample(&sealer);
        for at in PREAMBLE_LEN..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x01;
            assert!(read_all(&altered, Some(&sealer)).is_err(), "a flip at {at} went unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(read_all(&bytes[..cut], Some(&sealer)).is_err(), "a cut at {cut} went unnoticed");
        }
        let err = read_all(&bytes, Some(&Sealer::ephemeral())).unwrap_err().to_string();
        assert!(err.contains("another key file"), "{err}");
        // Re-signed with the right key id but not the key: the code gives it away.
        let mut forged = bytes.clone();
        let last_user_byte = bytes.len() - MAC_LEN - 20;
        forged[last_user_byte] ^= 0x01;
        let err = read_all(&forged, Some(&sealer)).unwrap_err().to_string();
        assert!(err.contains("altered") || err.contains("damaged"), "{err}");
    }
}
