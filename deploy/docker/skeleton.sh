#!/bin/sh
# Writes the workspace's dependency skeleton to DEST: the root Cargo.toml and Cargo.lock, every
# crate's Cargo.toml, and a stub for every build target (src/lib.rs empty; src/main.rs,
# src/bin/*.rs, build.rs and every `path = "....rs"` a manifest names: `fn main() {}`).
#
# The Dockerfile builds the skeleton first, so the layer that compiles the dependencies depends
# only on the manifests and the lock file, and is reused while only the sources change (the
# trick cargo-chef automates, without installing it). Run from the workspace root:
#   sh deploy/docker/skeleton.sh /skeleton
set -eu
dest=${1:?usage: skeleton.sh DEST}
mkdir -p "$dest"
cp Cargo.toml Cargo.lock "$dest/"
for manifest in crates/*/Cargo.toml; do
  crate=$(dirname "$manifest")
  mkdir -p "$dest/$crate/src"
  cp "$manifest" "$dest/$manifest"
  # Targets cargo finds by itself.
  if [ -f "$crate/src/lib.rs" ]; then : >"$dest/$crate/src/lib.rs"; fi
  for f in "$crate/src/main.rs" "$crate/build.rs" "$crate"/src/bin/*.rs; do
    if [ -f "$f" ]; then
      mkdir -p "$dest/$(dirname "$f")"
      echo 'fn main() {}' >"$dest/$f"
    fi
  done
  # Targets the manifest names: [[bin]], [[test]], [[example]], [[bench]] `path = "...rs"`.
  sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest" |
    while read -r rel; do
      if [ ! -f "$dest/$crate/$rel" ]; then
        mkdir -p "$dest/$crate/$(dirname "$rel")"
        case "$rel" in
          src/lib.rs) : >"$dest/$crate/$rel" ;;
          *) echo 'fn main() {}' >"$dest/$crate/$rel" ;;
        esac
      fi
    done
done
