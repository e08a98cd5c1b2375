"""``metaseg-web``: start the Streamlit page on 127.0.0.1 (headless, no usage statistics).

Extra arguments go to ``streamlit run`` (e.g. ``--server.port 8502``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULTS = ["--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "viewer"]


def main(argv: list[str] | None = None) -> int:
    extra = sys.argv[1:] if argv is None else argv
    if extra and extra[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    app = Path(__file__).with_name("app.py")
    # Replace this process (no wrapper left behind to forward signals to Streamlit).
    os.execv(sys.executable, [sys.executable, "-m", "streamlit", "run", str(app), *DEFAULTS, *extra])


if __name__ == "__main__":
    sys.exit(main())
