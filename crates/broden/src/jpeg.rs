//! JPEG decoding with libjpeg-turbo's decoder.
//!
//! The reference implementations read Broden through PIL, which links libjpeg-turbo; other
//! decoders differ by a few levels on a few percent of pixels (different chroma
//! upsampling), which would shift every activation. mozjpeg is a fork of libjpeg-turbo with
//! the same decoder, so images decode bit for bit as PIL decodes them.

use std::panic::{AssertUnwindSafe, catch_unwind};

use mozjpeg_sys::{JWRN_JPEG_EOF, jpeg_common_struct, jpeg_error_mgr, jpeg_std_error};

/// A fatal libjpeg error, carried through the unwind to `decode`.
struct Fatal(String);

fn message(cinfo: &mut jpeg_common_struct) -> String {
    // SAFETY: libjpeg guarantees `err` points at our error manager while it runs.
    let (format, code) = unsafe { ((*cinfo.err).format_message, (*cinfo.err).msg_code) };
    let Some(format) = format else {
        return format!("libjpeg error {code}");
    };
    // The binding declares the buffer `&[u8; 80]` although libjpeg writes into it; call it
    // through the signature it really has.
    type Format = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &mut [u8; 80]);
    // SAFETY: the two function pointer types have the same ABI; only the reference's
    // mutability differs, and the C side does write.
    let format: Format = unsafe { std::mem::transmute(format) };
    let mut buffer = [0u8; 80];
    // SAFETY: format_message writes at most JMSG_LENGTH_MAX (80) bytes, NUL-terminated.
    unsafe { format(cinfo, &mut buffer) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

extern "C-unwind" fn error_exit(cinfo: &mut jpeg_common_struct) {
    let text = message(cinfo);
    std::panic::resume_unwind(Box::new(Fatal(text)));
}

/// Warnings are ignored as PIL ignores them, except a premature end of data: PIL refuses a
/// truncated image, and so do we (libjpeg alone would fill the rest with grey).
extern "C-unwind" fn emit_message(cinfo: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    // SAFETY: as above.
    let code = unsafe { (*cinfo.err).msg_code };
    if level < 0 && code == JWRN_JPEG_EOF {
        std::panic::resume_unwind(Box::new(Fatal(
            "the file is truncated (premature end of JPEG data)".into(),
        )));
    }
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_error_mgr is a plain C struct; jpeg_std_error fills every field.
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { jpeg_std_error(&mut err) };
    err.error_exit = Some(error_exit);
    err.emit_message = Some(emit_message);
    err
}

/// Decodes a JPEG to 8-bit RGB as PIL's `Image.open(..).convert("RGB")` does: greyscale
/// images are expanded, and four-channel (CMYK and YCCK) images go through [`cmyk_to_rgb`].
pub(crate) fn decode(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<image::RgbImage> {
        let decompress = mozjpeg::Decompress::with_err(error_manager()).from_mem(bytes)?;
        let (width, height) = (decompress.width() as u32, decompress.height() as u32);
        let raw: Vec<u8> = if decompress.components().len() == 4 {
            // PIL asks libjpeg for CMYK whatever the file holds, so libjpeg converts YCCK
            // (an Adobe marker with transform 2) to CMYK itself, as here.
            let mut started = decompress.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK)?;
            let pixels: Vec<[u8; 4]> = started.read_scanlines()?;
            started.finish()?;
            pixels.iter().flat_map(|&p| cmyk_to_rgb(p)).collect()
        } else {
            let mut started = decompress.rgb()?;
            let pixels: Vec<[u8; 3]> = started.read_scanlines()?;
            started.finish()?;
            pixels.into_iter().flatten().collect()
        };
        image::RgbImage::from_raw(width, height, raw)
            .ok_or_else(|| std::io::Error::other("short image data"))
    }));
    match result {
        Ok(Ok(image)) => Ok(image),
        Ok(Err(e)) => Err(e.to_string()),
        Err(payload) => match payload.downcast::<Fatal>() {
            Ok(fatal) => Err(fatal.0),
            Err(payload) => std::panic::resume_unwind(payload),
        },
    }
}

/// One pixel as libjpeg gives it for a four-channel JPEG, converted to RGB as PIL converts it.
///
/// PIL reads every four-channel JPEG with the raw mode `CMYK;I`, inverting each channel
/// (Adobe's convention, which Photoshop's files follow; PIL assumes it with or without an
/// Adobe marker), then `convert("RGB")` applies `cmyk2rgb` of libImaging's `Convert.c`:
/// with `nk = 255 - K`, `R = nk - nk·C/255` rounded to nearest (its `MULDIV255`), and so
/// for G and B. Undoing the inversion, `nk` is the stored K and `C` is `255 - ` the stored C.
fn cmyk_to_rgb(stored: [u8; 4]) -> [u8; 3] {
    let nk = u32::from(stored[3]);
    let channel = |stored: u8| {
        let t = u32::from(255 - stored) * nk + 128;
        // MULDIV255: (t / 256 + t) / 256 is t / 255 rounded for t up to 255·255 + 128.
        (nk - (((t >> 8) + t) >> 8)) as u8
    };
    [channel(stored[0]), channel(stored[1]), channel(stored[2])]
}

#[cfg(test)]
mod tests {
    use super::cmyk_to_rgb;

    /// PIL's `MULDIV255` is the product divided by 255 rounded to nearest (never a tie: 255
    /// is odd), so an independent formula must agree for every stored (C, K).
    #[test]
    fn cmyk_to_rgb_rounds_as_pil_for_every_value() {
        for c in 0..=255u8 {
            for k in 0..=255u8 {
                let (ink, nk) = (f64::from(255 - c), f64::from(k));
                let want = nk - (ink * nk / 255.0).round();
                assert_eq!(cmyk_to_rgb([c, c, c, k]), [want as u8; 3], "C {c} K {k}");
            }
        }
        assert_eq!(cmyk_to_rgb([0, 255, 128, 255]), [0, 255, 128]);
        assert_eq!(cmyk_to_rgb([7, 99, 255, 0]), [0, 0, 0]);
    }
}
