#!/bin/sh
# Installs modsec-collector and modsec-shipper under PREFIX (default /usr/local), with
# their man pages (man1, and man5 for the config file) and bash, zsh and fish
# completions generated from the binaries. The
# binaries are stripped (the release profile's `strip = true`). On Debian/Ubuntu the
# package is the first way: README, "Install from the .deb".
#
#   sudo examples/install.sh            # /usr/local/bin, /usr/local/share/...
#   examples/install.sh "$HOME/.local"  # no root needed
#
# It does not create users, directories or config files: see the README, "Install with
# cargo, step by step".
set -eu
prefix=${1:-/usr/local}
here=$(cd "$(dirname "$0")/.." && pwd)
for crate in collector shipper; do
    cargo install --quiet --locked --force --root "$prefix" --path "$here/$crate"
done
docs=$(mktemp -d)
trap 'rm -rf "$docs"' EXIT
"$prefix/bin/modsec-shipper" generate-docs "$docs" > /dev/null
"$prefix/bin/modsec-collector" --generate-docs "$docs" > /dev/null
install -d "$prefix/share/man/man1" "$prefix/share/man/man5" "$prefix/share/bash-completion/completions" \
    "$prefix/share/zsh/site-functions" "$prefix/share/fish/vendor_completions.d"
install -m 644 "$docs"/man/man1/*.1 "$prefix/share/man/man1/"
install -m 644 "$docs"/man/man5/*.5 "$prefix/share/man/man5/"
for p in modsec-collector modsec-shipper; do
    install -m 644 "$docs/completions/$p.bash" "$prefix/share/bash-completion/completions/$p"
    install -m 644 "$docs/completions/_$p" "$prefix/share/zsh/site-functions/_$p"
    install -m 644 "$docs/completions/$p.fish" "$prefix/share/fish/vendor_completions.d/$p.fish"
done
echo "installed under $prefix: bin/modsec-collector, bin/modsec-shipper, their man pages (man modsec-shipper-drain, man 5 modsec2sguil.conf) and completions"
