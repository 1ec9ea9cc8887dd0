//! The per-shard journal writer: records pushed during a pass are encoded into one reusable
//! buffer and committed with one write and (for `Durability::Sync`) one fdatasync.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

#[cfg(test)]
use super::codec::encode_record;
use super::codec::{Writer, RECORD_BYTES};
use super::files::{list_shard, segment_name, shard_dir, sync_dir};
use super::{Durability, JournalConfig};
#[cfg(test)]
use crate::api::{Code, Request};

/// Segment file magic.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"PAYAUTHJ";
/// Segment format version.
pub(crate) const SEGMENT_VERSION: u16 = 1;
/// Bytes of a segment header.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
/// Bytes of a frame header (`len`, `crc`).
pub(crate) const FRAME_HEADER_BYTES: usize = 8;
/// Bytes of a frame body before its records (first seq, count).
pub(crate) const FRAME_PREFIX_BYTES: usize = 12;
/// Most records in one frame; a larger commit is written as several frames in one write.
/// Keeps a frame's length well inside its `u32` (2^20 × 66 bytes ≈ 66 MiB).
pub const FRAME_RECORDS_MAX: u32 = 1 << 20;

/// The 32-byte header of a segment of `shard` whose first record is `first_seq`.
pub(crate) fn segment_header(shard: u32, first_seq: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut v = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    v.extend_from_slice(&SEGMENT_MAGIC);
    let mut w = Writer(&mut v);
    w.u16(SEGMENT_VERSION);
    w.u16(RECORD_BYTES as u16);
    w.u32(shard);
    w.u64(first_seq);
    w.u32(0);
    let crc = crc32c::crc32c(&v);
    Writer(&mut v).u32(crc);
    v.try_into().expect("header is 32 bytes")
}

/// Counters of one writer since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Commits that wrote at least one record.
    pub batches: u64,
    /// Records committed.
    pub records: u64,
    /// Bytes written (segment headers and frames).
    pub bytes: u64,
    /// fdatasync calls on segments.
    pub syncs: u64,
    /// Segments created.
    pub segments: u64,
}

/// One shard's journal writer. Owned by the shard's thread, like its store.
///
/// # Hooking it into the shard loop
/// ```text
/// for each pass:
///     for each request in the pass, in order:
///         code = rules::decide(store, times, op)
///         set the code of the op's record      // the router encoded the request
///         job.decisions.push(Decision { .. })
///     writer.push_encoded(&job.records)        // each job's records; no I/O
///     writer.commit()?                         // ONE write (+ ONE fdatasync for Sync)
///     release every job of the pass            // only now may a host see the decisions
/// when idle (queue empty):  writer.sync_if_due()?   (Async only; a no-op otherwise)
/// at shutdown:              writer.sync()?
/// ```
/// `commit` must come after every `decide` of the pass and before any reply is sent; an
/// `Err` from it means the pass is not durable, so its decisions must not be released: the
/// writer is poisoned (every later commit fails) and the shard should stop, failing the
/// pending jobs, so the host restarts and recovers. Requests answered at resolution
/// (`14`/`78` in the router) changed nothing and are not journaled.
///
/// Record numbers: the records of a shard are numbered 0, 1, 2, … in push order;
/// [`JournalWriter::next_seq`] after a commit is the number of records the shard has applied,
/// which is the `seq` a snapshot taken at that point must carry.
#[derive(Debug)]
pub struct JournalWriter {
    shard: u32,
    dir: PathBuf,
    durability: Durability,
    segment_bytes_max: u64,
    /// The segment being appended to (none until the first commit, and after a roll).
    file: Option<File>,
    segment_bytes: u64,
    /// Seq of the next record pushed.
    next_seq: u64,
    /// Seq of the first record not yet committed.
    committed_seq: u64,
    /// Encoded frames of the batch being built; reused, so a pass allocates nothing once it
    /// has grown to the largest batch.
    buf: Vec<u8>,
    /// Offset in `buf` of the open frame's header.
    frame_start: usize,
    /// Records in the open frame (0: no frame open).
    frame_records: u32,
    /// [`FRAME_RECORDS_MAX`], lowered by tests to exercise multi-frame commits.
    frame_records_max: u32,
    /// Written to the current segment but not yet fdatasynced.
    dirty: bool,
    /// When the last fdatasync finished (Async only). Time is read only to schedule syncs;
    /// it never reaches a decision.
    last_sync: Instant,
    /// A write or sync failed: the file's contents are unknown, so nothing more is accepted.
    poisoned: bool,
    stats: JournalStats,
}

