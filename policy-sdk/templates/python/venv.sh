# Sourced by build.sh and test.sh: makes .venv with requirements.txt once (again when that
# file changes). Needs python3 with the venv module; reaches PyPI on the first run only.
venv="$here/.venv"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null || { echo "error: $python not found" >&2; exit 1; }
[ -f "$here/sdk/switchyard_policy/__init__.py" ] || {
  echo "error: $here/sdk/switchyard_policy is missing (copy policy-sdk/python there as sdk/)" >&2
  exit 1
}
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv ..."
  "$python" -m venv "$venv" || {
    rm -rf "$venv"
    echo "error: '$python -m venv' failed; install the venv module (Debian: apt-get install python3-venv)" >&2
    exit 1
  }
fi
if ! cmp -s "$here/requirements.txt" "$venv/.requirements"; then
  echo "installing $(grep -v '^#' "$here/requirements.txt" | xargs) ..."
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.requirements"
fi
