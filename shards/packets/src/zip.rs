//! A small zip writer and a strict, bounded reader for the export bundles.
//!
//! Entries are stored (method 0, no compression) with their CRC-32 and a fixed timestamp, so the
//! same files always give the same bytes. The reader takes attacker-controlled input: it reads
//! the central directory, checks every offset and length against the buffer before using it,
//! refuses what it does not write (compression, encryption, zip64, multiple disks) and bounds the
//! entry count, the name length and the total size. It never panics; every refusal says why.

use std::collections::BTreeSet;
use std::fmt;

const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const END_SIGNATURE: u32 = 0x0605_4b50;
const LOCAL_HEADER_LEN: usize = 30;
const END_LEN: usize = 22;
/// Version 2.0: the lowest that tools accept for folders-in-names; nothing here needs more.
const VERSION: u16 = 20;
/// Bit 11: names are UTF-8.
const FLAG_UTF8: u16 = 0x0800;
const FLAG_ENCRYPTED: u16 = 0x0001;
/// 1980-01-01 00:00:00 in MS-DOS format: a fixed time keeps the output deterministic.
const DOS_DATE: u16 = (1 << 5) | 1;
const DOS_TIME: u16 = 0;

/// What the reader accepts at most.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_name_bytes: usize,
    pub max_total_bytes: usize,
}

/// Why an archive could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipError {
    /// The input does not end with a zip end-of-central-directory record.
    NotAZip,
    /// A record or an entry's data runs past the end of the input (or into the directory).
    Truncated(String),
    /// A feature this reader does not support (compression, encryption, zip64, disks).
    Unsupported(String),
    /// Past one of the [`Limits`], or past what the format can hold when writing.
    TooLarge(String),
    /// An entry name that is empty, too long, not UTF-8 or repeated.
    BadName(String),
    /// An entry whose data does not match its CRC-32.
    Corrupt(String),
}

impl fmt::Display for ZipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZipError::NotAZip => f.write_str("not a zip archive (no end of central directory)"),
            ZipError::Truncated(what) => write!(f, "truncated: {what}"),
            ZipError::Unsupported(what) => write!(f, "unsupported: {what}"),
            ZipError::TooLarge(what) => write!(f, "too large: {what}"),
            ZipError::BadName(what) => write!(f, "bad entry name: {what}"),
            ZipError::Corrupt(what) => write!(f, "corrupt: {what}"),
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected), as zip uses it.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8);
    }
    !crc
}

fn fit_u32(n: usize, what: &str) -> Result<u32, ZipError> {
    u32::try_from(n).map_err(|_| ZipError::TooLarge(format!("{what} passes 4 GiB")))
}

fn fit_u16(n: usize, what: &str) -> Result<u16, ZipError> {
    u16::try_from(n).map_err(|_| ZipError::TooLarge(format!("{what} passes 65535")))
}

/// Writes `entries` (name, data), in order, as a zip archive of stored entries.
pub fn write(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, ZipError> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = fit_u32(out.len(), "the archive")?;
        let crc = crc32(data);
        let size = fit_u32(data.len(), "an entry")?;
        let name_len = fit_u16(name.len(), "an entry name's length")?;
        for (buffer, header) in [
            (&mut out, LOCAL_SIGNATURE),
            (&mut central, CENTRAL_SIGNATURE),
        ] {
            buffer.extend_from_slice(&header.to_le_bytes());
            if header == CENTRAL_SIGNATURE {
                buffer.extend_from_slice(&VERSION.to_le_bytes()); // made by
            }
            for field in [VERSION, FLAG_UTF8, 0, DOS_TIME, DOS_DATE] {
                buffer.extend_from_slice(&field.to_le_bytes());
            }
            for field in [crc, size, size] {
                buffer.extend_from_slice(&field.to_le_bytes());
            }
            buffer.extend_from_slice(&name_len.to_le_bytes());
            buffer.extend_from_slice(&0u16.to_le_bytes()); // extra field length
            if header == CENTRAL_SIGNATURE {
                // comment length, disk, internal attributes, external attributes, offset
                for field in [0u16, 0, 0] {
                    buffer.extend_from_slice(&field.to_le_bytes());
                }
                buffer.extend_from_slice(&0u32.to_le_bytes());
                buffer.extend_from_slice(&offset.to_le_bytes());
            }
            buffer.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(data);
    }
    let central_offset = fit_u32(out.len(), "the archive")?;
    let central_len = fit_u32(central.len(), "the central directory")?;
    let count = fit_u16(entries.len(), "the number of entries")?;
    out.extend_from_slice(&central);
    out.extend_from_slice(&END_SIGNATURE.to_le_bytes());
    for field in [0u16, 0, count, count] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    Ok(out)
}

