//! What goes wrong in a definition file (a record kind, a metric): the file, the line, why.

/// A definition file that cannot be used: the file, the line where known, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct DefinitionError {
    pub file: String,
    pub line: Option<usize>,
    pub reason: String,
}

/// The longest a definition file may be: a definition is a screenful, not a data dump.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// The longest a name or label may be (`label_zh`, `title`, `clause` …), in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// The longest any other text of a definition may be (a summary, a description).
pub const MAX_TEXT_CHARS: usize = 400;

/// Keys whose values are names and labels: short by nature, and shown on every page.
fn is_label(key: &str) -> bool {
    matches!(
        key,
        "name" | "label_zh" | "title" | "clause" | "unit_zh" | "kind" | "type" | "metric" | "scope"
    )
}

/// Checks a TOML definition file as written, before it is parsed: its size, no non-finite
/// number (`nan`, `inf`: a target of `nan` would silently make a metric untracked), and no
/// string longer than its key allows (a 10 MB label would be served to every screen). Names
/// the file, the line and the key.
pub fn check_text(file: &str, text: &str) -> Result<(), DefinitionError> {
    let refuse = |line: usize, reason: String| DefinitionError {
        file: file.to_string(),
        line: Some(line),
        reason,
    };
    if text.len() > MAX_FILE_BYTES {
        return Err(DefinitionError {
            file: file.to_string(),
            line: None,
            reason: format!(
                "the file has {} bytes; a definition may have at most {MAX_FILE_BYTES}",
                text.len()
            ),
        });
    }
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line) = (0usize, 1usize);
    // The key the value being read belongs to (the last bare key before a `=`).
    let mut key = String::new();
    let mut word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                word.clear();
                i += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' => {
                let triple = i + 2 < chars.len() && chars[i + 1] == c && chars[i + 2] == c;
                let start_line = line;
                let quote_len = if triple { 3 } else { 1 };
                i += quote_len;
                let mut len = 0usize;
                loop {
                    if i >= chars.len() {
                        return Err(refuse(start_line, "a string is not closed".into()));
                    }
                    let d = chars[i];
                    if d == '\\' && c == '"' {
                        i += 2;
                        len += 1;
                        continue;
                    }
                    if d == c
                        && (!triple
                            || (i + 2 < chars.len() && chars[i + 1] == c && chars[i + 2] == c))
                    {
                        i += quote_len;
                        break;
                    }
                    if d == '\n' {
                        line += 1;
                    }
                    len += 1;
                    i += 1;
                }
                // A quoted key (before its `=`) is not a value.
                let limit = if is_label(&key) {
                    MAX_LABEL_CHARS
                } else {
                    MAX_TEXT_CHARS
                };
                if len > limit {
                    return Err(refuse(
                        start_line,
                        format!("{key}: {len} characters; at most {limit}"),
                    ));
                }
                word.clear();
            }
            '=' => {
                key = word.trim().rsplit('.').next().unwrap_or("").to_string();
                word.clear();
                i += 1;
            }
            ',' | '{' | '[' | ']' | '}' => {
                word.clear();
                i += 1;
            }
            _ => {
                word.push(c);
                let bare = word.trim().trim_start_matches(['+', '-']);
                let next = chars.get(i + 1).copied().unwrap_or('\n');
                let ends = !(next.is_ascii_alphanumeric() || next == '_' || next == '-');
                if ends && (bare == "nan" || bare == "inf") && !key.is_empty() && word.trim() != key
                {
                    return Err(refuse(
                        line,
                        format!(
                            "{key} = {}: numbers in a definition must be finite",
                            word.trim()
                        ),
                    ));
                }
                i += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_numbers_are_refused_naming_the_line_and_key() {
        for (text, line, key) in [
            ("name = \"m\"\n[target]\nvalue = nan\n", 3, "value"),
            ("[target]\nvalue = -inf # no\n", 2, "value"),
            ("range = [0, +inf]\n", 1, "range"),
            ("x = { min = 0, max = inf }\n", 1, "max"),
        ] {
            let e = check_text("m.toml", text).unwrap_err();
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.reason.contains(key) && e.reason.contains("finite"), "{e}");
        }
        // Words that merely contain them, and strings and comments, are fine.
        for ok in [
            "name = \"inf\"\nlabel_zh = \"nan 指标\"\n# value = nan\n",
            "kind = \"info.reported\"\nvalue = 0.95\n",
            "infinite = 3\nnanny = \"x\"\n",
        ] {
            assert!(check_text("m.toml", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn labels_texts_and_files_are_bounded() {
        let long = "长".repeat(MAX_LABEL_CHARS + 1);
        let e = check_text(
            "m.toml",
            &format!("name = \"m\"\n\nlabel_zh = \"{long}\"\n"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(3));
        assert!(
            e.reason.contains("label_zh") && e.reason.contains("at most 64"),
            "{e}"
        );
        assert!(check_text("m.toml", &format!("summary = \"{long}\"\n")).is_ok());
        let essay = "长".repeat(MAX_TEXT_CHARS + 1);
        assert!(check_text("m.toml", &format!("summary = '''\n{essay}'''\n")).is_err());
        let big = format!("# {}\n", "x".repeat(MAX_FILE_BYTES));
        assert!(check_text("m.toml", &big)
            .unwrap_err()
            .reason
            .contains("bytes"));
    }
}
