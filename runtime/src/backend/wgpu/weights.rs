//! Weight upload: matrices repacked (repack.rs) and copied from the memory map
//! in chunks, split by rows into parts that each fit the device's storage
//! binding limit.

use super::device::GpuContext;
use super::kernels::GBuf;
use super::repack::{repack, Layout};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A band of rows `[r0, r0 + n_rows)` in its own buffers.
pub struct Part {
    pub r0: usize,
    pub n_rows: usize,
    pub wa: GBuf,
    pub wb: GBuf,
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

/// Bytes of repacked data staged per `write_buffer` during upload.
const CHUNK: usize = 8 << 20;

impl GpuMatrix {
    /// Uploads with each row zero-padded to a multiple of 32 elements (a
    /// layout's unit), for input widths the layouts can't take as they are
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
    /// tensor's bytes in the map).
    pub fn upload(ctx: &GpuContext, name: &str, ty: GgmlType, data: &[u8], n_in: usize, n_out: usize) -> Result<GpuMatrix> {
        let layout = Layout::for_type(ty);
        let (wa_w, wb_w) = layout.words_per_unit();
        let upr = n_in / 32;
        let (wa_row, wb_row) = ((upr * wa_w * 4) as u64, (upr * wb_w * 4) as u64);
        let max = ctx.profile.max_binding();
        let rows_per_part = (max / wa_row.max(wb_row).max(1)) as usize;
        if rows_per_part == 0 {
            return Err(Error::Backend(format!("{name}: one row ({} bytes) exceeds the binding limit {max}", wa_row.max(wb_row))));
        }
        let row_bytes = ty.row_size(n_in).ok_or_else(|| Error::InvalidParam(format!("{name}: bad row size")))?;
        let chunk_rows = (CHUNK / row_bytes.max(1)).max(1);
        let mut parts = Vec::new();
        let mut r0 = 0;
        while r0 < n_out {
            let n_rows = rows_per_part.min(n_out - r0);
            let wa = GBuf::new(ctx, name, wa_row * n_rows as u64, wgpu::BufferUsages::empty());
            let wb = GBuf::new(ctx, name, wb_row * n_rows as u64, wgpu::BufferUsages::empty());
            let mut r = 0;
            while r < n_rows {
                let n = chunk_rows.min(n_rows - r);
                let src = &data[(r0 + r) * row_bytes..(r0 + r + n) * row_bytes];
                let rp = repack(ty, src, n_in, n)?;
                ctx.queue.write_buffer(&wa.buf, r as u64 * wa_row, bytemuck::cast_slice(&rp.wa));
                if !rp.wb.is_empty() {
                    ctx.queue.write_buffer(&wb.buf, r as u64 * wb_row, bytemuck::cast_slice(&rp.wb));
                }
                r += n;
            }
            parts.push(Part { r0, n_rows, wa, wb });
            r0 += n_rows;
        }
        if parts.len() > 1 {
            log::info!("wgpu: {name} split into {} parts of ≤ {rows_per_part} rows (binding limit {} MiB)", parts.len(), max >> 20);
        }
        Ok(GpuMatrix { name: name.into(), ty, layout, n_in, n_out, parts })
    }
}
