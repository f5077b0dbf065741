//! `edge-agent model import-darknet`: darknet `.cfg` + `.weights` → ONNX;
//! `edge-agent model generate-weights`: random weights for a `.cfg`.

use std::path::Path;

/// The import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// I/O error.
        source: std::io::Error,
    },
    /// The darknet files are not valid.
    #[error(transparent)]
    Darknet(#[from] vision::darknet::DarknetError),
}

/// Imports a darknet model and writes the ONNX file (atomically: a temporary
/// file renamed into place). Returns the detector spec written into it.
pub fn import_darknet(
    cfg: &Path,
    weights: &Path,
    output: &Path,
) -> Result<vision::yolo::DetectorSpec, ImportError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
        move |source| ImportError::Io {
            path: path.display().to_string(),
            source,
        }
    }
    let cfg_text = std::fs::read_to_string(cfg).map_err(io(cfg))?;
    let weights_bytes = std::fs::read(weights).map_err(io(weights))?;
    let model = vision::darknet::import(&cfg_text, &weights_bytes)?;
    let tmp = output.with_extension("onnx.partial");
    std::fs::write(&tmp, &model.onnx).map_err(io(&tmp))?;
    std::fs::rename(&tmp, output).map_err(io(output))?;
    Ok(model.spec)
}

/// Writes a darknet `.weights` file for `cfg` filled with deterministic
/// pseudo-random values (same `seed`, same bytes; see
/// [`vision::darknet::generate_weights`]), for benchmarking architectures
/// without published weights: `model import-darknet` takes it like real
/// weights. Returns the file's size in bytes.
pub fn generate_weights(cfg: &Path, output: &Path, seed: u64) -> Result<u64, ImportError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ImportError::Io { path, source }
    };
    let cfg_text = std::fs::read_to_string(cfg).map_err(io(cfg))?;
    let weights = vision::darknet::generate_weights(&cfg_text, seed)?;
    let tmp = output.with_extension("weights.partial");
    std::fs::write(&tmp, &weights).map_err(io(&tmp))?;
    std::fs::rename(&tmp, output).map_err(io(output))?;
    Ok(weights.len() as u64)
}
