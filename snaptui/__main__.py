"""Allow ``python -m snaptui``."""

from snaptui.cli import main

raise SystemExit(main())
