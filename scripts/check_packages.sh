#!/usr/bin/env bash
# Both packages as a user gets them: colabtui-remote (remote/) and colabtui (.) built as wheels
# and sdists (`python -m build`: the wheel is built from the sdist, so a file the sdist lacks
# fails here), checked by `twine check --strict`, installed from the built wheels into a fresh
# venv (dependencies from PyPI, pinned by constraints.txt; no torch), then smoke-tested there
# by scripts/smoke_packages.py from outside the source tree.
#
#   scripts/check_packages.sh [PYTHON]    PYTHON has build and twine (default .venv/bin/python,
#                                         which `make setup` gives them: the dev extra)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${1:-$repo/.venv/bin/python}
case "$python" in
    */*) [[ "$python" = /* ]] || python="$PWD/$python" ;;  # a relative path: before the cd below
esac
work=$(mktemp -d "${TMPDIR:-/tmp}/colabtui-packages.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Built from a copy of the files git tracks or would (not ignored ones: .venv, build/, egg-info),
# so the build leaves nothing in the tree and sees no leftovers of an earlier one.
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf -) |
    tar -xf - -C "$work/src"
cp "$repo/constraints.txt" "$work/constraints.txt"
cd "$work/src"
for project in remote .; do
    if ! "$python" -m build --outdir "$work/dist" "$project" >"$work/build.log" 2>&1; then
        cat "$work/build.log" >&2
        echo "check_packages: python -m build $project failed" >&2
        exit 1
    fi
done
echo "built: $(cd "$work/dist" && echo *)"
"$python" -m twine check --strict "$work"/dist/*

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$work/constraints.txt" \
    "$work"/dist/colabtui_remote-*.whl "$work"/dist/colabtui-*.whl
cd "$work"  # nothing of the source tree on the path: only what the wheels installed
env -u PYTHONPATH PATH="$work/venv/bin:$PATH" COLABTUI_CONFIG_DIR="$work/config" \
    COLABTUI_DATA_DIR="$work/data" "$work/venv/bin/python" "$repo/scripts/smoke_packages.py" \
    "$(cat "$repo/remote/colabtui_remote/VERSION")"
