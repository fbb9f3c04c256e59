//! Weight upload: each matrix's GGUF bytes (layout.rs) copied from the memory
//! map in chunks, split by rows into parts that each fit the device's storage
//! binding limit. [`plan`] decides the parts and their buffer sizes; upload
//! allocates exactly what it says, so the resident size of a model can be
//! computed without a device (`gpu_weight_bytes`).

use super::device::GpuContext;
use super::kernels::GBuf;
use super::layout::Layout;
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A band of rows `[r0, r0 + n_rows)` in its own buffer.
pub struct Part {
    pub r0: usize,
    pub n_rows: usize,
    /// The rows' bytes as in the file, zero-padded to a whole word.
    pub wa: GBuf,
}

pub struct GpuMatrix {
    pub name: String,
    /// The ggml type it came from.
    pub ty: GgmlType,
    pub layout: Layout,
    pub n_in: usize,
    pub n_out: usize,
    pub parts: Vec<Part>,
}

/// One part of a matrix as [`plan`] lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    pub r0: usize,
    pub n_rows: usize,
    /// Bytes of its buffer (the rows' bytes rounded up to a whole u32; at
    /// least 16, as every [`GBuf`]).
    pub bytes: u64,
}

/// Bytes copied per `write_buffer` during upload.
const CHUNK: usize = 8 << 20;

/// The row parts of an `n_out × n_in` matrix of `ty` under a storage binding
/// limit of `max_binding` bytes: as many whole rows per part as fit.
pub fn plan(ty: GgmlType, n_in: usize, n_out: usize, max_binding: u64) -> Result<Vec<PartPlan>> {
    let layout = Layout::for_type(ty)?;
    if !n_in.is_multiple_of(32) {
        return Err(Error::UnsupportedType { ty: ty.name().into(), what: format!("wgpu rows of {n_in} elements (need a multiple of 32)") });
    }
    let row = layout.bytes(n_in, 1)?.max(1);
    let row_bytes = ty.row_size(n_in).unwrap_or(0).max(1) as u64;
    // Whole rows, and the part's size rounded up to a word stays ≤ the limit.
    let rows_per_part = ((max_binding & !3) / row_bytes) as usize;
    if rows_per_part == 0 {
        return Err(Error::Backend(format!("one row of {n_in} {ty} elements ({row} bytes) exceeds the binding limit {max_binding}")));
    }
    let mut parts = Vec::new();
    let mut r0 = 0;
    while r0 < n_out {
        let n_rows = rows_per_part.min(n_out - r0);
        parts.push(PartPlan { r0, n_rows, bytes: layout.bytes(n_in, n_rows)?.max(16) });
        r0 += n_rows;
    }
    Ok(parts)
}

impl GpuMatrix {
    /// Uploads with each row zero-padded to a multiple of 32 elements (a
    /// shader unit), for input widths the kernels can't take as they are
    /// (MiniCPM3's q_lora_rank is 48 in the fixtures): `n_in` becomes
    /// `n_in.next_multiple_of(32)`, so products read activation rows of that
    /// stride, which the caller fills with zeros past the real width. Only
    /// plain element types (F32, F16, BF16: blocks of 1) can have such widths;
    /// zero bytes are 0.0 in each.
    pub fn upload_padded(ctx: &GpuContext, name: &str, ty: GgmlType, data: &[u8], n_in: usize, n_out: usize) -> Result<GpuMatrix> {
        let n_pad = n_in.next_multiple_of(32);
        if n_pad == n_in {
            return GpuMatrix::upload(ctx, name, ty, data, n_in, n_out);
        }
        if ty.block_size() != 1 {
            return Err(Error::Backend(format!("{name}: rows of {n_in} {} elements are not supported on wgpu", ty.name())));
        }
        let (rb, pb) = (n_in * ty.type_size(), n_pad * ty.type_size());
        if data.len() != rb * n_out {
            return Err(Error::InvalidParam(format!("{name}: {} bytes for {n_out} rows of {rb}", data.len())));
        }
        let mut padded = vec![0u8; pb * n_out];
        for (dst, src) in padded.chunks_exact_mut(pb).zip(data.chunks_exact(rb)) {
            dst[..rb].copy_from_slice(src);
        }
        GpuMatrix::upload(ctx, name, ty, &padded, n_pad, n_out)
    }

