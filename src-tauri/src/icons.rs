//! The tray icon's three looks (icons/tray-*.png, made by icons/make.sh), compiled in.

use carpool::desktop::Look;
use tauri::image::Image;

pub fn for_look(look: Look) -> Image<'static> {
    let png: &[u8] = match look {
        Look::Stopped => include_bytes!("../../icons/tray-stopped@2x.png"),
        Look::Running => include_bytes!("../../icons/tray-running@2x.png"),
        Look::Attention => include_bytes!("../../icons/tray-attention@2x.png"),
    };
    Image::from_bytes(png).expect("the tray icons are valid PNG files")
}
