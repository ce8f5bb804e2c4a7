"""Copy the console's front-end library from node_modules into the package, with its version and licence.

Run by ``make console-assets`` after ``npm ci`` (so the files are exactly the ones package-lock.json pins).
Nothing here is committed: the copies under src/deskpilot/console/static/vendor are rebuilt from npm.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "src" / "deskpilot" / "console" / "static" / "vendor"
VENDORED = {"htmx.org": ("htmx", ["dist/htmx.min.js", "LICENSE"])}


def main() -> int:
    lock = json.loads((HERE / "package-lock.json").read_text(encoding="utf-8"))
    for package, (folder, files) in VENDORED.items():
        pinned = lock["packages"].get(f"node_modules/{package}")
        source = HERE / "node_modules" / package
        installed = json.loads((source / "package.json").read_text(encoding="utf-8"))
        if pinned is None or installed["version"] != pinned["version"]:
            print(f"{package}: node_modules does not match package-lock.json; run npm ci", file=sys.stderr)
            return 1
        out = TARGET / folder
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        digests = {}
        for name in files:
            copied = out / Path(name).name
            shutil.copyfile(source / name, copied)
            digests[copied.name] = hashlib.sha256(copied.read_bytes()).hexdigest()
        record = {
            "package": package,
            "version": installed["version"],
            "license": installed.get("license"),
            "resolved": pinned.get("resolved"),
            "integrity": pinned.get("integrity"),
            "sha256": digests,
        }
        (out / "VENDOR.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"vendored {package} {installed['version']} ({installed.get('license')}) into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
