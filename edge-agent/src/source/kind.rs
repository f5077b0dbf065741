//! What a camera's `url` names, how GStreamer opens it, and how secrets are
//! kept out of everything the agent prints.
//!
//! | `url` | kind | live |
//! |---|---|---|
//! | `rtsp://[user:pass@]host[:port]/path`, `rtsps://…` | [`SourceKind::Rtsp`] | yes |
//! | `http://…`, `https://…` | [`SourceKind::Http`] | yes |
//! | `file:///path` | [`SourceKind::File`] | no |
//! | `v4l2:///dev/videoN` or `/dev/videoN`, `…?width=1280&height=720&fps=15` | [`SourceKind::V4l2`] | yes |
//! | `test://` or `testsrc://?pattern=ball&width=640&height=480&fps=10` | [`SourceKind::TestPattern`] | yes |
//!
//! A V4L2 device captures at the size and rate its URL asks for. Without a
//! size, the source opens the device, reads the modes it lists and sets the
//! largest size up to [`V4L2_PREFERRED_MAX`] ([`preferred_v4l2_mode`]), else
//! leaves it any size. GStreamer alone would take the largest it offers (4K
//! on many webcams, a cost in conversion the detector's 416-pixel input does
//! not repay), and caps with a size range do not say "largest within": 1.22's
//! `v4l2src` then prefers the range's maximum, or the smallest size above
//! it, and sizes below it in list order.
//!
//! Credentials in a URL's userinfo are taken out of it: GStreamer gets the
//! bare URL (so its own error messages cannot contain them) and the user and
//! password through the source element's `user-id` / `user-pw` properties.

use std::borrow::Cow;
use std::fmt;

/// The URL forms [`parse_url`] accepts, for error messages.
pub const SUPPORTED: &str = "rtsp://, rtsps://, http://, https://, file:///path, \
                             v4l2:///dev/videoN (or /dev/videoN), test:// or testsrc://";

/// The largest capture size a V4L2 camera whose URL sets none is opened at:
/// the largest size the device offers within 1280x720, if it has one.
pub const V4L2_PREFERRED_MAX: (u32, u32) = (1280, 720);

/// What a V4L2 device may deliver, for its capture settings: raw video, or
/// the compressed streams of UVC cameras (`decodebin` decodes them). At equal
/// sizes `v4l2src` keeps this order: raw first, which costs no decoding.
const V4L2_MEDIA_TYPES: [&str; 4] = ["video/x-raw", "image/jpeg", "video/x-h264", "video/x-h265"];

/// `videotestsrc` patterns (GStreamer 1.22), by nickname.
pub const TEST_PATTERNS: &[&str] = &[
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];

/// Where a camera's frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// An RTSP camera or server (`rtsp://`, `rtsps://`), without userinfo.
    Rtsp {
        /// The URL given to `uridecodebin`.
        uri: String,
    },
    /// An HTTP(S) stream (MJPEG, MPEG-TS…), without userinfo.
    Http {
        /// The URL given to `uridecodebin`.
        uri: String,
    },
    /// A recorded file (`file:///path`).
    File {
        /// The URL given to `uridecodebin`.
        uri: String,
    },
    /// A Video4Linux2 device.
    V4l2 {
        /// Device node, e.g. `/dev/video0`.
        device: String,
        /// Capture size `(width, height)` from the URL; `None`: the largest
        /// the device offers up to [`V4L2_PREFERRED_MAX`], else any
        /// ([`preferred_v4l2_mode`]).
        size: Option<(u32, u32)>,
        /// Capture rate from the URL, a fraction; `None`: the rate
        /// `v4l2src` picks for the size (the highest it offers, up to 120).
        fps: Option<(u32, u32)>,
    },
    /// GStreamer's `videotestsrc`, live.
    TestPattern {
        /// `videotestsrc` pattern nickname.
        pattern: String,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Frame rate as a fraction `(numerator, denominator)`.
        fps: (u32, u32),
    },
}

