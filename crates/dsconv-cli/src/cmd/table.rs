//! Plain-text tables and number formatting shared by `dsconv cost` and `dsconv demo`.

use std::fmt::Write as _;

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Pad on the right.
    Left,
    /// Pad on the left (numbers).
    Right,
}

/// A table of strings with a header row, printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
    /// Row indices before which a rule is drawn (e.g. before a total).
    rules: Vec<usize>,
}

impl Table {
    /// A table with these column titles and alignments.
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            header: columns.iter().map(|(h, _)| h.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// Appends a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Draws a rule before the next row.
    pub fn rule(&mut self) {
        self.rules.push(self.rows.len());
    }

    /// Renders with `indent` spaces before every line.
    pub fn render(&self, indent: usize) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let pad = " ".repeat(indent);
        let line = |cells: &[String]| {
            let mut s = pad.clone();
            for c in 0..columns {
                let cell = cells.get(c).map_or("", String::as_str);
                let fill = widths[c].saturating_sub(cell.chars().count());
                if c > 0 {
                    s.push_str("  ");
                }
                match self.align[c] {
                    Align::Left => {
                        s.push_str(cell);
                        if c + 1 < columns {
                            s.push_str(&" ".repeat(fill));
                        }
                    }
                    Align::Right => {
                        s.push_str(&" ".repeat(fill));
                        s.push_str(cell);
                    }
                }
            }
            s.trim_end().to_string()
        };
        let total: usize = widths.iter().sum::<usize>() + 2 * columns.saturating_sub(1);
        let rule = format!("{pad}{}", "-".repeat(total));
        let mut out = String::new();
        let _ = writeln!(out, "{}", line(&self.header));
        let _ = writeln!(out, "{rule}");
        for (i, row) in self.rows.iter().enumerate() {
            if self.rules.contains(&i) {
                let _ = writeln!(out, "{rule}");
            }
            let _ = writeln!(out, "{}", line(row));
        }
        out
    }
}

/// `86400` → `86,400`.
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    // The leading group has 1-3 digits, every later group 3.
    let head = match digits.len() % 3 {
        0 => 3.min(digits.len()),
        r => r,
    };
    let mut out = digits[..head].to_string();
    for group in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(group).unwrap_or_default());
    }
    out
}

/// A count in millions with enough digits to read: `568740352` → `568.7 M`.
pub fn millions(v: u64) -> String {
    let m = v as f64 / 1e6;
    if m >= 100.0 {
        let tenths = (m * 10.0).round() as u64;
        format!("{}.{} M", thousands(tenths / 10), tenths % 10)
    } else if m >= 1.0 {
        format!("{m:.2} M")
    } else {
        format!("{m:.3} M")
    }
}

/// Logical `[N, C, H, W]` as `HxWxC` (the seed's height × width × channels).
pub fn hwc(dims: [usize; 4]) -> String {
    format!("{}x{}x{}", dims[2], dims[3], dims[1])
}

/// A duration in seconds with a unit that keeps 3 significant digits.
pub fn duration(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.1} ms", seconds * 1e3)
    } else {
        format!("{:.2} µs", seconds * 1e6)
    }
}

/// A fraction as a percentage with one decimal.
pub fn percent(fraction: f64) -> String {
    format!("{:.1}%", 100.0 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(675), "675");
        assert_eq!(thousands(86_400), "86,400");
        assert_eq!(thousands(4_867_293_184), "4,867,293,184");
        assert_eq!(millions(568_740_352), "568.7 M");
        assert_eq!(millions(4_210_088), "4.21 M");
        assert_eq!(millions(4_867_293_184), "4,867.3 M");
        assert_eq!(millions(464_600), "0.465 M");
        assert_eq!(percent(10_275.0 / 86_400.0), "11.9%");
        assert_eq!(hwc([1, 128, 5, 5]), "5x5x128");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(2.5e-6), "2.50 µs");
    }

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.rule();
        t.row(vec!["total".into(), "1,000".into()]);
        let s = t.render(2);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "  name       n");
        assert_eq!(lines[1], "  ------------");
        assert_eq!(lines[2], "  a          1");
        assert_eq!(lines[4], "  total  1,000");
    }
}
