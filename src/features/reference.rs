//! From-scratch recomputation of the 82 features over a sequence of closed buckets: every window
//! statistic computed directly from the rows (plain sums, two-pass std, scans, sorting), no
//! running state. The property tests hold the incremental engine to it; `check` uses it for the
//! seed's non-causal definitions; the window gather reuses `direct_windows` for past rows.

use super::bucket::{RawRow, A_AVG_CPU, A_AVG_MEMORY, A_MACHINES};
use super::defs::{
    assemble, code_events, code_unit, decode_events, labels_from_counts, Labels, Parts, Rank,
    TimeParts, LAGS, MAS, ROLLS,
};
use super::state::CoreRow;
use super::FeatureVector;

/// `(lags, moving averages, rolling stats)` as in [`Parts`].
pub(crate) type Windows = ([[f64; 3]; 6], [[f64; 3]; 5], [[f64; 3]; 2]);

/// Lags, moving averages and rolling stats of row `t`, computed directly from `row(seq)`
/// (which must answer for `t-47 ..= t`, clamped at 0). Sums run oldest to newest in `f64`;
/// on canonical rows they are exact, like the engine's fixed-point sums.
pub(crate) fn direct_windows(row: impl Fn(u64) -> CoreRow, t: u64) -> Windows {
    let mut lags = [[0.0; 3]; 6];
    for (i, &k) in LAGS.iter().enumerate() {
        let c = row(t.saturating_sub(k as u64));
        lags[i] = [c.series(0), c.series(1), c.series(2)];
    }
    let mut mas = [[0.0; 3]; 5];
    for (i, &k) in MAS.iter().enumerate() {
        let from = (t + 1).saturating_sub(k as u64);
        let n = (t + 1 - from) as f64;
        for (s, m) in mas[i].iter_mut().enumerate() {
            *m = (from..=t).map(|q| row(q).series(s)).sum::<f64>() / n;
        }
    }
    let mut rolls = [[0.0; 3]; 2];
    for (i, &k) in ROLLS.iter().enumerate() {
        let from = (t + 1).saturating_sub(k as u64);
        let xs: Vec<f64> = (from..=t).map(|q| row(q).events).collect();
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let std = if xs.len() < 2 {
            0.0
        } else {
            (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
        rolls[i] = [std, max, min];
    }
    (lags, mas, rolls)
}

fn core(r: &RawRow) -> CoreRow {
    CoreRow {
        events: r.total_events,
        machines: r.aggregates[A_MACHINES],
        cpu: r.aggregates[A_AVG_CPU],
    }
}

/// Rank of `x` among `values` (the window, which contains `x`).
fn rank_of<T: PartialOrd + Copy>(values: impl Iterator<Item = T>, x: T) -> Rank {
    let (mut lt, mut le, mut n) = (0, 0, 0);
    for v in values {
        n += 1;
        lt += usize::from(v < x);
        le += usize::from(v <= x);
    }
    Rank { lt, le, n }
}

/// The labels of row `t` with the causal definition: rank in the trailing `history` rows.
pub(crate) fn causal_labels(rows: &[(i64, RawRow)], t: usize, history: usize) -> Labels {
    let w = &rows[(t + 1).saturating_sub(history)..=t];
    let ev = |r: &(i64, RawRow)| code_events(r.1.total_events);
    let cpu = |r: &(i64, RawRow)| code_unit(r.1.aggregates[A_AVG_CPU]);
    let mem = |r: &(i64, RawRow)| code_unit(r.1.aggregates[A_AVG_MEMORY]);
    let x = &rows[t];
    let lo = w.iter().map(ev).min().unwrap_or(0);
    let hi = w.iter().map(ev).max().unwrap_or(0);
    labels_from_counts(
        rank_of(w.iter().map(ev), ev(x)),
        rank_of(w.iter().map(cpu), cpu(x)),
        rank_of(w.iter().map(mem), mem(x)),
        decode_events(ev(x)),
        decode_events(lo),
        decode_events(hi),
    )
}

/// Recomputes every row's vector from scratch. `rows` are consecutive closed buckets
/// `(start_ms, row)`; `history` is `history_buckets`.
pub fn recompute(
    rows: &[(i64, RawRow)],
    history: usize,
    utc_offset_secs: i32,
) -> Vec<FeatureVector> {
    recompute_tail(rows, history, utc_offset_secs, rows.len())
}

/// [`recompute`] for the last `n` rows only (each still from scratch over all rows before it).
pub fn recompute_tail(
    rows: &[(i64, RawRow)],
    history: usize,
    utc_offset_secs: i32,
    n: usize,
) -> Vec<FeatureVector> {
    (rows.len().saturating_sub(n)..rows.len())
        .map(|t| {
            let (lags, mas, rolls) = direct_windows(|q| core(&rows[q as usize].1), t as u64);
            assemble(&Parts {
                row: rows[t].1,
                time: TimeParts::at(rows[t].0, utc_offset_secs),
                labels: causal_labels(rows, t, history),
                lags,
                mas,
                rolls,
            })
        })
        .collect()
}

/// The seed's own (non-causal) quantile family: every row ranked against *all* rows of the file,
/// exact values, no codes (`pd.qcut`/`pd.cut`/`quantile` over the whole column). Used by `check`
/// to show the definitions agree once the window is the whole file.
pub fn seed_global_labels(events: &[f64], cpu: &[f64], memory: &[f64]) -> Vec<Labels> {
    let sorted = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s
    };
    let (se, sc, sm) = (sorted(events), sorted(cpu), sorted(memory));
    let rank = |s: &[f64], x: f64| Rank {
        lt: s.partition_point(|v| *v < x),
        le: s.partition_point(|v| *v <= x),
        n: s.len(),
    };
    let lo = se.first().copied().unwrap_or(0.0);
    let hi = se.last().copied().unwrap_or(0.0);
    (0..events.len())
        .map(|i| {
            labels_from_counts(
                rank(&se, events[i]),
                rank(&sc, cpu[i]),
                rank(&sm, memory[i]),
                events[i],
                lo,
                hi,
            )
        })
        .collect()
}
