#!/usr/bin/env bash
# Re-vendor Chart.js for the WaveSpeed UI plugin (airflow_provider_wavespeed/ui/static/vendor/).
# The pages load it from the installed wheel: no CDN, no network at view time.
# Usage: scripts/vendor_chartjs.sh [version]   (default: the pinned version below)
set -euo pipefail

CHARTJS_VERSION="${1:-4.6.2}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$repo_root/airflow_provider_wavespeed/ui/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "chart.js@${CHARTJS_VERSION}" >/dev/null)
tar -xzf "$work/chart.js-${CHARTJS_VERSION}.tgz" -C "$work"

build="$work/package/dist/chart.umd.min.js"
[[ -f "$build" ]] || build="$work/package/dist/chart.umd.js"
[[ -f "$build" ]] || { echo "no UMD build in chart.js@${CHARTJS_VERSION}" >&2; exit 1; }

mkdir -p "$dest"
# The source map is not shipped: drop the comment that would make devtools request it.
sed '/^\/\/# sourceMappingURL=/d' "$build" >"$dest/chart.umd.min.js"
cp "$work/package/LICENSE.md" "$dest/chart.js.LICENSE.txt"
echo "Chart.js ${CHARTJS_VERSION} -> $dest ($(wc -c <"$dest/chart.umd.min.js") bytes)"
