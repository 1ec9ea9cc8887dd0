//! Reading one shard's journal back: verify every segment header and frame, hand the records
//! at or after a starting seq to the caller in order, cut a torn tail, refuse any other damage.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::api::{Code, Request};

use super::codec::{decode_record, Reader, RECORD_BYTES};
use super::files::sync_dir;
use super::state::Mode;
use super::writer::{
    FRAME_HEADER_BYTES, FRAME_PREFIX_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, SEGMENT_VERSION,
};
use super::{RecoveryError, RecoveryErrorKind};

/// Which record a callback gets (errors it returns are wrapped with the segment and the
/// frame's offset by the scan).
pub(crate) struct RecordAt {
    /// Its seq.
    pub seq: u64,
}

/// What scanning one shard's journal found.
#[derive(Debug, Default)]
pub(crate) struct JournalScan {
    /// Seq after the last record in the journal (`from_seq` when the journal has none after
    /// it); the writer continues at `max(end_seq, from_seq)`.
    pub end_seq: u64,
    /// Records handed to the caller (seq >= `from_seq`).
    pub records: u64,
    /// Segments read.
    pub segments_read: usize,
    /// Bytes of torn tail cut (or, read-only, that would be cut).
    pub bytes_cut: u64,
    /// The file and offset of the cut.
    pub cut_at: Option<(PathBuf, u64)>,
    /// A last segment removed because it held no frame.
    pub removed: Option<PathBuf>,
}

/// Read the journal `segments` (sorted by first seq) of `shard`, calling `on_record` for
/// each record with seq >= `from_seq`, in seq order.
pub(crate) fn scan_journal(
    shard: usize,
    segments: &[(u64, PathBuf)],
    from_seq: u64,
    mode: Mode,
    on_record: &mut dyn FnMut(&RecordAt, &Request, Code) -> Result<(), String>,
) -> Result<JournalScan, RecoveryError> {
    let mut scan = JournalScan {
        end_seq: from_seq,
        ..JournalScan::default()
    };
    // Segments wholly before `from_seq` (a later one starts at or before it) are not needed.
    let Some(start) = segments.iter().rposition(|(first, _)| *first <= from_seq) else {
        if let Some((first, path)) = segments.first() {
            return Err(RecoveryError::new(
                RecoveryErrorKind::MissingSegment,
                format!(
                    "the journal starts at record {first}, but recovery needs the records \
                     from {from_seq} on (the newest snapshot covers up to {from_seq}; 0 when \
                     there is none): the segments before this one are missing"
                ),
            )
            .in_shard(shard)
            .at_path(path));
        }
        return Ok(scan);
    };
    let mut body = Vec::new();
    let mut expected_first: Option<(u64, &Path)> = None;
    for (i, (first, path)) in segments.iter().enumerate().skip(start) {
        if let Some((expected, previous)) = expected_first {
            if *first != expected {
                let what = if *first > expected {
                    format!(
                        "records {expected}..{first} are missing: the segment before this \
                         one ({}) ends at record {expected}, this one starts at {first}",
                        previous.display()
                    )
                } else {
                    format!(
                        "this segment starts at record {first}, but the segment before it \
                         ({}) already runs to record {expected}: segments overlap",
                        previous.display()
                    )
                };
                let kind = if *first > expected {
                    RecoveryErrorKind::MissingSegment
                } else {
                    RecoveryErrorKind::Corrupt
                };
                return Err(RecoveryError::new(kind, what).in_shard(shard).at_path(path));
            }
        }
        let last = i + 1 == segments.len();
        let end = scan_segment(
            shard, path, *first, last, from_seq, mode, &mut body, &mut scan, on_record,
        )?;
        scan.segments_read += 1;
        // A journal may end before a snapshot taken ahead of it (Async); the writer then
        // resumed at the snapshot's seq, so the next segment starts there.
        let resume = end.max(from_seq);
        expected_first = Some((resume, path));
        scan.end_seq = resume;
    }
    Ok(scan)
}

