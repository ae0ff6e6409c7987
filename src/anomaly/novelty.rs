//! Range novelty: a value that breaks out of the range the series has covered recently by more
//! than a tolerance (a fraction of that range) is a new extreme — the strongest single signal on
//! metrics (a latency never seen before, a traffic spike above every previous one, a drop below
//! every previous trough). "Recently" means the previous and the current block of
//! [`RangeNovelty::block`] points, so an old extreme is forgotten after one to two blocks and
//! the state stays four numbers.

#[derive(Debug, Clone, Copy)]
pub struct RangeNovelty {
    block: u32,
    n_in_block: u32,
    min: f64,
    max: f64,
    cur_min: f64,
    cur_max: f64,
}

impl RangeNovelty {
    pub fn new(block: u32) -> Self {
        RangeNovelty {
            block: block.max(1),
            n_in_block: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            cur_min: f64::INFINITY,
            cur_max: f64::NEG_INFINITY,
        }
    }

    pub fn block(&self) -> u32 {
        self.block
    }

    /// Whether `value` lies outside the recent range by more than `tol` times its width.
    pub fn breaks_out(&self, value: f64, tol: f64) -> bool {
        if self.max.partial_cmp(&self.min) != Some(std::cmp::Ordering::Greater) {
            return false;
        }
        let margin = (self.max - self.min) * tol;
        value > self.max + margin || value < self.min - margin
    }

    pub fn learn(&mut self, value: f64) {
        self.cur_min = self.cur_min.min(value);
        self.cur_max = self.cur_max.max(value);
        self.n_in_block += 1;
        if self.n_in_block >= self.block {
            // The finished block becomes "previous"; the one before it is forgotten.
            self.min = self.cur_min;
            self.max = self.cur_max;
            self.cur_min = f64::INFINITY;
            self.cur_max = f64::NEG_INFINITY;
            self.n_in_block = 0;
        }
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }
}
