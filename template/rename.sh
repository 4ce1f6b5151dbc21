#!/bin/sh
# Renames a copy of clubhouse to NAME (a crate name, snake_case): the crate, the binary, the
# cookie and setting names, and the site's default title. Run by cargo-generate's hook in the
# new copy; safe to run by hand in a fresh copy too: sh template/rename.sh my_club
set -eu
name="$1"
case "$name" in
  ''|*[!a-z0-9_]*) echo "rename.sh: expected a crate name in snake_case, got '$name'" >&2; exit 2 ;;
esac
upper=$(printf '%s' "$name" | tr 'a-z' 'A-Z')
# Title Case: words split at underscores.
title=$(printf '%s' "$name" | awk -F_ '{for (i = 1; i <= NF; i++) $i = toupper(substr($i, 1, 1)) substr($i, 2)} 1' OFS=' ')

find . -type f \
  ! -path './.git/*' ! -path './target/*' ! -name '*.png' ! -path './template/*' \
  -exec grep -Il -e clubhouse -e Clubhouse -e CLUBHOUSE {} + |
while IFS= read -r file; do
  sed -i -e "s/clubhouse/$name/g" -e "s/Clubhouse/$title/g" -e "s/CLUBHOUSE/$upper/g" "$file"
done

# The copy is a project of its own, not a template.
rm -rf template cargo-generate.toml
echo "renamed to $name ($title)"
