#!/usr/bin/env bash
# Build vendor/dvc_plots_offline.html: DVC's plots page template with vega, vega-lite and
# vega-embed inlined (the versions dvc-render's own page loads from a CDN), so `dvc plots show`
# renders with no network (.dvc/config: plots.html_template). Needs npm (the registry) once, by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSIONS=(vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=vendor/dvc_plots_offline.html
lic=vendor/LICENSES-vega.txt
: > "$lic.tmp"
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n    {refresh_tag}\n    <meta charset="utf-8">\n    <title>DVC Plot</title>\n'
  printf '    <!-- vega, vega-lite, vega-embed inlined (BSD-3-Clause; vendor/LICENSES-vega.txt): %s -->\n' "${VERSIONS[*]}"
  for spec in "${VERSIONS[@]}"; do
    name=${spec%@*}
    (cd "$work" && npm pack -q "$spec" >/dev/null && mkdir "$name" && tar xzf "$name"-*.tgz -C "$name")
    printf '    <script>\n'
    cat "$work/$name/package/build/$name.min.js"
    printf '\n    </script>\n'
    { echo "== $spec =="; cat "$work/$name/package/LICENSE"; echo; } >> "$lic.tmp"
  done
  printf '    <style>\n        table {\n            border-spacing: 15px;\n        }\n    </style>\n</head>\n<body>\n    {plot_divs}\n</body>\n</html>\n'
} > "$out.tmp"
mv "$out.tmp" "$out"
mv "$lic.tmp" "$lic"
sha256sum "$out"
