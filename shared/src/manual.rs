//! Man pages and shell completions from the programs' clap definitions, so the
//! installed documentation is always the `--help` of the binaries installed.
//!
//! clap_mangen renders the title, synopsis, options and subcommands. The free text (the
//! long description and the text after the options) is rendered here, because it holds
//! laid-out blocks that roff would otherwise refill into one run of words: lists such as
//! the exit codes (`  0  done …`, continued on deeper-indented lines) become tagged
//! paragraphs, other indented lines (examples, config lines) are kept as written.

use std::fs;
use std::io::{self, Write};
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
}
