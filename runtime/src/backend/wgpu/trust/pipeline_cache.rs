//! wgpu's pipeline cache (`Features::PIPELINE_CACHE`, Vulkan) stored on disk
//! per adapter and Ember version (the directory is keyed, see
//! [`super::AdapterKey`]), so the driver's shader compiles are skipped on
//! later starts.
//!
//! The data is only handed to the driver when it is exactly what we wrote:
//! the file is `EMBERPC1`, the data length (u64 LE), an FNV-1a 64 hash of the
//! data (u64 LE), then the data. Anything else (truncated, corrupted, another
//! format) is ignored with a warning, and the file is rewritten at the next
//! save (wgpu's own header check would catch most of this, but a driver
//! should never be given bytes we cannot vouch for). Writes go to a
//! temporary file renamed over the old one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"EMBERPC1";

/// What a start found in the cache file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheState {
    /// No file: a cold start.
    Missing,
    /// A valid file of this many bytes was given to the driver.
    Loaded(usize),
    /// A file was there but not valid: ignored, rewritten at the next save.
    Corrupt,
    /// The adapter has no `PIPELINE_CACHE`, or no cache directory.
    Unsupported,
}

impl CacheState {
    pub fn describe(&self) -> String {
        match self {
            CacheState::Missing => "cold (no cache file)".into(),
            CacheState::Loaded(n) => format!("warm ({n} bytes loaded)"),
            CacheState::Corrupt => "corrupt file ignored (rewritten)".into(),
            CacheState::Unsupported => "unsupported".into(),
        }
    }
}

/// The device's pipeline cache and the file it is saved to.
#[derive(Debug)]
pub struct PipelineStore {
    pub cache: wgpu::PipelineCache,
    pub path: PathBuf,
    pub state: CacheState,
    /// `Kernels::created()` at the last save: saved again only when it grew.
    saved_at: AtomicU64,
}

fn fnv1a(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The cache data in a file's bytes, or `None` when the file is not one we wrote intact.
pub fn decode(file: &[u8]) -> Option<&[u8]> {
    let rest = file.strip_prefix(MAGIC.as_slice())?;
    let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
    let hash = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
    let data = rest.get(16..)?;
    (data.len() as u64 == len && fnv1a(data) == hash).then_some(data)
}

pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(data.len() + 24);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&fnv1a(data).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

impl PipelineStore {
    /// Opens (or starts) the cache at `path` on `device`. `None` when the
    /// device was opened without `PIPELINE_CACHE`.
    pub fn open(device: &wgpu::Device, supported: bool, path: PathBuf) -> Option<PipelineStore> {
        if !supported {
            return None;
        }
        let (data, state) = match std::fs::read(&path) {
            Err(_) => (None, CacheState::Missing),
            Ok(bytes) => match decode(&bytes) {
                Some(d) => (Some(d.to_vec()), CacheState::Loaded(d.len())),
                None => {
                    log::warn!("wgpu pipeline cache {}: not a valid cache file; ignored, it will be rewritten", path.display());
                    (None, CacheState::Corrupt)
                }
            },
        };
        // SAFETY: `data` is exactly what `PipelineCache::get_data` returned
        // when we saved it (length and hash checked in `decode`), for this
        // adapter and Ember version (the directory's key); `fallback: true`
        // makes wgpu start empty if the driver still rejects it.
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("ember pipelines"),
                data: data.as_deref(),
                fallback: true,
            })
        };
        Some(PipelineStore { cache, path, state, saved_at: AtomicU64::new(0) })
    }

    /// Saves the cache when pipelines were created since the last save (or a
    /// corrupt file is to be replaced). Failures are logged, never fatal.
    pub fn save_if_grown(&self, created: u64) {
        let last = self.saved_at.load(Ordering::Relaxed);
        if created <= last {
            return;
        }
        self.saved_at.store(created, Ordering::Relaxed);
        let Some(data) = self.cache.get_data() else { return };
        match write_atomic(&self.path, &encode(&data)) {
            Ok(()) => log::info!("wgpu pipeline cache: {} bytes saved to {}", data.len(), self.path.display()),
            Err(e) => log::warn!("wgpu pipeline cache: cannot write {}: {e}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_intact_files_decode() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let file = encode(&data);
        assert_eq!(decode(&file), Some(&data[..]));
        // A flipped byte in the data, in the hash, a truncation, garbage, empty: all rejected.
        let mut bad = file.clone();
        bad[100] ^= 1;
        assert_eq!(decode(&bad), None);
        let mut bad = file.clone();
        bad[17] ^= 0x80;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&file[..file.len() - 1]), None);
        assert_eq!(decode(b"not a cache at all"), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(&encode(&[])), Some(&[][..]));
    }
}
