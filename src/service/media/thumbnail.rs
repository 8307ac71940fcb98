//! Thumbnails: which standard size answers a request, the size of the result, and making it with
//! the `image` crate. Decoding is bounded (`image::Limits` and a pixel budget checked before the
//! pixels are read), so a decompression bomb fails with an error instead of exhausting memory.
//! Everything here is synchronous; callers run `generate` on the blocking pool.

use std::io::{BufReader, Cursor};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// How a thumbnail fits its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Exactly the box, cropped around the centre.
    Crop,
    /// Within the box, keeping the aspect ratio.
    Scale,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crop => "crop",
            Method::Scale => "scale",
        }
    }

    pub fn parse(text: &str) -> Option<Method> {
        match text {
            "crop" => Some(Method::Crop),
            "scale" => Some(Method::Scale),
            _ => None,
        }
    }
}

/// The sizes made for every uploaded image, and the only ones ever stored.
pub const STANDARD_SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// The standard size answering a request: the smallest one of the asked method that is at least
/// as large as asked, or the largest of that method when none is (the specification lets the
/// server choose, preferring "at least as large").
pub fn choose_size(width: u32, height: u32, method: Method) -> (u32, u32, Method) {
    let of_method = STANDARD_SIZES.iter().filter(|(_, _, m)| *m == method);
    of_method
        .clone()
        .find(|(w, h, _)| *w >= width && *h >= height)
        .or_else(|| of_method.clone().next_back())
        .copied()
        .unwrap_or(STANDARD_SIZES[STANDARD_SIZES.len() - 1])
}

/// The size of the thumbnail of an `iw`×`ih` image for a box and method. Images are never
/// enlarged: a small image scales to itself, and crops to the largest centred area of the box's
/// shape.
pub fn output_size(iw: u32, ih: u32, width: u32, height: u32, method: Method) -> (u32, u32) {
    let (iw64, ih64, w64, h64) = (iw as u64, ih as u64, width as u64, height as u64);
    match method {
        Method::Scale => {
            if iw <= width && ih <= height {
                return (iw.max(1), ih.max(1));
            }
            // Fit within the box: the tighter of the two ratios decides.
            if iw64 * h64 >= ih64 * w64 {
                (width, ((ih64 * w64 + iw64 / 2) / iw64).max(1) as u32)
            } else {
                (((iw64 * h64 + ih64 / 2) / ih64).max(1) as u32, height)
            }
        }
        Method::Crop => {
            if iw >= width && ih >= height {
                return (width, height);
            }
            let cw = iw64.min(ih64 * w64 / h64.max(1)).max(1);
            let ch = ih64.min(iw64 * h64 / w64.max(1)).max(1);
            (cw as u32, ch as u32)
        }
    }
}

/// A finished thumbnail.
#[derive(Debug)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Why no thumbnail could be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("the file is not an image this server can thumbnail")]
    NotAnImage,
    #[error("the image is too large to thumbnail")]
    TooLarge,
    #[error("the image cannot be decoded: {0}")]
    Corrupt(String),
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// A decoded image, read once and thumbnailed to several sizes.
pub struct Source {
    image: DynamicImage,
    format: ImageFormat,
}

/// Decodes the image in `path`, refusing more than `max_pixels` pixels.
pub fn decode(path: &Path, max_pixels: u64) -> Result<Source, ThumbnailError> {
    let file = std::fs::File::open(path)?;
    let reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    decode_reader(reader, max_pixels)
}

/// Decodes an image held in memory (for tests and small inputs).
pub fn decode_bytes(bytes: &[u8], max_pixels: u64) -> Result<Source, ThumbnailError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    decode_reader(reader, max_pixels)
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(
    mut reader: ImageReader<R>,
    max_pixels: u64,
) -> Result<Source, ThumbnailError> {
    let format = match reader.format() {
        Some(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP)) => {
            f
        }
        _ => return Err(ThumbnailError::NotAnImage),
    };
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    // Room for the decoded pixels (up to 4 bytes each) and the decoder's own buffers.
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(4)
            .saturating_add(16 * 1024 * 1024),
    );
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    if (w as u64) * (h as u64) > max_pixels {
        return Err(ThumbnailError::TooLarge);
    }
    if w == 0 || h == 0 {
        return Err(ThumbnailError::Corrupt("the image is empty".into()));
    }
    let image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    Ok(Source { image, format })
}

