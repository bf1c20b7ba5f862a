//! Man pages and shell completions from the programs' clap definitions, so the
//! installed documentation is always the `--help` of the binaries installed.
//!
//! clap_mangen renders the title, synopsis, options and subcommands. The free text (the
//! long description and the text after the options) is rendered here, because it holds
//! laid-out blocks that roff would otherwise refill into one run of words: lists such as
//! the exit codes (`  0  done …`, continued on deeper-indented lines) become tagged
//! paragraphs, other indented lines (examples, config lines) are kept as written.
//!
//! `modsec2sguil.conf(5)`, the config file's reference, is generated from the one
//! table of keys, [`crate::config::KEYS`] ([`config_page`]), so it cannot drift from
//! what the programs read.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use clap_complete::Shell;

/// Writes `DIR/man/man1/<program>[-<subcommand>].1`, `DIR/man/man5/modsec2sguil.conf.5`
/// (either program writes the same page) and completions for bash, zsh and fish under
/// `DIR/completions/`. Returns the files written.
pub fn generate(mut cmd: clap::Command, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let name = cmd.get_name().to_string();
    let man = dir.join("man/man1");
    fs::create_dir_all(&man)?;
    let man5 = dir.join("man/man5");
    fs::create_dir_all(&man5)?;
    let conf = man5.join(CONFIG_PAGE);
    fs::write(&conf, config_page())?;
    let mut written = vec![conf];
    cmd.build();
    // clap's `help` subcommand has no page of its own: the main page must not list it
    // as `<program>-help(1)`.
    let mut top = cmd.clone();
    if top.find_subcommand("help").is_some() {
        top = top.mut_subcommand("help", |s| s.hide(true));
    }
    let mut pages = vec![(name.clone(), top)];
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let page = format!("{name}-{}", sub.get_name());
        pages.push((page.clone(), sub.clone().display_name(page)));
    }
    for (page, c) in pages {
        let mut out = Vec::new();
        render(c, &mut out)?;
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

/// One page, in the sections and order clap_mangen uses, with the free text rendered
/// by [`text_to_roff`].
fn render(cmd: clap::Command, w: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    if let Some(text) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        w.write_all(format!(".SH DESCRIPTION\n{}", text_to_roff(&text.to_string())).as_bytes())?;
    }
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(w)?;
    }
    if let Some(text) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        w.write_all(format!(".SH NOTES\n{}", text_to_roff(&text.to_string())).as_bytes())?;
    }
    if cmd
        .get_version()
        .or_else(|| cmd.get_long_version())
        .is_some()
    {
        man.render_version_section(w)?;
    }
    if cmd.get_author().is_some() {
        man.render_authors_section(w)?;
    }
    Ok(())
}

/// The config file's page, in `man/man5/`.
pub const CONFIG_PAGE: &str = "modsec2sguil.conf.5";

/// The config file's syntax, for the page's DESCRIPTION (as `--help` text: paragraphs,
/// indented lines kept as written).
const CONFIG_SYNTAX: &str = "\
modsec-collector and modsec-shipper read one config file: /etc/modsec2sguil.conf, or the \
one given with -c (status and requeue with --queue DIR alone, and the collector with \
--queue, read none). The command line wins over the file.

The file is Sguil style, as modsec2sguil 0.8's modsec_agent.conf and Sguil's own agents: \
one `set NAME value` a line. A value is a bare word, a \"double-quoted\" string (in which \
\\\" and \\\\ stand for \" and \\), or a {braced} string taken literally (braces may nest). \
A line starting with # is a comment; ;# starts a comment after a setting, as in Tcl. A \
later set of the same name wins. Blank lines are ignored. The file must be UTF-8.

    set SERVER_HOST sguil.example.net
    set NET_GROUP \"web farm\"   ;# quoted: it holds a space
    set ANOMALY_RULES {949110 959100}

A key a program does not read is ignored (one file serves both); a key neither knows is \
warned about, with its line. A bad value stops the program with the file, line and key \
named (exit code 3).