fn corrupt(shard: usize, path: &Path, offset: u64, message: impl Into<String>) -> RecoveryError {
    RecoveryError::new(RecoveryErrorKind::Corrupt, message)
        .in_shard(shard)
        .at_path(path)
        .at_offset(offset)
}

/// Scan one segment; returns the seq after its last record.
#[allow(clippy::too_many_arguments)]
fn scan_segment(
    shard: usize,
    path: &Path,
    first_seq: u64,
    last: bool,
    from_seq: u64,
    mode: Mode,
    body: &mut Vec<u8>,
    scan: &mut JournalScan,
    on_record: &mut dyn FnMut(&RecordAt, &Request, Code) -> Result<(), String>,
) -> Result<u64, RecoveryError> {
    let io = |e: std::io::Error| RecoveryError::io(path, &e).in_shard(shard);
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);

    if file_len < SEGMENT_HEADER_BYTES as u64 {
        if !last {
            return Err(corrupt(
                shard,
                path,
                0,
                format!(
                    "the segment header is incomplete ({file_len} of {SEGMENT_HEADER_BYTES} \
                     bytes) in a segment that is not the last"
                ),
            ));
        }
        // A crash while the segment was being created: nothing in it was ever committed.
        cut(shard, path, 0, file_len, mode, scan)?;
        remove_empty(shard, path, mode, scan)?;
        return Ok(first_seq);
    }
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    input.read_exact(&mut header).map_err(io)?;
    check_header(&header, shard, first_seq).map_err(|(at, m)| corrupt(shard, path, at, m))?;

    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut seq = first_seq;
    loop {
        let remaining = file_len - offset;
        if remaining == 0 {
            break;
        }
        if remaining < FRAME_HEADER_BYTES as u64 {
            if last {
                cut(shard, path, offset, file_len, mode, scan)?;
                break;
            }
            return Err(corrupt(
                shard,
                path,
                offset,
                format!(
                    "a frame header runs past the end of the segment ({remaining} bytes left) \
                     in a segment that is not the last"
                ),
            ));
        }
        let mut frame_header = [0u8; FRAME_HEADER_BYTES];
        input.read_exact(&mut frame_header).map_err(io)?;
        let mut r = Reader::new(&frame_header);
        let len = r.u32();
        let crc = r.u32();
        let frame_end = offset + FRAME_HEADER_BYTES as u64 + u64::from(len);
        if frame_end > file_len {
            if last {
                cut(shard, path, offset, file_len, mode, scan)?;
                break;
            }
            return Err(corrupt(
                shard,
                path,
                offset,
                format!(
                    "a frame of {len} bytes runs past the end of the segment (at byte \
                     {file_len}) in a segment that is not the last"
                ),
            ));
        }
        body.resize(len as usize, 0);
        input.read_exact(body).map_err(io)?;
        let actual = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), body);
        if actual != crc {
            if last && frame_end == file_len {
                // The last frame of the journal, torn by a crash while it was written.
                cut(shard, path, offset, file_len, mode, scan)?;
                break;
            }
            return Err(corrupt(
                shard,
                path,
                offset,
                format!(
                    "frame checksum mismatch (stored {crc:#010x}, computed {actual:#010x}) \
                     with data after it: damage before the tail is never skipped"
                ),
            ));
        }
        let count = check_frame(body, seq).map_err(|m| corrupt(shard, path, offset, m))?;
        for (j, record) in body[FRAME_PREFIX_BYTES..]
            .chunks_exact(RECORD_BYTES)
            .enumerate()
        {
            let record_seq = seq + j as u64;
            let (request, code) = decode_record(record).map_err(|m| {
                let at =
                    offset + (FRAME_HEADER_BYTES + FRAME_PREFIX_BYTES + j * RECORD_BYTES) as u64;
                corrupt(shard, path, at, format!("record {record_seq}: {m}"))
            })?;
            if record_seq >= from_seq {
                let at = RecordAt { seq: record_seq };
                on_record(&at, &request, code).map_err(|m| {
                    RecoveryError::new(
                        RecoveryErrorKind::Replay,
                        format!("record {record_seq}: {m}"),
                    )
                    .in_shard(shard)
                    .at_path(path)
                    .at_offset(offset)
                })?;
                scan.records += 1;
            }
        }
        seq += count;
        offset = frame_end;
    }
    if last && seq == first_seq {
        remove_empty(shard, path, mode, scan)?;
    }
    Ok(seq)
}

