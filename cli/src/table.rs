//! Human tables: a header row and rows, columns padded to their widest cell.

/// `headers` and `rows` as aligned text, two spaces between columns, no trailing spaces.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn aligned() {
        let t = super::table(
            &["NAME", "ROLES"],
            &[
                vec!["a".into(), "billing".into()],
                vec!["long-name".into(), "-".into()],
            ],
        );
        assert_eq!(t, "NAME       ROLES\na          billing\nlong-name  -\n");
    }
}
