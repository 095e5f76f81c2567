//! Harbor's list parameters (reference facts, C.1): `q` in Harbor's syntax (`k=v` exact,
//! `k=~v` fuzzy, `k=[min~max]` range, `k={v1 v2}` any of, `k=(v1 v2)` all of, separated by
//! commas; values may be quoted), `sort` (`a,-b`), `page` (from 1) and `page_size` (default
//! 10, at most 100), with the `X-Total-Count` and `Link` headers of the answer.

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::HarborError;

/// What a field of a listed object holds, for `q` and `sort`.
#[derive(Debug, Clone)]
pub enum Field {
    Text(String),
    Int(i64),
    Bool(bool),
    Time(DateTime<Utc>),
    List(Vec<String>),
}

/// A listed object's fields by name; `None` for a name it has no field of.
pub trait Fields {
    fn field(&self, key: &str) -> Option<Field>;
}

/// One condition of `q`.
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    Exact(String),
    Fuzzy(String),
    Range(Option<String>, Option<String>),
    Any(Vec<String>),
    All(Vec<String>),
}

/// A list request's parameters, checked.
#[derive(Debug)]
pub struct ListParams {
    conditions: Vec<(String, Condition)>,
    sorts: Vec<(String, bool)>,
    pub page: usize,
    pub page_size: usize,
    /// The parameters to carry into the `Link` header's URLs (beside `page`).
    carried: Vec<(String, String)>,
}

impl ListParams {
    /// Reads `page`, `page_size`, `q` and `sort` from `query`; `keys` are the fields `q` and
    /// `sort` may name.
    ///
    /// # Errors
    /// 422 for a page or page size outside what Harbor's swagger allows, 400 for a `q` or
    /// `sort` that does not parse or names another field.
    pub fn read(query: &HashMap<String, String>, keys: &[&str]) -> Result<Self, HarborError> {
        let number = |name: &str, default: i64| -> Result<i64, HarborError> {
            match query.get(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| {
                    HarborError::unprocessable(format!(
                        "{name} in query must be of type int64: \"{v}\""
                    ))
                }),
            }
        };
        let page = number("page", 1)?;
        let page_size = number("page_size", 10)?;
        if page < 1 {
            return Err(HarborError::unprocessable(
                "page in query should be greater than or equal to 1",
            ));
        }
        if page_size > 100 {
            return Err(HarborError::unprocessable(
                "page_size in query should be less than or equal to 100",
            ));
        }
        if page_size < 1 {
            return Err(HarborError::unprocessable(
                "page_size in query should be greater than or equal to 1",
            ));
        }
        let q = query.get("q").map(String::as_str).unwrap_or_default();
        let sort = query.get("sort").map(String::as_str).unwrap_or_default();
        if keys.is_empty() && !(q.is_empty() && sort.is_empty()) {
            return Err(HarborError::bad_request(
                "this list takes no q or sort: it is newest first",
            ));
        }
        let conditions = parse_q(q).map_err(HarborError::bad_request)?;
        for (key, _) in &conditions {
            if !keys.contains(&key.as_str()) {
                return Err(HarborError::bad_request(format!(
                    "the query key {key} is not supported; use {}",
                    keys.join(", ")
                )));
            }
        }
        let mut sorts = vec![];
        for part in sort.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, descending) = match part.strip_prefix('-') {
                Some(key) => (key, true),
                None => (part, false),
            };
            if !keys.contains(&key) {
                return Err(HarborError::bad_request(format!(
                    "the sort key {key} is not supported; use {}",
                    keys.join(", ")
                )));
            }
            sorts.push((key.to_owned(), descending));
        }
        let carried = ["q", "sort", "policy_id", "status"]
            .into_iter()
            .filter_map(|k| query.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        Ok(Self {
            conditions,
            sorts,
            page: usize::try_from(page).unwrap_or(usize::MAX),
            page_size: usize::try_from(page_size).unwrap_or(100),
            carried,
        })
    }

    /// `items` filtered by `q`, sorted by `sort` (else by `default_sort`), and the page asked
    /// for, with the total matched.
    pub fn apply<T: Fields>(
        &self,
        items: Vec<T>,
        default_sort: &[(&str, bool)],
    ) -> (Vec<T>, usize) {
        let mut matched: Vec<T> = items
            .into_iter()
            .filter(|item| {
                self.conditions
                    .iter()
                    .all(|(key, condition)| item.field(key).is_some_and(|f| matches(&f, condition)))
            })
            .collect();
        let sorts: Vec<(&str, bool)> = if self.sorts.is_empty() {
            default_sort.to_vec()
        } else {
            self.sorts.iter().map(|(k, d)| (k.as_str(), *d)).collect()
        };
        matched.sort_by(|a, b| {
            for (key, descending) in &sorts {
                let order = compare(a.field(key), b.field(key));
                let order = if *descending { order.reverse() } else { order };
                if order != Ordering::Equal {
                    return order;
                }
            }
            Ordering::Equal
        });
        let total = matched.len();
        let page: Vec<T> = matched
            .into_iter()
            .skip((self.page - 1).saturating_mul(self.page_size))
            .take(self.page_size)
            .collect();
        (page, total)
    }

    /// Sets Harbor's `X-Total-Count` and `Link` (`rel="prev"`, `rel="next"`, joined by
    /// `" , "` as Harbor joins them) on `response`, for the list at `path`.
    pub fn headers(&self, response: &mut Response, path: &str, total: usize) {
        let headers = response.headers_mut();
        headers.insert("x-total-count", HeaderValue::from(total as u64));
        let link = |page: usize| {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("page", &page.to_string());
            query.append_pair("page_size", &self.page_size.to_string());
            for (k, v) in &self.carried {
                query.append_pair(k, v);
            }
            format!("<{path}?{}>", query.finish())
        };
        let mut links = vec![];
        if self.page > 1 {
            links.push(format!("{}; rel=\"prev\"", link(self.page - 1)));
        }
        if self.page.saturating_mul(self.page_size) < total {
            links.push(format!("{}; rel=\"next\"", link(self.page + 1)));
        }
        if !links.is_empty()
            && let Ok(value) = HeaderValue::try_from(links.join(" , "))
        {
            headers.insert(header::LINK, value);
        }
    }
}

