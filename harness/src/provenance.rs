//! Where a measurement came from, for its report: the dataset's digest, the build (version,
//! git revision, profile) and the machine (CPU model, cores, memory, kernel).

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Digest of one dataset file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// File name inside the dataset folder (or the file's own name).
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32C of the file's bytes, 8 lower-case hex digits.
    pub crc32c: String,
}

/// Digest of a dataset: each file, and one CRC-32C over all of them in the listed order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetDigest {
    /// Always `crc32c`.
    pub algorithm: String,
    /// CRC-32C over the bytes of every listed file, in order, 8 lower-case hex digits.
    pub combined: String,
    /// The files, sorted by name.
    pub files: Vec<FileDigest>,
}

/// Digest the dataset at `path`: a folder's `accounts.*`, `tokens.*` and `traffic.*` files
/// (whatever their format), or a single file.
pub fn digest_dataset(path: &Path) -> Result<DatasetDigest> {
    let mut files = Vec::new();
    if path.is_dir() {
        let entries =
            fs::read_dir(path).with_context(|| format!("cannot list {}", path.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let part_of_dataset = ["accounts", "tokens", "traffic"]
                .iter()
                .any(|stem| name == *stem || name.starts_with(&format!("{stem}.")));
            if part_of_dataset && entry.path().is_file() {
                files.push((name, entry.path()));
            }
        }
        files.sort();
    } else {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        files.push((name, path.to_path_buf()));
    }
    let mut combined = 0u32;
    let mut out = Vec::with_capacity(files.len());
    let mut buf = vec![0u8; 1 << 20];
    for (name, file_path) in files {
        let mut file = File::open(&file_path)
            .with_context(|| format!("cannot open {}", file_path.display()))?;
        let (mut crc, mut bytes) = (0u32, 0u64);
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", file_path.display()))?;
            if n == 0 {
                break;
            }
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            combined = crc32c::crc32c_append(combined, &buf[..n]);
            bytes += n as u64;
        }
        out.push(FileDigest {
            name,
            bytes,
            crc32c: format!("{crc:08x}"),
        });
    }
    Ok(DatasetDigest {
        algorithm: "crc32c".into(),
        combined: format!("{combined:08x}"),
        files: out,
    })
}

/// The build that ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// Crate version of payauth-harness.
    pub version: String,
    /// `git rev-parse HEAD` of the source tree at build time, or `unknown`.
    pub git_revision: String,
    /// `release` or `debug` (whether debug assertions were on).
    pub profile: String,
}

impl BuildInfo {
    /// This binary's build.
    pub fn current() -> BuildInfo {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            git_revision: option_env!("PAYAUTH_GIT_REVISION")
                .unwrap_or("unknown")
                .into(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
        }
    }
}

/// The machine a run happened on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model (`model name` in /proc/cpuinfo), or `unknown`.
    pub cpu_model: String,
    /// Cores this process may use (`available_parallelism`).
    pub cores: usize,
    /// Logical CPUs the machine has (`processor` lines in /proc/cpuinfo), when known.
    pub logical_cpus: Option<usize>,
    /// Physical memory (`MemTotal` in /proc/meminfo), when known.
    pub memory_bytes: Option<u64>,
    /// Operating system (`linux`, ...).
    pub os: String,
    /// CPU architecture (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Kernel release (/proc/sys/kernel/osrelease), when known.
    pub kernel: Option<String>,
}

impl MachineInfo {
    /// Look at this machine.
    pub fn current() -> MachineInfo {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
        };
        let cpu_model = field("model name")
            .or_else(|| field("Hardware"))
            .or_else(|| field("Processor"))
            .or_else(|| field("uarch"))
            .unwrap_or_else(|| "unknown".into());
        let logical_cpus = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let memory_bytes = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find_map(|l| {
                    let rest = l.strip_prefix("MemTotal:")?;
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
            .map(|kb| kb * 1024);
        MachineInfo {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            logical_cpus: (logical_cpus > 0).then_some(logical_cpus),
            memory_bytes,
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_covers_the_dataset_files_only() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("accounts.csv"), "a").unwrap();
        fs::write(dir.path().join("tokens.csv"), "b").unwrap();
        fs::write(dir.path().join("traffic.csv"), "c").unwrap();
        fs::write(dir.path().join("README.md"), "not data").unwrap();
        let d = digest_dataset(dir.path()).unwrap();
        let names: Vec<_> = d.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["accounts.csv", "tokens.csv", "traffic.csv"]);
        // Combined = CRC-32C of the concatenation in that order.
        assert_eq!(d.combined, format!("{:08x}", crc32c::crc32c(b"abc")));
        assert_eq!(d.files[0].crc32c, format!("{:08x}", crc32c::crc32c(b"a")));
        assert_eq!(d.files[2].bytes, 1);
    }

    #[test]
    fn machine_and_build_are_described() {
        let m = MachineInfo::current();
        assert!(m.cores >= 1);
        assert!(!m.cpu_model.is_empty());
        let b = BuildInfo::current();
        assert_eq!(b.profile == "debug", cfg!(debug_assertions));
        assert!(!b.git_revision.is_empty());
    }
}
