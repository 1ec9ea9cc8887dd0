//! The state directory's file names and listings: `shard-{k}/journal-{first_seq:020}.log`,
//! `shard-{k}/snapshot-{seq:020}.snap`, temporaries, and directory fsync.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Suffix of a file being written before its atomic rename.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `dir/shard-{k}`.
pub(crate) fn shard_dir(root: &Path, shard: usize) -> PathBuf {
    root.join(format!("shard-{shard}"))
}

/// `journal-{first_seq:020}.log`: zero-padded so names sort like numbers.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("journal-{first_seq:020}.log")
}

/// `snapshot-{seq:020}.snap`.
pub(crate) fn snapshot_name(seq: u64) -> String {
    format!("snapshot-{seq:020}.snap")
}

/// The number in `{prefix}{20 digits}{suffix}`, if `name` is exactly that.
fn parse_seq(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What one shard directory holds, each list sorted by sequence number ascending.
#[derive(Debug, Default)]
pub(crate) struct ShardFiles {
    /// `(first_seq, path)` of journal segments.
    pub segments: Vec<(u64, PathBuf)>,
    /// `(seq, path)` of snapshots.
    pub snapshots: Vec<(u64, PathBuf)>,
    /// Leftover temporaries of an interrupted snapshot write (never read).
    pub temporaries: Vec<PathBuf>,
}

/// List a shard directory. Files that match no pattern are left alone and ignored.
pub(crate) fn list_shard(dir: &Path) -> io::Result<ShardFiles> {
    let mut files = ShardFiles::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if let Some(seq) = parse_seq(&name, "journal-", ".log") {
            files.segments.push((seq, path));
        } else if let Some(seq) = parse_seq(&name, "snapshot-", ".snap") {
            files.snapshots.push((seq, path));
        } else if name.starts_with("snapshot-") && name.ends_with(TMP_SUFFIX) {
            files.temporaries.push(path);
        }
    }
    files.segments.sort_unstable();
    files.snapshots.sort_unstable();
    files.temporaries.sort_unstable();
    Ok(files)
}

/// fsync a directory, so entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` atomically: a temporary beside it, fsync, rename, fsync the
/// directory. A crash leaves either the old file (or none) or the new one, never a mix.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp = tmp_path(path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// `path` with [`TMP_SUFFIX`] appended.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_numbers_and_parse_back() {
        assert_eq!(segment_name(42), "journal-00000000000000000042.log");
        assert_eq!(
            snapshot_name(u64::MAX),
            "snapshot-18446744073709551615.snap"
        );
        assert_eq!(parse_seq(&segment_name(42), "journal-", ".log"), Some(42));
        assert_eq!(parse_seq("journal-42.log", "journal-", ".log"), None);
        assert_eq!(
            parse_seq("journal-0000000000000000004x.log", "journal-", ".log"),
            None
        );
        assert_eq!(
            parse_seq("journal-99999999999999999999.log", "journal-", ".log"),
            None
        );
        assert!(segment_name(9) < segment_name(10));
    }

    #[test]
    fn listing_classifies_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            segment_name(10),
            segment_name(2),
            snapshot_name(7),
            format!("{}{TMP_SUFFIX}", snapshot_name(9)),
            "notes.txt".to_string(),
        ] {
            fs::write(dir.path().join(name), b"x").unwrap();
        }
        let files = list_shard(dir.path()).unwrap();
        let seqs: Vec<u64> = files.segments.iter().map(|s| s.0).collect();
        assert_eq!(seqs, [2, 10]);
        assert_eq!(files.snapshots.len(), 1);
        assert_eq!(files.snapshots[0].0, 7);
        assert_eq!(files.temporaries.len(), 1);
    }
}
