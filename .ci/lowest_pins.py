"""Print the runtime dependencies of pyproject.toml pinned at their floors (>= -> ==).

Used by .ci/run to test the package with the lowest versions it allows.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

deps = tomllib.loads(Path(sys.argv[1]).read_text())["project"]["dependencies"]
pins = []
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][^,;\s]*)\s*", dep)
    if m is None:
        sys.exit(f"cannot pin {dep!r}: every runtime dependency needs a '>=' floor")
    pins.append(f"{m.group(1)}=={m.group(2)}")
print("\n".join(pins))
