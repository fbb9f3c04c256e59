//! Where a forward pass spends its time, per op kind and weight type
//! (`ember bench --per-type`), so the next slow path is measured, not
//! guessed. Off unless a session asks for it ([`crate::Session::set_profiling`]);
//! then each product (and attention) is timed by the wall clock of its
//! parallel region, which is what the token waits for.

use crate::time::Instant;

use crate::quant::GgmlType;

/// What a timed region did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Products with weights of this type.
    Matmul(GgmlType),
    /// Attention over the KV cache (scores, softmax, weighted values).
    Attention,
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpKind::Matmul(ty) => write!(f, "matmul {ty}"),
            OpKind::Attention => f.write_str("attention"),
        }
    }
}

/// Totals of one [`OpKind`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OpStat {
    pub calls: u64,
    pub ns: u64,
    /// Weight bytes the products read (0 for attention).
    pub bytes: u64,
}

/// Accumulated [`OpStat`]s, in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct OpProfile {
    pub ops: Vec<(OpKind, OpStat)>,
}

impl OpProfile {
    /// Adds one region of `ns` to `kind`.
    pub fn add(&mut self, kind: OpKind, ns: u64, bytes: u64) {
        let i = match self.ops.iter().position(|(k, _)| *k == kind) {
            Some(i) => i,
            None => {
                self.ops.push((kind, OpStat::default()));
                self.ops.len() - 1
            }
        };
        let s = &mut self.ops[i].1;
        s.calls += 1;
        s.ns += ns;
        s.bytes += bytes;
    }

    /// Total timed nanoseconds.
    pub fn total_ns(&self) -> u64 {
        self.ops.iter().map(|(_, s)| s.ns).sum()
    }
}

/// Runs `f`, adding its wall time to `kinds` (split in proportion to their
/// weight bytes when one region runs several products) if `profile` is on.
pub(crate) fn timed<R>(profile: &mut Option<OpProfile>, kinds: &[(OpKind, u64)], f: impl FnOnce() -> R) -> R {
    if profile.is_none() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let ns = t.elapsed().as_nanos() as u64;
    if let Some(p) = profile {
        let total: u64 = kinds.iter().map(|k| k.1).sum();
        for &(kind, bytes) in kinds {
            let share = if total == 0 { ns / kinds.len().max(1) as u64 } else { (ns as u128 * bytes as u128 / total as u128) as u64 };
            p.add(kind, share, bytes);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_split_by_bytes_and_accumulate() {
        let mut p = Some(OpProfile::default());
        let kinds = [(OpKind::Matmul(GgmlType::Q4_K), 3), (OpKind::Matmul(GgmlType::Q6_K), 1)];
        timed(&mut p, &kinds, || std::thread::sleep(std::time::Duration::from_millis(4)));
        timed(&mut p, &[(OpKind::Attention, 0)], || ());
        let p = p.unwrap();
        assert_eq!(p.ops.len(), 3);
        let (q4, q6) = (p.ops[0].1, p.ops[1].1);
        assert_eq!((q4.calls, q4.bytes, q6.bytes), (1, 3, 1));
        assert!(q4.ns >= 3_000_000 && q4.ns / 3 <= q6.ns + 1 && q6.ns <= q4.ns, "{q4:?} {q6:?}");
        assert_eq!(p.ops[2].0, OpKind::Attention);
        assert_eq!(p.total_ns(), p.ops.iter().map(|o| o.1.ns).sum::<u64>());
        // Off: nothing recorded, the closure still runs.
        let mut off = None;
        assert_eq!(timed(&mut off, &kinds, || 7), 7);
        assert!(off.is_none());
    }
}
