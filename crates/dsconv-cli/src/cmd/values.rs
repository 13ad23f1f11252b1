//! Non-finite values in a network's output: `run` warns about them (the logits are still
//! written: the user asked for them raw), `classify` refuses to rank them.

use dsconv::weights::StateDict;
use std::fmt;

/// How many values of a slice are NaN and how many ±Inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NonFinite {
    /// NaN values.
    pub nan: usize,
    /// +Inf and −Inf values.
    pub inf: usize,
}

impl NonFinite {
    /// Counts the NaN and infinite values of `values`.
    pub fn count(values: &[f32]) -> NonFinite {
        values.iter().fold(NonFinite::default(), |n, v| NonFinite {
            nan: n.nan + usize::from(v.is_nan()),
            inf: n.inf + usize::from(v.is_infinite()),
        })
    }

    /// NaN plus infinite values.
    pub fn total(self) -> usize {
        self.nan + self.inf
    }
}

/// The non-finite values of a checkpoint, with the name of the first tensor holding one.
pub fn in_checkpoint(sd: &StateDict) -> Option<(NonFinite, &str)> {
    let mut total = NonFinite::default();
    let mut first = None;
    for name in sd.names() {
        let n = sd
            .get(name)
            .map_or_else(NonFinite::default, |t| NonFinite::count(&t.data));
        if n.total() > 0 {
            first.get_or_insert(name);
            total.nan += n.nan;
            total.inf += n.inf;
        }
    }
    first.map(|name| (total, name))
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} NaN, {} inf", self.nan, self.inf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_nan_and_both_infinities() {
        let n = NonFinite::count(&[1.0, f32::NAN, f32::INFINITY, -f32::INFINITY, f32::MAX]);
        assert_eq!(n, NonFinite { nan: 1, inf: 2 });
        assert_eq!(n.total(), 3);
        assert_eq!(n.to_string(), "1 NaN, 2 inf");
        assert_eq!(NonFinite::count(&[0.0, -1.0]).total(), 0);
    }
}