impl SourceKind {
    /// Live sources produce frames in real time whether or not anyone keeps
    /// up: the agent sheds their frames when inference lags, and reconnects
    /// at their end of stream. Files wait for inference.
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceKind::File { .. })
    }

    /// What to add to a pipeline error that says the source and the rest
    /// of the pipeline found no format in common ("not-negotiated").
    pub fn negotiation_hint(&self) -> Option<String> {
        let SourceKind::V4l2 { device, size, fps } = self else {
            return None;
        };
        let what = if size.is_some() || fps.is_some() {
            "does not capture at the width, height or fps its url sets"
        } else {
            "offers no raw, MJPEG, H.264 or H.265 mode"
        };
        Some(format!(
            "{device} {what} (`v4l2-ctl -d {device} --list-formats-ext` lists what it offers)"
        ))
    }

    /// Whether credentials can be given to it.
    pub fn takes_credentials(&self) -> bool {
        matches!(self, SourceKind::Rtsp { .. } | SourceKind::Http { .. })
    }

    /// The GStreamer launch line: the source and its decoder, then an
    /// element named `convert` (a `videoconvert`, where the frame-rate limit
    /// is applied) to RGB and an `appsink` named `sink`. `uridecodebin` and
    /// `decodebin` pick hardware decoders where GStreamer ranks them first
    /// and fall back to software ones.
    ///
    /// A V4L2 device's capsfilter, named `capture`, holds what its URL sets;
    /// without a size, any size, until the source sets the size
    /// [`preferred_v4l2_mode`] picks once the device is open.
    pub fn launch_line(&self) -> String {
        match self {
            SourceKind::Rtsp { uri } | SourceKind::Http { uri } | SourceKind::File { uri } => {
                format!(
                    "uridecodebin name=src uri=\"{}\" ! {TAIL}",
                    uri.replace('"', "%22")
                )
            }
            SourceKind::V4l2 { device, size, fps } => {
                let size = size
                    .map(|(width, height)| format!(",width={width},height={height}"))
                    .unwrap_or_default();
                format!(
                    "v4l2src name=src device=\"{device}\" ! capsfilter name=capture caps=\"{}\" ! \
                     decodebin ! {TAIL}",
                    v4l2_caps(&size, *fps)
                )
            }
            SourceKind::TestPattern {
                pattern,
                width,
                height,
                fps: (num, den),
            } => format!(
                "videotestsrc name=src is-live=true pattern={pattern} ! \
                 video/x-raw,width={width},height={height},framerate={num}/{den} ! {TAIL}"
            ),
        }
    }
}

/// What follows every source: an element named `convert` (a `videoconvert`,
/// where the frame-rate limit is applied) to RGB and an `appsink` named
/// `sink`.
const TAIL: &str = "videoconvert name=convert ! video/x-raw,format=RGB ! \
                    appsink name=sink sync=false max-buffers=1 drop=false emit-signals=false";

/// Caps for each of [`V4L2_MEDIA_TYPES`] with `size` (`",width=…,height=…"`
/// or empty) and the rate, if any.
fn v4l2_caps(size: &str, fps: Option<(u32, u32)>) -> String {
    V4L2_MEDIA_TYPES
        .iter()
        .map(|media| v4l2_mode(media, size, fps))
        .collect::<Vec<_>>()
        .join(";")
}

/// One caps structure: `media`, `size` (`",width=…,height=…"` or empty) and
/// the rate, if any.
fn v4l2_mode(media: &str, size: &str, fps: Option<(u32, u32)>) -> String {
    let rate = fps
        .map(|(num, den)| format!(",framerate={num}/{den}"))
        .unwrap_or_default();
    format!("{media}{size}{rate}")
}

