//! Man pages and shell completions from the programs' clap definitions, so the
//! installed documentation is always the `--help` of the binaries installed.

use std::fs;
use std::io;
use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/man1/<program>[-<subcommand>].1` and completions for bash, zsh and
/// fish under `DIR/completions/`. Returns the files written.
pub fn generate(mut cmd: clap::Command, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man/man1");
    fs::create_dir_all(&man)?;
    let mut written = Vec::new();
    cmd.build();
    let mut pages = vec![(name.clone(), cmd.clone())];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = format!("{name}-{}", sub.get_name());
        pages.push((page.clone(), sub.clone().display_name(page)));
    }
    for (page, c) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        let path = man.join(format!("{page}.1"));
        fs::write(&path, out)?;
        written.push(path);
    }
    let completions = dir.join("completions");
    fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = clap_complete::generate_to(shell, &mut cmd, &name, &completions)?;
        written.push(path);
    }
    Ok(written)
}