/// Check a segment header; the error carries the offset of the bad field.
fn check_header(
    header: &[u8; SEGMENT_HEADER_BYTES],
    shard: usize,
    first_seq: u64,
) -> Result<(), (u64, String)> {
    if header[..8] != SEGMENT_MAGIC {
        return Err((0, "not a payauth journal segment (bad magic)".into()));
    }
    let mut r = Reader::new(&header[8..]);
    let version = r.u16();
    let record_bytes = r.u16();
    let header_shard = r.u32();
    let header_first = r.u64();
    let zero = r.u32();
    let crc = r.u32();
    let actual = crc32c::crc32c(&header[..28]);
    if crc != actual {
        return Err((
            28,
            format!(
                "segment header checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
            ),
        ));
    }
    if version != SEGMENT_VERSION {
        return Err((
            8,
            format!("segment format version {version}; this build reads {SEGMENT_VERSION}"),
        ));
    }
    if usize::from(record_bytes) != RECORD_BYTES || zero != 0 {
        return Err((
            10,
            format!("record size {record_bytes}; expected {RECORD_BYTES}"),
        ));
    }
    if header_shard as usize != shard {
        return Err((12, format!("segment belongs to shard {header_shard}")));
    }
    if header_first != first_seq {
        return Err((
            16,
            format!(
                "segment header says it starts at record {header_first}, its name says {first_seq}"
            ),
        ));
    }
    Ok(())
}

/// Check a checksummed frame body; returns its record count.
fn check_frame(body: &[u8], seq: u64) -> Result<u64, String> {
    if body.len() < FRAME_PREFIX_BYTES {
        return Err(format!(
            "frame body of {} bytes is shorter than its prefix",
            body.len()
        ));
    }
    let mut r = Reader::new(body);
    let frame_seq = r.u64();
    let count = u64::from(r.u32());
    if frame_seq != seq {
        return Err(format!(
            "frame starts at record {frame_seq}, expected {seq}"
        ));
    }
    if count == 0 || (body.len() - FRAME_PREFIX_BYTES) as u64 != count * RECORD_BYTES as u64 {
        return Err(format!(
            "frame of {} bytes does not hold {count} records of {RECORD_BYTES} bytes",
            body.len()
        ));
    }
    Ok(count)
}

/// Cut the torn tail `[offset, file_len)` (read-only: only report it).
fn cut(
    shard: usize,
    path: &Path,
    offset: u64,
    file_len: u64,
    mode: Mode,
    scan: &mut JournalScan,
) -> Result<(), RecoveryError> {
    if mode == Mode::Repair {
        let io = |e: std::io::Error| RecoveryError::io(path, &e).in_shard(shard);
        let f = OpenOptions::new().write(true).open(path).map_err(io)?;
        f.set_len(offset).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    scan.bytes_cut += file_len - offset;
    scan.cut_at = Some((path.to_path_buf(), offset));
    Ok(())
}

/// Remove a last segment that holds no frame, so the writer can start a segment at the same
/// seq (read-only: leave it).
fn remove_empty(
    shard: usize,
    path: &Path,
    mode: Mode,
    scan: &mut JournalScan,
) -> Result<(), RecoveryError> {
    if mode == Mode::Repair {
        let io = |e: std::io::Error| RecoveryError::io(path, &e).in_shard(shard);
        fs::remove_file(path).map_err(io)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).map_err(io)?;
        }
    }
    scan.removed = Some(path.to_path_buf());
    Ok(())
}