/// Parses `q` into (key, condition) pairs.
fn parse_q(q: &str) -> Result<Vec<(String, Condition)>, String> {
    let mut conditions = vec![];
    for part in split_top(q, ',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!(
                "invalid query {part:?}: use k=v, k=~v, k=[min~max], k={{v1 v2}} or k=(v1 v2)"
            ));
        };
        let (key, value) = (key.trim().to_owned(), value.trim());
        let condition = if let Some(v) = value.strip_prefix('~') {
            Condition::Fuzzy(unquote(v))
        } else if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            let (min, max) = inner
                .split_once('~')
                .ok_or_else(|| format!("invalid range {value:?}: use [min~max]"))?;
            let bound = |b: &str| Some(unquote(b.trim())).filter(|b| !b.is_empty());
            Condition::Range(bound(min), bound(max))
        } else if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            Condition::Any(values(inner))
        } else if let Some(inner) = value.strip_prefix('(').and_then(|v| v.strip_suffix(')')) {
            Condition::All(values(inner))
        } else {
            Condition::Exact(unquote(value))
        };
        conditions.push((key, condition));
    }
    Ok(conditions)
}

/// `text` split at `separator`s outside brackets and quotes.
fn split_top(text: &str, separator: char) -> Vec<&str> {
    let (mut parts, mut depth, mut quote, mut start) = (vec![], 0i32, None, 0);
    for (i, c) in text.char_indices() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (c, Some(q)) if c == q => quote = None,
            ('[' | '{' | '(', None) => depth += 1,
            (']' | '}' | ')', None) => depth -= 1,
            (c, None) if c == separator && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The space-separated values of a list.
fn values(inner: &str) -> Vec<String> {
    inner.split_whitespace().map(unquote).collect()
}

/// `value` without the quotes around it.
fn unquote(value: &str) -> String {
    let value = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return inner.to_owned();
        }
    }
    value.to_owned()
}

/// Whether `field` meets `condition`.
fn matches(field: &Field, condition: &Condition) -> bool {
    let equal = |v: &str| equals(field, v);
    match condition {
        Condition::Exact(v) => equal(v),
        Condition::Fuzzy(v) => match field {
            Field::Text(t) => t.contains(v.as_str()),
            Field::List(items) => items.iter().any(|i| i.contains(v.as_str())),
            _ => equal(v),
        },
        Condition::Range(min, max) => {
            let within = |bound: &Option<String>, wanted: Ordering| {
                bound
                    .as_deref()
                    .is_none_or(|b| compare(Some(field.clone()), parse_like(field, b)) != wanted)
            };
            within(min, Ordering::Less) && within(max, Ordering::Greater)
        }
        Condition::Any(values) => values.iter().any(|v| equal(v)),
        Condition::All(values) => values.iter().all(|v| equal(v)),
    }
}

