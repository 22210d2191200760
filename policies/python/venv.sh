# Sourced by build.sh and test.sh: makes policies/python/.venv with the pinned toolchain
# (requirements.txt) and the SDK (policy-sdk/python, editable), reinstalling only when
# requirements.txt or the SDK's pyproject.toml changed. Needs $here (this folder) and
# $root (the repository root); sets $venv. Reaches PyPI on the first run only.
venv="$here/.venv"
python="${PYTHON:-python3}"

command -v "$python" >/dev/null || { echo "[py] error: $python not found" >&2; exit 1; }
if [ ! -x "$venv/bin/python" ]; then
  echo "[py] creating virtualenv $venv ..."
  if ! "$python" -m venv "$venv"; then
    rm -rf "$venv"
    # Debian's python3 lacks ensurepip unless python3-venv is installed; the
    # virtualenv package (from PyPI) bundles its own pip and works without it.
    if "$python" -m virtualenv --version >/dev/null 2>&1; then
      echo "[py] '$python -m venv' failed; using virtualenv instead"
      "$python" -m virtualenv -q "$venv"
    else
      echo "[py] error: '$python -m venv' failed. Install the venv module" \
        "(Debian/Ubuntu: apt-get install python3-venv) or virtualenv" \
        "($python -m pip install --user virtualenv) and run again." >&2
      exit 1
    fi
  fi
fi
stamp="$venv/.switchyard-requirements"
wanted="$(cat "$here/requirements.txt" "$root/policy-sdk/python/pyproject.toml")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "[py] installing toolchain ($(grep -v '^#' "$here/requirements.txt" | xargs)) and the SDK ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root/policy-sdk/python"
  printf '%s' "$wanted" > "$stamp"
else
  echo "[py] toolchain up to date ($("$venv/bin/componentize-py" --version))"
fi
