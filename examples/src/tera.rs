//! Hadoop's TeraSort suite: `teragen` makes 100-byte records, `terasort` sorts them by their
//! 10-byte keys (total order: the parts concatenated in name order are sorted), and
//! `teravalidate` checks the order and sums the records' CRC-32s.
//!
//! A record (as Hadoop's `GenSort`): the key (the top 10 bytes of a 128-bit LCG value),
//! `00 11`, the row number as 32 uppercase hex digits, `88 99 AA BB`, 48 filler bytes (4
//! copies each of hex digits 20..31 of the LCG value), `CC DD EE FF`. Record `i` uses the
//! `(i+1)`-th value after seed 0, found by jumping ahead, so the data does not depend on how
//! many map tasks make it.

use std::cell::Cell;

use quern_api::{
    InputFormat, Io, Job, JobError, MapContext, MapOnlyJob, OutputContext, OutputFormat, ParamError, Params,
    Partitioning, Record,
};

/// Bytes in a record.
pub const RECORD_LEN: usize = 100;
/// Bytes in a key.
pub const KEY_LEN: usize = 10;

const A: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;
const C: u128 = 0x4a69_6d47_7261_7952_4950_2020_2020_2001;
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The LCG value of record `row`: `x -> A*x + C mod 2^128` applied `row + 1` times to 0,
/// by composing the step with itself (O(log row)).
pub fn random_for_row(row: u64) -> u128 {
    let mut n = u128::from(row) + 1;
    // The step as x -> mul*x + add, squared each round; `acc` collects the steps taken.
    let (mut mul, mut add) = (A, C);
    let (mut acc_mul, mut acc_add) = (1u128, 0u128);
    while n > 0 {
        if n & 1 == 1 {
            acc_mul = mul.wrapping_mul(acc_mul);
            acc_add = mul.wrapping_mul(acc_add).wrapping_add(add);
        }
        add = mul.wrapping_mul(add).wrapping_add(add);
        mul = mul.wrapping_mul(mul);
        n >>= 1;
    }
    acc_add
}

thread_local! {
    /// The last (row, value) made on this thread: consecutive rows take one LCG step
    /// instead of a jump.
    static LAST: Cell<Option<(u64, u128)>> = const { Cell::new(None) };
}

fn value_for_row(row: u64) -> u128 {
    let v = match LAST.get() {
        Some((r, v)) if row > 0 && r == row - 1 => A.wrapping_mul(v).wrapping_add(C),
        _ => random_for_row(row),
    };
    LAST.set(Some((row, v)));
    v
}

/// Record `row`, as Hadoop's TeraGen writes it.
pub fn record(row: u64) -> [u8; RECORD_LEN] {
    let rand = value_for_row(row);
    let digit = |v: u128, i: usize| HEX[((v >> (4 * (31 - i))) & 0xF) as usize];
    let mut r = [0u8; RECORD_LEN];
    r[..KEY_LEN].copy_from_slice(&rand.to_be_bytes()[..KEY_LEN]);
    r[10] = 0x00;
    r[11] = 0x11;
    for i in 0..32 {
        r[12 + i] = digit(u128::from(row), i);
    }
    r[44..48].copy_from_slice(&[0x88, 0x99, 0xAA, 0xBB]);
    for i in 0..12 {
        r[48 + i * 4..52 + i * 4].fill(digit(rand, 20 + i));
    }
    r[96..].copy_from_slice(&[0xCC, 0xDD, 0xEE, 0xFF]);
    r
}

/// `teragen`: a map-only generator of `--param rows=N` records.
pub struct TeraGen {
    rows: u64,
}

impl TeraGen {
    /// Reads `rows`.
    pub fn from_params(p: &Params) -> Result<Self, ParamError> {
        let rows = p.require("rows")?;
        let rows = rows.parse().map_err(|e| ParamError {
            key: "rows".into(),
            reason: format!("{}: {e}", quern_api::registry::shown(rows)),
        })?;
        Ok(TeraGen { rows })
    }
}

impl MapOnlyJob for TeraGen {
    fn map(&self, rec: &Record<'_>, out: &mut OutputContext<'_>) -> Result<(), JobError> {
        out.emit_bytes(&record(rec.offset));
        Ok(())
    }

    fn io(&self) -> Io {
        Io::default().generate(self.rows).output(OutputFormat::Fixed(RECORD_LEN as u32))
    }
}

/// `terasort`: 100-byte records sorted by key across parts (sampled total order).
/// It takes no parameters (the client adds the sampled cut points).
pub struct TeraSort;

impl Job for TeraSort {
    /// The key's 10 bytes then the rest of the record: the shuffle sorts by key, and records
    /// with equal keys by the rest, so the output does not depend on task timing.
    type Key = Vec<u8>;
    type Value = ();

    fn map(&self, rec: &Record<'_>, ctx: &mut MapContext<'_, Vec<u8>, ()>) -> Result<(), JobError> {
        ctx.emit(rec.bytes, ());
        Ok(())
    }

    fn reduce(
        &self,
        rec: Vec<u8>,
        n: &mut dyn Iterator<Item = ()>,
        out: &mut OutputContext<'_>,
    ) -> Result<(), JobError> {
        // Identical records form one group: write each occurrence.
        for () in n {
            out.emit_bytes(&rec);
        }
        Ok(())
    }

    /// Cut points are sampled 10-byte keys; a whole record compares with a cut as its key
    /// does (a key equal to a cut sorts at or after it either way).
    fn partitioning(&self) -> Partitioning {
        Partitioning::total_order(|rec| Some(rec.bytes[..KEY_LEN.min(rec.bytes.len())].to_vec()))
    }

    fn io(&self) -> Io {
        Io::default().input(InputFormat::Fixed(RECORD_LEN as u32)).output(OutputFormat::Fixed(RECORD_LEN as u32))
    }
}

/// The CRC-32 (IEEE, as `java.util.zip.CRC32`) of one record.
pub fn record_crc(rec: &[u8]) -> u32 {
    crc32fast::hash(rec)
}

pub use crate::teravalidate::TeraValidate;
