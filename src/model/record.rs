//! The text records the Lua scripts keep in Redis and append to the outboxes: fields joined
//! by `|`, times in ms since the epoch, an unset value as an empty field.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undecodable record: {0}")]
pub struct DecodeError(pub String);

/// The fields of a record that must have exactly `N` of them.
pub(super) fn fields<'a, const N: usize>(
    what: &str,
    record: &'a str,
) -> Result<[&'a str; N], DecodeError> {
    let f: Vec<&str> = record.split('|').collect();
    f.as_slice()
        .try_into()
        .map_err(|_| DecodeError(format!("{what} record {record:?} has {} fields", f.len())))
}

pub(super) fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, DecodeError> {
    text.parse()
        .map_err(|_| DecodeError(format!("{name} is not a number: {text:?}")))
}

/// An optional number: empty when unset.
pub(super) fn opt_number<T: std::str::FromStr>(
    text: &str,
    name: &str,
) -> Result<Option<T>, DecodeError> {
    match text {
        "" => Ok(None),
        _ => number(text, name).map(Some),
    }
}

/// An optional value as a record writes it: empty when unset.
pub(super) fn opt_text<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}