    /// Uploads `n_out` rows of `n_in` elements of `ty` from `data` (the
    /// tensor's bytes in the map), as they are, in the parts [`plan`] gives.
    pub fn upload(ctx: &GpuContext, name: &str, ty: GgmlType, data: &[u8], n_in: usize, n_out: usize) -> Result<GpuMatrix> {
        let layout = Layout::for_type(ty).map_err(|e| Error::Backend(format!("{name}: {e}")))?;
        let plans = plan(ty, n_in, n_out, ctx.profile.max_binding()).map_err(|e| Error::Backend(format!("{name}: {e}")))?;
        let row_bytes = ty.row_size(n_in).ok_or_else(|| Error::InvalidParam(format!("{name}: bad row size")))?;
        if data.len() != row_bytes * n_out {
            return Err(Error::InvalidParam(format!("{name}: {} bytes for {n_out} rows of {row_bytes}", data.len())));
        }
        // write_buffer needs 4-byte offsets and sizes: chunks of a multiple of
        // 4 rows start at a word; the last chunk of a part is zero-padded.
        let chunk_rows = (CHUNK / row_bytes.max(1)).max(4) & !3;
        let mut parts = Vec::with_capacity(plans.len());
        for p in &plans {
            let wa = GBuf::new(ctx, name, p.bytes, wgpu::BufferUsages::empty());
            debug_assert_eq!(wa.size, p.bytes, "the planner's size is what is allocated");
            let mut r = 0;
            while r < p.n_rows {
                let n = chunk_rows.min(p.n_rows - r);
                let src = &data[(p.r0 + r) * row_bytes..(p.r0 + r + n) * row_bytes];
                let off = (r * row_bytes) as u64;
                let whole = src.len() & !3;
                if whole > 0 {
                    ctx.queue.write_buffer(&wa.buf, off, &src[..whole]);
                }
                if whole < src.len() {
                    let mut tail = [0u8; 4];
                    tail[..src.len() - whole].copy_from_slice(&src[whole..]);
                    ctx.queue.write_buffer(&wa.buf, off + whole as u64, &tail);
                }
                r += n;
            }
            parts.push(Part { r0: p.r0, n_rows: p.n_rows, wa });
        }
        if parts.len() > 1 {
            log::info!(
                "wgpu: {name} split into {} parts of ≤ {} rows (binding limit {} MiB)",
                parts.len(),
                plans[0].n_rows,
                ctx.profile.max_binding() >> 20
            );
        }
        Ok(GpuMatrix { name: name.into(), ty, layout, n_in, n_out, parts })
    }

    /// Bytes of this matrix's buffers on the device.
    pub fn device_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.wa.size).sum()
    }
}

/// A weight read element by element with any strides (MLA's kv_b through
/// head_matmul.wgsl): its GGUF bytes in one buffer, not split by rows.
pub struct GpuDense {
    pub ty: GgmlType,
    pub layout: Layout,
    pub wa: GBuf,
}

impl GpuDense {
    /// Uploads `n_out` rows of `n_in` elements of `ty` from `data`, as they are.
    pub fn upload(ctx: &GpuContext, name: &str, ty: GgmlType, data: &[u8], n_in: usize, n_out: usize) -> Result<GpuDense> {
        let layout = Layout::for_type(ty).map_err(|e| Error::Backend(format!("{name}: {e}")))?;
        let bytes = layout.bytes(n_in, n_out)?;
        if ty.row_size(n_in).map(|r| r * n_out) != Some(data.len()) {
            return Err(Error::InvalidParam(format!("{name}: {} bytes for {n_out} rows of {n_in} {ty}", data.len())));
        }
        if bytes > ctx.profile.max_binding() {
            return Err(Error::Backend(format!("{name}: {bytes} bytes exceed the binding limit {}", ctx.profile.max_binding())));
        }
        // A unit read past the end (F32/F16/BF16 rows need not be whole
        // units) is bounds-checked by wgpu; those elements are never used.
        let wa = GBuf::new(ctx, name, bytes, wgpu::BufferUsages::empty());
        let whole = data.len() & !3;
        if whole > 0 {
            ctx.queue.write_buffer(&wa.buf, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            ctx.queue.write_buffer(&wa.buf, whole as u64, &tail);
        }
        Ok(GpuDense { ty, layout, wa })
    }
}