/// Bounds-checked little-endian reads over a slice.
struct Cursor<'a, 'w> {
    bytes: &'a [u8],
    pos: usize,
    what: &'w str,
}

impl<'a, 'w> Cursor<'a, 'w> {
    fn at(bytes: &'a [u8], pos: usize, what: &'w str) -> Self {
        Self { bytes, pos, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ZipError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| ZipError::Truncated(self.what.to_owned()))?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| ZipError::Truncated(self.what.to_owned()))?;
        self.pos = end;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, ZipError> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32, ZipError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }
}

/// Finds the end-of-central-directory record: the last signature that leaves room for the
/// record and its comment.
fn find_end(bytes: &[u8]) -> Result<usize, ZipError> {
    let last = bytes.len().checked_sub(END_LEN).ok_or(ZipError::NotAZip)?;
    let first = last.saturating_sub(usize::from(u16::MAX));
    (first..=last)
        .rev()
        .find(|&pos| {
            bytes.get(pos..pos + 4) == Some(&END_SIGNATURE.to_le_bytes()[..])
                && bytes
                    .get(pos + 20..pos + 22)
                    .map(|len| usize::from(u16::from_le_bytes([len[0], len[1]])))
                    == Some(bytes.len() - pos - END_LEN)
        })
        .ok_or(ZipError::NotAZip)
}

