//! Reading pgbench's report.

/// The `tps = N (without initial connection time)` figure of a pgbench run
/// (PG15 prints only that variant; older ones printed two lines, the first
/// `tps` line is taken).
pub fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("tps = ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pg15_report() {
        let report = "transaction type: <builtin: TPC-B (sort of)>\n\
            number of transactions actually processed: 1234\n\
            latency average = 3.241 ms\n\
            initial connection time = 2.345 ms\n\
            tps = 1234.567890 (without initial connection time)\n";
        assert_eq!(parse_tps(report), Some(1234.56789));
        assert_eq!(parse_tps("no numbers here"), None);
        assert_eq!(parse_tps("tps = oops"), None);
    }
}
