#!/bin/sh
# Renames a copy of clubhouse to NAME (a crate name, snake_case): the crate, the binary, the
# cookie and setting names, and the site's default title; then makes the copy a project of its
# own (no template parts left). Run by cargo-generate's hook in the new copy; safe to run by
# hand in a fresh copy too: sh template/rename.sh my_club
#
# POSIX sh and POSIX tools only (no `sed -i`, whose form differs between GNU and BSD), so that
# it runs the same on Linux and macOS.
set -eu
name="$1"
case "$name" in
  ''|*[!a-z0-9_]*) echo "rename.sh: expected a crate name in snake_case, got '$name'" >&2; exit 2 ;;
esac
upper=$(printf '%s' "$name" | tr 'a-z' 'A-Z')
# Title Case: words split at underscores.
title=$(printf '%s' "$name" | awk -F_ '{for (i = 1; i <= NF; i++) $i = toupper(substr($i, 1, 1)) substr($i, 2)} 1' OFS=' ')

# Replaces FILE by the output of the command that follows, keeping FILE's permissions.
rewrite() {
  file="$1"
  shift
  tmp="$file.rename-tmp"
  "$@" < "$file" > "$tmp"
  cat "$tmp" > "$file"
  rm -f "$tmp"
}

# Parts that describe the template rather than the project: between the markers
# `template-only {` and `template-only }` (in a comment of the file's kind) they are left
# out; a line `<!-- in-a-copy: TEXT -->` becomes TEXT.
strip_template_parts() {
  awk '
    /template-only \{/ { skip = 1; next }
    /template-only \}/ { skip = 0; next }
    skip { next }
    /^<!-- in-a-copy: .* -->$/ { sub(/^<!-- in-a-copy: /, ""); sub(/ -->$/, ""); print; next }
    { print }
  '
}
for file in README.md .ci/run; do
  [ -f "$file" ] && rewrite "$file" strip_template_parts
done

find . -type f \
  ! -path './.git/*' ! -path './target/*' ! -name '*.png' ! -path './template/*' \
  -exec grep -Il -e clubhouse -e Clubhouse -e CLUBHOUSE {} + |
while IFS= read -r file; do
  rewrite "$file" sed -e "s/clubhouse/$name/g" -e "s/Clubhouse/$title/g" -e "s/CLUBHOUSE/$upper/g"
done

# The new names have other lengths than the old: lay the code out again, as `cargo fmt --check`
# in its CI expects (cargo is there: it is what runs this).
if command -v cargo >/dev/null 2>&1; then
  cargo fmt --all
fi

# The copy is a project of its own, not a template.
rm -rf template cargo-generate.toml
echo "renamed to $name ($title)"
