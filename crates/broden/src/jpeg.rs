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

/// Decodes a JPEG to 8-bit RGB (greyscale images are expanded, as PIL's `convert("RGB")`).
pub(crate) fn decode(bytes: &[u8]) -> Result<image::RgbImage, String> {
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<image::RgbImage> {
        let decompress = mozjpeg::Decompress::with_err(error_manager()).from_mem(bytes)?;
        let mut started = decompress.rgb()?;
        let (width, height) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<[u8; 3]> = started.read_scanlines()?;
        started.finish()?;
        let raw: Vec<u8> = pixels.into_iter().flatten().collect();
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
