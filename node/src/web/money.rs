//! Prices as people read and write them: an amount in the currency's minor unit (as the
//! protocol keeps it) shown as `₩150,000`, `$19.99`, `¥12,000`, and typed back as `150000`,
//! `150,000` or `19.99`. The number of minor-unit digits is ISO 4217's exponent. Pure.

/// Digits after the decimal point in a currency (ISO 4217 exponent).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

fn symbol(currency: &str) -> Option<&'static str> {
    Some(match currency {
        "KRW" => "₩",
        "JPY" => "¥",
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "CNY" => "CN¥",
        "TWD" => "NT$",
        "HKD" => "HK$",
        "CAD" => "CA$",
        "AUD" => "A$",
        _ => return None,
    })
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The amount without a symbol: `150,000`, `19.99`.
pub fn amount_text(minor: u64, currency: &str) -> String {
    let d = minor_digits(currency);
    let unit = 10u64.pow(d);
    let whole = group_thousands(&(minor / unit).to_string());
    if d == 0 {
        whole
    } else {
        format!("{whole}.{:0width$}", minor % unit, width = d as usize)
    }
}

/// The price as shown: `₩150,000`, `$19.99`, `¥12,000`, or `1,234.50 CHF`.
pub fn price_text(minor: u64, currency: &str) -> String {
    match symbol(currency) {
        Some(s) => format!("{s}{}", amount_text(minor, currency)),
        None => format!("{} {currency}", amount_text(minor, currency)),
    }
}

/// The amount as typed in a form field (no grouping): `150000`, `19.99`.
pub fn input_text(minor: u64, currency: &str) -> String {
    amount_text(minor, currency).replace(',', "")
}

/// Reads a typed price (`150000`, `150,000`, `₩150,000`, `19.99`, `19`) into minor units;
/// `None` when it is not a number with at most the currency's digits after the point.
pub fn parse_price(input: &str, currency: &str) -> Option<u64> {
    let s: String = input
        .trim()
        .trim_start_matches(['₩', '$', '¥', '€', '£'])
        .chars()
        .filter(|c| *c != ',' && *c != ' ')
        .collect();
    if s.is_empty() || s.len() > 24 {
        return None;
    }
    let d = minor_digits(currency);
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s.as_str(), ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > d as usize
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut f: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..d as usize {
        f *= 10;
    }
    whole.checked_mul(10u64.pow(d))?.checked_add(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_show_in_their_currency() {
        assert_eq!(price_text(150_000, "KRW"), "₩150,000");
        assert_eq!(price_text(1999, "USD"), "$19.99");
        assert_eq!(price_text(12_000, "JPY"), "¥12,000");
        assert_eq!(price_text(5, "EUR"), "€0.05");
        assert_eq!(price_text(123_450, "CHF"), "1,234.50 CHF");
        assert_eq!(price_text(1_234_567, "KWD"), "1,234.567 KWD");
        assert_eq!(price_text(0, "KRW"), "₩0");
        assert_eq!(price_text(999, "KRW"), "₩999");
        assert_eq!(price_text(1000, "KRW"), "₩1,000");
        assert_eq!(input_text(1_500_000, "KRW"), "1500000");
        assert_eq!(input_text(1999, "USD"), "19.99");
    }

    #[test]
    fn typed_prices_read_back() {
        assert_eq!(parse_price("150000", "KRW"), Some(150_000));
        assert_eq!(parse_price("150,000", "KRW"), Some(150_000));
        assert_eq!(parse_price("₩150,000", "KRW"), Some(150_000));
        assert_eq!(parse_price("19.99", "USD"), Some(1999));
        assert_eq!(parse_price("19.9", "USD"), Some(1990));
        assert_eq!(parse_price("19", "USD"), Some(1900));
        assert_eq!(parse_price(".5", "USD"), Some(50));
        assert_eq!(parse_price("19.999", "USD"), None);
        assert_eq!(parse_price("1.5", "KRW"), None);
        assert_eq!(parse_price("12abc", "KRW"), None);
        assert_eq!(parse_price("", "KRW"), None);
        assert_eq!(parse_price(".", "KRW"), None);
        assert_eq!(parse_price("-5", "KRW"), None);
        assert_eq!(parse_price("99999999999999999999999", "KRW"), None);
    }
}
