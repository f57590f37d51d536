#!/usr/bin/env bash
# Usage: tests/conformance/python.sh HEROKU_BUILDPACK_PYTHON_CHECKOUT [FIXTURE...]
#
# Runs roboku's built-in python buildpack (bin/detect, then bin/compile) on each fixture of a
# checkout of heroku/heroku-buildpack-python (spec/fixtures/*; not vendored here: clone it where
# the machine has network), each in a fresh copy with a fresh cache dir, and prints one
# Markdown row per fixture: name, outcome (built / refused / not detected) and the first line of
# the buildpack's message. docs/buildpacks.md holds a run with Heroku's outcome beside ours.
# Needs the robot's python3 and pip; installs from PyPI where a fixture has no wheels/.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PACK="$HERE/../../buildpacks/python"
src=${1:?usage: tests/conformance/python.sh HEROKU_BUILDPACK_PYTHON_CHECKOUT [FIXTURE...]}
shift
fixtures=("$@")
[ ${#fixtures[@]} -gt 0 ] || fixtures=($(ls "$src/spec/fixtures"))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| fixture | roboku | first line of the message |"
echo "|---|---|---|"
for f in "${fixtures[@]}"; do
    app="$work/$f/app" cache="$work/$f/cache" env="$work/$f/env"
    mkdir -p "$app" "$cache" "$env"
    cp -a "$src/spec/fixtures/$f/." "$app/"
    if ! "$PACK/bin/detect" "$app" >/dev/null 2>&1; then
        echo "| $f | not detected | |"
        continue
    fi
    out=$("$PACK/bin/compile" "$app" "$cache" "$env" 2>&1)
    status=$?
    first=$(printf '%s\n' "$out" | grep -m1 -E '^ !|ERROR|Error|error:|did not run successfully' | sed 's/^ *! *//; s/|/\\|/g' | cut -c1-150)
    if [ $status = 0 ]; then
        echo "| $f | built | $(printf '%s\n' "$out" | grep -m1 'Using' | sed 's/^-----> //') |"
    else
        echo "| $f | refused | ${first:-exit $status} |"
    fi
done
