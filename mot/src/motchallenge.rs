//! MOTChallenge CSV rows: `frame,id,x,y,w,h,conf,X,Y,Z[,extra...]`.
//!
//! Boxes are top-left pixels. Ground truth and tracker output use the first
//! ten columns. Detection files written by [`crate`] users may carry an
//! appearance embedding as extra columns after the tenth (the layout of
//! Deep SORT's generated detections: MOT row, then the feature vector).

use std::fmt::Write as _;

/// One row of a MOTChallenge file.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// 1-based frame number.
    pub frame: u32,
    /// Object / track id (`-1` in detection files).
    pub id: i64,
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Confidence (ground truth: 1 = consider, 0 = ignore).
    pub conf: f64,
    /// Columns after the tenth (e.g. an appearance embedding).
    pub extra: Vec<f32>,
}

/// A line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole file. Blank lines are skipped; separators may be commas,
/// spaces or tabs. Rows need at least the first seven columns.
pub fn parse(text: &str) -> Result<Vec<Row>, ParseError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| ParseError {
            line: i + 1,
            message,
        };
        let fields: Vec<&str> = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() < 7 {
            return Err(err(format!(
                "expected at least 7 columns (frame,id,x,y,w,h,conf), found {}",
                fields.len()
            )));
        }
        let num = |k: usize| -> Result<f64, ParseError> {
            fields[k]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    err(format!(
                        "column {}: {:?} is not a finite number",
                        k + 1,
                        fields[k]
                    ))
                })
        };
        let frame = num(0)?;
        if frame < 0.0 || frame.fract() != 0.0 || frame > f64::from(u32::MAX) {
            return Err(err(format!("frame {frame} is not a frame number")));
        }
        let id = num(1)?;
        if id.fract() != 0.0 {
            return Err(err(format!("id {id} is not an integer")));
        }
        let mut extra = Vec::new();
        for k in 10..fields.len() {
            extra.push(num(k)? as f32);
        }
        rows.push(Row {
            frame: frame as u32,
            id: id as i64,
            x: num(2)?,
            y: num(3)?,
            w: num(4)?,
            h: num(5)?,
            conf: num(6)?,
            extra,
        });
    }
    Ok(rows)
}

/// Writes rows in MOTChallenge layout (`X,Y,Z` as -1, then any extra columns).
pub fn format(rows: &[Row]) -> String {
    let mut out = String::with_capacity(rows.len() * 48);
    for r in rows {
        let _ = write!(
            out,
            "{},{},{:.3},{:.3},{:.3},{:.3},{:.6},-1,-1,-1",
            r.frame, r.id, r.x, r.y, r.w, r.h, r.conf
        );
        for v in &r.extra {
            let _ = write!(out, ",{v:.5}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ground_truth_and_detections_with_embeddings_and_round_trips() {
        let text = "1,3,10.5,20,30,60,1,-1,-1,-1\n\n2 -1 11 21 31 61 0.9 -1 -1 -1 0.5 -0.25\n";
        let rows = parse(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].frame, rows[0].id, rows[0].x), (1, 3, 10.5));
        assert_eq!(rows[1].extra, vec![0.5, -0.25]);
        assert_eq!(parse(&format(&rows)).unwrap(), rows);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let e = parse("1,1,0,0,1,1,1\n1,x,0,0,1,1,1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("column 2"), "{e}");
        assert_eq!(parse("1,2,3\n").unwrap_err().line, 1);
        assert!(parse("1.5,1,0,0,1,1,1\n").is_err());
        assert!(parse("1,1,NaN,0,1,1,1\n").is_err());
    }
}