/// Reads every file entry of `bytes` (folder entries, names ending in `/`, are skipped),
/// checking each CRC-32. The data slices borrow from `bytes`.
pub fn read<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Vec<(String, &'a [u8])>, ZipError> {
    let end = find_end(bytes)?;
    let mut record = Cursor::at(bytes, end + 4, "end of central directory");
    let disk = record.u16()?;
    let directory_disk = record.u16()?;
    let on_disk = record.u16()?;
    let count = record.u16()?;
    let directory_len = record.u32()? as usize;
    let directory_offset = record.u32()? as usize;
    if disk != 0 || directory_disk != 0 || on_disk != count {
        return Err(ZipError::Unsupported("multi-disk archives".to_owned()));
    }
    if count == u16::MAX || directory_offset == u32::MAX as usize {
        return Err(ZipError::Unsupported("zip64 archives".to_owned()));
    }
    if usize::from(count) > limits.max_entries {
        return Err(ZipError::TooLarge(format!(
            "{count} entries, more than the {} allowed",
            limits.max_entries
        )));
    }
    if directory_offset
        .checked_add(directory_len)
        .is_none_or(|directory_end| directory_end > end)
    {
        return Err(ZipError::Truncated("the central directory".to_owned()));
    }
    let directory = bytes
        .get(..directory_offset + directory_len)
        .unwrap_or_default();
    let mut cursor = Cursor::at(directory, directory_offset, "a central directory entry");
    let mut names = BTreeSet::new();
    let mut total = 0usize;
    let mut entries = Vec::new();
    for _ in 0..count {
        if cursor.u32()? != CENTRAL_SIGNATURE {
            return Err(ZipError::Corrupt(
                "a central directory entry has no signature".to_owned(),
            ));
        }
        let _made_by = cursor.u16()?;
        let _needed = cursor.u16()?;
        let flags = cursor.u16()?;
        let method = cursor.u16()?;
        let _time = cursor.u16()?;
        let _date = cursor.u16()?;
        let crc = cursor.u32()?;
        let compressed = cursor.u32()? as usize;
        let size = cursor.u32()? as usize;
        let name_len = usize::from(cursor.u16()?);
        let extra_len = usize::from(cursor.u16()?);
        let comment_len = usize::from(cursor.u16()?);
        let _disk = cursor.u16()?;
        let _internal = cursor.u16()?;
        let _external = cursor.u32()?;
        let offset = cursor.u32()? as usize;
        if name_len > limits.max_name_bytes {
            return Err(ZipError::BadName(format!(
                "a name of {name_len} bytes, more than the {} allowed",
                limits.max_name_bytes
            )));
        }
        let name = std::str::from_utf8(cursor.take(name_len)?)
            .map_err(|_| ZipError::BadName("a name that is not UTF-8".to_owned()))?
            .to_owned();
        cursor.take(extra_len)?;
        cursor.take(comment_len)?;
        if name.is_empty() {
            return Err(ZipError::BadName("an empty name".to_owned()));
        }
        if flags & FLAG_ENCRYPTED != 0 {
            return Err(ZipError::Unsupported(format!("`{name}` is encrypted")));
        }
        if method != 0 {
            return Err(ZipError::Unsupported(format!(
                "`{name}` is compressed (method {method}); bundles hold stored entries"
            )));
        }
        if compressed != size {
            return Err(ZipError::Corrupt(format!(
                "`{name}` is stored with {compressed} bytes but declares {size}"
            )));
        }
        if !names.insert(name.clone()) {
            return Err(ZipError::BadName(format!("`{name}` appears twice")));
        }
        total = total
            .checked_add(size)
            .filter(|total| *total <= limits.max_total_bytes)
            .ok_or_else(|| {
                ZipError::TooLarge(format!(
                    "the entries pass the {} bytes allowed",
                    limits.max_total_bytes
                ))
            })?;
        // Entry data lies before the central directory.
        let before_directory = bytes.get(..directory_offset).unwrap_or_default();
        let what = format!("the entry `{name}`");
        let mut local = Cursor::at(before_directory, offset, &what);
        if local.u32()? != LOCAL_SIGNATURE {
            return Err(ZipError::Corrupt(format!("`{name}` has no local header")));
        }
        local.take(LOCAL_HEADER_LEN - 4 - 4)?;
        let local_name_len = usize::from(local.u16()?);
        let local_extra_len = usize::from(local.u16()?);
        if local.take(local_name_len)? != name.as_bytes() {
            return Err(ZipError::Corrupt(format!(
                "`{name}` has another name in its local header"
            )));
        }
        local.take(local_extra_len)?;
        let data = local.take(size)?;
        if name.ends_with('/') && size == 0 {
            continue;
        }
        if crc32(data) != crc {
            return Err(ZipError::Corrupt(format!(
                "`{name}` does not match its CRC-32"
            )));
        }
        entries.push((name, data));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_entries: 8,
        max_name_bytes: 64,
        max_total_bytes: 1 << 20,
    };

    #[test]
    fn crc32_known_answer() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let entries = vec![
            ("manifest.json".to_owned(), b"{}".to_vec()),
            ("snapshots/v2.json".to_owned(), b"[1,2]".to_vec()),
        ];
        let bytes = write(&entries).unwrap();
        let read_back = read(&bytes, &LIMITS).unwrap();
        assert_eq!(read_back.len(), 2);
        assert_eq!(
            read_back[1],
            ("snapshots/v2.json".to_owned(), &b"[1,2]"[..])
        );
        assert_eq!(write(&entries).unwrap(), bytes, "deterministic");
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut], &LIMITS).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[LOCAL_HEADER_LEN + "manifest.json".len()] ^= 1;
        assert!(matches!(read(&flipped, &LIMITS), Err(ZipError::Corrupt(_))));
        let tight = Limits {
            max_entries: 1,
            ..LIMITS
        };
        assert!(matches!(read(&bytes, &tight), Err(ZipError::TooLarge(_))));
    }
}
