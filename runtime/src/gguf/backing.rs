//! Where a GGUF file's bytes live: a read-only file mapping, a buffer we own,
//! or an anonymous (optionally huge-page) copy. The parser only ever sees
//! `&[u8]`; this module is the only place that maps, copies or releases pages.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

pub(super) enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
    /// A copy in anonymous memory ([`Backing::copy_to_anon`]).
    Anon(Mmap),
}

impl Backing {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
            Backing::Anon(m) => m,
        }
    }

    /// Whether the bytes are a file mapping (rather than memory of our own).
    pub(super) fn is_mapped(&self) -> bool {
        matches!(self, Backing::Mmap(_))
    }

    /// Maps a whole file read-only.
    pub(super) fn map_file(path: &Path) -> Result<Backing> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        // stat first: opening a FIFO would block until a writer comes, and
        // mapping a directory or a device says only "No such device".
        let meta = std::fs::metadata(path).map_err(io)?;
        if !meta.is_file() {
            let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, FIFO or socket)" };
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{kind}, not a GGUF model file"))));
        }
        if meta.len() == 0 {
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the file is empty")));
        }
        let file = File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap-based loader we rely on
        // the file not being truncated by another process while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Ok(Backing::Mmap(map))
    }

    /// Maps `len` bytes of an open file from byte `offset` (`len == 0`: to
    /// the end of the file). `what` names the source in error messages.
    pub(super) fn map_file_range(file: &File, offset: u64, len: u64, what: &str) -> Result<Backing> {
        let io = |source| Error::Io { path: what.into(), source };
        let size = file.metadata().map_err(io)?.len();
        let len = if len == 0 { size.saturating_sub(offset) } else { len };
        if offset.checked_add(len).is_none_or(|end| end > size) || len == 0 {
            let msg = format!("range {offset}+{len} lies outside the file ({size} bytes)");
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)));
        }
        let len = usize::try_from(len).map_err(|_| io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "range too large")))?;
        // SAFETY: as in `map_file`. memmap2 aligns the offset to a page internally.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(file) }.map_err(io)?;
        Ok(Backing::Mmap(map))
    }

    /// The same bytes copied into anonymous memory, backed by transparent
    /// huge pages when `huge` and the OS offers them (Linux). For the CPU
    /// backend: generation streams every weight once per token, and with
    /// 4 KiB pages each 4 KiB costs a TLB miss, a two-level walk in a VM (see
    /// docs/PERFORMANCE.md: +30% tokens/s on a 2B model). The copy goes in
    /// 4 MiB pieces, each piece of a file mapping released as soon as it is
    /// copied, so resident memory stays about one copy of the file.
    /// Runs on rayon's global pool.
    pub(super) fn copy_to_anon(&self, huge: bool) -> std::io::Result<Backing> {
        const PIECE: usize = 4 << 20;
        let src = self.bytes();
        let mut dst = memmap2::MmapMut::map_anon(src.len().max(1))?;
        #[cfg(target_os = "linux")]
        if huge {
            // Only a hint: without THP the copy still works, in small pages.
            if let Err(e) = dst.advise(memmap2::Advice::HugePage) {
                log::debug!("madvise(MADV_HUGEPAGE): {e}");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = huge;
        // In parallel: most of the time goes to the kernel zeroing the new
        // pages (and, in a VM, the host backing them), done by the thread
        // that touches them first.
        use rayon::prelude::*;
        dst.par_chunks_mut(PIECE).zip(src.par_chunks(PIECE)).enumerate().for_each(|(i, (d, s))| {
            d.copy_from_slice(s);
            #[cfg(not(unix))]
            let _ = i;
            #[cfg(unix)]
            if let Backing::Mmap(m) = self {
                // SAFETY: a read-only file mapping: after MADV_DONTNEED its
                // pages read back from the file, the same bytes; this only
                // drops them from our resident set.
                let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, i * PIECE, s.len()) };
            }
        });
        Ok(Backing::Anon(dst.make_read_only()?))
    }
}