impl JournalWriter {
    /// A writer for `shard` that numbers its next record `next_seq` (0 on a fresh start, or
    /// [`super::ShardReport::next_seq`] after recovery in [`super::Mode::Repair`]). Creates
    /// `dir/shard-{k}` if needed; the first segment is created by the first commit, so it
    /// starts at `next_seq`. With [`Durability::None`] nothing is created, ever.
    ///
    /// Refuses (`AlreadyExists`) when the shard already has a segment starting at or after
    /// `next_seq`: a writer opened without recovering first would fork the sequence.
    pub fn open(config: &JournalConfig, shard: usize, next_seq: u64) -> io::Result<JournalWriter> {
        config
            .validate()
            .map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        let shard_u32 = u32::try_from(shard)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "shard over u32"))?;
        let dir = shard_dir(&config.dir, shard);
        if config.durability != Durability::None {
            std::fs::create_dir_all(&dir)?;
            let files = list_shard(&dir)?;
            if let Some((first, path)) = files.segments.iter().find(|(f, _)| *f >= next_seq) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} starts at record {first}, not before the writer's next record \
                         {next_seq}: recover the shard (Mode::Repair) and open the writer at \
                         its next_seq",
                        path.display()
                    ),
                ));
            }
        }
        Ok(JournalWriter {
            shard: shard_u32,
            dir,
            durability: config.durability,
            segment_bytes_max: config.segment_bytes_max,
            file: None,
            segment_bytes: 0,
            next_seq,
            committed_seq: next_seq,
            // Room for a pass of 4096 records up front; grows (once) to the largest pass.
            buf: if config.durability == Durability::None {
                Vec::new()
            } else {
                Vec::with_capacity(FRAME_HEADER_BYTES + FRAME_PREFIX_BYTES + 4096 * RECORD_BYTES)
            },
            frame_start: 0,
            frame_records: 0,
            frame_records_max: FRAME_RECORDS_MAX,
            dirty: false,
            last_sync: Instant::now(),
            poisoned: false,
            stats: JournalStats::default(),
        })
    }

    /// Seq the next pushed record gets; after a commit, the count of records applied so far.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records pushed but not yet committed.
    #[cfg(test)]
    pub fn pending(&self) -> u64 {
        self.next_seq - self.committed_seq
    }

    /// Counters since open.
    #[cfg(test)]
    pub fn stats(&self) -> JournalStats {
        self.stats
    }

    /// True when something written is not yet fdatasynced (Async between syncs).
    pub fn unsynced(&self) -> bool {
        self.dirty
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Add one applied request and its decision to the batch being built (no I/O). The
    /// engine encodes records before they reach the writer ([`JournalWriter::push_encoded`]);
    /// tests push requests.
    #[cfg(test)]
    pub fn push(&mut self, request: &Request, code: Code) {
        self.next_seq += 1;
        if self.durability == Durability::None {
            return;
        }
        if self.frame_records == 0 {
            self.open_frame(self.next_seq - 1);
        }
        encode_record(&mut self.buf, request, code);
        self.frame_records += 1;
        if self.frame_records == self.frame_records_max {
            self.close_frame();
        }
    }

    /// Add records already encoded with [`encode_record`], back to back, to the batch being
    /// built (no I/O): the same bytes, frames and numbering as pushing them one by one. The
    /// pipelined commit encodes on the shard thread and hands the bytes to the thread that
    /// owns the writer.
    pub(crate) fn push_encoded(&mut self, records: &[u8]) {
        assert!(
            records.len().is_multiple_of(RECORD_BYTES),
            "whole records only ({} bytes)",
            records.len()
        );
        let mut rest = records;
        if self.durability == Durability::None {
            self.next_seq += (rest.len() / RECORD_BYTES) as u64;
            return;
        }
        while !rest.is_empty() {
            if self.frame_records == 0 {
                self.open_frame(self.next_seq);
            }
            let room = (self.frame_records_max - self.frame_records) as usize;
            let n = room.min(rest.len() / RECORD_BYTES);
            let (now, later) = rest.split_at(n * RECORD_BYTES);
            self.buf.extend_from_slice(now);
            // n <= room, which is a u32.
            self.frame_records += n as u32;
            self.next_seq += n as u64;
            rest = later;
            if self.frame_records == self.frame_records_max {
                self.close_frame();
            }
        }
    }

    /// Start a frame whose first record is `first_seq`; its length, count and checksum are
    /// filled in by [`JournalWriter::close_frame`].
    fn open_frame(&mut self, first_seq: u64) {
        self.frame_start = self.buf.len();
        let mut w = Writer(&mut self.buf);
        w.u32(0); // len
        w.u32(0); // crc
        w.u64(first_seq);
        w.u32(0); // count
    }

    /// Fill in the open frame's length, count and checksum.
    fn close_frame(&mut self) {
        if self.frame_records == 0 {
            return;
        }
        let start = self.frame_start;
        let len = self.buf.len() - start - FRAME_HEADER_BYTES;
        let len = u32::try_from(len).expect("a frame of FRAME_RECORDS_MAX records fits u32");
        let count_at = start + FRAME_HEADER_BYTES + 8;
        self.buf[count_at..count_at + 4].copy_from_slice(&self.frame_records.to_le_bytes());
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(
            crc32c::crc32c(&len.to_le_bytes()),
            &self.buf[start + FRAME_HEADER_BYTES..],
        );
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        self.frame_records = 0;
    }

    /// Make everything pushed since the last commit durable per the mode: one write of all
    /// its frames and, for [`Durability::Sync`], one fdatasync. Nothing pushed: no I/O
    /// (except a due Async sync). Call before releasing the decisions of the records pushed.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.poisoned {
            return Err(poisoned());
        }
        if self.durability == Durability::None {
            self.committed_seq = self.next_seq;
            return Ok(());
        }
        self.close_frame();
        if self.buf.is_empty() {
            return self.sync_if_due().map(|_| ());
        }
        let result = self.write_batch();
        if result.is_err() {
            self.poisoned = true;
        }
        result
    }

    /// [`JournalWriter::push`] every record, then [`JournalWriter::commit`]: the whole batch
    /// is one write and at most one fdatasync.
    #[cfg(test)]
    pub fn append_batch(&mut self, records: &[(Request, Code)]) -> io::Result<()> {
        for (request, code) in records {
            self.push(request, *code);
        }
        self.commit()
    }

    fn write_batch(&mut self) -> io::Result<()> {
        let bytes = self.buf.len() as u64;
        let first_seq = self.committed_seq;
        let roll = match self.file {
            None => true,
            Some(_) => {
                self.segment_bytes > SEGMENT_HEADER_BYTES as u64
                    && self.segment_bytes + bytes > self.segment_bytes_max
            }
        };
        if roll {
            self.start_segment(first_seq)?;
        }
        let file = self.file.as_mut().expect("a segment is open");
        file.write_all(&self.buf)?;
        self.segment_bytes += bytes;
        self.stats.bytes += bytes;
        self.stats.batches += 1;
        self.stats.records += self.next_seq - self.committed_seq;
        self.buf.clear();
        self.committed_seq = self.next_seq;
        self.dirty = true;
        match self.durability {
            Durability::Sync => self.sync_now(),
            Durability::Async { .. } => self.sync_if_due().map(|_| ()),
            Durability::None => unreachable!("None writes nothing"),
        }
    }

    /// Close the current segment (synced, so an older segment is never less durable than a
    /// newer one) and start `journal-{first_seq}.log` with its header.
    fn start_segment(&mut self, first_seq: u64) -> io::Result<()> {
        if self.file.is_some() {
            self.sync_now()?;
            self.file = None;
        }
        let path = self.dir.join(segment_name(first_seq));
        // create_new: never overwrite a segment (recovery removes an empty last one).
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let header = segment_header(self.shard, first_seq);
        file.write_all(&header)?;
        // The directory entry must be durable for the data synced into the file to be found;
        // the header itself becomes durable with the first batch's fdatasync.
        sync_dir(&self.dir)?;
        self.file = Some(file);
        self.segment_bytes = SEGMENT_HEADER_BYTES as u64;
        self.stats.bytes += SEGMENT_HEADER_BYTES as u64;
        self.stats.segments += 1;
        self.dirty = true;
        Ok(())
    }

    fn sync_now(&mut self) -> io::Result<()> {
        if let (true, Some(file)) = (self.dirty, self.file.as_ref()) {
            if let Err(e) = file.sync_data() {
                // After a failed fsync the page cache may have dropped the data: never retry.
                self.poisoned = true;
                return Err(e);
            }
            self.stats.syncs += 1;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// fdatasync now if anything written is not yet durable (shutdown, or a host that
    /// wants a point of durability under Async). A no-op for None and when nothing is dirty.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.poisoned {
            return Err(poisoned());
        }
        self.sync_now()
    }

    /// Under [`Durability::Async`], fdatasync if data is dirty and `interval` has passed
    /// since the last sync; returns whether it synced. Call it when the shard goes idle so
    /// the tail does not stay unsynced while no batches arrive. A no-op for the other modes.
    pub fn sync_if_due(&mut self) -> io::Result<bool> {
        if self.poisoned {
            return Err(poisoned());
        }
        let Durability::Async { interval } = self.durability else {
            return Ok(false);
        };
        if !self.dirty || self.last_sync.elapsed() < interval {
            return Ok(false);
        }
        self.sync_now().map(|()| true)
    }

    /// Lower the records-per-frame limit (tests of multi-frame commits).
    #[cfg(test)]
    pub(crate) fn set_frame_records_max(&mut self, max: u32) {
        assert!(max > 0 && self.frame_records == 0);
        self.frame_records_max = max;
    }
}

impl Drop for JournalWriter {
    /// Best effort for a writer dropped without a final [`JournalWriter::sync`] (Async).
    fn drop(&mut self) {
        if !self.poisoned {
            let _ = self.sync_now();
        }
    }
}

fn poisoned() -> io::Error {
    io::Error::other(
        "journal writer is poisoned by an earlier write or sync failure; restart and recover",
    )
}