/// The capture mode for a V4L2 camera whose URL sets no size, from the
/// modes its device offers (`offered`: the caps of `v4l2src`'s pad once the
/// device is open): the largest size (by pixels) up to
/// [`V4L2_PREFERRED_MAX`], at `fps` if set, in the first of
/// [`V4L2_MEDIA_TYPES`] that has it. `None`: no such mode; the camera then
/// takes any size.
///
/// A device's sizes are single values, lists or (stepwise devices) ranges;
/// of a range the largest size within the limit is tried. A candidate is
/// kept only when the device's caps intersect it, which also checks the
/// rate.
pub fn preferred_v4l2_mode(
    offered: &gstreamer::Caps,
    fps: Option<(u32, u32)>,
) -> Option<gstreamer::Caps> {
    let (max_width, max_height) = V4L2_PREFERRED_MAX;
    // (pixels, media rank): more pixels, then an earlier media type.
    let mut best: Option<((u64, std::cmp::Reverse<usize>), gstreamer::Caps)> = None;
    for structure in offered.iter() {
        let Some(rank) = V4L2_MEDIA_TYPES
            .iter()
            .position(|media| structure.name() == *media)
        else {
            continue;
        };
        for width in sizes_within(structure, "width", max_width) {
            for height in sizes_within(structure, "height", max_height) {
                let key = (
                    u64::from(width) * u64::from(height),
                    std::cmp::Reverse(rank),
                );
                if best.as_ref().is_some_and(|(best, _)| *best >= key) {
                    continue;
                }
                let mode = v4l2_mode(
                    V4L2_MEDIA_TYPES[rank],
                    &format!(",width={width},height={height}"),
                    fps,
                );
                if let Ok(mode) = mode.parse::<gstreamer::Caps>()
                    && offered.can_intersect(&mode)
                {
                    best = Some((key, mode));
                }
            }
        }
    }
    best.map(|(_, mode)| mode)
}

/// The values of a caps structure's size `field` up to `max`: its value, the
/// members of its list, or the largest value of its range within `max`.
fn sizes_within(structure: &gstreamer::StructureRef, field: &str, max: u32) -> Vec<u32> {
    use gstreamer as gst;
    let Ok(value) = structure.value(field) else {
        return Vec::new();
    };
    let within = |v: i32| u32::try_from(v).ok().filter(|v| (1..=max).contains(v));
    if let Ok(v) = value.get::<i32>() {
        within(v).into_iter().collect()
    } else if let Ok(range) = value.get::<gst::IntRange<i32>>() {
        let top = range.max().min(i32::try_from(max).unwrap_or(i32::MAX));
        if top >= range.min() {
            within(top).into_iter().collect()
        } else {
            Vec::new()
        }
    } else if let Ok(list) = value.get::<gst::List>() {
        list.iter()
            .filter_map(|v| v.get::<i32>().ok().and_then(within))
            .collect()
    } else {
        Vec::new()
    }
}

/// What the agent prints for a source: the URL without credentials.
impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKind::Rtsp { uri } | SourceKind::Http { uri } | SourceKind::File { uri } => {
                f.write_str(uri)
            }
            SourceKind::V4l2 { device, size, fps } => {
                write!(f, "v4l2://{device}")?;
                let mut separator = '?';
                if let Some((width, height)) = size {
                    write!(f, "?width={width}&height={height}")?;
                    separator = '&';
                }
                if let Some((num, den)) = fps {
                    write!(f, "{separator}fps={num}/{den}")?;
                }
                Ok(())
            }
            SourceKind::TestPattern {
                pattern,
                width,
                height,
                fps: (num, den),
            } => write!(
                f,
                "testsrc://?pattern={pattern}&width={width}&height={height}&fps={num}/{den}"
            ),
        }
    }
}

/// A camera's source: what to open, and the credentials to open it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// What the camera's `url` names.
    pub kind: SourceKind,
    /// User and password for RTSP or HTTP(S), from the URL or the config.
    pub credentials: Option<Credentials>,
}

/// A user name and password for a camera. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name (`user-id`).
    pub user: String,
    /// Password (`user-pw`).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// Parses a camera URL into its kind and the credentials of its userinfo
