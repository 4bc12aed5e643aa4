"""Keep costly optional imports out of the executor's processes.

jsonschema (imported by nbformat) builds parsers for its IRI format checker at import when
rfc3987_syntax is installed: 1–3 s of CPU per process, for a check nbformat's schema never uses.
pyarrow is imported by papermill for hdfs:// paths only. Made to fail while a block imports,
they are skipped by their (optional) importers, and importable again after the block.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

OPTIONAL = ("rfc3987_syntax", "pyarrow", "pyarrow.fs")


@contextmanager
def without_optional_imports(names=OPTIONAL):
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(dict.fromkeys(names))  # None in sys.modules: `import name` raises ImportError
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
