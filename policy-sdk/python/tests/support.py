"""Shared paths for the SDK tests: the repository root, its shared PII files and WIT folder."""

import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PII_DIR = os.path.join(ROOT, "policy-sdk", "pii")
WIT = os.environ.get("SWITCHYARD_WIT") or os.path.join(ROOT, "wit")
AB_SPLIT = os.path.join(ROOT, "policies", "python", "ab_split")
TEMPLATE = os.path.join(ROOT, "policy-sdk", "templates", "python")
