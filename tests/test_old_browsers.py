"""Every script the pages load parses as ECMAScript 2017, older than any Android browser of the last
three years (checked with acorn from the npm registry, installed by `make test`)."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.conftest import REQUIRE_SERVICES, ROOT

ACORN = ROOT / "node_modules" / "acorn" / "dist" / "acorn.js"
SCRIPTS = sorted((ROOT / "static").rglob("*.js"))


def test_scripts_parse_as_es2017() -> None:
    node = shutil.which("node")
    if node is None or not ACORN.exists():
        if REQUIRE_SERVICES:
            pytest.fail("node and acorn are needed (make test runs npm install)")
        pytest.skip("node or acorn missing: run `npm install` (make test does)")
    program = """
const acorn = require(process.argv[1]);
const fs = require('fs');
const failures = [];
for (const file of JSON.parse(process.argv[2])) {
  try { acorn.parse(fs.readFileSync(file, 'utf8'), {ecmaVersion: 2017, sourceType: 'script'}); }
  catch (e) { failures.push(file + ': ' + e.message); }
}
console.log(JSON.stringify(failures));
"""
    assert SCRIPTS, "no scripts found"
    done = subprocess.run([node, "-e", program, str(ACORN), json.dumps([str(p) for p in SCRIPTS])],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
