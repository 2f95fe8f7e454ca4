#!/usr/bin/env bash
# The main job on the bundled sample data: build the environment, write the sample
# collections, load one case of each, save its scene bundle (.mrb) and a snapshot (.png).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$here/scripts/bootstrap.sh"
cd "$here"
exec .venv/bin/python -m SarcomaLungLiverBrowserLib demo --out "${1:-output}"