/// (percent-decoded). The error names what is wrong; it never repeats the
/// URL's userinfo.
pub fn parse_url(url: &str) -> Result<(SourceKind, Option<Credentials>), String> {
    let url = url.trim();
    if url.starts_with("/dev/") {
        return v4l2(url, url).map(|kind| (kind, None));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "url {:?} is not a URI (supported: {SUPPORTED})",
            redact(url)
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        scheme @ ("rtsp" | "rtsps" | "http" | "https") => {
            let (authority, path) = split_authority(rest);
            if path.contains('@') {
                // Most likely a password with an unencoded '/', '?' or '#',
                // which would otherwise end up in the path (and the logs).
                return Err(format!(
                    "url {:?} has '@' after its host: percent-encode a password's '/', '?', '#' \
                     and '@' (%2F, %3F, %23, %40), or give it as username and password_env",
                    redact(url)
                ));
            }
            let (userinfo, host) = match authority.rsplit_once('@') {
                Some((userinfo, host)) => (Some(userinfo), host),
                None => (None, authority),
            };
            if host.is_empty() {
                return Err(format!("url {:?} has no host", redact(url)));
            }
            let uri = format!("{scheme}://{host}{path}");
            let credentials = userinfo.map(|userinfo| {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                Credentials {
                    user: percent_decode(user),
                    password: percent_decode(password),
                }
            });
            let kind = if scheme.starts_with("rtsp") {
                SourceKind::Rtsp { uri }
            } else {
                SourceKind::Http { uri }
            };
            Ok((kind, credentials))
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(format!("url {url:?}: a file URL is file:///absolute/path"));
            }
            Ok((SourceKind::File { uri: url.into() }, None))
        }
        "v4l2" => v4l2(url, rest).map(|kind| (kind, None)),
        "test" | "testsrc" => test_pattern(url, rest).map(|kind| (kind, None)),
        _ => Err(format!(
            "url {:?}: unknown scheme {scheme:?} (supported: {SUPPORTED})",
            redact(url)
        )),
    }
}

/// The path of a file URL, percent-decoded.
pub fn file_path(uri: &str) -> Option<String> {
    uri.strip_prefix("file://").map(percent_decode)
}

/// A V4L2 camera: `rest` is the device path and query (`/dev/video0?…`),
/// `url` the whole URL, for errors.
fn v4l2(url: &str, rest: &str) -> Result<SourceKind, String> {
    let (device, query) = rest.split_once('?').unwrap_or((rest, ""));
    let ok = device.starts_with("/dev/")
        && device.len() > "/dev/".len()
        && !device.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '\\' | '!' | '&' | '=')
        });
    if !ok {
        return Err(format!(
            "V4L2 device {device:?} is not a device node like /dev/video0 \
             (settings follow a '?': /dev/video0?width=640&height=480&fps=15)"
        ));
    }
    let (mut width, mut height, mut fps) = (None, None, None);
    let mut problems = Vec::new();
    for (key, value) in query_pairs(query) {
        match key {
            "width" => width = Some(parse_setting(key, value, parse_size, &mut problems)),
            "height" => height = Some(parse_setting(key, value, parse_size, &mut problems)),
            "fps" => fps = parse_setting(key, value, parse_rate, &mut problems),
            _ => problems.push(format!("unknown setting {key:?} (width, height, fps)")),
        }
    }
    let size = match (width, height) {
        (Some(Some(width)), Some(Some(height))) => Some((width, height)),
        (None, None) => None,
        // One that did not parse is reported already.
        (Some(None), _) | (_, Some(None)) => None,
        _ => {
            problems.push("width and height go together".into());
            None
        }
    };
    if problems.is_empty() {
        Ok(SourceKind::V4l2 {
            device: device.into(),
            size,
            fps,
        })
    } else {
        Err(format!("url {url:?}: {}", problems.join("; ")))
    }
}

/// The `key=value` pairs of a URL query (a bare `key` has an empty value).
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// A width or height: 16 to 8192 pixels.
fn parse_size(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .ok()
        .filter(|v| (16..=8192).contains(v))
        .ok_or_else(|| "is not 16 to 8192 pixels".into())
}

/// A frame rate: [`parse_fraction`].
fn parse_rate(value: &str) -> Result<(u32, u32), String> {
    parse_fraction(value)
        .ok_or_else(|| "is not a rate above 0 and up to 1000 (10, 2.5 or 30000/1001)".into())
}

/// `parse(value)`, or `None` with the problem ("KEY "VALUE" why") in
/// `problems`.
fn parse_setting<T>(
    key: &str,
    value: &str,
    parse: fn(&str) -> Result<T, String>,
    problems: &mut Vec<String>,
) -> Option<T> {
    parse(value)
        .map_err(|why| problems.push(format!("{key} {value:?} {why}")))
        .ok()
}

