//! Config files: the parser and every settings reader that does not touch the disk
//! never panic; errors name the file.
#![no_main]

use std::path::Path;

use modsec2sguil::alert::AlertSettings;
use modsec2sguil::config::ConfigFile;
use modsec2sguil::sguil::settings::{BarnyardSettings, SguilSettings};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/etc/fuzz.conf");
    match ConfigFile::parse(&text, path) {
        Ok(c) => {
            let _ = AlertSettings::resolve(&c);
            for e in [
                SguilSettings::resolve(&c).err(),
                BarnyardSettings::resolve(&c).err(),
            ]
            .into_iter()
            .flatten()
            {
                assert!(e.to_string().contains("/etc/fuzz.conf"), "{e}");
            }
        }
        Err(e) => assert!(e.to_string().contains("/etc/fuzz.conf"), "{e}"),
    }
});