fn image_error(e: image::ImageError) -> ThumbnailError {
    match e {
        image::ImageError::Limits(_) => ThumbnailError::TooLarge,
        image::ImageError::Unsupported(_) => ThumbnailError::NotAnImage,
        other => ThumbnailError::Corrupt(other.to_string()),
    }
}

impl Source {
    /// The thumbnail for a box and method: JPEG for JPEG sources, PNG (keeping transparency)
    /// otherwise.
    pub fn thumbnail(
        &self,
        width: u32,
        height: u32,
        method: Method,
    ) -> Result<Thumbnail, ThumbnailError> {
        let (iw, ih) = (self.image.width(), self.image.height());
        let (tw, th) = output_size(iw, ih, width, height, method);
        let resized = match method {
            Method::Scale => self.image.thumbnail_exact(tw, th),
            Method::Crop => {
                // Scale so the box is covered, then cut the centre.
                let scale = f64::max(tw as f64 / iw as f64, th as f64 / ih as f64).min(1.0);
                let sw = ((iw as f64 * scale).round() as u32).max(tw);
                let sh = ((ih as f64 * scale).round() as u32).max(th);
                let covered = if (sw, sh) == (iw, ih) {
                    self.image.clone()
                } else {
                    self.image.thumbnail_exact(sw, sh)
                };
                covered.crop_imm((sw - tw) / 2, (sh - th) / 2, tw, th)
            }
        };
        let mut bytes = Vec::new();
        let content_type = if self.format == ImageFormat::Jpeg {
            let rgb = DynamicImage::ImageRgb8(resized.to_rgb8());
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 80);
            rgb.write_with_encoder(encoder)
                .map_err(|e| ThumbnailError::Corrupt(e.to_string()))?;
            "image/jpeg"
        } else {
            resized
                .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
                .map_err(|e| ThumbnailError::Corrupt(e.to_string()))?;
            "image/png"
        };
        Ok(Thumbnail {
            bytes,
            content_type,
            width: resized.width(),
            height: resized.height(),
        })
    }
}

/// Whether a declared content type is one worth pre-generating thumbnails for.
pub fn is_thumbnailable(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    matches!(
        essence.to_ascii_lowercase().as_str(),
        "image/png" | "image/jpeg" | "image/jpg" | "image/gif" | "image/webp"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_onto_the_standard_sizes() {
        use Method::*;
        assert_eq!(choose_size(32, 32, Crop), (32, 32, Crop));
        assert_eq!(choose_size(50, 40, Crop), (96, 96, Crop));
        assert_eq!(choose_size(500, 500, Crop), (96, 96, Crop));
        assert_eq!(choose_size(1, 1, Scale), (320, 240, Scale));
        assert_eq!(choose_size(321, 100, Scale), (640, 480, Scale));
        assert_eq!(choose_size(2000, 2000, Scale), (800, 600, Scale));
    }

    #[test]
    fn output_sizes_keep_the_aspect_ratio_and_never_enlarge() {
        use Method::*;
        assert_eq!(output_size(1000, 500, 320, 240, Scale), (320, 160));
        assert_eq!(output_size(500, 1000, 320, 240, Scale), (120, 240));
        assert_eq!(output_size(100, 50, 320, 240, Scale), (100, 50));
        assert_eq!(output_size(1000, 500, 96, 96, Crop), (96, 96));
        assert_eq!(output_size(40, 20, 96, 96, Crop), (20, 20));
        assert_eq!(output_size(1, 10_000, 800, 600, Scale), (1, 600));
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::new_rgba8(width, height);
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn thumbnails_have_the_computed_size() {
        let source = decode_bytes(&png(400, 200), 1_000_000).unwrap();
        let crop = source.thumbnail(96, 96, Method::Crop).unwrap();
        assert_eq!(
            (crop.width, crop.height, crop.content_type),
            (96, 96, "image/png")
        );
        let scale = source.thumbnail(320, 240, Method::Scale).unwrap();
        assert_eq!((scale.width, scale.height), (320, 160));
        let back = image::load_from_memory(&scale.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (320, 160));
    }

    #[test]
    fn corrupt_huge_and_foreign_inputs_are_refused() {
        let mut truncated = png(50, 50);
        truncated.truncate(60);
        assert!(matches!(
            decode_bytes(&truncated, 1_000_000),
            Err(ThumbnailError::Corrupt(_))
        ));
        assert!(matches!(
            decode_bytes(&png(2000, 2000), 1_000_000),
            Err(ThumbnailError::TooLarge)
        ));
        assert!(matches!(
            decode_bytes(b"just some text", 1_000_000),
            Err(ThumbnailError::NotAnImage)
        ));
    }
}