fn test_pattern(url: &str, rest: &str) -> Result<SourceKind, String> {
    let (host, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !host.trim_end_matches('/').is_empty() {
        return Err(format!(
            "url {url:?}: settings go in the query, as in testsrc://?pattern=ball&width=640&height=480&fps=10"
        ));
    }
    let (mut pattern, mut width, mut height, mut fps) = ("ball".to_string(), 640, 480, (10, 1));
    let mut problems = Vec::new();
    for (key, value) in query_pairs(query) {
        match key {
            "pattern" if TEST_PATTERNS.contains(&value) => pattern = value.into(),
            "pattern" => problems.push(format!(
                "pattern {value:?} is not one of {}",
                TEST_PATTERNS.join(", ")
            )),
            "width" => {
                width = parse_setting(key, value, parse_size, &mut problems).unwrap_or(width)
            }
            "height" => {
                height = parse_setting(key, value, parse_size, &mut problems).unwrap_or(height)
            }
            "fps" => fps = parse_setting(key, value, parse_rate, &mut problems).unwrap_or(fps),
            _ => problems.push(format!(
                "unknown setting {key:?} (pattern, width, height, fps)"
            )),
        }
    }
    if problems.is_empty() {
        Ok(SourceKind::TestPattern {
            pattern,
            width,
            height,
            fps,
        })
    } else {
        Err(format!("url {url:?}: {}", problems.join("; ")))
    }
}

/// `"10"`, `"2.5"` or `"30000/1001"` as a reduced fraction in (0, 1000].
pub fn parse_fraction(text: &str) -> Option<(u32, u32)> {
    let (num, den) = match text.split_once('/') {
        Some((num, den)) => (num.trim().parse::<u32>().ok()?, den.trim().parse().ok()?),
        None => {
            let value: f64 = text.trim().parse().ok()?;
            if !value.is_finite() || value <= 0.0 || value > 1000.0 {
                return None;
            }
            // Millis of a frame per second: exact for any rate written with
            // up to three decimals.
            ((value * 1000.0).round() as u32, 1000)
        }
    };
    if num == 0 || den == 0 || f64::from(num) / f64::from(den) > 1000.0 {
        return None;
    }
    let gcd = gcd(num, den);
    Some((num / gcd, den / gcd))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `(authority, rest)` of what follows `scheme://`.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied(),
            bytes.get(i + 2).copied(),
        ) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                // Both digits checked above.
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with the userinfo of every `scheme://user:pass@host` in it
/// replaced by `***`. Applied to every URL and error the agent prints.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends where a path, query, fragment, quote or blank
        // begins.
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        // A password with an unencoded '/', '?' or '#' would end that early:
        // the userinfo runs to the last '@' before a blank or quote.
        let token_end = tail
            .find(|c: char| matches!(c, '"' | '\'' | '<' | '>') || c.is_whitespace())
            .unwrap_or(tail.len());
        let end = match tail[..token_end].rfind('@') {
            // Not for an empty authority (`file:///a@b`: the path's own '@').
            Some(at) if end > 0 => end.max(at + 1),
            _ => end,
        };
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Scrubs a camera's secrets from text: URL userinfo ([`redact`]) and,
/// wherever it appears, the camera's password.
#[derive(Clone, Default)]
pub struct Redactor {
    password: Option<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redactor")
    }
}

impl Redactor {
    /// A redactor that also hides this camera's password.
    pub fn new(credentials: Option<&Credentials>) -> Self {
        Redactor {
            password: credentials
                .map(|c| c.password.clone())
                .filter(|p| !p.is_empty()),
        }
    }

