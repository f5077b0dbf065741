//! The darknet `.cfg` text format: `[section]` headers followed by
//! `key=value` options.
//!
//! Read as darknet's `read_cfg` does: all whitespace inside a line is
//! dropped (`anchors = 10,14,  23,27` reads `10,14,23,27`), lines starting
//! with `#` or `;` are comments. Unlike darknet, a comment may also follow an
//! option on the same line (`size=3 # kernel`).

use super::DarknetError;

/// One `key=value` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CfgOption {
    /// Option name.
    pub key: String,
    /// Value with whitespace removed.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// One `[name]` section and its options, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name between the brackets, e.g. `convolutional`.
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    /// Options in file order; repeated keys are kept.
    pub options: Vec<CfgOption>,
}

impl Section {
    /// The first option named `key`: darknet reads the first of repeated keys.
    pub fn get(&self, key: &str) -> Option<&CfgOption> {
        self.options.iter().find(|o| o.key == key)
    }
}

/// Splits cfg text into sections, in file order (repeated section names are
/// distinct sections, as in darknet).
pub fn parse_cfg(text: &str) -> Result<Vec<Section>, DarknetError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<Section> = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = number + 1;
        let syntax = |message| DarknetError::Syntax {
            line,
            message,
            text: raw.trim().to_string(),
        };
        let content = raw.find(['#', ';']).map_or(raw, |at| &raw[..at]);
        let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.is_empty() {
            continue;
        }
        if let Some(rest) = compact.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .filter(|name| !name.is_empty() && !name.contains(['[', ']']))
                .ok_or_else(|| syntax("a section header must look like [name]"))?;
            sections.push(Section {
                name: name.to_string(),
                line,
                options: Vec::new(),
            });
            continue;
        }
        let (key, value) = compact
            .split_once('=')
            .ok_or_else(|| syntax("expected key=value"))?;
        if key.is_empty() {
            return Err(syntax("missing option name before '='"));
        }
        let section = sections
            .last_mut()
            .ok_or_else(|| syntax("option before the first [section]"))?;
        section.options.push(CfgOption {
            key: key.to_string(),
            value: value.to_string(),
            line,
        });
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_whitespace_and_repeated_sections() {
        let text = "\u{feff}# header comment\n\
                    [net]\r\n\
                    ; another comment\n\
                    \twidth = 416 \n\
                    height=416   # inline comment\n\
                    \n\
                    [ convolutional ]\n\
                    filters=16\n\
                    activation = leaky\n\
                    [convolutional]\n\
                    anchors = 10,14,  23,27\n\
                    size=1\n\
                    size=3\n";
        let sections = parse_cfg(text).unwrap();
        let names: Vec<&str> = sections.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["net", "convolutional", "convolutional"]);
        assert_eq!(
            sections.iter().map(|s| s.line).collect::<Vec<_>>(),
            [2, 7, 10]
        );
        assert_eq!(
            sections[0].get("width").map(|o| (o.value.as_str(), o.line)),
            Some(("416", 4))
        );
        assert_eq!(
            sections[0].get("height").map(|o| o.value.as_str()),
            Some("416")
        );
        assert_eq!(
            sections[1].get("activation").map(|o| o.value.as_str()),
            Some("leaky")
        );
        assert_eq!(sections[1].get("anchors"), None);
        assert_eq!(
            sections[2].get("anchors").map(|o| o.value.as_str()),
            Some("10,14,23,27")
        );
        // Repeated key: both kept, the first one wins.
        assert_eq!(sections[2].options.len(), 3);
        assert_eq!(
            sections[2].get("size").map(|o| (o.value.as_str(), o.line)),
            Some(("1", 12))
        );
    }

    #[test]
    fn empty_text_has_no_sections() {
        assert_eq!(parse_cfg("").unwrap(), Vec::new());
        assert_eq!(parse_cfg("  \n# only a comment\n").unwrap(), Vec::new());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse_cfg("[net]\nwidth=416\njunk\n").unwrap_err();
        assert_eq!(
            err,
            DarknetError::Syntax {
                line: 3,
                message: "expected key=value",
                text: "junk".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("cfg line 3: expected key=value"),
            "{err}"
        );
        assert!(matches!(
            parse_cfg("width=1\n[net]"),
            Err(DarknetError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_cfg("[net]\n[conv"),
            Err(DarknetError::Syntax { line: 2, .. })
        ));
        assert!(matches!(
            parse_cfg("[]"),
            Err(DarknetError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_cfg("[net]\n=3"),
            Err(DarknetError::Syntax { line: 2, .. })
        ));
    }
}
