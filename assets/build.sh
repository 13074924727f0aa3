#!/usr/bin/env bash
# Rebuilds static/js/editor.bundle.js from the pinned npm packages. Run it after
# changing editor.js or package.json, and commit the result: serving the app needs
# no Node.js.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund 2>/dev/null || npm install --no-audit --no-fund
npm run build