    /// `text` without the camera's secrets.
    pub fn clean(&self, text: &str) -> String {
        let text = redact(text);
        match &self.password {
            Some(password) if text.contains(password.as_str()) => {
                text.replace(password.as_str(), "***")
            }
            _ => text.into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_taken_out_of_rtsp_urls_and_decoded() {
        let (kind, credentials) =
            parse_url("rtsp://admin:p%40ss:w0rd@10.0.0.5:554/Streaming/101?tcp").unwrap();
        assert_eq!(
            kind,
            SourceKind::Rtsp {
                uri: "rtsp://10.0.0.5:554/Streaming/101?tcp".into()
            }
        );
        let credentials = credentials.unwrap();
        assert_eq!(credentials.user, "admin");
        assert_eq!(credentials.password, "p@ss:w0rd");
        assert!(!format!("{credentials:?}").contains("p@ss"));
        assert!(kind.is_live());
        assert!(!kind.launch_line().contains("admin"));

        let (kind, credentials) = parse_url("rtsp://cam.local/live").unwrap();
        assert_eq!(kind.to_string(), "rtsp://cam.local/live");
        assert!(credentials.is_none());
        let (kind, credentials) = parse_url("https://viewer@cam.local/mjpeg").unwrap();
        assert_eq!(
            kind,
            SourceKind::Http {
                uri: "https://cam.local/mjpeg".into()
            }
        );
        assert_eq!(credentials.unwrap().password, "");
        assert!(kind.is_live());
    }

    #[test]
    fn every_kind_has_its_launch_line_and_liveness() {
        let file = parse_url("file:///data/clip%20one.avi").unwrap().0;
        assert!(!file.is_live());
        assert!(
            file.launch_line()
                .starts_with("uridecodebin name=src uri=\"file:///data/clip%20one.avi\" ! ")
        );
        assert_eq!(
            file_path("file:///data/clip%20one.avi").unwrap(),
            "/data/clip one.avi"
        );

        for url in ["v4l2:///dev/video2", "/dev/video2"] {
            let kind = parse_url(url).unwrap().0;
            assert_eq!(
                kind,
                SourceKind::V4l2 {
                    device: "/dev/video2".into(),
                    size: None,
                    fps: None,
                }
            );
            assert!(kind.is_live());
            assert_eq!(kind.to_string(), "v4l2:///dev/video2");
            // Any size in the media types, until the source sets one.
            assert_eq!(
                kind.launch_line(),
                "v4l2src name=src device=\"/dev/video2\" ! capsfilter name=capture \
                 caps=\"video/x-raw;image/jpeg;video/x-h264;video/x-h265\" ! decodebin ! \
                 videoconvert name=convert ! video/x-raw,format=RGB ! appsink name=sink \
                 sync=false max-buffers=1 drop=false emit-signals=false"
            );
            assert!(
                kind.negotiation_hint()
                    .unwrap()
                    .contains("offers no raw, MJPEG, H.264 or H.265 mode")
            );
        }
        let sized = parse_url("/dev/video1?width=640&height=360&fps=30000/1001")
            .unwrap()
            .0;
        assert_eq!(
            sized,
            SourceKind::V4l2 {
                device: "/dev/video1".into(),
                size: Some((640, 360)),
                fps: Some((30000, 1001)),
            }
        );
        assert!(
            sized.launch_line().contains(
                "caps=\"video/x-raw,width=640,height=360,framerate=30000/1001;\
                 image/jpeg,width=640,height=360,framerate=30000/1001;\
                 video/x-h264,width=640,height=360,framerate=30000/1001;\
                 video/x-h265,width=640,height=360,framerate=30000/1001\" ! decodebin"
            ),
            "{}",
            sized.launch_line()
        );
        assert!(
            sized
                .negotiation_hint()
                .unwrap()
                .contains("width, height or fps")
        );
        let rate = parse_url("v4l2:///dev/video0?fps=15").unwrap().0;
        assert!(
            rate.launch_line().contains(
                "caps=\"video/x-raw,framerate=15/1;image/jpeg,framerate=15/1;\
                 video/x-h264,framerate=15/1;video/x-h265,framerate=15/1\""
            ),
            "{}",
            rate.launch_line()
        );
        let plain = parse_url("/dev/video0").unwrap().0;
        // Display gives back a URL that parses to the same source.
        for kind in [&sized, &rate, &plain] {
            assert_eq!(&parse_url(&kind.to_string()).unwrap().0, kind);
        }
        assert_eq!(
            sized.to_string(),
            "v4l2:///dev/video1?width=640&height=360&fps=30000/1001"
        );
        assert_eq!(rate.to_string(), "v4l2:///dev/video0?fps=15/1");
        // Every launch line parses, as GStreamer reads it.
        gstreamer::init().unwrap();
        for kind in [&sized, &rate, &plain] {
            let pipeline = gstreamer::parse::launch(&kind.launch_line());
            assert!(pipeline.is_ok(), "{}: {pipeline:?}", kind.launch_line());
        }
        assert_eq!(
            parse_url("rtsp://cam/live").unwrap().0.negotiation_hint(),
            None
        );

        let test = parse_url("testsrc://?pattern=smpte&width=320&height=240&fps=2.5")
            .unwrap()
            .0;
        assert!(test.is_live());
        assert_eq!(
            test.launch_line(),
            "videotestsrc name=src is-live=true pattern=smpte ! \
             video/x-raw,width=320,height=240,framerate=5/2 ! videoconvert name=convert ! \
             video/x-raw,format=RGB ! appsink name=sink sync=false max-buffers=1 drop=false \
             emit-signals=false"
        );
        let default = parse_url("test://").unwrap().0;
        assert_eq!(
            default.to_string(),
            "testsrc://?pattern=ball&width=640&height=480&fps=10/1"
        );
        assert!(!default.takes_credentials() && !file.takes_credentials());
    }

    #[test]
    fn bad_urls_name_the_problem_and_the_supported_schemes() {
        let err = parse_url("ftp://user:secret@host/x").unwrap_err();
        assert!(err.contains("unknown scheme \"ftp\""), "{err}");
        assert!(
            err.contains("rtsp://") && err.contains("testsrc://"),
            "{err}"
        );
        assert!(!err.contains("secret"), "{err}");
        let err = parse_url("nonsense").unwrap_err();
        assert!(err.contains("\"nonsense\" is not a URI"), "{err}");
        assert!(
            parse_url("rtsp://user:pw@/x")
                .unwrap_err()
                .contains("no host")
        );
        assert!(parse_url("file://relative.avi").is_err());
        assert!(parse_url("v4l2://").is_err());
        assert!(parse_url("/dev/video0 ! fakesink").is_err());
        assert_mentions(
            &parse_url("v4l2:///dev/video0?width=640&fps=0&zoom=2").unwrap_err(),
            &[
                "url \"v4l2:///dev/video0?width=640&fps=0&zoom=2\": ",
                "fps \"0\" is not a rate",
                "unknown setting \"zoom\" (width, height, fps)",
                "width and height go together",
            ],
        );
        let err = parse_url("/dev/video0?height=480").unwrap_err();
        assert!(err.contains("width and height go together"), "{err}");
        let err = parse_url("/dev/video0?width=8&height=480").unwrap_err();
        assert!(
            err.contains("width \"8\" is not 16 to 8192 pixels") && !err.contains("go together"),
            "{err}"
        );
        let err = parse_url("/dev/video0&width=640").unwrap_err();
        assert!(err.contains("settings follow a '?'"), "{err}");
        assert_mentions(
            &parse_url("testsrc://?pattern=plaid&width=8&fps=0&colour=red").unwrap_err(),
            &[
                "pattern \"plaid\" is not one of",
                "width \"8\"",
                "fps \"0\"",
                "unknown setting \"colour\"",
            ],
        );
        assert!(parse_url("testsrc://ball").is_err());
    }

    /// Panics unless `err` contains every one of `needles`.
    fn assert_mentions(err: &str, needles: &[&str]) {
        for needle in needles {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    /// The mode a V4L2 camera without a size opens at, from the modes its
    /// device lists (caps as `v4l2src` reports them).
    #[test]
    fn a_v4l2_camera_without_a_size_takes_the_largest_mode_up_to_720p() {
        gstreamer::init().unwrap();
        let pick = |offered: &str, fps| {
            let offered: gstreamer::Caps = offered.parse().unwrap();
            preferred_v4l2_mode(&offered, fps).map(|caps| caps.to_string())
        };
        // A UVC webcam: raw up to 1080p at low rates, MJPEG at 30 fps.
        let webcam = "video/x-raw, format=YUY2, width=1920, height=1080, framerate=5/1; \
                      video/x-raw, format=YUY2, width=1280, height=720, framerate={ 10/1, 5/1 }; \
                      video/x-raw, format=YUY2, width=640, height=480, framerate={ 30/1, 15/1 }; \
                      image/jpeg, width=1920, height=1080, framerate=30/1; \
                      image/jpeg, width=1280, height=720, framerate=30/1; \
                      image/jpeg, width=640, height=480, framerate=30/1";
        // Raw first at equal sizes; a rate picks the mode that has it.
        assert_eq!(
            pick(webcam, None).as_deref(),
            Some("video/x-raw, width=(int)1280, height=(int)720")
        );
        assert_eq!(
            pick(webcam, Some((30, 1))).as_deref(),
            Some("image/jpeg, width=(int)1280, height=(int)720, framerate=(fraction)30/1")
        );
        assert_eq!(
            pick(webcam, Some((15, 1))).as_deref(),
            Some("video/x-raw, width=(int)640, height=(int)480, framerate=(fraction)15/1")
        );
        assert_eq!(pick(webcam, Some((60, 1))), None);
        // No 1280x720: the largest below it, whatever its media type.
        assert_eq!(
            pick(
                "video/x-raw, width=640, height=480; image/jpeg, width=960, height=540; \
                 image/jpeg, width=1920, height=1080",
                None
            )
            .as_deref(),
            Some("image/jpeg, width=(int)960, height=(int)540")
        );
        // Stepwise sizes: the largest within the limit, on the step.
        assert_eq!(
            pick(
                "video/x-raw, format=YUY2, width=[ 16, 4096, 8 ], height=[ 16, 2160, 8 ]",
                None
            )
            .as_deref(),
            Some("video/x-raw, width=(int)1280, height=(int)720")
        );
        assert_eq!(
            pick(
                "video/x-raw, width={ 320, 1280 }, height={ 240, 720 }",
                None
            )
            .as_deref(),
            Some("video/x-raw, width=(int)1280, height=(int)720")
        );
        // Nothing within the limit, or only formats it does not take.
        assert_eq!(
            pick(
                "video/x-raw, width=3840, height=2160; image/jpeg, width=1920, height=1080",
                None
            ),
            None
        );
        assert_eq!(
            pick("video/x-bayer, format=rggb, width=640, height=480", None),
            None
        );
        assert_eq!(pick("EMPTY", None), None);
    }

    #[test]
    fn fractions_are_reduced_and_bounded() {
        assert_eq!(parse_fraction("10"), Some((10, 1)));
        assert_eq!(parse_fraction("2.5"), Some((5, 2)));
        assert_eq!(parse_fraction("0.5"), Some((1, 2)));
        assert_eq!(parse_fraction("30000/1001"), Some((30000, 1001)));
        assert_eq!(parse_fraction("30/2"), Some((15, 1)));
        for bad in ["0", "-1", "1001", "NaN", "inf", "1/0", "0/5", "x", "2000/1"] {
            assert_eq!(parse_fraction(bad), None, "{bad}");
        }
    }

    #[test]
    fn redaction_hides_userinfo_everywhere_in_a_text() {
        assert_eq!(
            redact("cannot open rtsp://admin:hunter2@10.0.0.5:554/live: refused"),
            "cannot open rtsp://***@10.0.0.5:554/live: refused"
        );
        assert_eq!(
            redact("uri=\"http://u:p@h/a\" and rtsp://h2/b, rtsps://x@y"),
            "uri=\"http://***@h/a\" and rtsp://h2/b, rtsps://***@y"
        );
        assert_eq!(redact("no urls here"), "no urls here");
        assert_eq!(
            redact("cannot open rtsp://admin:pa/ss?w#rd@10.0.0.5/live: refused"),
            "cannot open rtsp://***@10.0.0.5/live: refused",
            "a password with '/', '?' and '#' in it"
        );
        let refused = parse_url("rtsp://admin:pa/ss@10.0.0.5/live").unwrap_err();
        assert!(refused.contains("percent-encode"), "{refused}");
        assert!(!refused.contains("ss@"), "{refused}");
        assert_eq!(
            redact("file:///a@b/c"),
            "file:///a@b/c",
            "an @ in a path stays"
        );
        let credentials = Credentials {
            user: "admin".into(),
            password: "hunter2".into(),
        };
        let redactor = Redactor::new(Some(&credentials));
        assert_eq!(
            redactor.clean("auth hunter2 failed for rtsp://admin:hunter2@h/x"),
            "auth *** failed for rtsp://***@h/x"
        );
        assert_eq!(Redactor::new(None).clean("rtsp://a:b@h"), "rtsp://***@h");
    }
}
