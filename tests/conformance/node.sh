#!/usr/bin/env bash
# Usage: tests/conformance/node.sh HEROKU_BUILDPACK_NODEJS_CHECKOUT [FIXTURE...]
#
# Runs roboku's built-in nodejs buildpack (bin/detect, then bin/compile) on each fixture of a
# checkout of heroku/heroku-buildpack-nodejs (test/fixtures/*; not vendored here: clone it where
# the machine has network), each in a fresh copy with a fresh cache dir, and prints one Markdown
# row per fixture: name, outcome (built / refused / not detected / timed out) and the first line
# of the buildpack's message. docs/buildpacks.md holds a run and where it differs from Heroku.
# Needs the robot's node and npm (yarnpkg, pnpm for those fixtures); fixtures with registry
# dependencies reach the npm registry. FIXTURE_TIMEOUT (seconds, default 180) bounds each build.
# DROP_ENGINES_NODE=1 deletes engines.node from each package.json first: most fixtures ask for a
# node long past its end of life, and this shows what the rest of the buildpack does with them.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PACK="$HERE/../../buildpacks/nodejs"
src=${1:?usage: tests/conformance/node.sh HEROKU_BUILDPACK_NODEJS_CHECKOUT [FIXTURE...]}
shift
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || mapfile -t fixtures < <(ls "$src/test/fixtures")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| fixture | roboku | first line of the message |"
echo "|---|---|---|"
for f in "${fixtures[@]}"; do
    app="$work/$f/app" cache="$work/$f/cache" env="$work/$f/env"
    mkdir -p "$app" "$cache" "$env"
    cp -a "$src/test/fixtures/$f/." "$app/"
    if [ "${DROP_ENGINES_NODE:-0}" = 1 ] && [ -f "$app/package.json" ]; then
        node -e '
            const fs = require("fs"), f = process.argv[1];
            try {
                const p = JSON.parse(fs.readFileSync(f, "utf8"));
                if (p.engines) { delete p.engines.node; fs.writeFileSync(f, JSON.stringify(p, null, 2)); }
            } catch (e) {}
        ' "$app/package.json"
    fi
    if ! "$PACK/bin/detect" "$app" >/dev/null 2>&1; then
        echo "| $f | not detected | |"
        continue
    fi
    out=$(timeout "${FIXTURE_TIMEOUT:-180}" "$PACK/bin/compile" "$app" "$cache" "$env" 2>&1)
    status=$?
    first=$(printf '%s\n' "$out" | grep -m1 -E '^ !|ERR|Error|error ' | sed 's/^ *! *//; s/|/\\|/g' | cut -c1-150)
    if [ $status = 0 ]; then
        echo "| $f | built | $(printf '%s\n' "$out" | grep -m1 'Using node' | sed 's/^-----> //') |"
    elif [ $status = 124 ]; then
        echo "| $f | timed out | after ${FIXTURE_TIMEOUT:-180} s |"
    else
        echo "| $f | refused | ${first:-exit $status} |"
    fi
    rm -rf "${work:?}/$f"
done