/// Whether `field` equals (or, for a list, holds) `value`.
fn equals(field: &Field, value: &str) -> bool {
    match field {
        Field::List(items) => items.iter().any(|i| i == value),
        _ => compare(Some(field.clone()), parse_like(field, value)) == Ordering::Equal,
    }
}

/// `value` read as the kind of `field`; `None` when it is not of that kind.
fn parse_like(field: &Field, value: &str) -> Option<Field> {
    match field {
        Field::Text(_) | Field::List(_) => Some(Field::Text(value.to_owned())),
        Field::Int(_) => value.parse().ok().map(Field::Int),
        Field::Bool(_) => value.parse().ok().map(Field::Bool),
        Field::Time(_) => DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S")
                    .ok()
                    .map(|t| t.and_utc())
            })
            .map(Field::Time),
    }
}

/// The order of two fields of one kind; a missing or mismatched one sorts first.
fn compare(a: Option<Field>, b: Option<Field>) -> Ordering {
    match (a, b) {
        (Some(Field::Text(a)), Some(Field::Text(b))) => a.cmp(&b),
        (Some(Field::Int(a)), Some(Field::Int(b))) => a.cmp(&b),
        (Some(Field::Bool(a)), Some(Field::Bool(b))) => a.cmp(&b),
        (Some(Field::Time(a)), Some(Field::Time(b))) => a.cmp(&b),
        (Some(Field::List(a)), Some(Field::List(b))) => a.cmp(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(i64, &'static str, bool, Vec<String>);

    impl Fields for Item {
        fn field(&self, key: &str) -> Option<Field> {
            match key {
                "id" => Some(Field::Int(self.0)),
                "name" => Some(Field::Text(self.1.to_owned())),
                "enabled" => Some(Field::Bool(self.2)),
                "event_types" => Some(Field::List(self.3.clone())),
                _ => None,
            }
        }
    }

    fn items() -> Vec<Item> {
        let types = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect();
        vec![
            Item(1, "ci", true, types(&["PUSH_ARTIFACT"])),
            Item(
                2,
                "scan-alerts",
                false,
                types(&["SCANNING_FAILED", "PUSH_ARTIFACT"]),
            ),
            Item(3, "audit", true, types(&["DELETE_ARTIFACT"])),
        ]
    }

    fn ids(q: &str, sort: &str) -> Vec<i64> {
        let query: HashMap<String, String> = [
            ("q".to_owned(), q.to_owned()),
            ("sort".to_owned(), sort.to_owned()),
        ]
        .into();
        let params = ListParams::read(&query, &["id", "name", "enabled", "event_types"]).unwrap();
        params
            .apply(items(), &[("id", false)])
            .0
            .iter()
            .map(|i| i.0)
            .collect()
    }

    #[test]
    fn each_of_harbors_query_patterns_selects_what_harbor_would() {
        assert_eq!(ids("name=ci", ""), [1]);
        assert_eq!(ids("name=\"ci\"", ""), [1]);
        assert_eq!(ids("name=~a", "-id"), [3, 2]);
        assert_eq!(ids("id=[2~3]", ""), [2, 3]);
        assert_eq!(ids("id=[~1]", ""), [1]);
        assert_eq!(ids("id={1 3}", ""), [1, 3]);
        assert_eq!(ids("event_types=(SCANNING_FAILED PUSH_ARTIFACT)", ""), [2]);
        assert_eq!(ids("event_types=PUSH_ARTIFACT,enabled=true", ""), [1]);
        assert_eq!(ids("", "name"), [3, 1, 2]);
        assert_eq!(ids("", "enabled,-id"), [2, 3, 1]);
    }

    #[test]
    fn bad_parameters_get_harbors_status() {
        let read = |pairs: &[(&str, &str)]| {
            let query: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            ListParams::read(&query, &["id", "name"])
                .map(|_| ())
                .unwrap_err()
        };
        let e = read(&[("page_size", "101")]);
        assert_eq!(e.status, 422);
        assert_eq!(
            e.message,
            "page_size in query should be less than or equal to 100"
        );
        assert_eq!(read(&[("q", "color=red")]).status, 400);
        assert_eq!(read(&[("sort", "-color")]).status, 400);
        assert_eq!(read(&[("q", "id=[1 2]")]).status, 400);
        assert_eq!(read(&[("page", "x")]).status, 422);
    }
}
