"""Print the runtime dependencies of pyproject.toml pinned at their floors (>= -> ==).

Used by .ci/run to test the package with the lowest versions it allows.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

text = Path(sys.argv[1]).read_text()
try:
    import tomllib

    deps = tomllib.loads(text)["project"]["dependencies"]
except ModuleNotFoundError:  # Python 3.10: the list is simple enough to read directly
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", text, re.S | re.M)
    if block is None:
        sys.exit("no [project] dependencies in " + sys.argv[1])
    deps = re.findall(r'"([^"]+)"', block.group(1))
pins = []
for dep in deps:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][^,;\s]*)\s*", dep)
    if m is None:
        sys.exit(f"cannot pin {dep!r}: every runtime dependency needs a '>=' floor")
    pins.append(f"{m.group(1)}=={m.group(2)}")
print("\n".join(pins))
