use anyhow::{bail, Context, Result};

/// Seconds since the Unix epoch to stamp an image with: `SOURCE_DATE_EPOCH`
/// when set (the reproducible-builds convention), else 0, so that rebuilding
/// the same module never changes a digest just because time passed.
pub fn source_date_epoch() -> Result<u64> {
    parse_source_date_epoch(std::env::var("SOURCE_DATE_EPOCH").ok().as_deref())
}

pub(crate) fn parse_source_date_epoch(value: Option<&str>) -> Result<u64> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    value.parse().with_context(|| {
        format!(
            "SOURCE_DATE_EPOCH={value:?} is not a whole number of seconds since 1970-01-01; \
             set it to e.g. `$(git log -1 --format=%ct)` or unset it"
        )
    })
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC timestamp
/// (`2023-11-14T22:13:20Z`), the form OCI `created` fields use.
pub fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Gregorian (year, month, day) of a day count since 1970-01-01, counting in
/// 400-year eras (146 097 days each) that start on March 1st so that the leap
/// day falls at the end of a year.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468; // 0000-03-01 to 1970-01-01
    let era = days / 146_097;
    let day_of_era = days % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}

/// Refuses times a tar header cannot hold (11 octal digits), which would
/// otherwise be silently truncated in the layer.
pub(crate) fn check_representable(secs: u64) -> Result<()> {
    if secs >= 8u64.pow(11) {
        bail!("timestamp {secs} is past what a tar header can store; use a SOURCE_DATE_EPOCH before the year 2514");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn source_date_epoch_defaults_to_zero_and_rejects_junk() {
        assert_eq!(parse_source_date_epoch(None).unwrap(), 0);
        assert_eq!(parse_source_date_epoch(Some("")).unwrap(), 0);
        assert_eq!(parse_source_date_epoch(Some("1700000000")).unwrap(), 1_700_000_000);
        let err = parse_source_date_epoch(Some("yesterday")).unwrap_err();
        assert!(err.to_string().contains("SOURCE_DATE_EPOCH"), "{err}");
    }
}
