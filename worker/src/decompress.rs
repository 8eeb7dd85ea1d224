//! Compressed text inputs (`.gz`, `.zst`): a map task reads the whole object and decompresses
//! it before cutting lines.

use std::io::Read;

use quern_api::split::Compression;

/// Decompresses a whole object; the error says what was wrong with the data.
pub fn decompress(c: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out).map_err(|e| format!("gzip: {e}"))?;
        }
        Compression::Zstd => {
            let mut rest = data;
            while !rest.is_empty() {
                let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut rest).map_err(|e| format!("zstd: {e}"))?;
                frame.read_to_end(&mut out).map_err(|e| format!("zstd: {e}"))?;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn both_formats_round_trip_and_garbage_is_an_error() {
        let text = b"one line\nanother line\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decompress(Compression::Gzip, &gz).unwrap(), text);
        let mut zst = Vec::new();
        ruzstd::encoding::compress(&text[..], &mut zst, ruzstd::encoding::CompressionLevel::Fastest);
        let mut two = zst.clone();
        two.extend_from_slice(&zst);
        assert_eq!(decompress(Compression::Zstd, &two).unwrap(), [text.clone(), text].concat());
        assert!(decompress(Compression::Gzip, b"not gzip").is_err());
        assert!(decompress(Compression::Zstd, b"not zstd").is_err());
    }
}