Run as root (the collector always is; the shipper when started as root), a program \
refuses a config file that anyone but root could have written, as OpenSSH's StrictModes: \
the file must be root's and writable by no one else (the Debian package's root:sguil \
0640 passes), every directory on its path root's and not writable by group or others \
(unless sticky, as /tmp, with what it holds on the way root's), and every symbolic link \
on the way root's. The error names what is at fault and the fix.";

/// `modsec2sguil.conf(5)`: the syntax, then every key of [`crate::config::KEYS`] with
/// its values, default and the programs that read it, grouped by program.
pub fn config_page() -> String {
    use crate::config::{ReadBy, KEYS};
    let mut out = format!(
        ".TH MODSEC2SGUIL.CONF 5 \"\" \"modsec2sguil {}\" \"File Formats\"\n\
         .SH NAME\nmodsec2sguil.conf \\- configuration of modsec\\-collector and modsec\\-shipper\n\
         .SH SYNOPSIS\n{}\n.SH DESCRIPTION\n{}.SH KEYS\n",
        env!("CARGO_PKG_VERSION"),
        escape(crate::config::DEFAULT_PATH),
        text_to_roff(CONFIG_SYNTAX)
    );
    for (group, title) in [
        (ReadBy::Both, "Read by both programs"),
        (ReadBy::Collector, "Read by modsec\\-collector"),
        (ReadBy::Shipper, "Read by modsec\\-shipper"),
    ] {
        out.push_str(&format!(".SS {title}\n"));
        for key in KEYS.iter().filter(|k| k.read_by == group) {
            out.push_str(&format!(
                ".TP\n.B {}\n{}\n.br\nValues: {}.\n.br\nDefault: {}.\n.br\nRead by: {}.\n",
                key.name,
                escape(key.about),
                escape(key.values),
                escape(key.default),
                escape(key.read_by.programs())
            ));
        }
    }
    out.push_str(
        ".SH FILES\n.TP\n/etc/modsec2sguil.conf\nThe default config file. The Debian package \
         installs there the example of the source tree, examples/modsec2sguil.conf, \
         which shows every key.\n\
         .SH SEE ALSO\n.BR modsec\\-collector (1),\n.BR modsec\\-shipper (1),\n\
         .BR modsec\\-shipper\\-drain (1),\n.BR modsec\\-shipper\\-run (1)\n",
    );
    out
}

/// Text as `--help` prints it, as roff: paragraphs (split at blank lines) are filled;
/// an indented line `  TAG  text` with a short tag starts a tagged paragraph, which the
/// deeper-indented lines after it continue; other indented lines are kept as written.
pub fn text_to_roff(text: &str) -> String {
    let mut out = String::new();
    // What the previous line left open: a tagged item's indent, or a verbatim block.
    enum Open {
        Nothing,
        Item(usize),
        Verbatim,
    }
    let mut open = Open::Nothing;
    let close = |open: &mut Open, out: &mut String| {
        match open {
            Open::Verbatim => out.push_str(".fi\n"),
            Open::Item(_) => out.push_str(".PP\n"),
            Open::Nothing => {}
        }
        *open = Open::Nothing;
    };
    let mut first = true;
    for paragraph in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        close(&mut open, &mut out);
        if !first {
            out.push_str(".PP\n");
        }
        first = false;
        for line in paragraph.lines() {
            let indent = line.len() - line.trim_start().len();
            if indent == 0 {
                close(&mut open, &mut out);
                out.push_str(&escape(line));
                out.push('\n');
            } else if let Some((tag, rest)) = item(line) {
                if let Open::Verbatim = open {
                    close(&mut open, &mut out);
                }
                out.push_str(&format!(
                    ".TP {}\n{}\n{}\n",
                    tag.len() + 3,
                    escape(tag),
                    escape(rest)
                ));
                open = Open::Item(indent);
            } else if matches!(open, Open::Item(i) if indent > i) {
                out.push_str(&escape(line.trim_start()));
                out.push('\n');
            } else {
                if !matches!(open, Open::Verbatim) {
                    close(&mut open, &mut out);
                    out.push_str(".nf\n");
                    open = Open::Verbatim;
                }
                out.push_str(&escape(line));
                out.push('\n');
            }
        }
    }
    close(&mut open, &mut out);
    out
}

/// `  TAG  text`: indented by 1 to 3 spaces, a tag of 1 to 3 characters, then at least
/// two spaces (an exit code and its meaning).
fn item(line: &str) -> Option<(&str, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if !(1..=3).contains(&indent) {
        return None;
    }
    let rest = &line[indent..];
    let end = rest.find(' ')?;
    let (tag, after) = rest.split_at(end);
    let text = after.trim_start_matches(' ');
    (tag.chars().count() <= 3 && after.len() - text.len() >= 2 && !text.is_empty())
        .then_some((tag, text))
}

/// One line of text for roff: backslashes and hyphens escaped, and a line that would
/// read as a request (a leading `.` or `'`) protected.
fn escape(line: &str) -> String {
    let mut s = line.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        s.insert_str(0, "\\&");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_lists_become_tagged_paragraphs_and_indented_lines_stay_as_written() {
        let text = "Exit codes:\n  0  done (also: another\n     line)\n  12 x\n\nExample:\n    set A  b\n      more\nafter\n\n.dot -x \\n";
        assert_eq!(
            text_to_roff(text),
            "Exit codes:\n.TP 4\n0\ndone (also: another\nline)\n.PP\n.nf\n  12 x\n.fi\n\
             .PP\nExample:\n.nf\n    set A  b\n      more\n.fi\nafter\n\
             .PP\n\\&.dot \\-x \\en\n"
        );
    }

    /// The page has an entry for every key of the table, with its default and who
    /// reads it, and nothing else under KEYS.
    #[test]
    fn the_config_page_lists_every_key_with_its_default_and_reader() {
        let page = config_page();
        let entries: Vec<&str> = page
            .split(".TP\n.B ")
            .skip(1)
            .map(|e| e.split('\n').next().unwrap())
            .collect();
        let names: Vec<&str> = crate::config::KEYS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        let mut listed = entries.clone();
        listed.sort();
        assert_eq!(listed, sorted);
        for k in crate::config::KEYS {
            let entry = page.split(&format!(".B {}\n", k.name)).nth(1).unwrap();
            let entry = entry.split(".TP").next().unwrap();
            assert!(
                entry.contains(&format!("Default: {}.", escape(k.default))),
                "{entry}"
            );
            assert!(entry.contains(&format!("Read by: {}.", escape(k.read_by.programs()))));
        }
        assert!(page.contains("StrictModes"), "the syntax and the root rule");
    }
}
