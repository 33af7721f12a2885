#!/usr/bin/env bash
# Parse + validate throughput of keel-config (issue: config model), against peers in the same run.
# Usage: bench/config-parse.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import yaml' 2>/dev/null || pip install --quiet pyyaml 2>/dev/null || true
cargo bench -p keel-config --bench parse_validate --locked
