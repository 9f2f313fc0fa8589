"""check-jsonschema for several schemas in one process: ``python -I schemacheck.py SPEC``.

``SPEC`` is a JSON list of ``[options, files]``. For each, check-jsonschema's own command line (the ``main`` its
package exports) runs here with ``options``, ``--output-format json`` and the files, and one JSON line
``{"code": exit code, "report": its JSON report or null, "output": anything else it printed}`` is printed, in the
order given. One interpreter and one import of
check-jsonschema serve every schema, where one ``python -m check_jsonschema`` per schema and file would pay them each
time. Run as a script, in isolated mode (``-I``), so the modules beside it are not importable in its place.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def check(options: list[str], files: list[str]) -> dict[str, Any]:
    from check_jsonschema import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([*options, "--output-format", "json", *files])
        except SystemExit as done:  # click ends its command with sys.exit, whatever the result
            code = done.code
    try:
        report, rest = json.loads(out.getvalue()), err.getvalue()
    except ValueError:
        report, rest = None, out.getvalue() + err.getvalue()
    return {"code": code if isinstance(code, int) else 1 if code else 0, "report": report, "output": rest}


def main(argv: list[str]) -> int:
    for options, files in json.loads(argv[0]):
        print(json.dumps(check(options, files)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
